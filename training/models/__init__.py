"""The architectures, by name: the name and config dict in a checkpoint rebuild the model.

Adding one (fully connected, conv + upsampling, conv + transposed conv, LSTM, LSTM + attention):
write `training/models/<name>.py` with a config dataclass (height, width, channels,
embedding_dim, ...) and an `Autoencoder` subclass that builds `.encoder` and `.decoder`,
then add one line to ARCHITECTURES.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from training.models.autoencoder import Autoencoder
from training.models.conv_fc import ConvFCAutoencoder, ConvFCConfig
from training.models.conv_fc_transpose import ConvFCTransposeAutoencoder, ConvFCTransposeConfig
from training.models.conv_transpose import ConvTransposeAutoencoder, ConvTransposeConfig
from training.models.conv_upsample import ConvUpsampleAutoencoder, ConvUpsampleConfig
from training.models.fc import FCAutoencoder, FCConfig
from training.models.lstm import LSTMAutoencoder, LSTMConfig
from training.models.lstm_attention import LSTMAttentionAutoencoder, LSTMAttentionConfig

ARCHITECTURES: dict[str, tuple[type, type[Autoencoder]]] = {
    "conv_fc": (ConvFCConfig, ConvFCAutoencoder),
    "fc": (FCConfig, FCAutoencoder),
    "conv_upsample": (ConvUpsampleConfig, ConvUpsampleAutoencoder),
    "conv_transpose": (ConvTransposeConfig, ConvTransposeAutoencoder),
    "conv_fc_transpose": (ConvFCTransposeConfig, ConvFCTransposeAutoencoder),
    "lstm": (LSTMConfig, LSTMAutoencoder),
    "lstm_attention": (LSTMAttentionConfig, LSTMAttentionAutoencoder),
}


def make_config(architecture: str, config: dict[str, Any] | None = None) -> Any:
    """The architecture's config dataclass from a dict; unknown keys are an error, not ignored."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {sorted(ARCHITECTURES)}")
    config_class, _ = ARCHITECTURES[architecture]
    config = dict(config or {})
    known = {field.name for field in dataclasses.fields(config_class)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"{architecture} has no setting(s) {unknown}; it takes {sorted(known)}")
    return config_class(**config)


def build_model(architecture: str, config: dict[str, Any] | None = None) -> Autoencoder:
    """A fresh model of `architecture` with `config` overriding its defaults."""
    config = make_config(architecture, config)  # raises on an unknown architecture or setting
    _, model_class = ARCHITECTURES[architecture]
    return model_class(config)


__all__ = ["ARCHITECTURES", "Autoencoder", "build_model", "make_config", "ConvFCConfig", "ConvFCAutoencoder"]
