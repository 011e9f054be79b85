"""The report's section on the whole copy pipeline: a table per edit, the verdicts' precision and
recall, false alarms on pictures that are not copies, verification time, and the thresholds chosen
(results.json holds them, for copy_detection.verdict.Thresholds' defaults), with the plot
copy_verdicts.png: precision against recall of copy verdicts as each threshold moves.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from training.copy_calibration import FALSE_COPY_BAR, GRIDS, PRECISION_BAR, RECALL_BAR, PipelineStudy, meets_bars  # noqa: E402
from training.copy_pipeline import HASH_DISTANCE, HASH_LIMIT, UNEDITED  # noqa: E402

PICTURE = "copy_verdicts.png"
MEASURES = (  # (key, row, format, bar) of the measures table
    ("copy_precision", "copy-verdict precision", "{:.3f}", f">= {PRECISION_BAR}"),
    ("copy_recall", "copy-verdict recall", "{:.3f}", f">= {RECALL_BAR}"),
    ("false_copy_rate", "false-copy rate (non-copies)", "{:.3f}", f"<= {FALSE_COPY_BAR}"),
    ("wrong_copy_rate", "copies said to copy another picture", "{:.3f}", ""),
    ("exact_share", "exact-copy verdicts among copies", "{:.3f}", ""),
    ("candidates_p50", "candidates per query, p50", "{:.0f}", ""),
    ("verify_ms_p50", "verification ms per query, p50", "{:.1f}", ""),
    ("verify_ms_p95", "verification ms per query, p95", "{:.1f}", ""),
    ("fingerprint_ms_p50", "query fingerprint ms, p50 (mirror included)", "{:.1f}", ""),
)


def section(found: PipelineStudy) -> list[str]:
    """Markdown lines of '## Finding copies: the pipeline'."""
    m, fit = found.measures, found.calibration
    lines = [
        "## Finding copies: the pipeline",
        "",
        f"The whole copy pipeline of the search service (copy_detection/) with **{found.model}** as the embedding: "
        f"candidates are the indexed pictures within {HASH_DISTANCE} bits of the query's pHash (at most {HASH_LIMIT}) "
        f"and the embedding's {found.options.candidates} nearest (exact cosine here, ScaNN in the service); each is "
        "verified by local features (ratio test, RANSAC, the query's mirror image tried too) and given a verdict; "
        "the answer is the candidate with the strongest verdict (exact > edited copy > similar > unrelated), then "
        "the highest score.",
        "",
        f"Thresholds chosen on a calibration half ({fit['copy_queries']:.0f} copies of half the originals, "
        f"{fit['non_copy_queries']:.0f} non-copies), for the most copies found at copy-verdict precision >= "
        f"{PRECISION_BAR} and at most {FALSE_COPY_BAR:.0%} false copies; every figure below is on the other half "
        f"({m['copy_queries']:.0f} copies, {m['non_copy_queries']:.0f} non-copies). Non-copies are test pictures, "
        "which are not indexed, unedited and under every edit.",
        "",
        "- candidates: the original is among the candidates at all (the verification's ceiling).",
        "- pipeline R@1: the answer is the original, whatever its verdict; as copy: with a copy verdict "
        "(exact or edited copy), the verdict's recall.",
        "- embedding alone: the embedding's nearest picture; pHash alone: the nearest hash, ties a coin toss.",
        "- false copies: non-copy queries given a copy verdict.",
        "- at defaults: the same with the default thresholds (16 inliers), which let verification decide far more "
        "often: what the pipeline finds when precision is not held to the bar.",
        "",
        "| edit | candidates | pipeline R@1 | as copy | false copies | R@1 at defaults | as copy at defaults "
        "| false copies at defaults | embedding alone R@1 | pHash alone R@1 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [*((edit, e, found.by_edit_at_defaults[edit]) for edit, e in found.by_edit.items()), ("all", m, found.at_defaults)]
    for edit, e, d in rows:
        cells = [
            _cell(e["candidate_recall"]), _cell(e["recall_at_1"]), _cell(e["copy_recall"]), _rate(e["false_copy_rate"], e),
            _cell(d["recall_at_1"]), _cell(d["copy_recall"]), _rate(d["false_copy_rate"], d),
            _cell(e["embedding_recall_at_1"]), _cell(e["phash_recall_at_1"]),
        ]
        lines.append(f"| {edit} | " + " | ".join(cells) + " |")
    met = "met" if meets_bars(m) else "not met"
    lines += [
        "",
        f"`{UNEDITED}` holds the unedited non-copies only (their originals' copies are the other rows).",
        "",
        "| measure | reported half | calibration half | reported half, default thresholds | bar |",
        "|---|---|---|---|---|",
    ]
    d = found.at_defaults
    for key, measure, fmt, bar in MEASURES:
        lines.append(f"| {measure} | {_format(m, key, fmt)} | {_format(fit, key, fmt)} | {_format(d, key, fmt)} | {bar} |")
    lines += [
        "",
        f"Bars (precision >= {PRECISION_BAR} at recall >= {RECALL_BAR}, false copies <= {FALSE_COPY_BAR:.0%}): **{met}**.",
        "",
        f"Thresholds (copy_detection.verdict.Thresholds), also in `{thresholds_path(Path(), found.model)}`: "
        f"`lookalike index --find-copies --copy-thresholds` that file makes a collection decide with them.",
        "",
        "| threshold | chosen | default before | how |",
        "|---|---|---|---|",
    ]
    defaults = found.defaults.to_json()
    for name, value in found.thresholds.to_json().items():
        how = "calibrated" if name in GRIDS else "kept: no copy verdict depends on it (training/copy_calibration.py)"
        lines.append(f"| {name} | {value} | {defaults.get(name, '–')} | {how} |")
    return [*lines, "", *_false_copies(found), f"![{PICTURE}]({PICTURE})", ""]


def _false_copies(found: PipelineStudy) -> list[str]:
    """The strongest copy verdicts on pictures that are not copies, by name: a picture whose local features
    fit another's is often a variant of it (the same artwork, a part changed), which no threshold on
    inliers tells from an edited copy."""
    if not found.false_copies:
        return []
    lines = [
        "Non-copies given a copy verdict (reported half, chosen thresholds), most inliers first; the query "
        "unedited (`none`) and under the edits listed:",
        "",
        "| query (not indexed) | taken for a copy of | edits | most inliers |",
        "|---|---|---|---|",
    ]
    for f in found.false_copies:
        lines.append(f"| {f['query']} | {f['taken_for_a_copy_of']} | {', '.join(f['edits'])} | {f['inliers']} |")
    return [*lines, ""]


def thresholds_path(directory: Path, model: str) -> Path:
    """Where the calibrated thresholds go: what `lookalike index --copy-thresholds` reads."""
    return directory / "copy_thresholds" / f"{model}.json"


def write_thresholds(found: PipelineStudy, directory: Path) -> Path:
    path = thresholds_path(directory, found.model)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(found.thresholds.to_json(), indent=2) + "\n")
    return path


def results(found: PipelineStudy) -> dict:
    """The section's figures for results.json."""
    return {
        "model": found.model,
        "candidates": found.options.candidates,
        "hash_distance": HASH_DISTANCE,
        "hash_limit": HASH_LIMIT,
        "thresholds": found.thresholds.to_json(),
        "default_thresholds": found.defaults.to_json(),
        "reported": found.measures,
        "calibration": found.calibration,
        "reported_at_default_thresholds": found.at_defaults,
        "false_copies": found.false_copies,
        "by_edit": found.by_edit,
        "by_edit_at_default_thresholds": found.by_edit_at_defaults,
        "curves": {name: [list(point) for point in points] for name, points in found.curves.items()},
    }


def figure(found: PipelineStudy) -> Figure:
    """Precision against recall of copy verdicts as each threshold moves, the others at their chosen values."""
    figure, axis = plt.subplots(figsize=(7, 5))
    chosen = found.thresholds.to_json()
    for name, points in found.curves.items():
        _, precision, recall = zip(*points)
        axis.plot(recall, precision, marker=".", label=f"{name} moves (chosen: {chosen[name]})")
    axis.plot([found.measures["copy_recall"]], [found.measures["copy_precision"]], "k*", markersize=12, label="chosen")
    axis.axhline(PRECISION_BAR, color="grey", linestyle="--", linewidth=0.8)
    axis.axvline(RECALL_BAR, color="grey", linestyle="--", linewidth=0.8)
    axis.set(title=f"copy verdicts, {found.model} (reported half)", xlabel="recall", ylabel="precision", xlim=(0, 1.02))
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def _format(measures: dict[str, float], key: str, fmt: str) -> str:
    value = measures[key]
    return "–" if math.isnan(value) else fmt.format(value)


def _cell(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.3f}"


def _rate(value: float, measures: dict[str, float]) -> str:
    """The false-copy rate with its count, which says how far to trust it."""
    if math.isnan(value):
        return "–"
    return f"{value:.3f} ({round(value * measures['non_copy_queries'])}/{measures['non_copy_queries']:.0f})"
