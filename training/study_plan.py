"""What `lookalike eval` trains and compares: one Entry per report row.

Groups: the baselines, every architecture with the robust recipe (TrainConfig's defaults), the
ablation of that recipe on the default architecture, and embedding sizes of the default
architecture next to PCA's. Epochs per architecture keep the full study on the digits within
20 minutes on 2 CPU cores.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lookalike.preprocessing import Preprocessing
from training.config import TrainConfig
from training.models import ARCHITECTURES

GROUPS = ("baseline", "architecture", "ablation", "embedding size")
DEFAULT = TrainConfig()  # the robust recipe and the default architecture, also the demo's model
SIZES = (16, 32)  # embedding sizes tried besides the architectures' 64; larger ones are past the 64-d bar
EPOCHS: dict[str, int] = {}  # per-architecture exceptions to TrainConfig.epochs, to fit the 20-minute budget
# Quick mode: the same code paths in seconds; the figures mean nothing.
QUICK_MODEL = {
    "conv_fc": {"conv_channels": [4, 8], "fc_dim": 16},
    "conv_fc_transpose": {"conv_channels": [4, 8], "fc_dim": 16},
    "conv_upsample": {"conv_channels": [4, 8]},
    "conv_transpose": {"conv_channels": [4, 8]},
    "fc": {"hidden_dims": [32]},
    "lstm": {"hidden_size": 16},
    "lstm_attention": {"hidden_size": 16, "attention_dim": 8},
}


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str  # row label, also the checkpoint and model name: letters, digits, '_', '-', '.'
    group: str  # one of GROUPS
    train: TrainConfig  # architecture, model overrides and training settings (baselines only fit)
    note: str = ""  # what the row shows, for the report

    @property
    def architecture(self) -> str:
        return self.train.architecture


def plan(spec: Preprocessing, quick: bool = False) -> list[Entry]:
    """Every row of the study, in report order."""

    def config(architecture: str, model: dict[str, Any] | None = None, **changes: Any) -> TrainConfig:
        overrides = {**(QUICK_MODEL.get(architecture, {}) if quick else {}), **(model or {})}
        epochs = 1 if quick else EPOCHS.get(architecture, DEFAULT.epochs)
        return dataclasses.replace(DEFAULT, architecture=architecture, model=overrides, epochs=epochs, **changes)

    best = DEFAULT.architecture
    entries = [
        Entry("raw_pixels", "baseline", config("raw_pixels"), "the preprocessed pixels themselves"),
        Entry("pca-32", "baseline", config("pca", {"embedding_dim": 32}), "principal components"),
        Entry("pca-64", "baseline", config("pca", {"embedding_dim": 64}), "principal components"),
        Entry("colour_histogram", "baseline", config("colour_histogram"), _histogram_note(spec)),
    ]
    entries += [Entry(name, "architecture", config(name), "robust recipe, 64-d") for name in ARCHITECTURES]
    entries += [
        Entry(f"{best}-plain", "ablation", config(best, augment=None, consistency=0.0), "no edits: a plain autoencoder"),
        Entry(f"{best}-denoising", "ablation", config(best, consistency=0.0), "edited inputs, no consistency term"),
        Entry(
            f"{best}-instance",
            "ablation",
            config(best, consistency=0.5, temperature=0.1),
            "strong, low-temperature consistency: tells copies apart, scatters classes",
        ),
    ]
    for size in SIZES[:1] if quick else SIZES:
        entries.append(Entry(f"{best}-{size}", "embedding size", config(best, {"embedding_dim": size}), f"{size}-d"))
        if f"pca-{size}" not in {e.name for e in entries}:  # pca-32 is a baseline row already
            entries.append(Entry(f"pca-{size}", "embedding size", config("pca", {"embedding_dim": size}), f"{size}-d"))
    return entries


def _histogram_note(spec: Preprocessing) -> str:
    return "joint L*a*b* histogram" if spec.channels == 3 else "lightness histogram (grayscale images)"
