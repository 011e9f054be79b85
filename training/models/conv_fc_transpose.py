"""Convolution + fully connected encoder, fully connected + transposed-convolution decoder.

Encoder: conv_fc's — [conv -> (batch norm) -> ReLU -> pool] per stage -> FC -> ReLU -> dropout -> FC.
Decoder: FC -> ReLU -> FC to the smallest feature map -> [stride-2 transposed conv -> (batch norm) ->
ReLU] per stage (conv_transpose's) -> a stride-1 transposed conv to the image's channels. The same
model as conv_fc except that the decoder learns its upsampling instead of repeating pixels.
"""

from __future__ import annotations

import dataclasses

from torch import nn

from training.models.autoencoder import Autoencoder
from training.models.conv_fc import ConvDecoder, ConvFCConfig, FCToFeatureMap
from training.models.conv_fc import Encoder as ConvFCEncoder
from training.models.conv_transpose import transpose_stages


@dataclasses.dataclass
class ConvFCTransposeConfig(ConvFCConfig):
    """Same settings as conv_fc: height, width, channels, embedding_dim, conv_channels, fc_dim, pooling,
    dropout, batch_norm (see ConvFCConfig for their defaults)."""


def make_decoder(config: ConvFCTransposeConfig) -> ConvDecoder:
    return ConvDecoder(
        FCToFeatureMap(config),
        transpose_stages(config.conv_channels, config.stage_sizes(), config.batch_norm),
        nn.ConvTranspose2d(config.conv_channels[0], config.channels, kernel_size=3, padding=1),
    )


class ConvFCTransposeAutoencoder(Autoencoder):
    architecture = "conv_fc_transpose"

    def __init__(self, config: ConvFCTransposeConfig) -> None:
        super().__init__(config)
        self.encoder = ConvFCEncoder(config)
        self.decoder = make_decoder(config)
