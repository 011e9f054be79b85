"""Convolution encoder, transposed-convolution decoder (the design's "Conv + TransposeConv").

Encoder: conv_upsample's — [conv -> (batch norm) -> ReLU -> pool] per stage -> a full-extent conv to
(B, D) (see conv_upsample for why it honours embedding_dim exactly and keeps position).
Decoder: the full-extent conv's transpose to (B, C_last, h, w) -> [stride-2 transposed conv ->
(batch norm) -> ReLU] per stage, each one learning its upsampling instead of repeating pixels ->
a stride-1 transposed conv to the image's channels. output_padding picks the exact stage size, so odd
sizes come back exactly (4 -> 7 -> 14 -> 28).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from training.models.autoencoder import Autoencoder
from training.models.conv_fc import ConvDecoder
from training.models.conv_upsample import ConvEncoder, ConvUpsampleConfig, FromEmbedding


@dataclasses.dataclass
class ConvTransposeConfig(ConvUpsampleConfig):
    """Same settings as conv_upsample: height, width, channels, embedding_dim, conv_channels, pooling,
    dropout, batch_norm (see ConvUpsampleConfig for their defaults)."""


class TransposeBlock(nn.Module):
    """Stride-2 transposed conv from in_size to out_size (out = 2*in or 2*in - 1), batch norm, ReLU."""

    def __init__(
        self, in_channels: int, out_channels: int, in_size: tuple[int, int], out_size: tuple[int, int], batch_norm: bool
    ) -> None:
        super().__init__()
        # kernel 3, stride 2, padding 1 gives 2*in - 1; output_padding 1 adds the even size's last row.
        output_padding = tuple(o - (2 * i - 1) for i, o in zip(in_size, out_size))
        assert all(p in (0, 1) for p in output_padding), f"cannot go from {in_size} to {out_size} with stride 2"
        self.deconv = nn.ConvTranspose2d(
            in_channels, out_channels, kernel_size=3, stride=2, padding=1, output_padding=output_padding,
            bias=not batch_norm,  # batch norm's shift makes the bias redundant
        )  # fmt: skip
        self.norm = nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.deconv(x)))  # (B, out, *out_size)


def transpose_stages(conv_channels: tuple[int, ...], sizes: list[tuple[int, int]], batch_norm: bool) -> nn.Sequential:
    """The encoder's stages mirrored: (B, C_last, h, w) -> (B, C_first, H, W)."""
    channels, stages = list(conv_channels), []
    for i in reversed(range(len(channels))):
        out_channels = channels[i - 1] if i > 0 else channels[0]
        stages.append(TransposeBlock(channels[i], out_channels, sizes[i + 1], sizes[i], batch_norm))
    return nn.Sequential(*stages)


def make_decoder(config: ConvTransposeConfig) -> ConvDecoder:
    sizes = config.stage_sizes()
    return ConvDecoder(
        FromEmbedding(config.embedding_dim, config.conv_channels[-1], sizes[-1], config.batch_norm),
        transpose_stages(config.conv_channels, sizes, config.batch_norm),
        nn.ConvTranspose2d(config.conv_channels[0], config.channels, kernel_size=3, padding=1),
    )


class ConvTransposeAutoencoder(Autoencoder):
    architecture = "conv_transpose"

    def __init__(self, config: ConvTransposeConfig) -> None:
        super().__init__(config)
        self.encoder = ConvEncoder(config)
        self.decoder = make_decoder(config)
