"""Colour histogram: the related work's "multicolour search", as a baseline that ignores layout.

A joint histogram in CIELAB (perceptually uniform: equal steps look equally different), with soft
(triangular) binning so a small colour change moves mass smoothly instead of jumping bins. The
vector is the square root of the normalised histogram: its cosine similarity is then the
Bhattacharyya coefficient of the two histograms, a metric made for distributions, while the
search service still ranks by plain cosine. Grayscale images get a lightness histogram.
There is no decoder: a histogram cannot rebuild an image.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from training.models.baseline import Baseline

# sRGB (D65) -> CIE XYZ, then XYZ normalised by the D65 white point.
_RGB_TO_XYZ = torch.tensor(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_WHITE = torch.tensor([0.95047, 1.0, 1.08883])
CHROMA_RANGE = 80.0  # a* and b* bins span [-80, 80]; sRGB colours rarely go further, outliers join the end bins


@dataclasses.dataclass
class ColourHistogramConfig:
    height: int = 28  # input height, pixels; must equal the Preprocessing's
    width: int = 28  # input width, pixels
    channels: int = 1  # 1 = grayscale (lightness only), 3 = RGB (joint L*a*b*)
    lightness_bins: int = 8  # bins over L* 0..100
    chroma_bins: int = 4  # bins over each of a* and b* (colour images only)
    mean: tuple[float, ...] = (0.0,)  # the Preprocessing's mean and std, to recover 0..1 pixels
    std: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        self.mean, self.std = tuple(float(m) for m in self.mean), tuple(float(s) for s in self.std)
        assert self.lightness_bins >= 2 and self.chroma_bins >= 2, "soft binning needs at least 2 bins per axis"

    @property
    def embedding_dim(self) -> int:
        return self.lightness_bins * (self.chroma_bins**2 if self.channels == 3 else 1)


def _soft_bins(values: torch.Tensor, low: float, high: float, bins: int) -> torch.Tensor:
    """(B, P) values -> (B, P, bins) weights summing to 1: each value split between its two nearest bin centres."""
    position = ((values - low) / (high - low) * (bins - 1)).clamp(0, bins - 1)  # (B, P), in bin units
    centres = torch.arange(bins, dtype=values.dtype, device=values.device)  # (bins,)
    return torch.relu(1 - (position[..., None] - centres).abs())  # (B, P, bins)


def _srgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, P) sRGB in 0..1 -> (B, 3, P) L* (0..100), a*, b*."""
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = torch.einsum("ij,bjp->bip", _RGB_TO_XYZ.to(rgb), linear) / _WHITE.to(rgb)[:, None]  # (B, 3, P)
    delta = 6 / 29
    f = torch.where(xyz > delta**3, xyz.clamp(min=1e-12) ** (1 / 3), xyz / (3 * delta**2) + 4 / 29)
    fx, fy, fz = f[:, 0], f[:, 1], f[:, 2]  # (B, P) each
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], 1)


class HistogramEncoder(nn.Module):
    def __init__(self, config: ColourHistogramConfig) -> None:
        super().__init__()
        self.config = config
        self.input_shape = (config.channels, config.height, config.width)
        self.register_buffer("mean", torch.tensor(config.mean).reshape(1, -1, 1))  # (1, C or 1, 1)
        self.register_buffer("std", torch.tensor(config.std).reshape(1, -1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        assert tuple(images.shape[1:]) == self.input_shape, (
            f"expected images (B, {', '.join(map(str, self.input_shape))}), got {tuple(images.shape)}"
        )
        pixels = (images.flatten(2) * self.std + self.mean).clamp(0, 1)  # (B, C, P), 0..1
        c = self.config
        if c.channels == 1:
            histogram = _soft_bins(pixels[:, 0] * 100, 0, 100, c.lightness_bins).mean(1)  # (B, L)
        else:
            lab = _srgb_to_lab(pixels)  # (B, 3, P)
            lightness = _soft_bins(lab[:, 0], 0, 100, c.lightness_bins)  # (B, P, L)
            a = _soft_bins(lab[:, 1], -CHROMA_RANGE, CHROMA_RANGE, c.chroma_bins)  # (B, P, A)
            b = _soft_bins(lab[:, 2], -CHROMA_RANGE, CHROMA_RANGE, c.chroma_bins)  # (B, P, A)
            joint = torch.einsum("bpl,bpa,bpc->blac", lightness, a, b) / pixels.shape[-1]  # (B, L, A, A)
            histogram = joint.flatten(1)  # (B, L*A*A), sums to 1
        return histogram.clamp(min=0).sqrt()  # (B, D): unit length, cosine = Bhattacharyya coefficient


class ColourHistogram(Baseline):
    architecture = "colour_histogram"

    def __init__(self, config: ColourHistogramConfig) -> None:
        super().__init__(config)
        self.encoder = HistogramEncoder(config)
        self.decoder = None
