"""Odd but real image files, built on the fly, for every path that decodes pictures.

Each is what real catalogues and uploads contain: decompression bombs (a huge canvas in a few
KB), frames larger than their GIF's screen, headers claiming absurd sizes, HEIC and AVIF files,
CMYK JPEGs, 16-bit PNGs, palette images with a transparent colour, cut-outs with an alpha
channel, photos rotated by EXIF, truncated files, and big photos and clip art for speed.
REFUSED and VALID at the end list them with the services' verdict, for every intake test.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image, ImageChops, ImageDraw


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


def gif_frame_beyond_screen(screen: int = 16) -> bytes:
    """A valid GIF whose 64x48 frame is larger than its `screen`-pixel logical screen: Pillow
    grows the canvas to the frame, and the picture is fine."""
    data = bytearray(encoded(Image.fromarray(gradient(64, 48)).convert("P"), "GIF"))
    data[6:10] = struct.pack("<HH", screen, screen)  # the logical screen descriptor's width, height
    return bytes(data)


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF) claims width x height pixels."""
    data = bytearray(encoded(Image.fromarray(gradient()), "JPEG", quality=90))
    at = 2  # after SOI: segments of marker (2 bytes) + length (2 bytes, counting itself) + body
    while data[at + 1] not in (0xC0, 0xC1, 0xC2):
        at += 2 + struct.unpack(">H", data[at + 2 : at + 4])[0]
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)  # after length and sample precision
    return bytes(data)


def iso_bmff_header(major: bytes, compatible: tuple[bytes, ...] = ()) -> bytes:
    """The opening `ftyp` box of a HEIC/HEIF/AVIF file and some zero bytes: what a phone's photo
    starts with (`heic`), or an AVIF led by the generic `mif1` brand with `avif` compatible."""
    body = major + bytes(4) + b"".join(compatible)  # major brand, minor version, compatible brands
    return struct.pack(">I", 8 + len(body)) + b"ftyp" + body + bytes(64)


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


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """RGB, photo-like: smooth random colour fields with fine grain, so neither compression nor
    downscaling makes it trivial. Built in uint8 for 8000x8000 and more without gigabytes."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (max(2, height // 64), max(2, width // 64), 3), dtype=np.uint8)
    fields = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    grain = Image.fromarray(rng.integers(0, 25, (height, width, 3), dtype=np.uint8))
    return ImageChops.add(fields, grain, offset=-12)  # fields + grain - 12, clipped to 0..255


def clip_art(width: int, height: int) -> bytes:
    """A palette PNG with a transparent colour: a few flat shapes on nothing, like clip art. Near
    40 megapixels it is ~100 KB on the wire and ~650 MB if converted to RGBA and composited whole."""
    image = Image.new("P", (width, height), 0)
    image.putpalette([0, 0, 0, 220, 30, 30, 30, 90, 200, 250, 200, 0] + [0] * 756)
    draw = ImageDraw.Draw(image)
    draw.ellipse((width // 8, height // 8, width // 2, height // 2), fill=1)
    draw.rectangle((width // 2, height // 3, width * 7 // 8, height * 7 // 8), fill=2)
    draw.polygon([(width // 6, height * 5 // 6), (width // 3, height // 2), (width // 2, height * 5 // 6)], fill=3)
    return encoded(image, "PNG", transparency=0)


def cutout(size: int = 96, colour: tuple[int, int, int] = (200, 40, 40), seed: int = 0) -> Image.Image:
    """RGBA: a textured object with soft edges on a fully transparent background, as product
    photos are cut out; the transparent pixels hold junk colour, as they often do."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    radius = 0.3 + 0.08 * np.sin(np.arctan2(yy, xx) * rng.integers(2, 7))  # a wavy outline
    alpha = np.clip((radius - np.hypot(yy, xx)) * size / 2, 0, 1)  # soft edge, ~2 px wide
    shade = 0.6 + 0.4 * (xx - yy + 1) / 2  # lit from one side
    rgb = np.clip(np.asarray(colour) * shade[..., None] + rng.normal(0, 8, (size, size, 3)), 0, 255)
    rgb[alpha == 0] = rng.integers(0, 256, 3)  # whatever the editor left under the transparency
    return Image.fromarray(np.dstack([rgb, alpha * 255]).astype(np.uint8), "RGBA")


# The catalogue the intake tests go through: each odd file, how to build it, and the reason the
# services refuse it with (INVALID_ARGUMENT at its field)...
REFUSED = {
    "bomb-30000x30000.png": (lambda: png_bomb(30_000, 30_000), "IMAGE_TOO_LARGE"),  # what a user met: over twice Pillow's limit
    "bomb-10000x10000.png": (lambda: png_bomb(10_000, 10_000), "IMAGE_TOO_LARGE"),  # Pillow only warns
    "bomb-7000x7000.png": (lambda: png_bomb(7_000, 7_000), "IMAGE_TOO_LARGE"),  # under Pillow's limits, over the services'
    "gif-frame-30000.gif": (gif_with_oversized_frame, "IMAGE_TOO_LARGE"),  # what a user met
    "gif-frame-7000.gif": (lambda: gif_with_oversized_frame(frame=7_000), "IMAGE_TOO_LARGE"),
    "gif-frame-without-data.gif": (lambda: gif_with_oversized_frame(frame=3_000), "IMAGE_UNDECODABLE"),
    "header-65500x65500.jpg": (lambda: jpeg_claiming(65_500, 65_500), "IMAGE_TOO_LARGE"),
    "truncated-photo.jpg": (lambda: truncated(encoded(photo(1200, 900), "JPEG", quality=90)), "IMAGE_UNDECODABLE"),
    "truncated-16-bit.png": (lambda: truncated(png_16_bit(), 0.8), "IMAGE_UNDECODABLE"),
    "phone.heic": (lambda: iso_bmff_header(b"heic"), "IMAGE_FORMAT_UNSUPPORTED"),
    "picture.avif": (lambda: iso_bmff_header(b"mif1", (b"mif1", b"avif")), "IMAGE_FORMAT_UNSUPPORTED"),
    "scan.tiff": (lambda: encoded(Image.new("RGB", (8, 8)), "TIFF"), "IMAGE_FORMAT_UNSUPPORTED"),
}
# ...and the odd but valid pictures they accept.
VALID = {
    "cmyk.jpg": cmyk_jpeg,
    "16-bit.png": png_16_bit,
    "palette-transparent.png": palette_with_transparency,
    "gray-alpha.png": la_png,
    "exif-rotated.jpg": exif_rotated_jpeg,
    "gif-frame-beyond-screen.gif": gif_frame_beyond_screen,
    "clip-art-39.7MP.png": lambda: clip_art(6300, 6300),  # just under the services' 40 MP
    "photo-12MP.jpg": lambda: encoded(photo(4000, 3000), "JPEG", quality=90),
}
