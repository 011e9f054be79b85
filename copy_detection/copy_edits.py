"""Copy edits as people make them when re-sharing a picture: the copy-detection queries of `lookalike eval`
and of the migration report that compares two model versions before an alias is switched
(search_service/migration_report.py); here, below both, so the servers need not import training.

Each edit works with Pillow on the decoded original picture (any size), before the preprocessing,
the way a re-shared copy reaches the encoder service: down-scaling with JPEG re-encoding, crop, small
rotation, colour change, mirror, caption bar, logo, letterbox, grayscale; and mixes of three of them.

These are the EVALUATION edits. Training learns edits of the same kinds (training/augment.py) with
its own code on tensors and other parameters, so the study measures how well a model generalises
to edits it has not seen exactly, not whether it memorised them.

Seeded: `copies(pictures, edit, seed)` gives the same copies for the same pictures every time.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Callable, Iterable, Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

WHITE = (255, 255, 255)
MIX = "mix of three"  # three different edits at once, in the order of EDITS
MIX_SIZE = 3
CAPTIONS = ("when the code finally works", "monday mood", "SALE 50% OFF", "look at this!", "new post", "lol")
LOGO_TEXT = ("@lookalike", "© 2026", "SAMPLE", "shared via app")


@dataclasses.dataclass(frozen=True)
class CopyEditConfig:
    """Strength of each edit: a range, drawn uniformly per copy."""

    downscale: tuple[float, float] = (0.25, 0.5)  # new side / old side, then JPEG (a re-shared small copy)
    jpeg_quality: tuple[int, int] = (40, 75)  # of that re-encoding
    crop: tuple[float, float] = (0.7, 0.9)  # fraction of each side kept, anywhere in the picture
    rotation: tuple[float, float] = (4.0, 10.0)  # degrees, either way; the corners filled white
    hue: tuple[float, float] = (0.03, 0.12)  # turns of the colour wheel, either way
    saturation: tuple[float, float] = (0.5, 1.5)  # colour gain, 0 would be grey
    brightness: tuple[float, float] = (0.75, 1.25)  # gain
    caption: tuple[float, float] = (0.12, 0.22)  # height of the added bar, fraction of the picture's height
    logo: tuple[float, float] = (0.15, 0.3)  # width of the logo or watermark, fraction of the picture's width
    logo_opacity: tuple[float, float] = (0.5, 0.9)
    letterbox: tuple[float, float] = (0.6, 0.85)  # the picture's share of the frame's width (or height)


Edit = Callable[[Image.Image, np.random.Generator, CopyEditConfig], Image.Image]


def copies(pictures: Iterable[Image.Image], edit: str, seed: int, config: CopyEditConfig = CopyEditConfig()) -> Iterator[Image.Image]:
    """An edited copy of each picture: `edit` (a key of EDITS) or MIX; picture i draws from (seed, i)."""
    assert edit in EDITS or edit == MIX, f"edit must be one of {[*EDITS, MIX]}, got {edit!r}"
    for i, picture in enumerate(pictures):
        rng = np.random.default_rng([seed, i])
        yield mixed(picture, rng, config) if edit == MIX else edited(picture, edit, rng, config)


def edited(picture: Image.Image, edit: str, rng: np.random.Generator, config: CopyEditConfig = CopyEditConfig()) -> Image.Image:
    """One edit of an RGB copy of `picture`."""
    return EDITS[edit](flattened(picture), rng, config)


def mixed(picture: Image.Image, rng: np.random.Generator, config: CopyEditConfig = CopyEditConfig()) -> Image.Image:
    """MIX_SIZE different edits, drawn at random, applied in the order of EDITS (crop before caption, JPEG last)."""
    names = list(EDITS)
    chosen = sorted(rng.choice(len(names), MIX_SIZE, replace=False))
    picture = flattened(picture)
    for index in chosen:
        picture = EDITS[names[index]](picture, rng, config)
    return picture


def flattened(picture: Image.Image) -> Image.Image:
    """RGB, transparency on white: a re-shared copy of a cut-out is usually a JPEG on white."""
    if picture.mode in ("RGBA", "LA", "PA", "P") or "transparency" in picture.info:
        rgba = picture.convert("RGBA")
        backdrop = Image.new("RGBA", rgba.size, (*WHITE, 255))
        return Image.alpha_composite(backdrop, rgba).convert("RGB")
    return picture.convert("RGB")


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(*bounds))


def _downscale_jpeg(picture: Image.Image, rng: np.random.Generator, config: CopyEditConfig) -> Image.Image:
    factor = _uniform(rng, config.downscale)
    size = (max(8, round(picture.width * factor)), max(8, round(picture.height * factor)))
    buffer = io.BytesIO()
    quality = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
    picture.resize(size, Image.Resampling.BICUBIC).save(buffer, format="JPEG", quality=quality)
    return Image.open(buffer).convert("RGB")


def _crop(picture: Image.Image, rng: np.random.Generator, config: CopyEditConfig) -> Image.Image:
    width, height = (max(1, round(side * _uniform(rng, config.crop))) for side in picture.size)
    left = int(rng.integers(0, picture.width - width + 1))
    top = int(rng.integers(0, picture.height - height + 1))
    return picture.crop((left, top, left + width, top + height))


def _rotation(picture: Image.Image, rng: np.random.Generator, config: CopyEditConfig) -> Image.Image:
    angle = _uniform(rng, config.rotation) * rng.choice([-1, 1])
    return picture.rotate(angle, Image.Resampling.BICUBIC, fillcolor=WHITE)


def _colour(picture: Image.Image, rng: np.random.Generator, config: CopyEditConfig) -> Image.Image:
    """Hue turned, then saturation and brightness scaled: a filter of a photo app."""
    hsv = np.array(picture.convert("HSV"))  # (H, W, 3) uint8, hue 0..255 is one turn
    turn = _uniform(rng, config.hue) * rng.choice([-1, 1])
    hsv[..., 0] = (hsv[..., 0].astype(np.int32) + round(turn * 256)) % 256
    picture = Image.fromarray(hsv, "HSV").convert("RGB")
    picture = ImageEnhance.Color(picture).enhance(_uniform(rng, config.saturation))
    return ImageEnhance.Brightness(picture).enhance(_uniform(rng, config.brightness))


def _mirror(picture: Image.Image, rng: np.random.Generator, config: CopyEditConfig) -> Image.Image:
    return ImageOps.mirror(picture)


def _caption(picture: Image.Image, rng: np.random.Generator, config: CopyEditConfig) -> Image.Image:
    """A bar of text added above or below, as memes and social posts do; the picture grows taller."""
    bar = max(6, round(picture.height * _uniform(rng, config.caption)))
    dark = bool(rng.integers(2))
    canvas = Image.new("RGB", (picture.width, picture.height + bar), (0, 0, 0) if dark else WHITE)
    on_top = bool(rng.integers(2))
    canvas.paste(picture, (0, bar if on_top else 0))
    font = ImageFont.load_default(size=max(5, round(bar * 0.7)))
    text = CAPTIONS[int(rng.integers(len(CAPTIONS)))]
    bar_top = 0 if on_top else picture.height
    ImageDraw.Draw(canvas).text(
        (picture.width / 2, bar_top + bar / 2), text, fill=WHITE if dark else (0, 0, 0), font=font, anchor="mm"
    )
    return canvas


def _logo(picture: Image.Image, rng: np.random.Generator, config: CopyEditConfig) -> Image.Image:
    """A coloured badge with a watermark text in a corner, partly transparent."""
    width = max(6, round(picture.width * _uniform(rng, config.logo)))
    height = max(4, round(width * rng.uniform(0.3, 0.6)))
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    opacity = round(255 * _uniform(rng, config.logo_opacity))
    badge = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(badge)
    draw.rounded_rectangle((0, 0, width - 1, height - 1), radius=height // 3, fill=(*colour, opacity))
    font = ImageFont.load_default(size=max(4, round(height * 0.5)))
    text = LOGO_TEXT[int(rng.integers(len(LOGO_TEXT)))]
    draw.text((width / 2, height / 2), text, fill=(*WHITE, opacity), font=font, anchor="mm")
    margin = round(0.03 * min(picture.size))
    x = margin if rng.integers(2) else picture.width - width - margin
    y = margin if rng.integers(2) else picture.height - height - margin
    out = picture.convert("RGBA")
    out.alpha_composite(badge, (max(0, x), max(0, y)))
    return out.convert("RGB")


def _letterbox(picture: Image.Image, rng: np.random.Generator, config: CopyEditConfig) -> Image.Image:
    """The picture in a wider or taller frame, touching two of its edges, with bars of one colour on the
    other two: a square post shown in a video frame."""
    share = _uniform(rng, config.letterbox)
    wider = bool(rng.integers(2))
    frame = (round(picture.width / share), picture.height) if wider else (picture.width, round(picture.height / share))
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    canvas = Image.new("RGB", frame, colour)
    canvas.paste(picture, ((frame[0] - picture.width) // 2, (frame[1] - picture.height) // 2))
    return canvas


def _grayscale(picture: Image.Image, rng: np.random.Generator, config: CopyEditConfig) -> Image.Image:
    return picture.convert("L").convert("RGB")


# The order in which a mix applies its edits: framing and colour first, additions next, re-encoding last.
EDITS: dict[str, Edit] = {
    "crop": _crop,
    "rotation": _rotation,
    "mirror": _mirror,
    "colour": _colour,
    "grayscale": _grayscale,
    "caption": _caption,
    "logo": _logo,
    "letterbox": _letterbox,
    "downscale_jpeg": _downscale_jpeg,
}
