"""Writes the study to `reports/<dataset>/`: README.md (the table), results.json, and the pictures.

    reconstructions.png     originals on top, each model's rebuild below
    loss_curves.png         validation MSE per epoch, per trained model
    retrieval.png           test queries and their nearest indexed images, wrong classes framed red
    copy_detection.png      one copy per edit, its original, and the best model's first matches
    copy_recall_by_edit.png copy recall@1 per edit: the best model next to the tools people use
    embedding_size.png      mAP and copy recall@1 against embedding size
    copy_verdicts.png       the whole copy pipeline: precision against recall of its verdicts (copy_report.py)

The README also sets the best trained model against the tools people use today (pHash, a 32x32
thumbnail, the colour histogram) on the bars of issue 8.
"""

from __future__ import annotations

import datetime
import json
import math
import platform
import shlex
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from training.machine import describe as describe_machine  # noqa: E402
from encoder_service.onnx_model import OnnxModel  # noqa: E402
from lookalike.contact_sheet import Tile, render  # noqa: E402
from lookalike.preprocessing import to_image  # noqa: E402
from training import copy_report  # noqa: E402
from training.copy_calibration import PipelineStudy  # noqa: E402
from copy_detection.copy_edits import MIX  # noqa: E402
from training.retrieval_metrics import nearest_neighbors  # noqa: E402
from training.study import COPY_EDITS, Row, StudyData  # noqa: E402

COLUMNS = (  # (key, header, format)
    ("embedding_dim", "dim", "{:.0f}"),
    ("map", "mAP", "{:.3f}"),
    ("precision_at_10", "P@10", "{:.3f}"),
    ("copy_recall_at_1", "copy R@1", "{:.3f}"),
    ("copy_micro_ap", "copy µAP", "{:.3f}"),
    ("self_recall_at_1", "self R@1", "{:.3f}"),
    ("train_mse", "train MSE", "{:.4f}"),
    ("val_mse", "val MSE", "{:.4f}"),
    ("test_mse", "test MSE", "{:.4f}"),
    ("parameters", "params", "{:,.0f}"),
    ("train_seconds", "train s", "{:.0f}"),
    ("images_per_second", "ONNX img/s", "{:,.0f}"),
)
SHOWN_QUERIES = 6  # rows of the retrieval sheet
SHOWN_RESULTS = 8
TRAINED = ("architecture", "ablation", "embedding size")  # groups of trained models
# Issue 8's bars: the best trained model at <= BAR_DIM dimensions beats each REFERENCE row on P@10
# and on copy recall@1 for every edit; finds MIX_BAR of the mixed copies and SELF_BAR of the originals.
BAR_DIM, MIX_BAR, SELF_BAR = 128, 0.90, 0.99
REFERENCE = ("phash", "thumbnail-32", "colour_histogram")  # the tools people use today to find copies


def best_row(rows: list[Row], max_dim: int = BAR_DIM) -> Row | None:
    """The trained model at <= max_dim dimensions that finds the most copies under mixes of three edits
    (any exported model when none was trained; None when every row is a reference tool)."""
    models = [r for r in rows if r.version_dir is not None]
    trained = [r for r in models if r.entry.group in TRAINED and r.metrics["embedding_dim"] <= max_dim]
    return max(trained or models, key=lambda r: r.metrics["copy_recall_at_1"], default=None)


def write_report(
    rows: list[Row], study: StudyData, directory: Path, command: list[str], seconds: float, copies: PipelineStudy | None = None
) -> Path:
    """Writes everything into `directory`, with the section on the whole copy pipeline when `copies`
    is given; returns the README path."""
    directory.mkdir(parents=True, exist_ok=True)
    best = best_row(rows)
    pictures = {
        "reconstructions.png": _reconstructions(rows, study),
        "loss_curves.png": _loss_curves(rows),
        "retrieval.png": None if best is None else _retrieval(best, study),
        "copy_detection.png": None if best is None else _copy_detection(best, study),
        "copy_recall_by_edit.png": _recall_by_edit(rows, best),
        "embedding_size.png": _embedding_size(rows),
        copy_report.PICTURE: None if copies is None else copy_report.figure(copies),
    }
    written = []
    for name, picture in pictures.items():
        if picture is None:
            continue
        if isinstance(picture, Figure):
            picture.savefig(directory / name, dpi=100)
            plt.close(picture)
        else:
            picture.save(directory / name)
        written.append(name)
    run = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": describe_machine(),
        "command": shlex.join(command),
        "seconds": seconds,
        "python": platform.python_version(),
    }
    results = {
        "run": run,
        "rows": [{"name": r.entry.name, "group": r.entry.group, "reused": r.reused, **r.metrics} for r in rows],
    }
    if copies is not None:
        results["copy_pipeline"] = copy_report.results(copies)
        copy_report.write_thresholds(copies, directory)
    (directory / "results.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    readme = directory / "README.md"
    readme.write_text(_markdown(rows, best, study, run, [n for n in written if n != copy_report.PICTURE], copies))
    return readme


def _markdown(rows: list[Row], best: Row | None, study: StudyData, run: dict, pictures: list[str], copies: PipelineStudy | None) -> str:
    data, split = study.dataset, study.split
    spec = data.spec
    lines = [
        f"# Study: {len(rows)} models on {len(split.train_val)} indexed images, {len(split.test)} queries",
        "",
        f"- **Date:** {run['date']}  ",
        f"- **Machine:** {run['machine']}  ",
        f"- **Command:** `{run['command']}` ({run['seconds'] / 60:.1f} min)" + _reuse_note(rows) + "  ",
        f"- **Data:** {len(data)} pictures in {len(set(data.labels))} labels, as {spec.width}x{spec.height} "
        f"{'RGB' if spec.channels == 3 else 'grayscale'} model input",
        "",
    ]
    if best is not None:
        lines += [
            f"Best trained model at <= {BAR_DIM} dimensions (most copies found under mixes of three edits): "
            f"**{best.entry.name}**, P@10 {best.metrics['precision_at_10']:.3f}, "
            f"copy recall@1 {best.metrics['copy_recall_at_1']:.3f}, self-retrieval {best.metrics['self_recall_at_1']:.3f}.",
            "",
        ]
    lines += [
        "- mAP and P@10: test images query the train+val images; relevant means the same class (sub-folder).",
        f"- Copy detection: {len(study.copy_sources)} indexed pictures, each edited by every held-out copy edit "
        "(copy_detection/copy_edits.py, Pillow on the decoded original, fixed seed) and searched among all indexed images. "
        "copy R@1 is on mixes of three different edits at once; the table below gives each edit alone. "
        "Ties for the best score count as a coin toss.",
        "- copy µAP: all mixed copies' top-10 matches pooled by score, average precision of finding the originals.",
        "- self R@1: the share of unedited indexed pictures whose first match is themselves.",
        "- Exact cosine kNN on the vectors the exported ONNX encoders give, run in ONNX Runtime on the CPU; "
        "phash and thumbnail-32 are computed by training/reference_tools.py on the same pictures and copies.",
        "- ONNX img/s: encoding throughput at batch 64.",
        "",
    ]
    for group in dict.fromkeys(r.entry.group for r in rows):
        lines += [f"## {group}", "", "| model | " + " | ".join(h for _, h, _ in COLUMNS) + " | note |"]
        lines.append("|---" * (len(COLUMNS) + 2) + "|")
        for row in (r for r in rows if r.entry.group == group):
            cells = [_cell(row.metrics.get(key, math.nan), fmt) for key, _, fmt in COLUMNS]
            lines.append(f"| {row.entry.name} | " + " | ".join(cells) + f" | {row.entry.note} |")
        lines.append("")
    lines += _robustness(rows)
    lines += _against_the_tools(rows, best)
    lines += [] if copies is None else copy_report.section(copies)
    lines += [f"![{name}]({name})" for name in pictures]
    return "\n".join(lines) + "\n"


def _robustness(rows: list[Row]) -> list[str]:
    """Copy recall@1 under each edit alone, then mixed, then none: which edits a model survives."""
    lines = [
        "## copy recall@1 by edit",
        "",
        "Each edit alone on the same originals (same seed), then mixes of three, then the unedited originals.",
        "",
        "| model | " + " | ".join(COPY_EDITS) + " | none (self) |",
        "|---" * (len(COPY_EDITS) + 2) + "|",
    ]
    for row in rows:
        cells = [f"{row.metrics[_recall_key(edit)]:.3f}" for edit in COPY_EDITS]
        lines.append(f"| {row.entry.name} | " + " | ".join(cells) + f" | {row.metrics['self_recall_at_1']:.3f} |")
    return [*lines, ""]


def _recall_key(edit: str) -> str:
    return "copy_recall_at_1" if edit == MIX else f"copy_recall_at_1.{edit}"


def _against_the_tools(rows: list[Row], best: Row | None) -> list[str]:
    """Issue 8's bars, one line each: the best trained model against the best tool on that measure."""
    tools = [r for r in rows if r.entry.name in REFERENCE]
    if best is None or not tools:
        return []
    lines = [
        "## against the tools people use",
        "",
        f"**{best.entry.name}** (the best trained model at <= {BAR_DIM} dimensions) against the best of "
        f"{', '.join(r.entry.name for r in tools)} on each measure; it should beat them all, find "
        f"{MIX_BAR:.0%} of the mixed copies and {SELF_BAR:.0%} of the unedited originals.",
        "",
        f"| measure | {best.entry.name} | best tool | bar | met |",
        "|---|---|---|---|---|",
    ]
    for key, measure in [("precision_at_10", "P@10")] + [(_recall_key(e), f"copy R@1, {e}") for e in COPY_EDITS]:
        value = best.metrics[key]
        tool = max(tools, key=lambda r: r.metrics[key])
        bar = f"> {tool.metrics[key]:.3f}" + (f" and >= {MIX_BAR:.2f}" if key == "copy_recall_at_1" else "")
        met = value > tool.metrics[key] and (key != "copy_recall_at_1" or value >= MIX_BAR)
        verdict = "yes" if met else ("tie" if value == tool.metrics[key] else "no")
        lines.append(f"| {measure} | {value:.3f} | {tool.metrics[key]:.3f} ({tool.entry.name}) | {bar} | {verdict} |")
    value = best.metrics["self_recall_at_1"]
    lines.append(f"| self R@1 | {value:.3f} | – | >= {SELF_BAR:.2f} | {'yes' if value >= SELF_BAR else 'no'} |")
    return [*lines, ""]


def _reuse_note(rows: list[Row]) -> str:
    reused = [r.entry.name for r in rows if r.reused]
    if not reused:
        return ""
    return f"; {len(reused)} of {len(rows)} models reused from earlier runs' checkpoints, so not trained in that time"


def _cell(value: float, fmt: str) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def _reconstructions(rows: list[Row], study: StudyData):
    images = study.dataset.images[study.split.test[:10]]  # (10, C, H, W)
    spec = study.dataset.spec
    sheet = [[Tile(to_image(x, spec), "original") for x in images]]
    for row in rows:
        if row.entry.group != "architecture" and row.entry.name != "pca-32":
            continue
        model = OnnxModel(row.version_dir, ["CPUExecutionProvider"])
        if model.decoder is None:
            continue
        rebuilt = model.reconstruct(model.embed(images))
        sheet.append([Tile(to_image(x, spec), row.entry.name) for x in rebuilt])
    return render(sheet, query_first=False)


def _loss_curves(rows: list[Row]):
    trained = [r for r in rows if r.history and r.entry.group in ("architecture", "ablation")]
    if not trained:
        return None
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for row in trained:
        epochs = [h["epoch"] for h in row.history]
        left.plot(epochs, [h["val_mse"] for h in row.history], label=row.entry.name)
        right.plot(epochs, [h["val_loss"] for h in row.history], label=row.entry.name)
    left.set(title="validation MSE (clean inputs)", xlabel="epoch", yscale="log")
    right.set(title="validation loss (training objective)", xlabel="epoch", yscale="log")
    left.legend(fontsize=8)
    figure.tight_layout()
    return figure


def _retrieval(best: Row, study: StudyData):
    data, split = study.dataset, study.split
    model = OnnxModel(best.version_dir, ["CPUExecutionProvider"])
    queries = split.test[:SHOWN_QUERIES]
    indexed = split.train_val
    neighbors = nearest_neighbors(model.embed(data.images[queries]), model.embed(data.images[indexed]), SHOWN_RESULTS)
    sheet = []
    for query, found in zip(queries, neighbors):
        label = data.labels[query]
        tiles = [Tile(to_image(data.images[query], data.spec), f"query: {label}")]
        for rank, position in enumerate(found, 1):
            item = indexed[position]
            tiles.append(Tile(to_image(data.images[item], data.spec), f"#{rank}: {data.labels[item]}", data.labels[item] != label))
        sheet.append(tiles)
    return render(sheet)


def _copy_detection(best: Row, study: StudyData):
    """One row per copy edit, each on another original: the original, the copy, the first three matches."""
    data, indexed = study.dataset, study.split.train_val
    model = OnnxModel(best.version_dir, ["CPUExecutionProvider"])
    copies = np.stack([study.copy_inputs(edit)[i] for i, edit in enumerate(COPY_EDITS)])  # (E, C, H, W)
    sources = study.copy_sources[: len(COPY_EDITS)]
    found = nearest_neighbors(model.embed(copies), model.embed(data.images[indexed]), 3)  # (E, 3)
    sheet = []
    for edit, copy, source, matches in zip(COPY_EDITS, copies, sources, found):
        tiles = [
            Tile(to_image(data.images[indexed[source]], data.spec), "original"),
            Tile(to_image(copy, data.spec), edit),
        ]
        tiles += [
            Tile(to_image(data.images[indexed[m]], data.spec), f"match #{rank}", m != source and rank == 1)
            for rank, m in enumerate(matches, 1)
        ]
        sheet.append(tiles)
    return render(sheet)


def _recall_by_edit(rows: list[Row], best: Row | None):
    """Copy recall@1 per edit: the best trained model next to the tools people use."""
    shown = [r for r in rows if r.entry.name in REFERENCE] + ([best] if best is not None else [])
    if not shown:
        return None
    figure, axis = plt.subplots(figsize=(12, 4.5))
    width = 0.8 / len(shown)
    positions = np.arange(len(COPY_EDITS) + 1)
    for i, row in enumerate(shown):
        values = [row.metrics[_recall_key(edit)] for edit in COPY_EDITS] + [row.metrics["self_recall_at_1"]]
        axis.bar(positions + (i - (len(shown) - 1) / 2) * width, values, width, label=row.entry.name)
    axis.set_xticks(positions, [*COPY_EDITS, "none (self)"], rotation=20)
    axis.set(title="copy recall@1 by edit", ylim=(0, 1.05))
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def _embedding_size(rows: list[Row]):
    families: dict[str, dict[float, tuple[float, float]]] = {}  # family -> dim -> (mAP, copy recall@1)
    for row in rows:
        architecture, m = row.entry.architecture, row.metrics
        if architecture == "pca" or (row.entry.group != "ablation" and _has_sizes(rows, architecture)):
            families.setdefault(architecture, {})[m["embedding_dim"]] = (m["map"], m["copy_recall_at_1"])
    families = {family: points for family, points in families.items() if len(points) > 1}  # a curve, not a dot
    if not families:
        return None
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for family, points in families.items():
        dims = sorted(points)
        maps, recalls = zip(*(points[d] for d in dims))
        left.plot(dims, maps, marker="o", label=family)
        right.plot(dims, recalls, marker="o", label=family)
    for axis, title in ((left, "mAP"), (right, "copy recall@1")):
        axis.set(title=f"{title} vs embedding size", xlabel="dimensions", xscale="log", ylim=(0, 1))
        axis.set_xticks(sorted({d for points in families.values() for d in points}))
        axis.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.minorticks_off()  # log-scale minor labels ("3x10^1") would sit on top of the sizes
        axis.grid(alpha=0.3)
    left.legend()
    figure.tight_layout()
    return figure


def _has_sizes(rows: list[Row], architecture: str) -> bool:
    return any(r.entry.group == "embedding size" and r.entry.architecture == architecture for r in rows)


__all__ = ["write_report", "best_row"]
