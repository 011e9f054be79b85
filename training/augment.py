"""The train-time edits a search-by-image user meets: rotation, scale, translation, crop, blur,
brightness and contrast, JPEG re-encoding; on colour images also hue shifts, flips, grey copies and
the marks of re-sharing: down-scaling, letterbox borders, a caption-like bar, a watermark patch.

Training feeds edited copies to the encoder (denoising, and the consistency term of
training/losses.py). `lookalike eval` does not reuse them: its copy queries come from the held-out
edits of copy_detection/copy_edits.py, made with Pillow on the decoded pictures, with other parameters,
so the study measures generalisation to edits of these kinds. Works on batches of model inputs
(B, C, H, W) in preprocessed units and returns the same; the edits happen on 0..1 pixels, so they
mean the same whatever the mean/std.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lookalike.preprocessing import Preprocessing
from training.config import AugmentConfig

# RGB <-> YIQ: hue is the angle in the IQ plane, so a hue shift is a rotation there that keeps luma.
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)
MIN_BAR, MIN_PATCH = 0.05, 0.05  # smallest caption bar (of the height) and watermark patch (of each side)


def augment(
    images: torch.Tensor, spec: Preprocessing, config: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    """An edited copy of each image; every edit is drawn per image, each applied with config.p."""
    assert images.ndim == 4 and tuple(images.shape[1:]) == spec.shape, (
        f"expected preprocessed images (B, {spec.shape}), got {tuple(images.shape)}"
    )
    mean = torch.tensor(spec.mean, dtype=images.dtype).reshape(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=images.dtype).reshape(1, -1, 1, 1)
    pixels = images.detach().cpu() * std + mean  # (B, C, H, W), 0..1
    draw = _Draws(len(images), config.p, generator)

    pixels = _affine(pixels, config, draw)
    if spec.channels == 3:  # before the blur, which smooths its blocks as a viewer's upscaling would
        pixels = _downscale(pixels, config, draw)
    pixels = _blur(pixels, config.blur, draw)
    pixels = _brightness_contrast(pixels, config, draw)
    if spec.channels == 3:
        pixels = _hue(pixels, config.hue, draw)
        pixels = _grayscale(pixels, config.grayscale, draw)
        pixels = _hflip(pixels, config.hflip, draw)
        pixels = _letterbox(pixels, config, draw)
        pixels = _caption_bar(pixels, config, draw)
        pixels = _overlay(pixels, config, draw)
    pixels = pixels.clamp(0.0, 1.0)
    pixels = _jpeg(pixels, config.jpeg_quality, draw)
    return ((pixels - mean) / std).to(images)


class _Draws:
    """Seeded per-image random numbers, and the coin flips that switch each edit on or off."""

    def __init__(self, batch: int, p: float, generator: torch.Generator) -> None:
        self.batch, self.p, self.generator = batch, p, generator

    def uniform(self, low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(self.batch, generator=self.generator)  # (B,)

    def symmetric(self, scale: float) -> torch.Tensor:
        return self.uniform(-scale, scale)

    def on(self, p: float | None = None) -> torch.Tensor:
        return torch.rand(self.batch, generator=self.generator) < (self.p if p is None else p)  # (B,) bool


def _affine(pixels: torch.Tensor, config: AugmentConfig, draw: _Draws) -> torch.Tensor:
    """Rotation, zoom (scale), translation and crop, composed into one resampling."""
    B, _, H, W = pixels.shape
    angle = torch.where(draw.on(), draw.symmetric(math.radians(config.rotation)), 0.0)  # (B,)
    zoom = torch.where(draw.on(), draw.uniform(1 - config.scale, 1 + config.scale), 1.0)  # (B,) >1 enlarges
    # A crop keeps a fraction `keep` of each side, placed anywhere, then fills the frame with it.
    cropped = draw.on()
    keep = torch.where(cropped, draw.uniform(config.crop, 1.0), 1.0)  # (B,)
    crop_x = torch.where(cropped, draw.symmetric(1.0) * (1 - keep), 0.0)  # centre offset, [-1, 1] units
    crop_y = torch.where(cropped, draw.symmetric(1.0) * (1 - keep), 0.0)
    moved = draw.on()
    tx = torch.where(moved, draw.symmetric(2 * config.translate), 0.0)  # a side is 2 units in [-1, 1] space
    ty = torch.where(moved, draw.symmetric(2 * config.translate), 0.0)
    if not (angle.any() or (zoom != 1).any() or (keep != 1).any() or tx.any() or ty.any()):
        return pixels  # resampling at the identity would still blur by a hair
    # theta maps output coordinates to input ones, so zooming in by z samples a region 1/z as large.
    scale = keep / zoom  # (B,)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack(
        [torch.stack([cos, -sin * H / W, crop_x - tx], 1), torch.stack([sin * W / H, cos, crop_y - ty], 1)], 1
    )  # (B, 2, 3)
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)  # (B, H, W, 2)
    # "border" repeats the edge pixels: photos get no invented black frame; digits have black edges anyway.
    return F.grid_sample(pixels, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _blur(pixels: torch.Tensor, max_sigma: float, draw: _Draws) -> torch.Tensor:
    """Gaussian blur with sigma drawn per image in (0, max_sigma] pixels; separable, edge-replicated."""
    sigma = torch.where(draw.on(), draw.uniform(0.1 * max_sigma, max_sigma), 0.0)  # (B,)
    if max_sigma <= 0 or not sigma.any():
        return pixels
    B, C, H, W = pixels.shape
    radius = max(1, math.ceil(2 * max_sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=pixels.dtype)  # (K,)
    kernel = torch.exp(-(offsets[None] ** 2) / (2 * sigma.clamp(min=1e-3)[:, None] ** 2))  # (B, K)
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(C, 0)  # (B*C, K), sums to 1
    x = pixels.reshape(1, B * C, H, W)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), kernel[:, None, None, :], groups=B * C)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), kernel[:, None, :, None], groups=B * C)
    return x.reshape(B, C, H, W)


def _brightness_contrast(pixels: torch.Tensor, config: AugmentConfig, draw: _Draws) -> torch.Tensor:
    shift = torch.where(draw.on(), draw.symmetric(config.brightness), 0.0)[:, None, None, None]  # (B, 1, 1, 1)
    gain = torch.where(draw.on(), draw.uniform(1 - config.contrast, 1 + config.contrast), 1.0)[:, None, None, None]
    if not shift.any() and (gain == 1).all():
        return pixels
    # Contrast pivots on each image's mean grey, so it does not also brighten or darken.
    grey = pixels.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    return (pixels - grey) * gain + grey + shift


def _hue(pixels: torch.Tensor, max_turns: float, draw: _Draws) -> torch.Tensor:
    angle = torch.where(draw.on(), draw.symmetric(2 * math.pi * max_turns), 0.0)  # (B,)
    cos, sin = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(cos), torch.zeros_like(cos)
    rotate = torch.stack(
        [torch.stack([one, zero, zero], 1), torch.stack([zero, cos, -sin], 1), torch.stack([zero, sin, cos], 1)], 1
    )  # (B, 3, 3), turns I and Q, keeps Y
    matrix = _YIQ_TO_RGB.to(pixels) @ rotate @ _RGB_TO_YIQ.to(pixels)  # (B, 3, 3)
    return torch.einsum("bij,bjhw->bihw", matrix, pixels)


def _hflip(pixels: torch.Tensor, p: float, draw: _Draws) -> torch.Tensor:
    flip = draw.on(p)[:, None, None, None]  # (B, 1, 1, 1)
    return torch.where(flip, pixels.flip(-1), pixels)


def _grayscale(pixels: torch.Tensor, p: float, draw: _Draws) -> torch.Tensor:
    grey = draw.on(p)[:, None, None, None]  # (B, 1, 1, 1)
    luma = (pixels * _RGB_TO_YIQ[0].to(pixels).reshape(1, 3, 1, 1)).sum(1, keepdim=True)  # (B, 1, H, W)
    return torch.where(grey, luma.expand_as(pixels), pixels)


def _downscale(pixels: torch.Tensor, config: AugmentConfig, draw: _Draws) -> torch.Tensor:
    """Area-averaged down to a fraction of the side, then bilinear back up: the detail a small copy lost."""
    chosen = draw.on(config.sharing)
    keep = draw.uniform(config.downscale, 1.0)  # (B,)
    if config.downscale >= 1 or not chosen.any():
        return pixels
    out = pixels.clone()
    _, _, H, W = pixels.shape
    for i in torch.nonzero(chosen).flatten().tolist():
        size = (max(2, round(H * float(keep[i]))), max(2, round(W * float(keep[i]))))
        small = F.interpolate(pixels[i : i + 1], size=size, mode="area")
        out[i] = F.interpolate(small, size=(H, W), mode="bilinear", align_corners=False)[0]
    return out


def _letterbox(pixels: torch.Tensor, config: AugmentConfig, draw: _Draws) -> torch.Tensor:
    """The image shrunk along each axis, placed anywhere, the rest one random colour."""
    chosen = draw.on(config.sharing)
    keep_x = torch.where(chosen, draw.uniform(config.letterbox, 1.0), 1.0)  # (B,) fraction of the width kept
    keep_y = torch.where(chosen, draw.uniform(config.letterbox, 1.0), 1.0)
    at_x, at_y = draw.symmetric(1.0) * (1 - keep_x), draw.symmetric(1.0) * (1 - keep_y)  # centre, [-1, 1] units
    colour = torch.rand(len(pixels), 3, 1, 1, generator=draw.generator)  # (B, 3, 1, 1)
    if not chosen.any():
        return pixels
    zero = torch.zeros_like(keep_x)
    theta = torch.stack(
        [torch.stack([1 / keep_x, zero, -at_x / keep_x], 1), torch.stack([zero, 1 / keep_y, -at_y / keep_y], 1)], 1
    )  # (B, 2, 3): output coordinates -> input ones
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)  # (B, H, W, 2)
    inside = F.grid_sample(torch.ones_like(pixels[:, :1]), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    shrunk = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    boxed = shrunk + (1 - inside) * colour  # (B, 3, H, W): the edge pixels blend into the border
    return torch.where(chosen[:, None, None, None], boxed, pixels)


def _caption_bar(pixels: torch.Tensor, config: AugmentConfig, draw: _Draws) -> torch.Tensor:
    """A bar of one colour over the top or bottom, with a row of glyph-like marks of another."""
    B, _, H, W = pixels.shape
    chosen = draw.on(config.sharing)
    height = draw.uniform(MIN_BAR, max(config.caption, MIN_BAR))  # (B,) fraction of the image height
    on_top = draw.on(0.5)
    bar_colour, mark_colour = (torch.rand(B, 3, 1, 1, generator=draw.generator) for _ in range(2))
    words = torch.rand(B, 1, 1, max(1, W // 3), generator=draw.generator) < 0.6  # runs of marks, like words
    if config.caption <= 0 or not chosen.any():
        return pixels
    y = (torch.arange(H, dtype=pixels.dtype) + 0.5) / H  # (H,) row centres, 0..1 from the top
    depth = torch.where(on_top[:, None], y[None], 1 - y[None])  # (B, H) distance from the bar's edge
    in_bar = (depth < height[:, None]) & chosen[:, None]  # (B, H)
    middle = (depth - height[:, None] / 2).abs() < height[:, None] / 4  # (B, H), the text line
    marks = F.interpolate(words.to(pixels), size=(1, W), mode="nearest")[:, :, 0] > 0  # (B, 1, W)
    bar = torch.where((middle[:, None, :, None] & marks[:, :, None, :]), mark_colour, bar_colour)  # (B, 3, H, W)
    return torch.where(in_bar[:, None, :, None], bar, pixels)


def _overlay(pixels: torch.Tensor, config: AugmentConfig, draw: _Draws) -> torch.Tensor:
    """A partly transparent patch of one colour anywhere: a watermark or logo."""
    B, _, H, W = pixels.shape
    chosen = draw.on(config.sharing)
    width = draw.uniform(MIN_PATCH, max(config.overlay, MIN_PATCH))  # (B,) fractions of the sides
    height = draw.uniform(MIN_PATCH, max(config.overlay, MIN_PATCH))
    left, top = draw.uniform(0.0, 1.0) * (1 - width), draw.uniform(0.0, 1.0) * (1 - height)
    opacity = torch.where(chosen, draw.uniform(0.3, 1.0), 0.0)[:, None, None, None]  # (B, 1, 1, 1)
    colour = torch.rand(B, 3, 1, 1, generator=draw.generator)
    if config.overlay <= 0 or not chosen.any():
        return pixels
    y = ((torch.arange(H, dtype=pixels.dtype) + 0.5) / H)[None]  # (1, H)
    x = ((torch.arange(W, dtype=pixels.dtype) + 0.5) / W)[None]  # (1, W)
    rows = (y >= top[:, None]) & (y < (top + height)[:, None])  # (B, H)
    columns = (x >= left[:, None]) & (x < (left + width)[:, None])  # (B, W)
    patch = (rows[:, :, None] & columns[:, None, :])[:, None].to(pixels) * opacity  # (B, 1, H, W)
    return pixels * (1 - patch) + colour * patch


def _jpeg(pixels: torch.Tensor, quality: tuple[int, int] | None, draw: _Draws) -> torch.Tensor:
    """Re-encodes the chosen images as JPEG with Pillow, the real codec and its real artefacts."""
    chosen = draw.on()
    low, high = quality or (1, 1)
    qualities = draw.uniform(low, high + 1).floor().int()  # (B,)
    if quality is None or not chosen.any():
        return pixels
    out = pixels.clone()
    as_bytes = (pixels * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (B, H, W, C)
    for i in torch.nonzero(chosen).flatten().tolist():
        array = as_bytes[i, :, :, 0] if as_bytes.shape[-1] == 1 else as_bytes[i]
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="JPEG", quality=int(qualities[i]))
        decoded = np.asarray(Image.open(buffer), dtype=np.float32) / 255.0  # (H, W) or (H, W, C)
        out[i] = torch.from_numpy(decoded.reshape(array.shape[0], array.shape[1], -1)).permute(2, 0, 1)
    return out
