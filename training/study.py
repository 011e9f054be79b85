"""The study behind `lookalike eval`: every architecture and baseline, trained (or loaded), exported,
run in ONNX Runtime exactly as the encoder service runs it, and measured the same way.

    rows, study = run_study(StudyOptions(data="digits", out=Path("reports")))

Per model: train/val/test MSE; mAP over the whole indexed set and precision@10 with class labels as
relevance (test images query the train+val images); copy detection (each query is an edited copy of
one indexed image, under the augmentation suite with a fixed seed, every other indexed image a
distractor): recall@1 and micro-AP; embedding size; parameters; training time; ONNX throughput.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from encoder_service.onnx_model import OnnxModel
from lookalike import model_format
from lookalike.preprocessing import Preprocessing
from training.augment import augment
from training.checkpoint import load_checkpoint
from training.config import COLOUR_EDITS, EDITS, AugmentConfig, TrainConfig
from training.data import Dataset, Split, data_hash
from training.export import export
from training.models import Baseline
from training.pipeline import default_split, load_data, train_checkpoint
from training.retrieval_metrics import copy_detection, mean_average_precision, precision_at_k
from training.study_plan import Entry, plan

log = logging.getLogger(__name__)

COPY_SEED = 2024  # the edits of the copy-detection queries: fixed, so every model answers the same queries
COPY_QUERIES = 1000  # edited copies of distinct indexed images
THROUGHPUT_BATCH = 64  # images per ONNX Runtime call when measuring encode speed
THROUGHPUT_SECONDS = 1.0  # measuring time per model, after a warm-up call


@dataclasses.dataclass
class StudyOptions:
    data: str = "digits"  # "digits" or a folder of images with one subfolder per class
    out: Path = Path("reports")  # the report goes to out/<dataset name>/
    quick: bool = False  # a few hundred images, tiny models, 1 epoch: checks the machinery, not the figures
    only: tuple[str, ...] = ()  # row names to run (default: all)
    retrain: bool = False  # train again even when a matching checkpoint exists
    threads: int = 2  # torch and ONNX Runtime threads
    progress: bool = True


@dataclasses.dataclass
class Row:
    """One model's line in the report."""

    entry: Entry
    metrics: dict[str, float]  # see module docstring; NaN where a measure does not apply
    history: list[dict[str, float]]  # per-epoch losses (empty for baselines)
    version_dir: Path  # the exported model, servable as is
    reused: bool  # the checkpoint came from an earlier run with the same settings and data


@dataclasses.dataclass
class StudyData:
    dataset: Dataset
    split: Split
    copy_images: np.ndarray  # (Q, C, H, W) edited copies of indexed images, the whole suite
    copy_sources: np.ndarray  # (Q,) position in split.train_val of each copy's original
    single_edits: dict[str, np.ndarray]  # edit name -> (Q, C, H, W) the same originals, that edit alone


def report_dir(options: StudyOptions) -> Path:
    name = "digits" if options.data == "digits" else Path(options.data).resolve().name
    return options.out / (f"{name}-quick" if options.quick else name)


def prepare_data(options: StudyOptions) -> StudyData:
    data = load_data(options.data) if options.data == "digits" else _load_folder(options.data)
    if data.labels is None:
        raise ValueError(f"{options.data}: the study needs class labels (one subfolder per class)")
    if options.quick:
        keep = np.random.default_rng(0).permutation(len(data))[:600]
        data = data.subset(np.sort(keep))
        split = default_split(data, "folder", test=100, val=50)
    else:
        split = default_split(data, options.data)
    indexed = split.train_val
    count = min(COPY_QUERIES, len(indexed))
    sources = np.random.default_rng(COPY_SEED).choice(len(indexed), count, replace=False)  # (Q,)
    originals = torch.from_numpy(data.images[indexed[sources]])
    suite = AugmentConfig()
    copies = augment(originals, data.spec, suite, torch.Generator().manual_seed(COPY_SEED))
    single = {
        edit: augment(originals, data.spec, suite.only(edit), torch.Generator().manual_seed(COPY_SEED)).numpy()
        for edit in EDITS
        if data.spec.channels == 3 or edit not in COLOUR_EDITS
    }
    return StudyData(data, split, copies.numpy(), sources, single)


def run_study(options: StudyOptions) -> tuple[list[Row], StudyData]:
    """Runs every planned entry (or options.only); returns their rows, in plan order, and the data."""
    torch.set_num_threads(options.threads)
    root = report_dir(options)
    study = prepare_data(options)
    planned = plan(study.dataset.spec, options.quick)
    unknown = set(options.only) - {e.name for e in planned}
    if unknown:
        raise ValueError(f"no study rows named {sorted(unknown)}; see training/study_plan.py")
    entries = [e for e in planned if not options.only or e.name in options.only]
    rows = []
    for entry in tqdm(entries, desc="study", unit="model", disable=not options.progress):
        rows.append(_run_entry(entry, study, root, options))
        log.info("%s: %s", entry.name, rows[-1].metrics)
    return rows, study


def _run_entry(entry: Entry, study: StudyData, root: Path, options: StudyOptions) -> Row:
    config = dataclasses.replace(entry.train, num_threads=options.threads, progress=options.progress)
    checkpoint_path = root / "checkpoints" / f"{entry.name}.pt"
    checkpoint = _reusable(checkpoint_path, config, study.dataset) if not options.retrain else None
    reused = checkpoint is not None
    if not reused:
        train_checkpoint(study.dataset, study.split, config, checkpoint_path, options.data)
        checkpoint = load_checkpoint(checkpoint_path)
    version_dir = _exported(checkpoint_path, root / "models", entry.name)
    model = OnnxModel(version_dir, ["CPUExecutionProvider"], intra_op_threads=options.threads)
    metrics = {**_measure(model, study), **_mse(checkpoint.metrics)}
    metrics["embedding_dim"] = model.card.embedding_dim
    metrics["parameters"] = _parameters(checkpoint.model)
    metrics["train_seconds"] = checkpoint.metrics.get("train_seconds", float("nan"))
    metrics["images_per_second"] = _throughput(model, study.dataset.images, 0.1 if options.quick else THROUGHPUT_SECONDS)
    return Row(entry, metrics, checkpoint.history, version_dir, reused)


def _reusable(path: Path, config: TrainConfig, data: Dataset):
    """The checkpoint at `path` when it was trained with this config on this data, else None."""
    if not path.exists():
        return None
    checkpoint = load_checkpoint(path)
    same_config = _weights_settings(checkpoint.extra.get("train_config", {})) == _weights_settings(dataclasses.asdict(config))
    if same_config and checkpoint.data_hash == data_hash(data.images):
        log.info("reusing %s", path)
        return checkpoint
    return None


def _weights_settings(config: dict[str, Any]) -> dict[str, Any]:
    """A stored TrainConfig without the settings that do not change the weights."""
    return {k: v for k, v in config.items() if k not in ("progress", "num_threads", "device")}


def _exported(checkpoint_path: Path, repository: Path, name: str) -> Path:
    """The newest exported version of this row, exporting the checkpoint when it is newer than it."""
    versions = model_format.published_versions(model_format.model_dir(repository, name))
    if versions:
        newest = model_format.version_dir(repository, name, versions[-1])
        if (newest / model_format.ENCODER_FILE).stat().st_mtime >= checkpoint_path.stat().st_mtime:
            return newest
    return export(checkpoint_path, repository, name)


def _parameters(model: torch.nn.Module) -> int:
    """Learned numbers: weights, or for a baseline the values it fitted as stored (PCA keeps its mean
    and axes in the encoder and again in the decoder, so each exports on its own)."""
    tensors = model.buffers() if isinstance(model, Baseline) else model.parameters()
    return sum(t.numel() for t in tensors)


def _embed(model: OnnxModel, images: np.ndarray, batch: int = 512) -> np.ndarray:
    return np.concatenate([model.embed(images[s : s + batch]) for s in range(0, len(images), batch)])


def _measure(model: OnnxModel, study: StudyData) -> dict[str, float]:
    data, split = study.dataset, study.split
    vectors = _embed(model, data.images)  # (N, D)
    indexed, queries = split.train_val, split.test
    metric = model.card.metric
    labels = data.labels
    found = copy_detection(_embed(model, study.copy_images), study.copy_sources, vectors[indexed], metric)
    by_edit = {
        f"copy_recall_at_1.{edit}": copy_detection(_embed(model, images), study.copy_sources, vectors[indexed], metric)[
            "recall_at_1"
        ]
        for edit, images in study.single_edits.items()
    }
    return by_edit | {
        "map": mean_average_precision(vectors[queries], labels[queries], vectors[indexed], labels[indexed], metric),
        "precision_at_10": precision_at_k(vectors[queries], labels[queries], vectors[indexed], labels[indexed], 10, metric),
        "copy_recall_at_1": found["recall_at_1"],
        "copy_micro_ap": found["micro_ap"],
    }


def _mse(metrics: dict[str, float]) -> dict[str, float]:
    return {key: metrics.get(key, float("nan")) for key in ("train_mse", "val_mse", "test_mse")}


def _throughput(model: OnnxModel, images: np.ndarray, seconds: float) -> float:
    """Encoded images per second at THROUGHPUT_BATCH, in ONNX Runtime, after one warm-up call."""
    batch = images[:THROUGHPUT_BATCH]
    model.embed(batch)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        model.embed(batch)
        done += len(batch)
    return done / (time.perf_counter() - started)


def _load_folder(folder: str) -> Dataset:
    return load_data(folder, Preprocessing(height=64, width=64, channels=3))
