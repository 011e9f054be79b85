"""`lookalike query --copies IMAGE`: the stored pictures IMAGE is a copy of, with verdicts, as a
table and, if asked, one PNG: the query beside each original with the matched region drawn,
then the picture of what each copy edited."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageDraw

from lookalike import contact_sheet
from lookalike.v1 import search_pb2
from lookalike_cli.querying import open_uri

VERDICT = {search_pb2.VERDICT_EXACT_COPY: "exact copy", search_pb2.VERDICT_EDITED_COPY: "edited copy", search_pb2.VERDICT_SIMILAR: "similar"}
EVIDENCE = {search_pb2.EVIDENCE_HASH: "hash", search_pb2.EVIDENCE_LOCAL_FEATURES: "local features", search_pb2.EVIDENCE_EMBEDDING: "embedding"}
REGION = (255, 200, 0)  # the query's outline on the original


def table(response: search_pb2.FindCopiesResponse) -> str:
    if not response.copies:
        note = " (the query is too small or flat for local features)" if response.query_featureless else ""
        return f"no copies among {response.candidates_verified} pictures verified{note}"
    rows = [("rank", "verdict", "evidence", "hash", "inliers", "score", "edits", "id")]
    for rank, copy in enumerate(response.copies, 1):
        rows.append(
            (
                str(rank),
                VERDICT.get(copy.verdict, "?"),
                EVIDENCE.get(copy.evidence, "?"),
                "-" if copy.hash_distance < 0 else str(copy.hash_distance),
                str(copy.inliers),
                f"{copy.embedding_score:.3f}",
                describe_edits(copy) or "-",
                copy.id,
            )
        )
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1] for row in rows]
    return "\n".join(lines + [f"{response.candidates_verified} pictures verified"])


def describe_edits(copy: search_pb2.Copy) -> str:
    if not copy.HasField("edits"):
        return ""
    edits = copy.edits
    words = []
    if edits.kept_fraction < 0.95:
        words.append(f"cropped to {edits.kept_fraction:.0%}")
    if edits.mirrored:
        words.append("mirrored")
    if abs(edits.rotation_degrees) >= 1:
        words.append(f"rotated {edits.rotation_degrees:+.0f}°")
    if edits.added_fraction >= 0.02:
        words.append(f"{edits.added_fraction:.0%} added")
    if edits.changed_fraction >= 0.02:
        words.append(f"{edits.changed_fraction:.0%} changed")
    if edits.recoloured_fraction >= 0.1:
        words.append(f"{edits.recoloured_fraction:.0%} recoloured")
    return ", ".join(words)


def sheet(query: bytes, response: search_pb2.FindCopiesResponse) -> Image.Image:
    """The query and each original (its matched region drawn) on top; each edit picture below."""
    tiles = [contact_sheet.Tile(Image.open(io.BytesIO(query)), "query")]
    for rank, copy in enumerate(response.copies, 1):
        original = open_uri(copy.uri)
        if original is not None and copy.region_in_original:
            original = _with_region(original, copy.region_in_original)
        caption = f"#{rank} {VERDICT.get(copy.verdict, '?')}\n{Path(copy.id).name}"
        tiles.append(contact_sheet.Tile(original, caption))
    parts = [contact_sheet.render([tiles])]
    parts += [Image.open(io.BytesIO(copy.edit_picture_png)).convert("RGB") for copy in response.copies if copy.edit_picture_png]
    return stacked(parts)


def stacked(parts: list[Image.Image]) -> Image.Image:
    """The pictures one under the other, left-aligned, on white."""
    figure = Image.new("RGB", (max(p.width for p in parts), sum(p.height for p in parts)), "white")
    top = 0
    for part in parts:
        figure.paste(part, (0, top))
        top += part.height
    return figure


def _with_region(original: Image.Image, region) -> Image.Image:
    picture = original.convert("RGB")
    width = max(2, round(max(picture.size) / 100))  # still visible once the tile shrinks it
    ImageDraw.Draw(picture).polygon([(p.x, p.y) for p in region], outline=REGION, width=width)
    return picture
