"""Raw pixels: the preprocessed image itself is the search vector, the floor every model must beat."""

from __future__ import annotations

import dataclasses

from training.models.baseline import Baseline, Flatten, Unflatten


@dataclasses.dataclass
class RawPixelsConfig:
    height: int = 28  # input height, pixels; must equal the Preprocessing's
    width: int = 28  # input width, pixels
    channels: int = 1  # 1 = grayscale, 3 = RGB

    @property
    def embedding_dim(self) -> int:
        return self.channels * self.height * self.width


class RawPixels(Baseline):
    architecture = "raw_pixels"

    def __init__(self, config: RawPixelsConfig) -> None:
        super().__init__(config)
        shape = (config.channels, config.height, config.width)
        self.encoder = Flatten(shape)  # (B, C, H, W) -> (B, C*H*W)
        self.decoder = Unflatten(shape)  # lossless: MSE 0 by construction
