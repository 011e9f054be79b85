"""What a baseline is: an encoder (and maybe a decoder) fitted in closed form, not by gradient descent.

Baselines go through the same checkpoint -> ONNX -> encoder service -> search path as the
autoencoders, so the study compares them on equal terms and a catalogue can be served with one.
Their state lives in buffers, so checkpoints and ONNX export treat them like any weights.
"""

from __future__ import annotations

import torch

from training.models.autoencoder import Autoencoder


class Baseline(Autoencoder):
    """An Autoencoder whose `fit` sets it from the training images; `decoder` may be None."""

    decoder: torch.nn.Module | None

    def fit(self, images: torch.Tensor) -> None:
        """Sets the model from preprocessed training images (N, C, H, W); the default has nothing to fit."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        assert self.decoder is not None, f"{self.architecture} has no decoder: it cannot rebuild images"
        return super().forward(images)


class Flatten(torch.nn.Module):
    """images (B, C, H, W) -> vectors (B, C*H*W), checking the input size first."""

    def __init__(self, input_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.input_shape = input_shape

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        assert tuple(images.shape[1:]) == self.input_shape, (
            f"expected images (B, {', '.join(map(str, self.input_shape))}), got {tuple(images.shape)}: "
            "preprocess with the model's Preprocessing spec"
        )
        return images.flatten(1)  # (B, C*H*W)


class Unflatten(torch.nn.Module):
    def __init__(self, output_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.output_shape = output_shape

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        return vectors.reshape(-1, *self.output_shape)  # (B, C, H, W)
