"""The development colour set: real colour pictures that Debian packages and the scikit-image wheel
ship, written as `data/colour-set/<label>/*.png` for `lookalike eval --data data/colour-set`.

    make colour-set            # apt-installs the packages when missing, then runs this module

Sources, all local (nothing is downloaded here):

- `oxygen-icon-theme`: the icons of one size (128x128), label `icons-<category folder>`. Symlinked
  aliases are skipped: they are the same file under another name.
- `fonts-noto-color-emoji`: every fully-qualified emoji of `unicode-data`'s emoji-test.txt, without
  skin-tone variants or ZWJ sequences (near-copies of their base emoji), label `emoji-<group>` (the
  Unicode CLDR group: smileys-emotion, animals-nature, flags, ...). Rendered at 109 px, the size of
  the font's colour bitmaps, on a transparent background, as emoji are published.
- scikit-image: the photos bundled inside its wheel, label `photos`.

Pictures with exactly the same pixels as one already written are skipped, so that "finds itself
first" has one right answer.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import re
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw, ImageFont

log = logging.getLogger(__name__)

PACKAGES = ("oxygen-icon-theme", "fonts-noto-color-emoji", "unicode-data")  # what `make colour-set` installs
# skimage.data functions whose pictures are in the wheel (the others need a download), leaving out the
# drawn test patterns (checkerboard, colorwheel, horse, shepp_logan_phantom) and `cat` (= chelsea).
PHOTOS = (
    "astronaut", "brick", "camera", "cell", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "logo", "microaneurysms", "moon", "page", "retina", "rocket",
    "stereo_motorcycle", "text",
)  # fmt: skip
EMOJI_SKIPPED = (0x200D, *range(0x1F3FB, 0x1F400))  # ZWJ and the skin-tone modifiers


@dataclasses.dataclass
class ColourSetConfig:
    out: Path = Path("data/colour-set")  # one subfolder per label is written here
    icons: Path = Path("/usr/share/icons/oxygen/base/128x128")  # oxygen-icon-theme, one size
    emoji_font: Path = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")  # fonts-noto-color-emoji
    emoji_list: Path = Path("/usr/share/unicode/emoji/emoji-test.txt")  # unicode-data: emoji and their groups
    emoji_size: int = 109  # pixels; NotoColorEmoji holds bitmaps of this size only, others fail to load
    photos: tuple[str, ...] = PHOTOS  # skimage.data functions


def build(config: ColourSetConfig) -> dict[str, int]:
    """Writes every picture; returns the count per label."""
    seen: set[str] = set()
    counts: dict[str, int] = {}
    for label, name, picture in _pictures(config):
        digest = hashlib.sha256(picture.mode.encode() + repr(picture.size).encode() + picture.tobytes()).hexdigest()
        if digest in seen:
            log.info("skipping %s/%s: the same pixels as a picture already written", label, name)
            continue
        seen.add(digest)
        folder = config.out / label
        folder.mkdir(parents=True, exist_ok=True)
        picture.save(folder / f"{name}.png")
        counts[label] = counts.get(label, 0) + 1
    return counts


def _pictures(config: ColourSetConfig) -> Iterator[tuple[str, str, Image.Image]]:
    """(label, file name without extension, picture) from every source."""
    yield from _icons(config.icons)
    yield from _emoji(config)
    yield from _photos(config.photos)


def _icons(root: Path) -> Iterator[tuple[str, str, Image.Image]]:
    _require(root, "oxygen-icon-theme")
    for path in sorted(root.glob("*/*.png")):
        if not path.is_symlink():
            with Image.open(path) as picture:
                yield f"icons-{path.parent.name}", path.stem, picture.copy()


def _emoji(config: ColourSetConfig) -> Iterator[tuple[str, str, Image.Image]]:
    _require(config.emoji_font, "fonts-noto-color-emoji")
    _require(config.emoji_list, "unicode-data")
    # Raqm shapes multi-code-point emoji (flags, keycaps) into one glyph; the basic layout would not.
    font = ImageFont.truetype(str(config.emoji_font), config.emoji_size, layout_engine=ImageFont.Layout.RAQM)
    for group, code_points, name in _emoji_list(config.emoji_list):
        text = "".join(map(chr, code_points))
        left, top, right, bottom = font.getbbox(text)
        canvas = Image.new("RGBA", (right - left, bottom - top), (0, 0, 0, 0))
        ImageDraw.Draw(canvas).text((-left, -top), text, font=font, embedded_color=True)
        drawn = canvas.getbbox()  # the glyph's own pixels, without the font's side bearings
        if drawn is None:
            continue
        picture = canvas.crop(drawn)
        if picture.width > 1.5 * picture.height:  # the font lacks this sequence: its parts came out side by side
            log.info("skipping emoji %s: not one glyph in this font", name)
            continue
        slug = "-".join(f"{c:x}" for c in code_points) + "-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        yield f"emoji-{group}", slug, picture


def _emoji_list(path: Path) -> Iterator[tuple[str, list[int], str]]:
    """(group slug, code points, name) of the fully-qualified emoji to render, in file order."""
    group = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = re.sub(r"[^a-z0-9]+", "-", line.split(":", 1)[1].strip().lower()).strip("-")
            continue
        fields, _, comment = line.partition("#")
        if "; fully-qualified" not in line or group == "component":
            continue
        code_points = [int(c, 16) for c in fields.split(";")[0].split()]
        if not any(c in EMOJI_SKIPPED for c in code_points):
            # The comment reads "😀 E1.0 grinning face": the emoji, its version, then its name.
            yield group, code_points, comment.strip().split(" ", 2)[-1]


def _photos(names: tuple[str, ...]) -> Iterator[tuple[str, str, Image.Image]]:
    from skimage import data  # training-only dependency (the `train` extra), imported where needed

    for name in names:
        pixels = getattr(data, name)()
        if isinstance(pixels, tuple):  # stereo_motorcycle: left and right views nearly equal; keep the left
            pixels = pixels[0]
        yield "photos", name, Image.fromarray(np.asarray(pixels))


def _require(path: Path, package: str) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: install the Debian package {package} (`make colour-set` does)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ColourSetConfig.out, help="(default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    counts = build(ColourSetConfig(out=args.out))
    for label, count in sorted(counts.items()):
        print(f"{count:5d}  {label}")
    print(f"{sum(counts.values()):5d}  pictures under {args.out}")


if __name__ == "__main__":
    main()
