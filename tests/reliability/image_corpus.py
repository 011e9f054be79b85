"""Seed pictures for the fuzzers: small real files in every format and mode the services decode,
and a few they refuse, so mutations start from bytes that get deep into each decoder.

Built on the fly (a fraction of a second), from tests/odd_images.py where it already has them.
"""

from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image

from tests import odd_images
from tests.odd_images import encoded, gradient


def _rgb(width: int = 48, height: int = 32) -> Image.Image:
    return Image.fromarray(gradient(width, height))


def _animated_gif() -> bytes:
    frames = [_rgb().convert("P"), _rgb().rotate(180).convert("P")]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)


def _transparent_gif() -> bytes:
    return encoded(Image.open(io.BytesIO(odd_images.palette_with_transparency())).resize((32, 32)), "GIF", transparency=0)


def seeds() -> dict[str, bytes]:
    """name -> file bytes, each at most a few KB: the pictures, then the refused files."""
    return {**pictures(), **refused()}


@functools.cache
def pictures() -> dict[str, bytes]:
    """name -> a small valid picture, one per format and mode the services decode."""
    rgb = _rgb()
    cutout = odd_images.cutout(32)
    grey = rgb.convert("L")
    return {
        # PNG in each mode Pillow reads differently
        "rgb.png": encoded(rgb, "PNG"),
        "grey.png": encoded(grey, "PNG"),
        "1-bit.png": encoded(grey.convert("1"), "PNG"),
        "palette.png": encoded(rgb.convert("P"), "PNG"),
        "palette-transparent.png": odd_images.palette_with_transparency(),
        "grey-alpha.png": odd_images.la_png(),
        "rgba.png": encoded(cutout, "PNG"),
        "16-bit.png": odd_images.png_16_bit(),
        "1x1.png": encoded(Image.new("RGB", (1, 1), (9, 99, 199)), "PNG"),
        # JPEG: baseline, progressive, grey, CMYK, EXIF-turned
        "rgb.jpg": encoded(rgb, "JPEG", quality=80),
        "progressive.jpg": encoded(rgb, "JPEG", quality=80, progressive=True),
        "grey.jpg": encoded(grey, "JPEG", quality=80),
        "cmyk.jpg": encoded(rgb.convert("CMYK"), "JPEG", quality=80),
        "exif-rotated.jpg": odd_images.exif_rotated_jpeg(),
        # GIF: still, animated, transparent, a frame beyond its screen
        "still.gif": encoded(rgb.convert("P"), "GIF"),
        "animated.gif": _animated_gif(),
        "transparent.gif": _transparent_gif(),
        "frame-beyond-screen.gif": odd_images.gif_frame_beyond_screen(),
        # WebP lossy and lossless with alpha; BMP in 24, 32, 8 and 1 bit
        "rgb.webp": encoded(rgb, "WEBP", quality=70),
        "rgba-lossless.webp": encoded(cutout, "WEBP", lossless=True),
        "rgb.bmp": encoded(rgb.resize((16, 12)), "BMP"),
        "rgba.bmp": encoded(cutout.resize((12, 12)), "BMP"),
        "palette.bmp": encoded(rgb.resize((16, 12)).convert("P"), "BMP"),
        "1-bit.bmp": encoded(grey.resize((16, 12)).convert("1"), "BMP"),
    }


@functools.cache
def refused() -> dict[str, bytes]:
    """name -> a small file the services refuse: too large by its header, unsupported, damaged."""
    return {
        "header-65500x65500.jpg": odd_images.jpeg_claiming(65_500, 65_500),
        "frame-without-data.gif": odd_images.gif_with_oversized_frame(frame=300),
        "bomb-7000x7000.png": odd_images.png_bomb(7_000, 7_000),
        "phone.heic": odd_images.iso_bmff_header(b"heic"),
        "picture.avif": odd_images.iso_bmff_header(b"mif1", (b"mif1", b"avif")),
        "scan.tiff": encoded(Image.new("RGB", (8, 8)), "TIFF"),
    }
