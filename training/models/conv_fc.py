"""Convolution + fully connected encoder, fully connected + upsampling decoder (the design's model).

Encoder: [conv -> (batch norm) -> ReLU -> pool] per stage -> FC -> ReLU -> dropout -> FC -> embedding.
Decoder: FC -> ReLU -> FC to the smallest feature map -> [upsample -> conv -> (batch norm) -> ReLU]
per stage -> conv to the image's channels. Pooling uses ceil_mode and upsampling targets the
encoder's exact stage sizes, so odd sizes (28 -> 14 -> 7 -> 4 -> 7 -> 14 -> 28) come back exactly.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from training.models.autoencoder import Autoencoder

POOLING = ("max", "avg")


@dataclasses.dataclass
class ConvFCConfig:
    height: int = 28  # input height, pixels; must equal the Preprocessing's
    width: int = 28  # input width, pixels
    channels: int = 1  # 1 = grayscale, 3 = RGB
    embedding_dim: int = 64  # length of the search vector
    conv_channels: tuple[int, ...] = (32, 64)  # one stage per entry; each stage halves H and W
    fc_dim: int = 256  # width of the hidden fully connected layer on both sides of the embedding
    pooling: str = "max"  # "max" or "avg" downsampling after each conv stage
    dropout: float = 0.1  # before the embedding layer; regularises the small digits set
    batch_norm: bool = True  # after each conv; exported folded into the conv in eval mode

    def __post_init__(self) -> None:
        # Checkpoints and ONNX metadata store the config as JSON, which turns tuples into lists.
        self.conv_channels = tuple(int(c) for c in self.conv_channels)
        assert self.channels in (1, 3), "the preprocessing gives grayscale (1) or RGB (3) images"
        assert self.embedding_dim > 0 and self.fc_dim > 0, "layer widths must be positive"
        assert len(self.conv_channels) >= 1 and min(self.conv_channels) > 0, "need at least one conv stage"
        assert self.pooling in POOLING, f"pooling must be one of {POOLING}, got {self.pooling!r}"
        assert 0.0 <= self.dropout < 1.0, "dropout is a probability in [0, 1)"
        smallest = 2 ** len(self.conv_channels)
        assert min(self.height, self.width) >= smallest, (
            f"{self.height}x{self.width} is too small for {len(self.conv_channels)} pooling stages, each halving "
            f"the size: use images of at least {smallest}x{smallest} or fewer conv_channels"
        )

    def stage_sizes(self) -> list[tuple[int, int]]:
        """Feature map (H, W) before each pooling stage, then the final one: 28x28 -> [(28,28),(14,14),(7,7)]."""
        sizes = [(self.height, self.width)]
        for _ in self.conv_channels:
            h, w = sizes[-1]
            sizes.append((math.ceil(h / 2), math.ceil(w / 2)))  # ceil_mode pooling keeps the odd edge row
        return sizes


class ConvBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool) -> None:
        super().__init__()
        # No conv bias when batch norm follows: its shift makes the bias redundant.
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=not batch_norm)
        self.norm = nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))  # (B, out, H, W)


class Encoder(nn.Module):
    def __init__(self, config: ConvFCConfig) -> None:
        super().__init__()
        self.input_shape = (config.channels, config.height, config.width)
        pool = nn.MaxPool2d if config.pooling == "max" else nn.AvgPool2d
        stages, in_channels = [], config.channels
        for out_channels in config.conv_channels:
            stages += [ConvBlock(in_channels, out_channels, config.batch_norm), pool(2, ceil_mode=True)]
            in_channels = out_channels
        self.features = nn.Sequential(*stages)
        h, w = config.stage_sizes()[-1]
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * h * w, config.fc_dim),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.fc_dim, config.embedding_dim),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        assert tuple(images.shape[1:]) == self.input_shape, (
            f"expected images (B, {', '.join(map(str, self.input_shape))}), got {tuple(images.shape)}: "
            "preprocess with the model's Preprocessing spec"
        )
        x = self.features(images)  # (B, C_last, h, w)
        return self.fc(x)  # (B, D)


def upsample_stages(conv_channels: tuple[int, ...], sizes: list[tuple[int, int]], batch_norm: bool) -> nn.Sequential:
    """The encoder's stages mirrored: upsample to each stage's exact size, then conv down to the next width."""
    channels, stages = list(conv_channels), []
    for i in reversed(range(len(channels))):
        out_channels = channels[i - 1] if i > 0 else channels[0]
        stages += [nn.Upsample(size=sizes[i], mode="nearest"), ConvBlock(channels[i], out_channels, batch_norm)]
    return nn.Sequential(*stages)  # (B, C_last, h, w) -> (B, C_first, H, W)


class FCToFeatureMap(nn.Module):
    """(B, D) -> (B, C_last, h, w): FC -> ReLU -> FC to the encoder's smallest feature map -> ReLU."""

    def __init__(self, config: ConvFCConfig) -> None:
        super().__init__()
        self.start_shape = (config.conv_channels[-1], *config.stage_sizes()[-1])  # (C_last, h, w)
        self.fc = nn.Sequential(
            nn.Linear(config.embedding_dim, config.fc_dim),
            nn.ReLU(),
            nn.Linear(config.fc_dim, math.prod(self.start_shape)),
            nn.ReLU(),
        )

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.fc(embeddings).view(-1, *self.start_shape)  # (B, C_last, h, w)


class ConvDecoder(nn.Module):
    """Every convolutional decoder: embedding -> smallest feature map -> mirrored stages -> image.

    The families differ only in the three parts they pass in (FC or transposed conv from the
    embedding, upsampling or transposed-conv stages, conv or transposed conv to the image).
    """

    def __init__(self, from_embedding: nn.Module, features: nn.Module, to_image: nn.Module) -> None:
        super().__init__()
        self.from_embedding = from_embedding
        self.features = features
        self.to_image = to_image  # linear output: preprocessed pixels may be mean/std normalised, no sigmoid

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        x = self.from_embedding(embeddings)  # (B, C_last, h, w)
        x = self.features(x)  # (B, C_first, H, W)
        return self.to_image(x)  # (B, C, H, W)


def make_decoder(config: ConvFCConfig) -> ConvDecoder:
    return ConvDecoder(
        FCToFeatureMap(config),
        upsample_stages(config.conv_channels, config.stage_sizes(), config.batch_norm),
        nn.Conv2d(config.conv_channels[0], config.channels, kernel_size=3, padding=1),
    )


class ConvFCAutoencoder(Autoencoder):
    architecture = "conv_fc"

    def __init__(self, config: ConvFCConfig) -> None:
        super().__init__(config)
        self.encoder = Encoder(config)
        self.decoder = make_decoder(config)
