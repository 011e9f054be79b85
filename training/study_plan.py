"""What `lookalike eval` trains and compares: one Entry per report row.

Groups: the baselines (with the tools people use today to find copies, training/reference_tools.py),
every architecture with the robust recipe (TrainConfig's defaults), the ablation of that recipe on
the default architecture, and embedding sizes of the default architecture next to PCA's. Epochs per
architecture keep the full study on the digits within 20 minutes on 2 CPU cores; on 64x64 colour
pictures a conv model costs about 30 ms per training picture and epoch there, so a colour study
runs a chosen few rows (`lookalike eval --only`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lookalike.preprocessing import Preprocessing
from training.config import TrainConfig
from training.models import ARCHITECTURES
from training.reference_tools import TOOLS

GROUPS = ("baseline", "architecture", "ablation", "embedding size")
DEFAULT = TrainConfig()  # the robust recipe and the default architecture, also the demo's model
SIZES = (16, 32, 128)  # embedding sizes tried besides the architectures' 64; 128 is the largest the bars allow
EPOCHS: dict[str, int] = {}  # per-architecture exceptions to TrainConfig.epochs, to fit the 20-minute budget
# A recipe for finding copies, tried against the robust recipe: instance discrimination (a strong,
# low-temperature consistency term over twice the batch), 128 dimensions, and, to afford 24 epochs,
# three cheaper stages (average pooling, fewer channels at full size) instead of two. On the colour
# set (reports/colour-set) mixed-copy recall@1 went 0.19 (robust recipe) -> 0.41 (instance) -> 0.47;
# stronger crops and colour changes on top (crop 0.6, hue 0.15, grayscale 0.4) did not do better.
COPIES_MODEL = {"conv_channels": [16, 32, 64], "pooling": "avg", "embedding_dim": 128}
COPIES_TRAINING = {"consistency": 1.0, "temperature": 0.1, "batch_size": 128, "epochs": 24}
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
    train: TrainConfig | None  # architecture, model overrides and training settings (baselines only fit);
    # None for a reference tool, which is not a model: computed on the pictures by training/reference_tools.py
    note: str = ""  # what the row shows, for the report

    @property
    def architecture(self) -> str:
        """The model's architecture, or the tool's name."""
        return self.name if self.train is None else self.train.architecture


def plan(spec: Preprocessing, quick: bool = False) -> list[Entry]:
    """Every row of the study, in report order."""

    def config(architecture: str, model: dict[str, Any] | None = None, **changes: Any) -> TrainConfig:
        overrides = {**(QUICK_MODEL.get(architecture, {}) if quick else {}), **(model or {})}
        epochs = 1 if quick else EPOCHS.get(architecture, DEFAULT.epochs)
        return dataclasses.replace(DEFAULT, **{"architecture": architecture, "model": overrides, "epochs": epochs, **changes})

    best = DEFAULT.architecture
    entries = [
        Entry("raw_pixels", "baseline", config("raw_pixels"), "the preprocessed pixels themselves"),
        Entry("pca-32", "baseline", config("pca", {"embedding_dim": 32}), "principal components"),
        Entry("pca-64", "baseline", config("pca", {"embedding_dim": 64}), "principal components"),
        Entry("colour_histogram", "baseline", config("colour_histogram"), _histogram_note(spec)),
        *(Entry(name, "baseline", None, tool.note) for name, tool in TOOLS.items()),
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
    copies = {**COPIES_TRAINING, "epochs": 1} if quick else COPIES_TRAINING
    entries.append(Entry(f"{best}-copies", "ablation", config(best, COPIES_MODEL, **copies), "recipe for copies, 128-d"))
    if spec.channels == 3:  # the edits of re-shared pictures apply to colour images only
        no_sharing = {**copies, "augment": dataclasses.replace(DEFAULT.augment, sharing=0.0, grayscale=0.0)}
        entries.append(
            Entry(f"{best}-copies-no-sharing", "ablation", config(best, COPIES_MODEL, **no_sharing),
                  "recipe for copies without the re-sharing edits (grey, small, letterbox, caption, watermark)")
        )  # fmt: skip
    for size in SIZES[:1] if quick else SIZES:
        entries.append(Entry(f"{best}-{size}", "embedding size", config(best, {"embedding_dim": size}), f"{size}-d"))
        if f"pca-{size}" not in {e.name for e in entries}:  # pca-32 is a baseline row already
            entries.append(Entry(f"pca-{size}", "embedding size", config("pca", {"embedding_dim": size}), f"{size}-d"))
    return entries


def _histogram_note(spec: Preprocessing) -> str:
    return "joint L*a*b* histogram" if spec.channels == 3 else "lightness histogram (grayscale images)"
