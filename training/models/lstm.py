"""Recurrent: an LSTM reads the image row by row; another writes it back row by row.

Encoder: each of the H rows is one timestep of W*C values -> LSTM -> ReLU on its outputs (the
design's activation) -> the top layer's final state -> dropout -> Linear -> embedding.
Decoder: the embedding repeated over the H timesteps (Keras's RepeatVector) -> LSTM -> ReLU ->
Linear from each timestep's output to one row of W*C values -> (B, C, H, W).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from training.models.autoencoder import Autoencoder


@dataclasses.dataclass
class LSTMConfig:
    height: int = 28  # input height, pixels = timesteps; must equal the Preprocessing's
    width: int = 28  # input width, pixels; a timestep holds one row of width * channels values
    channels: int = 1  # 1 = grayscale, 3 = RGB
    embedding_dim: int = 64  # length of the search vector
    hidden_size: int = 128  # LSTM state size per direction, encoder and decoder
    num_layers: int = 1  # stacked LSTM layers, encoder and decoder
    bidirectional: bool = False  # encoder only: also read the rows bottom to top
    dropout: float = 0.1  # before the embedding layer, and between stacked LSTM layers

    def __post_init__(self) -> None:
        assert self.channels in (1, 3), "the preprocessing gives grayscale (1) or RGB (3) images"
        assert self.height > 0 and self.width > 0, "image sides must be positive"
        assert self.embedding_dim > 0 and self.hidden_size > 0, "layer widths must be positive"
        assert self.num_layers >= 1, "need at least one LSTM layer"
        assert 0.0 <= self.dropout < 1.0, "dropout is a probability in [0, 1)"


def to_rows(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H, W*C): one timestep per row, the pixel's channels side by side."""
    return images.permute(0, 2, 3, 1).flatten(2)  # (B, H, W*C)


def make_lstm(input_size: int, config: LSTMConfig, bidirectional: bool) -> nn.LSTM:
    # nn.LSTM's own dropout acts only between stacked layers (and warns when there is one layer).
    between = config.dropout if config.num_layers > 1 else 0.0
    return nn.LSTM(
        input_size, config.hidden_size, num_layers=config.num_layers, batch_first=True,
        dropout=between, bidirectional=bidirectional,
    )  # fmt: skip


class Encoder(nn.Module):
    def __init__(self, config: LSTMConfig) -> None:
        super().__init__()
        self.input_shape = (config.channels, config.height, config.width)
        self.directions = 2 if config.bidirectional else 1
        self.lstm = make_lstm(config.width * config.channels, config, config.bidirectional)
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(config.dropout)
        self.to_embedding = nn.Linear(self.directions * config.hidden_size, config.embedding_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        assert tuple(images.shape[1:]) == self.input_shape, (
            f"expected images (B, {', '.join(map(str, self.input_shape))}), got {tuple(images.shape)}: "
            "preprocess with the model's Preprocessing spec"
        )
        _, (h_n, _) = self.lstm(to_rows(images))  # h_n: (layers * dirs, B, hidden)
        # The top layer's final state per direction: forward after the last row, backward after the first.
        final = h_n[-self.directions :].transpose(0, 1).flatten(1)  # (B, dirs * hidden)
        return self.to_embedding(self.dropout(self.act(final)))  # (B, D)


class Decoder(nn.Module):
    """Rebuilds the image from the embedding alone. Shared with lstm_attention."""

    def __init__(self, config: LSTMConfig) -> None:
        super().__init__()
        self.output_shape = (config.channels, config.height, config.width)
        self.lstm = make_lstm(config.embedding_dim, config, bidirectional=False)
        self.act = nn.ReLU()
        # Linear output: preprocessed pixels may be mean/std normalised, so no sigmoid to clamp them.
        self.to_row = nn.Linear(config.hidden_size, config.width * config.channels)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        channels, height, width = self.output_shape
        x = embeddings[:, None, :].expand(-1, height, -1)  # (B, H, D), the RepeatVector
        outputs, _ = self.lstm(x)  # (B, H, hidden)
        rows = self.to_row(self.act(outputs))  # (B, H, W*C)
        return rows.unflatten(2, (width, channels)).permute(0, 3, 1, 2)  # (B, C, H, W)


class LSTMAutoencoder(Autoencoder):
    architecture = "lstm"

    def __init__(self, config: LSTMConfig) -> None:
        super().__init__(config)
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
