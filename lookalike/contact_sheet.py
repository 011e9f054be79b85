"""Contact sheets: a query next to its results, with scores, as one PNG people can look at."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageOps

TILE = 112  # pixels per thumbnail side: digits stay legible, 11 tiles fit a screen
CAPTION = 28  # pixels of text under each thumbnail


@dataclass(frozen=True)
class Tile:
    image: Image.Image | None  # None draws an empty frame (the original could not be read)
    caption: str
    highlight: bool = False  # a red frame, e.g. for a result whose label differs from the query's


def render(rows: Sequence[Sequence[Tile]], query_first: bool = True) -> Image.Image:
    """One row per query: the query's tile first (framed blue, set apart), then its results."""
    columns = max(len(row) for row in rows)
    sheet = Image.new("RGB", (columns * (TILE + 4) + 12, len(rows) * (TILE + CAPTION + 8)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        top = r * (TILE + CAPTION + 8) + 4
        for c, tile in enumerate(row):
            query = query_first and c == 0
            left = c * (TILE + 4) + (0 if query or not query_first else 12)  # a gap between the query and its results
            if tile.image is not None:
                thumb = ImageOps.pad(tile.image.convert("RGB"), (TILE, TILE), color="black")
                sheet.paste(thumb, (left, top))
            colour = "red" if tile.highlight else ("blue" if query else "black")
            draw.rectangle([left, top, left + TILE - 1, top + TILE - 1], outline=colour, width=2)
            for line, text in enumerate(tile.caption.split("\n")[:2]):
                draw.text((left + 2, top + TILE + 2 + line * 12), text[:20], fill="black")
    return sheet
