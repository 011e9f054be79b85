"""`lookalike query IMAGE`: the nearest items as a table, and as a contact sheet if asked."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from lookalike import contact_sheet
from lookalike.client import Neighbor


def table(neighbors: Sequence[Neighbor]) -> str:
    rows = [("rank", "score", "id", "tags", "uri")]
    rows += [(str(i + 1), f"{n.score:.4f}", n.id, ",".join(n.tags), n.uri) for i, n in enumerate(neighbors)]
    widths = [max(len(row[c]) for row in rows) for c in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4] for row in rows)


def open_uri(uri: str) -> Image.Image | None:
    """The original of a result when its uri is a readable local file; None otherwise."""
    path = Path(uri.removeprefix("file://"))
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (OSError, ValueError):
        return None


def sheet_row(query: bytes | Image.Image, neighbors: Sequence[Neighbor], query_caption: str = "query") -> list[contact_sheet.Tile]:
    query_image = query if isinstance(query, Image.Image) else Image.open(io.BytesIO(query))
    tiles = [contact_sheet.Tile(query_image, query_caption)]
    for rank, n in enumerate(neighbors, 1):
        tiles.append(contact_sheet.Tile(open_uri(n.uri), f"#{rank} {n.score:.3f}\n{Path(n.id).name}"))
    return tiles
