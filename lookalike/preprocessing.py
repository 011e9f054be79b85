"""Image preprocessing, the one copy: training and the encoder service both call it.

Bytes -> decoded, oriented image -> model mode -> resized -> float32 (C, H, W).
The `Preprocessing` spec travels with every model (checkpoint and ONNX metadata),
so serving reproduces exactly what training saw.
"""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lookalike.errors import InvalidArgument, Reason

SUPPORTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
_SEND = "send PNG, JPEG, WebP, BMP or GIF"
DEFAULT_MAX_PIXELS = 40_000_000  # a 40-megapixel photo decodes to ~120 MB of RGB
RESIZE_MODES = ("stretch", "pad")
# What Pillow raises on damaged files, besides UnidentifiedImageError (an OSError).
_DAMAGED = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, Image.DecompressionBombWarning)
_ISO_BMFF_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF", b"msf1": "HEIF", b"avif": "AVIF"}


class ImageDecodeError(InvalidArgument):
    """The bytes are not a usable image; the reason says why, for programs, and the message for people."""


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How an image becomes model input; stored as JSON inside every model."""

    height: int = 28  # model input height, pixels
    width: int = 28  # model input width, pixels
    channels: int = 1  # 1 = grayscale ("L"), 3 = RGB
    resize: str = "stretch"  # "stretch" ignores aspect ratio, "pad" letterboxes onto `background`
    background: int = 0  # 0..255, the fill behind transparency and around padding
    mean: tuple[float, ...] = (0.0,)  # per channel, subtracted after scaling pixels to 0..1
    std: tuple[float, ...] = (1.0,)  # per channel, divides after the mean

    def __post_init__(self) -> None:
        assert self.channels in (1, 3), "models take grayscale (1) or RGB (3) images"
        assert self.height > 0 and self.width > 0, "input size must be positive"
        assert self.resize in RESIZE_MODES, f"resize must be one of {RESIZE_MODES}"
        assert len(self.mean) in (1, self.channels) and len(self.std) in (1, self.channels), (
            "mean and std need one value, or one per channel"
        )
        assert all(s > 0 for s in self.std), "std must be positive"

    @property
    def mode(self) -> str:
        return "L" if self.channels == 1 else "RGB"

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Preprocessing":
        fields = json.loads(text)
        fields["mean"] = tuple(fields["mean"])
        fields["std"] = tuple(fields["std"])
        return cls(**fields)


def decode(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decodes and fully loads one image file, with its EXIF orientation applied."""
    if not data:
        raise ImageDecodeError("empty image (0 bytes)", reason=Reason.IMAGE_EMPTY)
    brand = _iso_bmff_brand(data)
    if brand:
        raise ImageDecodeError(f"{brand} images are not supported; {_SEND}", reason=Reason.IMAGE_FORMAT_UNSUPPORTED)
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageDecodeError(f"not a recognisable image file; {_SEND}", reason=Reason.IMAGE_UNDECODABLE) from None
    except Image.DecompressionBombError as error:  # over twice Pillow's own limit: not an OSError
        raise ImageDecodeError(f"image is too large: {error}", reason=Reason.IMAGE_TOO_LARGE, metadata={"limit": max_pixels}) from None
    except _DAMAGED as error:
        raise ImageDecodeError(f"corrupt image header: {error}", reason=Reason.IMAGE_UNDECODABLE) from None
    if image.format not in SUPPORTED_FORMATS:
        raise ImageDecodeError(f"{image.format} images are not supported; {_SEND}", reason=Reason.IMAGE_FORMAT_UNSUPPORTED)
    width, height = image.size
    # Image.open only parsed the header: refuse huge images before decoding any pixel.
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}",
            reason=Reason.IMAGE_TOO_LARGE,
            metadata={"limit": max_pixels},
        )
    if width == 0 or height == 0:
        raise ImageDecodeError(f"image has no pixels ({width}x{height})", reason=Reason.IMAGE_UNDECODABLE)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
            image = ImageOps.exif_transpose(image)
    except (*_DAMAGED, Image.DecompressionBombError) as error:
        raise ImageDecodeError(f"corrupt or truncated {image.format} image: {error}", reason=Reason.IMAGE_UNDECODABLE) from None
    return image


def to_model_input(image: Image.Image, spec: Preprocessing) -> np.ndarray:
    """Converts a decoded image to the model's input: float32 array of shape (C, H, W)."""
    image = _to_mode(image, spec)
    if spec.resize == "pad":
        image = ImageOps.pad(image, (spec.width, spec.height), Image.Resampling.BILINEAR, color=_fill(spec))
    elif image.size != (spec.width, spec.height):
        image = image.resize((spec.width, spec.height), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32) / 255.0  # (H, W) or (H, W, 3)
    pixels = pixels.reshape(spec.height, spec.width, spec.channels).transpose(2, 0, 1)  # (C, H, W)
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(spec.std, dtype=np.float32).reshape(-1, 1, 1)
    return np.ascontiguousarray((pixels - mean) / std, dtype=np.float32)


def preprocess(data: bytes, spec: Preprocessing, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Bytes of one image file to model input (C, H, W)."""
    return to_model_input(decode(data, max_pixels), spec)


def to_image(tensor: np.ndarray, spec: Preprocessing) -> Image.Image:
    """The inverse of `to_model_input` for one (C, H, W) tensor, e.g. a decoder's output."""
    assert tensor.shape == spec.shape, f"expected a tensor of shape {spec.shape}, got {tensor.shape}"
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(spec.std, dtype=np.float32).reshape(-1, 1, 1)
    pixels = np.clip((tensor * std + mean) * 255.0 + 0.5, 0, 255).astype(np.uint8)  # (C, H, W)
    if spec.channels == 1:
        return Image.fromarray(pixels[0], "L")
    return Image.fromarray(pixels.transpose(1, 2, 0), "RGB")


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _to_mode(image: Image.Image, spec: Preprocessing) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit scans would saturate in Pillow's own convert("L"); scale them down instead.
        wide = np.asarray(image, dtype=np.float32)
        image = Image.fromarray(np.clip(wide / 257.0, 0, 255).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        backdrop = Image.new("RGBA", rgba.size, (spec.background,) * 3 + (255,))
        image = Image.alpha_composite(backdrop, rgba)
    return image.convert(spec.mode)


def _fill(spec: Preprocessing) -> int | tuple[int, int, int]:
    return spec.background if spec.channels == 1 else (spec.background,) * 3


def _iso_bmff_brand(data: bytes) -> str | None:
    """Names HEIC/HEIF/AVIF files, which Pillow cannot open, so the error says what they are."""
    if len(data) >= 12 and data[4:8] == b"ftyp":
        return _ISO_BMFF_BRANDS.get(data[8:12])
    return None
