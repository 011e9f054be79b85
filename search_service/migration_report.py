"""The migration report: the old and the new model version side by side on a collection's own items,
measured by a reindex before its alias may switch (search_service/reindex.py).

On a seeded sample of the items that kept their pictures, with exact search in both collections
(so the figures are the models', not the indexes'):
- neighbour overlap at 10: the share of an item's 10 nearest other items that both versions
  agree on. Low overlap is not wrong, but it tells a team how different "similar" will look;
- copy recall@1: each sampled picture edited with every edit of the suite `lookalike eval` uses
  (copy_detection/copy_edits.py, seeded), embedded by each version and searched in its collection:
  the share whose nearest item is their original, overall and per edit;
- the score of the nearest other item, as percentiles: thresholds tuned on the old scores (a
  client's "similar enough") may need moving;
- precision at 10 when the items carry labels (tags with a given prefix).
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from copy_detection.copy_edits import EDITS, MIX, copies
from lookalike.errors import FailedPrecondition, Reason
from search_service.collection import Collection

EDIT_NAMES = [*EDITS, MIX]
PERCENTILES = (5, 25, 50, 75, 95)
SEED = 20261126  # the same copies for the same sample, every time

Embed = Callable[[list[bytes]], np.ndarray]  # encoded pictures -> (N, D) embeddings by one version


@dataclasses.dataclass
class ModelFigures:
    model_name: str
    model_version: int
    copy_recall_at_1: float
    copy_recall_by_edit: list[float]  # in the order of EDIT_NAMES
    precision_at_10: float | None
    nearest_score_percentiles: list[float]  # at PERCENTILES


@dataclasses.dataclass
class MigrationReport:
    sample_size: int
    neighbour_overlap_at_10: float
    before: ModelFigures
    after: ModelFigures
    edits: list[str]

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, document: dict) -> MigrationReport:
        return cls(**{**document, "before": ModelFigures(**document["before"]), "after": ModelFigures(**document["after"])})

    def copy_recall_drop(self) -> float:
        return self.before.copy_recall_at_1 - self.after.copy_recall_at_1


def measure(
    before: Collection,
    after: Collection,
    pictures: dict[str, bytes],
    embed_before: Embed,
    embed_after: Embed,
    label_prefix: str = "",
) -> MigrationReport:
    """The report on the items of `pictures` (id -> its kept picture) that are in both collections."""
    found = [{item.id: item for item in collection.get(sorted(pictures))[0]} for collection in (before, after)]
    ids = [i for i in sorted(pictures) if i in found[0] and i in found[1]]  # writes go on while measuring
    if not ids:
        raise FailedPrecondition(
            f"collection '{before.spec.name}' has no item with a kept picture: nothing to measure",
            reason=Reason.SOURCES_NOT_KEPT,
            metadata={"collection": before.spec.name},
        )
    sides = []
    neighbours = []
    for collection, embed, items in ((before, embed_before, found[0]), (after, embed_after, found[1])):
        vectors = {i: items[i].vector for i in ids}
        labels = {i: _label(items[i].tags, label_prefix) for i in ids}
        nearest = {i: collection.search(vectors[i], 10, exclude_ids={i}, exact=True) for i in ids}
        neighbours.append(nearest)
        by_edit = [_copy_recall(collection, embed, ids, pictures, edit) for edit in EDIT_NAMES]
        precision = _precision(ids, nearest, labels, label_prefix) if label_prefix else None
        scores = [nearest[i][0].score for i in ids if nearest[i]]
        spec = collection.spec
        sides.append(
            ModelFigures(
                model_name=spec.model_name,
                model_version=spec.model_version,
                copy_recall_at_1=float(np.mean(by_edit)),
                copy_recall_by_edit=by_edit,
                precision_at_10=precision,
                nearest_score_percentiles=[float(x) for x in np.percentile(scores, PERCENTILES)] if scores else [],
            )
        )
    overlap = float(np.mean([_overlap(neighbours[0][i], neighbours[1][i]) for i in ids]))
    return MigrationReport(len(ids), overlap, sides[0], sides[1], list(EDIT_NAMES))


def passes(report: MigrationReport, require_no_worse_copy_recall: bool, max_drop: float) -> tuple[bool, str]:
    """(whether the policy lets the alias switch, why not)."""
    if require_no_worse_copy_recall and report.copy_recall_drop() > max_drop + 1e-9:
        return False, (
            f"copy recall@1 falls from {report.before.copy_recall_at_1:.3f} to {report.after.copy_recall_at_1:.3f}, "
            f"more than the {max_drop:.3f} the policy allows"
        )
    return True, ""


def _precision(ids: list[str], nearest: dict, labels: dict[str, str], prefix: str) -> float:
    """Mean share of each item's nearest other items that carry its label; 0 for an unlabelled item."""
    shares = [np.mean([_label(hit.tags, prefix) == labels[i] for hit in nearest[i]]) if nearest[i] and labels[i] else 0.0 for i in ids]
    return float(np.mean(shares))


def _label(tags: Sequence[str], prefix: str) -> str:
    return next((tag for tag in tags if prefix and tag.startswith(prefix)), "")


def _overlap(first, second) -> float:
    size = min(len(first), len(second))
    return len({h.id for h in first[:size]} & {h.id for h in second[:size]}) / size if size else 1.0


def _copy_recall(collection: Collection, embed: Embed, ids: list[str], pictures: dict[str, bytes], edit: str) -> float:
    originals = [Image.open(io.BytesIO(pictures[i])) for i in ids]
    edited = [_png(copy) for copy in copies(originals, edit, SEED)]
    vectors = embed(edited)
    hits = [collection.search(vector, 1, exact=True) for vector in vectors]
    return float(np.mean([bool(found) and found[0].id == i for i, found in zip(ids, hits)]))


def _png(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _model(figures: ModelFigures) -> str:
    return f"{figures.model_name} v{figures.model_version}"


def table(report: MigrationReport) -> str:
    """The report as markdown: one row per figure, a column per version."""
    before, after = report.before, report.after
    rows = [
        ("copy recall@1, every edit", f"{before.copy_recall_at_1:.3f}", f"{after.copy_recall_at_1:.3f}"),
        *((f"copy recall@1, {edit}", f"{b:.3f}", f"{a:.3f}") for edit, b, a in zip(report.edits, before.copy_recall_by_edit, after.copy_recall_by_edit)),
    ]
    if before.precision_at_10 is not None:
        rows.append(("precision@10 (labels)", f"{before.precision_at_10:.3f}", f"{after.precision_at_10:.3f}"))
    for n, p in enumerate(PERCENTILES):
        if before.nearest_score_percentiles and after.nearest_score_percentiles:
            rows.append((f"nearest other item's score, p{p}", f"{before.nearest_score_percentiles[n]:.3f}", f"{after.nearest_score_percentiles[n]:.3f}"))
    lines = [
        f"Migration report: {report.sample_size} items; the 10 nearest other items agree at {report.neighbour_overlap_at_10:.0%}.",
        "",
        f"| figure | before: {_model(before)} | after: {_model(after)} |",
        "| --- | ---: | ---: |",
        *(f"| {name} | {b} | {a} |" for name, b, a in rows),
    ]
    return "\n".join(lines) + "\n"


def picture(report: MigrationReport) -> bytes:
    """The report as a PNG: copy recall@1 per edit, both versions side by side, and the headline figures."""
    width, height, left, top, bar_area = 960, 440, 60, 70, 300
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=14)
    small = ImageFont.load_default(size=11)
    colours = {"before": (150, 150, 150), "after": (40, 110, 200)}
    draw.text((left, 12), f"Migration report: {_model(report.before)} (grey) -> {_model(report.after)} (blue), {report.sample_size} items", fill="black", font=font)
    draw.text(
        (left, 34),
        f"copy recall@1 {report.before.copy_recall_at_1:.3f} -> {report.after.copy_recall_at_1:.3f};  "
        f"the 10 nearest agree at {report.neighbour_overlap_at_10:.0%}"
        + (f";  precision@10 {report.before.precision_at_10:.3f} -> {report.after.precision_at_10:.3f}" if report.before.precision_at_10 is not None else ""),
        fill="black",
        font=font,
    )
    base = top + bar_area
    draw.line((left, base, width - 20, base), fill="black")
    for level in (0.25, 0.5, 0.75, 1.0):
        y = base - level * bar_area
        draw.line((left, y, width - 20, y), fill=(225, 225, 225))
        draw.text((left - 36, y - 7), f"{level:.2f}", fill="black", font=small)
    slot = (width - 20 - left) / len(report.edits)
    for n, edit in enumerate(report.edits):
        x = left + n * slot + slot * 0.15
        for k, (side, figures) in enumerate((("before", report.before), ("after", report.after))):
            value = figures.copy_recall_by_edit[n]
            bar = slot * 0.35
            draw.rectangle((x + k * bar, base - value * bar_area, x + (k + 1) * bar - 2, base), fill=colours[side])
        draw.text((left + n * slot + 4, base + 8), edit[:14], fill="black", font=small)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
