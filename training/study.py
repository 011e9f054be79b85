"""The study behind `lookalike eval`: every architecture and baseline, trained (or loaded), exported,
run in ONNX Runtime exactly as the encoder service runs it, and measured the same way, next to the
tools people use today to find copies (training/reference_tools.py), on the same pictures.

    rows, study = run_study(StudyOptions(data="data/colour-set", out=Path("reports")))

Per row: train/val/test MSE; mAP over the whole indexed set and precision@10 with class labels
(sub-folders) as relevance, test pictures querying the train+val pictures; copy detection, each query
an edited copy of one indexed picture (copy_detection/copy_edits.py: Pillow edits of the decoded original,
a fixed seed) searched among all indexed pictures: recall@1 for each edit alone and for mixes of
three, and micro-AP on the mixes; self-retrieval, the share of unedited indexed pictures that find
themselves first; embedding size; parameters; training time; ONNX throughput.

The whole copy pipeline (pHash and embedding candidates, local features, verdicts) is measured on the
same copies afterwards, for one model: training/copy_pipeline.py and training/copy_calibration.py.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from encoder_service.onnx_model import OnnxModel
from lookalike import model_format
from lookalike.preprocessing import Preprocessing, decode, to_image
from copy_detection import copy_edits
from training.checkpoint import load_checkpoint
from training.config import TrainConfig
from training.data import DIGITS, DIGITS_SPEC, Dataset, Split, data_hash
from training.export import export
from training.models import Baseline
from training.pipeline import default_split, load_data, train_checkpoint
from training.pixels import to_model_batch, to_pixels
from training.reference_tools import TOOLS
from training.retrieval_metrics import copy_detection, mean_average_precision, precision_at_k
from training.study_plan import Entry, plan

log = logging.getLogger(__name__)

COPY_SEED = 2024  # the copy edits: fixed, so every row answers the same queries
COPY_QUERIES = 1000  # edited copies of distinct indexed pictures, per edit
COPY_EDITS = (*copy_edits.EDITS, copy_edits.MIX)  # each alone, then mixes of three
MAX_SIDE = 512  # originals are shrunk to this many pixels a side before editing: models see 64, pHash 32
FOLDER_SIZE = 64  # model input of a folder of pictures: 64x64 RGB
QUICK_IMAGES, QUICK_COPIES = 600, 200  # quick mode's random subset, and copies per edit
THROUGHPUT_BATCH = 64  # images per ONNX Runtime call when measuring encode speed
THROUGHPUT_SECONDS = 1.0  # measuring time per model, after a warm-up call


@dataclasses.dataclass
class StudyOptions:
    data: str = "digits"  # "digits" or a folder of images with one subfolder per class
    out: Path = Path("reports")  # the report goes to out/<dataset name>/
    quick: bool = False  # a few hundred images, tiny models, 1 epoch: checks the machinery, not the figures
    max_images: int | None = None  # a seeded random subset of this many pictures (default: all)
    only: tuple[str, ...] = ()  # row names to run (default: all)
    retrain: bool = False  # train again even when a matching checkpoint exists
    threads: int = 2  # torch and ONNX Runtime threads
    progress: bool = True


@dataclasses.dataclass
class Row:
    """One model's (or reference tool's) line in the report."""

    entry: Entry
    metrics: dict[str, float]  # see module docstring; NaN where a measure does not apply
    history: list[dict[str, float]]  # per-epoch losses (empty for baselines and tools)
    version_dir: Path | None  # the exported model, servable as is; None for a reference tool
    reused: bool  # the checkpoint came from an earlier run with the same settings and data


@dataclasses.dataclass
class Copies:
    """Edited copies of the copy sources, as the models and the reference tools see them."""

    pixels: np.ndarray  # (Q, H, W, C) uint8, the models' preprocessing of each copy, up to normalisation
    tools: dict[str, np.ndarray]  # tool name -> (Q, D) its vectors of each copy


@dataclasses.dataclass
class StudyData:
    dataset: Dataset
    split: Split
    copy_sources: np.ndarray  # (Q,) position in split.train_val of each copy's original
    copies: dict[str, Copies]  # copy edit (COPY_EDITS) -> edited copies of the same originals
    tool_vectors: dict[str, np.ndarray]  # tool name -> (N, D) its vectors of every picture of the dataset

    def copy_inputs(self, edit: str = copy_edits.MIX) -> np.ndarray:
        """(Q, C, H, W) model input of the copies made by `edit`."""
        return to_model_batch(self.copies[edit].pixels, self.dataset.spec)


def report_dir(options: StudyOptions) -> Path:
    name = DIGITS if options.data == DIGITS else Path(options.data).resolve().name
    return options.out / (f"{name}-quick" if options.quick else name)


def model_input(options: StudyOptions) -> Preprocessing:
    """The preprocessing every model of the study gets: the digits' own, or 64x64 RGB for a folder."""
    return DIGITS_SPEC if options.data == DIGITS else Preprocessing(height=FOLDER_SIZE, width=FOLDER_SIZE, channels=3)


def prepare_data(options: StudyOptions) -> StudyData:
    data = load_data(options.data, model_input(options))
    if data.labels is None:
        raise ValueError(f"{options.data}: the study needs class labels (one subfolder per class)")
    keep = QUICK_IMAGES if options.quick else options.max_images
    if keep is not None and keep < len(data):
        data = data.subset(np.sort(np.random.default_rng(0).permutation(len(data))[:keep]))
    split = default_split(data, "folder" if options.quick else options.data)  # quick: a folder's fractions
    indexed = split.train_val
    count = min(QUICK_COPIES if options.quick else COPY_QUERIES, len(indexed))
    sources = np.random.default_rng(COPY_SEED).choice(len(indexed), count, replace=False)  # (Q,)
    originals = [original_picture(data, i) for i in indexed[sources]]
    edits = tqdm(COPY_EDITS, desc="copy edits", unit="edit", disable=not options.progress)
    copies = {edit: _copies(originals, edit, data.spec) for edit in edits}
    pictures = tqdm(range(len(data)), desc="reference tools", unit="picture", disable=not options.progress)
    tool_vectors = _tool_vectors((original_picture(data, i) for i in pictures), data.spec)
    return StudyData(data, split, sources, copies, tool_vectors)


def original_picture(data: Dataset, index: int) -> Image.Image:
    """The decoded original of picture `index`, at most MAX_SIDE pixels a side."""
    if data.paths is None:  # the digits have no files: their pixels are the originals
        return to_image(data.images[index], data.spec)
    picture = decode(Path(data.paths[index]).read_bytes())
    picture.thumbnail((MAX_SIDE, MAX_SIDE))
    return picture


def _copies(originals: list[Image.Image], edit: str, spec: Preprocessing) -> Copies:
    pixels, vectors = [], {name: [] for name in TOOLS}
    for copy in copy_edits.copies(originals, edit, COPY_SEED):  # one at a time: copies of photos are large
        pixels.append(to_pixels(copy, spec))
        _add_tool_vectors(vectors, copy, spec)
    return Copies(np.stack(pixels), {name: np.stack(v) for name, v in vectors.items()})


def _tool_vectors(pictures: Iterable[Image.Image], spec: Preprocessing) -> dict[str, np.ndarray]:
    vectors = {name: [] for name in TOOLS}
    for picture in pictures:
        _add_tool_vectors(vectors, picture, spec)
    return {name: np.stack(v) for name, v in vectors.items()}


def _add_tool_vectors(vectors: dict[str, list[np.ndarray]], picture: Image.Image, spec: Preprocessing) -> None:
    for name, tool in TOOLS.items():
        vectors[name].append(tool.vector(picture, spec))


def run_study(options: StudyOptions) -> tuple[list[Row], StudyData]:
    """Runs every planned entry (or options.only); returns their rows, in plan order, and the data."""
    torch.set_num_threads(options.threads)
    root = report_dir(options)
    planned = plan(model_input(options), options.quick)
    unknown = set(options.only) - {e.name for e in planned}
    if unknown:
        raise ValueError(f"no study rows named {sorted(unknown)}; see training/study_plan.py")
    entries = [e for e in planned if not options.only or e.name in options.only]
    study = prepare_data(options)
    rows = []
    for entry in tqdm(entries, desc="study", unit="model", disable=not options.progress):
        rows.append(_run_tool(entry, study) if entry.train is None else _run_entry(entry, study, root, options))
        log.info("%s: %s", entry.name, rows[-1].metrics)
    return rows, study


def _run_tool(entry: Entry, study: StudyData) -> Row:
    copies = {edit: study.copies[edit].tools[entry.name] for edit in COPY_EDITS}
    metrics = {**_measure(study.tool_vectors[entry.name], copies, "cosine", study), **_mse({})}
    metrics["embedding_dim"] = TOOLS[entry.name].dim
    return Row(entry, metrics, [], None, False)


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
    copies = {edit: embed(model, study.copy_inputs(edit)) for edit in COPY_EDITS}
    metrics = {**_measure(embed(model, study.dataset.images), copies, model.card.metric, study), **_mse(checkpoint.metrics)}
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


def embed(model: OnnxModel, images, batch: int = 512) -> np.ndarray:
    """(N, D) vectors of model inputs (N, C, H, W): an array or a Dataset's `images`."""
    return np.concatenate([model.embed(images[s : s + batch]) for s in range(0, len(images), batch)])


def _measure(vectors: np.ndarray, copies: dict[str, np.ndarray], metric: str, study: StudyData) -> dict[str, float]:
    """Every retrieval measure, from the vectors of every picture (N, D) and of each edit's copies (Q, D)."""
    labels, indexed, queries = study.dataset.labels, study.split.train_val, study.split.test
    index = vectors[indexed]
    found = {edit: copy_detection(copies[edit], study.copy_sources, index, metric) for edit in COPY_EDITS}
    return {f"copy_recall_at_1.{edit}": found[edit]["recall_at_1"] for edit in copy_edits.EDITS} | {
        "map": mean_average_precision(vectors[queries], labels[queries], index, labels[indexed], metric),
        "precision_at_10": precision_at_k(vectors[queries], labels[queries], index, labels[indexed], 10, metric),
        "copy_recall_at_1": found[copy_edits.MIX]["recall_at_1"],
        "copy_micro_ap": found[copy_edits.MIX]["micro_ap"],
        "self_recall_at_1": copy_detection(index, np.arange(len(indexed)), index, metric)["recall_at_1"],
    }


def _mse(metrics: dict[str, float]) -> dict[str, float]:
    return {key: metrics.get(key, float("nan")) for key in ("train_mse", "val_mse", "test_mse")}


def _throughput(model: OnnxModel, images, seconds: float) -> float:
    """Encoded images per second at THROUGHPUT_BATCH, in ONNX Runtime, after one warm-up call."""
    batch = images[:THROUGHPUT_BATCH]
    model.embed(batch)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        model.embed(batch)
        done += len(batch)
    return done / (time.perf_counter() - started)
