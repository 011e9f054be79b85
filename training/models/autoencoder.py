"""What every architecture is: an encoder and a decoder, kept apart so each exports on its own."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn


class Autoencoder(nn.Module):
    """images (B, C, H, W) -> encoder -> embeddings (B, D) -> decoder -> images (B, C, H, W).

    Subclasses set `architecture`, build `self.encoder` and `self.decoder` (separate nn.Modules,
    exported as encoder.onnx and decoder.onnx) and keep their config dataclass in `self.config`.
    """

    architecture: ClassVar[str]  # the registry key, stored in checkpoints and ONNX metadata
    encoder: nn.Module
    decoder: nn.Module

    def __init__(self, config: Any) -> None:
        super().__init__()
        assert dataclasses.is_dataclass(config), "config must be the architecture's config dataclass"
        self.config = config

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.config.channels, self.config.height, self.config.width)

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(images))  # (B, C, H, W)
