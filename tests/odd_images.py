"""Odd but real image files, built on the fly, for every path that decodes pictures.

Each is what real catalogues and uploads contain: decompression bombs (a huge canvas in a few
KB), frames larger than their GIF's screen, CMYK JPEGs, 16-bit PNGs, palette images with a
transparent colour, photos rotated by EXIF, truncated files.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid 1-bit grayscale PNG of width x height black pixels, a few KB on the wire: its
    header promises far more pixels than any server should decode. Written by hand, streaming,
    so the test itself never holds the canvas."""
    row = b"\x00" + bytes((width + 7) // 8)  # filter byte 0, then the packed bits
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, grayscale
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def gif_with_oversized_frame(screen: int = 16, frame: int = 30_000) -> bytes:
    """A GIF whose logical screen is `screen` pixels square but whose one frame claims `frame`
    pixels square (the frame data itself is a single clear code and end)."""
    header = b"GIF89a" + struct.pack("<HHBBB", screen, screen, 0, 0, 0)  # no global colour table
    descriptor = b"," + struct.pack("<HHHHB", 0, 0, frame, frame, 0x80)  # local table of 2 colours
    colours = b"\x00\x00\x00\xff\xff\xff"
    data = b"\x02" + b"\x02\x4c\x01" + b"\x00"  # LZW min code size 2; one sub-block: clear, end
    return header + descriptor + colours + data + b";"


def encoded(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def gradient(width: int = 96, height: int = 64) -> np.ndarray:
    """(H, W, 3) uint8: red grows left to right, green top to bottom; orientation is visible."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None].repeat(width, 1)
    return np.stack([x, y, np.full_like(x, 64)], axis=-1).astype(np.uint8)


def cmyk_jpeg() -> bytes:
    return encoded(Image.fromarray(gradient()).convert("CMYK"), "JPEG", quality=95)


def png_16_bit() -> bytes:
    wide = (gradient()[..., 0].astype(np.uint16) * 257)  # full 16-bit range
    return encoded(Image.fromarray(wide), "PNG")  # uint16: mode I;16


def palette_with_transparency() -> bytes:
    """A palette PNG whose colour 0 is transparent: a red disc cut out on nothing."""
    yy, xx = np.mgrid[:64, :64]
    disc = ((yy - 32) ** 2 + (xx - 32) ** 2 < 24**2).astype(np.uint8)  # 1 inside, 0 outside
    image = Image.fromarray(disc).convert("P")
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    return encoded(image, "PNG", transparency=0)


def la_png() -> bytes:
    """Grayscale with alpha: an opaque mid-grey square in a transparent frame."""
    pixels = np.zeros((64, 64, 2), np.uint8)
    pixels[16:48, 16:48] = (128, 255)
    return encoded(Image.merge("LA", [Image.fromarray(pixels[..., 0]), Image.fromarray(pixels[..., 1])]), "PNG")


def exif_rotated_jpeg() -> bytes:
    """The gradient stored turned on its side, with EXIF orientation 6 (rotate 90° clockwise to view)."""
    stored = Image.fromarray(gradient()).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    return encoded(stored, "JPEG", quality=95, exif=exif.tobytes())


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: max(1, int(len(data) * keep))]
