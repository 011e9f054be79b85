"""Convolution + fully connected encoder, fully connected + transposed-convolution decoder.

Encoder: conv_fc's — [conv -> (batch norm) -> ReLU -> pool] per stage -> FC -> ReLU -> dropout -> FC.
Decoder: FC -> ReLU -> FC to the smallest feature map -> [stride-2 transposed conv -> (batch norm) ->
ReLU] per stage (conv_transpose's) -> a stride-1 transposed conv to the image's channels. The same
model as conv_fc except that the decoder learns its upsampling instead of repeating pixels.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from training.models.autoencoder import Autoencoder
from training.models.conv_fc import ConvFCConfig
from training.models.conv_fc import Encoder as ConvFCEncoder
from training.models.conv_transpose import transpose_stages


@dataclasses.dataclass
class ConvFCTransposeConfig(ConvFCConfig):
    """Same settings as conv_fc: height, width, channels, embedding_dim, conv_channels, fc_dim, pooling,
    dropout, batch_norm (see ConvFCConfig for their defaults)."""


class Decoder(nn.Module):
    def __init__(self, config: ConvFCTransposeConfig) -> None:
        super().__init__()
        sizes = config.stage_sizes()
        channels = config.conv_channels
        self.start_shape = (channels[-1], *sizes[-1])  # (C_last, h, w), the encoder's last feature map
        self.fc = nn.Sequential(
            nn.Linear(config.embedding_dim, config.fc_dim),
            nn.ReLU(),
            nn.Linear(config.fc_dim, math.prod(self.start_shape)),
            nn.ReLU(),
        )
        self.features = transpose_stages(channels, sizes, config.batch_norm)
        # Linear output: preprocessed pixels may be mean/std normalised, so no sigmoid to clamp them.
        self.to_image = nn.ConvTranspose2d(channels[0], config.channels, kernel_size=3, padding=1)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        x = self.fc(embeddings)  # (B, C_last * h * w)
        x = x.view(-1, *self.start_shape)  # (B, C_last, h, w)
        x = self.features(x)  # (B, C_first, H, W)
        return self.to_image(x)  # (B, C, H, W)


class ConvFCTransposeAutoencoder(Autoencoder):
    architecture = "conv_fc_transpose"

    def __init__(self, config: ConvFCTransposeConfig) -> None:
        super().__init__(config)
        self.encoder = ConvFCEncoder(config)
        self.decoder = Decoder(config)
