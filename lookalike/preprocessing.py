"""Image preprocessing, the one copy: training and the encoder service both call it.

Bytes -> header checked -> decoded (a JPEG at a reduced DCT scale) and oriented -> converted to
the model's mode and shrunk by whole factors, strip by strip -> resized -> float32 (C, H, W).
The `Preprocessing` spec travels with every model (checkpoint and ONNX metadata), so serving
reproduces exactly what training saw. docs/preprocessing.md holds the measurements behind it.

Files come from anywhere, so every way one can fail is an `ImageDecodeError` (INVALID_ARGUMENT)
with a reason, and never another exception:
- IMAGE_EMPTY: no bytes.
- IMAGE_FORMAT_UNSUPPORTED: HEIC, HEIF and AVIF (named from their ISO-BMFF brand before Pillow
  sees them), and whatever else Pillow opens that is not PNG, JPEG, WebP, BMP or GIF.
- IMAGE_TOO_LARGE: more pixels than the limit, read from the header before any pixel is decoded;
  a GIF frame larger than its screen counts, as Pillow grows the canvas to it. The limit is
  `max_pixels` capped by Pillow's `Image.MAX_IMAGE_PIXELS`, so what Pillow would only warn about
  (DecompressionBombWarning) is refused like what it refuses (DecompressionBombError), without
  touching the process's warning filters, which are not thread-safe.
- IMAGE_UNDECODABLE: the rest: unknown bytes, damaged headers, truncated data, no pixels.

Big pictures cost what the model's input needs, not what the file holds: a JPEG decodes at 1/2,
1/4 or 1/8 scale (`Image.draft`), and every image is box-averaged by whole factors
(`Image.reduce`) while REDUCING_GAP times the final size remains, before the final bilinear
resize. Mode conversion and transparency happen strip by strip on the way, and a palette's
transparency is composited in the palette itself, so a 40-megapixel palette PNG never exists as
RGBA (~650 MB converted whole). The result stays within a grey level of decoding everything.

Transparent pixels have no colour: the spec's `background` fills them. By default it is white for
colour models, because re-shared copies of cut-outs land on white (JPEG has no alpha), and black
for grayscale models, the digits' background.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import struct

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from lookalike.errors import InvalidArgument, Reason

# Names the pixels this module makes from a file and a spec: bump it with any change that alters
# them, so caches of preprocessed pixels (training's decoded-image cache) key on it. 2: JPEG
# drafting and whole-factor reduction before the final resize.
PIXELS_VERSION = 2
SUPPORTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
_SEND = "send PNG, JPEG, WebP, BMP or GIF"
DEFAULT_MAX_PIXELS = 40_000_000  # a 40-megapixel photo decodes to ~120 MB of RGB
RESIZE_MODES = ("stretch", "pad")
# Whole-factor shrinking stops while this many times the final size remains: the bilinear resize
# after it then stays within ~0.6 grey levels of the exact one on grainy photos (2: ~1.5; 4: ~0.4,
# but a JPEG of 3000 pixels across would decode at 1/2 instead of 1/4). docs/preprocessing.md.
# Pillow decodes RLE BMPs in Python, padding rows a byte at a time: 104 bytes claiming 3,990,000x10
# pixels cost 7.8 s of a core (tests/reliability fuzzing). Real RLE BMPs are small palette drawings.
MAX_RLE_BMP_PIXELS = 1_000_000
_RLE = (1, 2)  # BMP compression values of RLE8 and RLE4
REDUCING_GAP = 3
_STRIP_PIXELS = 1 << 20  # converted at a time: 4 MB as RGBA
# What Pillow raises on damaged files, besides UnidentifiedImageError (an OSError).
_DAMAGED = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)
# Neither is an OSError; the warning is an exception only where the process's filters make it one.
_TOO_LARGE = (Image.DecompressionBombError, Image.DecompressionBombWarning)
# ISO-BMFF brands of still images we do not decode; the most specific name wins (an AVIF file may
# lead with the generic "mif1" and list "avif" among its compatible brands).
_ISO_BMFF_BRANDS = {
    **dict.fromkeys((b"avif", b"avis"), "AVIF"),
    **dict.fromkeys((b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"), "HEIC"),
    **dict.fromkeys((b"mif1", b"msf1"), "HEIF"),
}
_TURNED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


class ImageDecodeError(InvalidArgument):
    """The bytes are not a usable image; the reason says why, for programs, and the message for people."""


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How an image becomes model input; stored as JSON inside every model."""

    height: int = 28  # model input height, pixels
    width: int = 28  # model input width, pixels
    channels: int = 1  # 1 = grayscale ("L"), 3 = RGB
    resize: str = "stretch"  # "stretch" ignores aspect ratio, "pad" letterboxes onto `background`
    # 0..255, the fill behind transparency and around padding; None: white (255) for RGB, black (0)
    # for grayscale. Always stored as a number, so a model's JSON never depends on this default.
    background: int | None = None
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
        if self.background is None:  # frozen: the default depends on channels, so it is settled here
            object.__setattr__(self, "background", 255 if self.channels == 3 else 0)
        assert 0 <= self.background <= 255, "background is a grey level, 0..255"

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


def decode(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, spec: Preprocessing | None = None) -> Image.Image:
    """Decodes and fully loads one image file, with its EXIF orientation applied.

    Given the `spec` the image is for, a JPEG decodes only as large as `to_model_input` needs
    (at 1/2, 1/4 or 1/8 scale): a 24-megapixel photo then costs a fraction of its full decode.
    """
    image, limit = _open(data, max_pixels)
    try:
        if spec is not None and image.format == "JPEG":
            image.draft(None, _draft_size(image, spec))
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # otherwise it copies every picture, turned or not
        return image
    except (*_TOO_LARGE, *_DAMAGED) as error:
        raise _refusal(error, limit, f"corrupt or truncated {image.format} image") from None


def to_model_input(image: Image.Image, spec: Preprocessing) -> np.ndarray:
    """Converts a decoded image of any size and mode to the model's input: float32 (C, H, W)."""
    image, box = _shrunk_in_mode(image, spec)
    if spec.resize == "pad":
        image = _letterboxed(image, box, spec)
    else:
        image = image.resize((spec.width, spec.height), Image.Resampling.BILINEAR, box=box)
    pixels = np.asarray(image, dtype=np.float32) / 255.0  # (H, W) or (H, W, 3)
    pixels = pixels.reshape(spec.height, spec.width, spec.channels).transpose(2, 0, 1)  # (C, H, W)
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(spec.std, dtype=np.float32).reshape(-1, 1, 1)
    return np.ascontiguousarray((pixels - mean) / std, dtype=np.float32)


def preprocess(data: bytes, spec: Preprocessing, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Bytes of one image file to model input (C, H, W)."""
    return to_model_input(decode(data, max_pixels, spec), spec)


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


def _open(data: bytes, max_pixels: int) -> tuple[Image.Image, int]:
    """The image with its header parsed and checked, no pixel decoded yet; and the pixel limit."""
    if not data:
        raise ImageDecodeError("empty image (0 bytes)", reason=Reason.IMAGE_EMPTY)
    brand = _iso_bmff_brand(data)
    if brand:
        raise ImageDecodeError(f"{brand} images are not supported; {_SEND}", reason=Reason.IMAGE_FORMAT_UNSUPPORTED)
    limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)  # over Pillow's, it would warn: see above
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageDecodeError(f"not a recognisable image file; {_SEND}", reason=Reason.IMAGE_UNDECODABLE) from None
    except (*_TOO_LARGE, *_DAMAGED) as error:
        raise _refusal(error, limit, "corrupt image header") from None
    if image.format not in SUPPORTED_FORMATS:
        raise ImageDecodeError(f"{image.format} images are not supported; {_SEND}", reason=Reason.IMAGE_FORMAT_UNSUPPORTED)
    width, height = image.size
    if width * height > limit:
        raise ImageDecodeError(
            f"image is {width}x{height} = {width * height} pixels, over the limit of {limit}",
            reason=Reason.IMAGE_TOO_LARGE,
            metadata={"limit": limit},
        )
    if width == 0 or height == 0:
        raise ImageDecodeError(f"image has no pixels ({width}x{height})", reason=Reason.IMAGE_UNDECODABLE)
    if image.format == "BMP" and image.info.get("compression") in _RLE and width * height > MAX_RLE_BMP_PIXELS:
        raise ImageDecodeError(
            f"run-length compressed BMP of {width}x{height} pixels, over the limit of {MAX_RLE_BMP_PIXELS} for that "
            "compression (Pillow decodes it in Python: seconds of CPU from a few bytes); send PNG",
            reason=Reason.IMAGE_TOO_LARGE,
            metadata={"limit": MAX_RLE_BMP_PIXELS},
        )
    return image, limit


def _refusal(error: Exception, limit: int, damaged: str) -> ImageDecodeError:
    if isinstance(error, _TOO_LARGE):
        message = f"image is over the limit of {limit} pixels: {error}"
        return ImageDecodeError(message, reason=Reason.IMAGE_TOO_LARGE, metadata={"limit": limit})
    return ImageDecodeError(f"{damaged}: {error}", reason=Reason.IMAGE_UNDECODABLE)


def _draft_size(image: Image.Image, spec: Preprocessing) -> tuple[int, int]:
    """The size a JPEG may decode down to, in its stored orientation (EXIF turns it afterwards)."""
    turned = image.getexif().get(ExifTags.Base.Orientation) in _TURNED
    if turned:
        return _large_enough(image.size[::-1], spec)[::-1]
    return _large_enough(image.size, spec)


def _large_enough(size: tuple[int, int], spec: Preprocessing) -> tuple[int, int]:
    """The smallest (width, height) an image of `size` may shrink to before the final resize:
    REDUCING_GAP times what that resize keeps along each axis."""
    if spec.resize == "pad":  # the aspect ratio is kept: the tighter axis decides
        scale = min(spec.width / size[0], spec.height / size[1]) * REDUCING_GAP
        return max(1, math.ceil(size[0] * scale)), max(1, math.ceil(size[1] * scale))
    return spec.width * REDUCING_GAP, spec.height * REDUCING_GAP


def _shrunk_in_mode(image: Image.Image, spec: Preprocessing) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """The image in the model's mode, box-averaged by whole factors down to `_large_enough`, and
    the box the original picture covers in it: the last row and column may average a partial
    block, so the final resize must take (0, 0, width / factor, height / factor), not the whole.

    Converted strip by strip, each strip reduced before the next is converted: memory stays at a
    strip whatever the file's mode, and the result equals converting the whole, then reducing it.
    """
    width, height = image.size
    wanted = _large_enough(image.size, spec)
    factors = (max(1, width // wanted[0]), max(1, height // wanted[1]))
    if spec.resize == "pad":
        factors = (min(factors),) * 2
    rows = max(1, _STRIP_PIXELS // (width * factors[1])) * factors[1]  # whole blocks, so strips reduce as the whole would
    strips = [
        _to_mode(image.crop((0, top, width, min(top + rows, height))), spec).reduce(factors) for top in range(0, height, rows)
    ]
    box = (0.0, 0.0, width / factors[0], height / factors[1])
    if len(strips) == 1:
        return strips[0], box
    shrunk = Image.new(spec.mode, (strips[0].width, sum(strip.height for strip in strips)))
    top = 0
    for strip in strips:
        shrunk.paste(strip, (0, top))
        top += strip.height
    return shrunk, box


def _letterboxed(image: Image.Image, box: tuple[float, float, float, float], spec: Preprocessing) -> Image.Image:
    """`box` of the image fitted inside the model's input, centred on `background` (ImageOps.pad's
    rule, which cannot take a box)."""
    width, height = box[2] - box[0], box[3] - box[1]
    if width / height > spec.width / spec.height:
        fitted = (spec.width, max(1, round(height / width * spec.width)))
    else:
        fitted = (max(1, round(width / height * spec.height)), spec.height)
    canvas = Image.new(spec.mode, (spec.width, spec.height), _fill(spec))
    corner = (round((spec.width - fitted[0]) / 2), round((spec.height - fitted[1]) / 2))
    canvas.paste(image.resize(fitted, Image.Resampling.BILINEAR, box=box), corner)
    return canvas


def _to_mode(image: Image.Image, spec: Preprocessing) -> Image.Image:
    """`image` in the model's mode, its transparency filled with `spec.background`."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit scans would saturate in Pillow's own convert("L"); scale them down instead.
        wide = np.asarray(image, dtype=np.float32)
        image = Image.fromarray(np.clip(wide / 257.0, 0, 255).astype(np.uint8), "L")
    if image.mode == "P" and "transparency" in image.info:
        image = _palette_composited(image, spec)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        image = _composited(image, spec)
    return image.convert(spec.mode)


def _composited(image: Image.Image, spec: Preprocessing) -> Image.Image:
    """RGBA `image` over an opaque `spec.background`."""
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (spec.background,) * 3 + (255,)), rgba)


def _palette_composited(image: Image.Image, spec: Preprocessing) -> Image.Image:
    """A copy of a palette image with its transparent colours composited onto the background in
    the palette itself: 256 colours instead of every pixel, and then one lookup per pixel (a third
    of the time of converting to RGBA, compositing and converting again)."""
    entries = Image.new("P", (256, 1))
    entries.putdata(range(256))
    entries.putpalette(image.palette.tobytes(), image.palette.mode)
    entries.info["transparency"] = image.info["transparency"]
    opaque = image.copy()
    opaque.putpalette(_composited(entries, spec).convert("RGB").tobytes())
    del opaque.info["transparency"]
    return opaque


def _fill(spec: Preprocessing) -> int | tuple[int, int, int]:
    return spec.background if spec.channels == 1 else (spec.background,) * 3


def _iso_bmff_brand(data: bytes) -> str | None:
    """Names HEIC, HEIF and AVIF files, which Pillow opens only with plugins, so the error says what they are.

    Their first box is `ftyp`: size, "ftyp", the major brand, a minor version, compatible brands.
    """
    if len(data) < 12 or data[4:8] != b"ftyp":
        return None
    end = min(len(data), struct.unpack(">I", data[:4])[0])
    names = {_ISO_BMFF_BRANDS.get(data[i : i + 4]) for i in (8, *range(16, end - 3, 4))}
    return next((name for name in ("AVIF", "HEIC", "HEIF") if name in names), None)
