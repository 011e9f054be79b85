"""Fully connected only: the image flattened, an MLP down to the embedding, an MLP back up.

Encoder: flatten -> [Linear -> (batch norm) -> ReLU -> dropout] per hidden layer -> Linear -> embedding.
Decoder: the mirror, ending in a Linear to C*H*W pixels. No spatial prior at all, so it is the
baseline the convolutional families should beat; it is also the fastest to train on small images.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from training.models.autoencoder import Autoencoder


@dataclasses.dataclass
class FCConfig:
    height: int = 28  # input height, pixels; must equal the Preprocessing's
    width: int = 28  # input width, pixels
    channels: int = 1  # 1 = grayscale, 3 = RGB
    embedding_dim: int = 64  # length of the search vector
    hidden_dims: tuple[int, ...] = (512, 256)  # encoder layer widths, input side first; the decoder reverses them
    dropout: float = 0.1  # after each hidden layer of the encoder
    batch_norm: bool = False  # BatchNorm1d after each hidden Linear, both sides

    def __post_init__(self) -> None:
        # Checkpoints and ONNX metadata store the config as JSON, which turns tuples into lists.
        self.hidden_dims = tuple(int(d) for d in self.hidden_dims)
        assert self.channels in (1, 3), "the preprocessing gives grayscale (1) or RGB (3) images"
        assert self.height > 0 and self.width > 0, "image sides must be positive"
        assert self.embedding_dim > 0 and all(d > 0 for d in self.hidden_dims), "layer widths must be positive"
        assert 0.0 <= self.dropout < 1.0, "dropout is a probability in [0, 1)"


class DenseBlock(nn.Module):
    def __init__(self, in_features: int, out_features: int, batch_norm: bool, dropout: float) -> None:
        super().__init__()
        # No bias when batch norm follows: its shift makes the bias redundant.
        self.linear = nn.Linear(in_features, out_features, bias=not batch_norm)
        self.norm = nn.BatchNorm1d(out_features) if batch_norm else nn.Identity()
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.act(self.norm(self.linear(x))))  # (B, out)


class Encoder(nn.Module):
    def __init__(self, config: FCConfig) -> None:
        super().__init__()
        self.input_shape = (config.channels, config.height, config.width)
        widths = [math.prod(self.input_shape), *config.hidden_dims]
        self.hidden = nn.Sequential(
            *(DenseBlock(i, o, config.batch_norm, config.dropout) for i, o in zip(widths, widths[1:]))
        )
        self.to_embedding = nn.Linear(widths[-1], config.embedding_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        assert tuple(images.shape[1:]) == self.input_shape, (
            f"expected images (B, {', '.join(map(str, self.input_shape))}), got {tuple(images.shape)}: "
            "preprocess with the model's Preprocessing spec"
        )
        x = images.flatten(1)  # (B, C*H*W)
        x = self.hidden(x)  # (B, hidden_dims[-1])
        return self.to_embedding(x)  # (B, D)


class Decoder(nn.Module):
    def __init__(self, config: FCConfig) -> None:
        super().__init__()
        self.output_shape = (config.channels, config.height, config.width)
        widths = [config.embedding_dim, *reversed(config.hidden_dims)]
        # No dropout on the way back: it would only add noise to the reconstruction.
        self.hidden = nn.Sequential(*(DenseBlock(i, o, config.batch_norm, 0.0) for i, o in zip(widths, widths[1:])))
        # Linear output: preprocessed pixels may be mean/std normalised, so no sigmoid to clamp them.
        self.to_pixels = nn.Linear(widths[-1], math.prod(self.output_shape))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        x = self.hidden(embeddings)  # (B, hidden_dims[0])
        x = self.to_pixels(x)  # (B, C*H*W)
        return x.view(-1, *self.output_shape)  # (B, C, H, W)


class FCAutoencoder(Autoencoder):
    architecture = "fc"

    def __init__(self, config: FCConfig) -> None:
        super().__init__(config)
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
