"""The architectures and baselines, by name: the name and config dict in a checkpoint rebuild the model.

Adding one (fully connected, conv + upsampling, conv + transposed conv, LSTM, LSTM + attention):
write `training/models/<name>.py` with a config dataclass (height, width, channels,
embedding_dim, ...) and an `Autoencoder` subclass that builds `.encoder` and `.decoder`,
then add one line to ARCHITECTURES. Baselines (training/models/baseline.py) are fitted in
closed form instead of trained, and are listed in BASELINES.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from training.models.autoencoder import Autoencoder
from training.models.baseline import Baseline
from training.models.colour_histogram import ColourHistogram, ColourHistogramConfig
from training.models.conv_fc import ConvFCAutoencoder, ConvFCConfig
from training.models.conv_fc_transpose import ConvFCTransposeAutoencoder, ConvFCTransposeConfig
from training.models.conv_transpose import ConvTransposeAutoencoder, ConvTransposeConfig
from training.models.conv_upsample import ConvUpsampleAutoencoder, ConvUpsampleConfig
from training.models.fc import FCAutoencoder, FCConfig
from training.models.lstm import LSTMAutoencoder, LSTMConfig
from training.models.lstm_attention import LSTMAttentionAutoencoder, LSTMAttentionConfig
from training.models.pca import PCA, PCAConfig
from training.models.raw_pixels import RawPixels, RawPixelsConfig

ARCHITECTURES: dict[str, tuple[type, type[Autoencoder]]] = {
    "conv_fc": (ConvFCConfig, ConvFCAutoencoder),
    "fc": (FCConfig, FCAutoencoder),
    "conv_upsample": (ConvUpsampleConfig, ConvUpsampleAutoencoder),
    "conv_transpose": (ConvTransposeConfig, ConvTransposeAutoencoder),
    "conv_fc_transpose": (ConvFCTransposeConfig, ConvFCTransposeAutoencoder),
    "lstm": (LSTMConfig, LSTMAutoencoder),
    "lstm_attention": (LSTMAttentionConfig, LSTMAttentionAutoencoder),
}
BASELINES: dict[str, tuple[type, type[Baseline]]] = {
    "raw_pixels": (RawPixelsConfig, RawPixels),
    "pca": (PCAConfig, PCA),
    "colour_histogram": (ColourHistogramConfig, ColourHistogram),
}
MODELS = {**ARCHITECTURES, **BASELINES}


def make_config(architecture: str, config: dict[str, Any] | None = None) -> Any:
    """The architecture's config dataclass from a dict; unknown keys are an error, not ignored."""
    if architecture not in MODELS:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {sorted(MODELS)}")
    config_class, _ = MODELS[architecture]
    config = dict(config or {})
    known = {field.name for field in dataclasses.fields(config_class)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"{architecture} has no setting(s) {unknown}; it takes {sorted(known)}")
    return config_class(**config)


def build_model(architecture: str, config: dict[str, Any] | None = None) -> Autoencoder:
    """A fresh model of `architecture` with `config` overriding its defaults."""
    config = make_config(architecture, config)  # raises on an unknown architecture or setting
    _, model_class = MODELS[architecture]
    return model_class(config)


def input_settings(architecture: str, spec: Any) -> dict[str, Any]:
    """The config values a model takes from the data's Preprocessing: size, channels, and the
    normalisation for models that work on 0..1 pixels (the colour histogram)."""
    settings = {"height": spec.height, "width": spec.width, "channels": spec.channels}
    fields = {field.name for field in dataclasses.fields(MODELS[architecture][0])} if architecture in MODELS else set()
    if {"mean", "std"} <= fields:
        settings.update(mean=tuple(spec.mean), std=tuple(spec.std))
    return settings


__all__ = [
    "ARCHITECTURES", "BASELINES", "MODELS", "Autoencoder", "Baseline", "build_model", "input_settings", "make_config",
    "ConvFCConfig", "ConvFCAutoencoder",
]
