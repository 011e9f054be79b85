"""Input corruption for denoising training: the model sees a shifted, noisy image and must
reconstruct the clean one, so nearby embeddings stop depending on a digit's exact position.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def corrupt(
    images: torch.Tensor,
    generator: torch.Generator,
    max_shift: float = 0.0,
    max_rotation: float = 0.0,
    noise_std: float = 0.0,
) -> torch.Tensor:
    """A randomly moved and noisy copy of `images` (B, C, H, W); the clean batch stays the target.

    max_shift: pixels, uniform in [-max_shift, max_shift] on each axis, per image.
    max_rotation: degrees, uniform in [-max_rotation, max_rotation], per image.
    noise_std: Gaussian noise in preprocessed units (pixels scaled to 0..1 for mean 0, std 1).
    """
    assert images.ndim == 4, f"expected (B, C, H, W), got {tuple(images.shape)}"
    B, _, H, W = images.shape
    x = images
    if max_shift > 0 or max_rotation > 0:
        uniform = lambda scale: (torch.rand(B, generator=generator) * 2 - 1) * scale  # noqa: E731
        angle = uniform(math.radians(max_rotation))  # (B,)
        # affine_grid works in [-1, 1] coordinates, where one pixel is 2 / size (align_corners=False).
        tx, ty = uniform(max_shift) * 2 / W, uniform(max_shift) * 2 / H  # (B,), (B,)
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)  # (B, 2, 3)
        grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)  # (B, H, W, 2)
        # "border" repeats the edge pixels instead of inventing a black frame on photos.
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)  # (B, C, H, W)
    if noise_std > 0:
        x = x + noise_std * torch.randn(x.shape, generator=generator).to(x)
    return x
