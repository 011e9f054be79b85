"""Fully convolutional: convolution + pooling encoder, upsampling + convolution decoder.

Encoder: [conv -> (batch norm) -> ReLU -> pool] per stage -> dropout -> a full-extent conv whose
kernel covers the whole last feature map (h, w), to embedding_dim channels -> (B, D, 1, 1) -> (B, D).
Decoder: the transpose of that conv back to (B, C_last, h, w) -> [upsample -> conv -> (batch norm)
-> ReLU] per stage -> conv to the image's channels.

Why a full-extent conv and not the flattened bottleneck map or a global pool: flattening gives
C_last*h*w values, not embedding_dim; a global average pool gives exactly D but throws away where
things are, which the decoder then cannot put back. A conv with kernel (h, w) and no padding gives
exactly D values that still depend on position. On the way back, upsampling a 1x1 map would copy the
same vector to every position, so the first decoder layer is that conv's transpose instead; every
later one is nearest upsampling + conv. Pooling uses ceil_mode and upsampling targets the encoder's
exact stage sizes, so odd sizes (28 -> 14 -> 7 -> 4 -> 7 -> 14 -> 28) come back exactly.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from training.models.autoencoder import Autoencoder
from training.models.conv_fc import POOLING, ConvBlock, ConvDecoder, ConvFCConfig, upsample_stages


@dataclasses.dataclass
class ConvUpsampleConfig:
    height: int = 28  # input height, pixels; must equal the Preprocessing's
    width: int = 28  # input width, pixels
    channels: int = 1  # 1 = grayscale, 3 = RGB
    embedding_dim: int = 64  # length of the search vector = channels of the full-extent conv
    conv_channels: tuple[int, ...] = (32, 64)  # one stage per entry; each stage halves H and W
    pooling: str = "max"  # "max" or "avg" downsampling after each conv stage
    dropout: float = 0.1  # on the last feature map, before the embedding conv
    batch_norm: bool = True  # after each conv; exported folded into the conv in eval mode

    def __post_init__(self) -> None:
        # Checkpoints and ONNX metadata store the config as JSON, which turns tuples into lists.
        self.conv_channels = tuple(int(c) for c in self.conv_channels)
        assert self.channels in (1, 3), "the preprocessing gives grayscale (1) or RGB (3) images"
        assert self.embedding_dim > 0, "embedding_dim must be positive"
        assert len(self.conv_channels) >= 1 and min(self.conv_channels) > 0, "need at least one conv stage"
        assert self.pooling in POOLING, f"pooling must be one of {POOLING}, got {self.pooling!r}"
        assert 0.0 <= self.dropout < 1.0, "dropout is a probability in [0, 1)"
        smallest = 2 ** len(self.conv_channels)
        assert min(self.height, self.width) >= smallest, (
            f"{self.height}x{self.width} is too small for {len(self.conv_channels)} pooling stages, each halving "
            f"the size: use images of at least {smallest}x{smallest} or fewer conv_channels"
        )

    # Same halving rule as conv_fc: [(H, W), (ceil(H/2), ceil(W/2)), ...], one entry per stage plus the last.
    stage_sizes = ConvFCConfig.stage_sizes


class ConvEncoder(nn.Module):
    """Conv + pool stages, then the full-extent conv to (B, D). Shared with conv_transpose."""

    def __init__(self, config: ConvUpsampleConfig) -> None:
        super().__init__()
        self.input_shape = (config.channels, config.height, config.width)
        pool = nn.MaxPool2d if config.pooling == "max" else nn.AvgPool2d
        stages, in_channels = [], config.channels
        for out_channels in config.conv_channels:
            stages += [ConvBlock(in_channels, out_channels, config.batch_norm), pool(2, ceil_mode=True)]
            in_channels = out_channels
        self.features = nn.Sequential(*stages)
        self.dropout = nn.Dropout(config.dropout)
        self.to_embedding = nn.Conv2d(in_channels, config.embedding_dim, kernel_size=config.stage_sizes()[-1])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        assert tuple(images.shape[1:]) == self.input_shape, (
            f"expected images (B, {', '.join(map(str, self.input_shape))}), got {tuple(images.shape)}: "
            "preprocess with the model's Preprocessing spec"
        )
        x = self.features(images)  # (B, C_last, h, w)
        x = self.to_embedding(self.dropout(x))  # (B, D, 1, 1)
        return x.flatten(1)  # (B, D)


class FromEmbedding(nn.Module):
    """(B, D) -> (B, C_last, h, w): the transpose of the encoder's full-extent conv, then ReLU."""

    def __init__(self, embedding_dim: int, out_channels: int, size: tuple[int, int], batch_norm: bool) -> None:
        super().__init__()
        self.deconv = nn.ConvTranspose2d(embedding_dim, out_channels, kernel_size=size, bias=not batch_norm)
        self.norm = nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        x = embeddings[:, :, None, None]  # (B, D, 1, 1)
        return self.act(self.norm(self.deconv(x)))  # (B, C_last, h, w)


def make_decoder(config: ConvUpsampleConfig) -> ConvDecoder:
    sizes = config.stage_sizes()
    return ConvDecoder(
        FromEmbedding(config.embedding_dim, config.conv_channels[-1], sizes[-1], config.batch_norm),
        upsample_stages(config.conv_channels, sizes, config.batch_norm),
        nn.Conv2d(config.conv_channels[0], config.channels, kernel_size=3, padding=1),
    )


class ConvUpsampleAutoencoder(Autoencoder):
    architecture = "conv_upsample"

    def __init__(self, config: ConvUpsampleConfig) -> None:
        super().__init__(config)
        self.encoder = ConvEncoder(config)
        self.decoder = make_decoder(config)
