"""Self-describing checkpoints: the file alone rebuilds the model, its preprocessing and its story.

Only plain types and tensors go in, so `torch.load(weights_only=True)` can read it without
unpickling arbitrary objects (https://pytorch.org/docs/stable/generated/torch.load.html).

The trainer rewrites its checkpoint after every epoch: the weights are the best epoch's so far, so
the file is usable (exportable) at any moment, and `training_state` holds what `--resume` needs to
go on from the last epoch (training.train.TrainingState). Export ignores it.
"""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lookalike.preprocessing import Preprocessing
from server_toolkit.durable_files import write_atomically
from training.models import Autoencoder, build_model

FORMAT_VERSION = 1  # bump when the keys below change meaning
SAMPLE_IMAGES = 16  # real preprocessed images kept in the checkpoint for export's parity check


@dataclasses.dataclass
class Checkpoint:
    model: Autoencoder  # rebuilt from architecture + model_args, weights loaded, eval mode
    preprocessing: Preprocessing
    data_hash: str  # sha256 of the preprocessed training data (see training.data.data_hash)
    metrics: dict[str, float]  # e.g. train_mse, val_mse, test_mse, test_precision_at_10
    history: list[dict[str, float]]  # per epoch
    trained_at: str  # ISO 8601, UTC
    metric: str  # the vector similarity search should use: "cosine"
    sample_images: np.ndarray  # (S, C, H, W) float32, real inputs for parity checks
    extra: dict[str, Any]  # train_config, split, anything else the trainer recorded
    training_state: dict[str, Any] | None  # training.train.TrainingState.to_dict(), to resume; None when not kept

    @property
    def architecture(self) -> str:
        return self.model.architecture

    @property
    def model_args(self) -> dict[str, Any]:
        return dataclasses.asdict(self.model.config)


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    preprocessing: Preprocessing,
    data_hash: str,
    sample_images: np.ndarray,
    metrics: dict[str, float] | None = None,
    history: list[dict[str, float]] | None = None,
    metric: str = "cosine",
    extra: dict[str, Any] | None = None,
    weights: dict[str, torch.Tensor] | None = None,
    training_state: dict[str, Any] | None = None,
) -> Path:
    """Writes the checkpoint atomically (temp file + rename): a crash never leaves half a file.

    `weights` is a state_dict of `model` to store instead of its current one (the best epoch's).
    """
    model = _unwrap(model)
    assert isinstance(model, Autoencoder), "save the Autoencoder itself, so it can be rebuilt by architecture"
    assert sample_images.shape[1:] == model.input_shape, "sample images must be model inputs (S, C, H, W)"
    state = {
        "format_version": FORMAT_VERSION,
        "architecture": model.architecture,
        "model_args": dataclasses.asdict(model.config),
        "preprocessing": preprocessing.to_json(),
        "data_hash": data_hash,
        "metrics": dict(metrics or {}),
        "history": list(history or []),
        "trained_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "metric": metric,
        "sample_images": torch.from_numpy(np.ascontiguousarray(sample_images[:SAMPLE_IMAGES], dtype=np.float32)),
        "extra": dict(extra or {}),
        # Clone to the CPU: a checkpoint trained on a GPU must load on a CPU-only exporter.
        "state_dict": _on_cpu(model.state_dict() if weights is None else weights),
    }
    if training_state is not None:
        state["training_state"] = _on_cpu(training_state)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # 0644 whatever the umask: a checkpoint is shared data, e.g. with an image build.
    write_atomically(path, lambda f: torch.save(state, f), mode=0o644)
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Rebuilds the model from the file alone; `weights_only=True` refuses anything but data."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    version = state.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {version}, this code reads format {FORMAT_VERSION}")
    model = build_model(state["architecture"], state["model_args"])
    model.load_state_dict(state["state_dict"])  # strict: a missing or extra weight is an error
    return Checkpoint(
        model=model.eval(),
        preprocessing=Preprocessing.from_json(state["preprocessing"]),
        data_hash=state["data_hash"],
        metrics=state["metrics"],
        history=state["history"],
        trained_at=state["trained_at"],
        metric=state["metric"],
        sample_images=state["sample_images"].numpy(),
        extra=state["extra"],
        training_state=state.get("training_state"),
    )


def _on_cpu(value: Any) -> Any:
    """A copy of nested dicts, lists and tensors with every tensor detached on the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: _on_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_on_cpu(v) for v in value)
    return value


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain module under torch.compile (`_orig_mod`) or DataParallel/DDP (`module`) wrappers."""
    while True:
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner
