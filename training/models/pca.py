"""PCA: the linear autoencoder in closed form, projections on the top principal components.

A fully connected autoencoder without non-linearities learns the same subspace; anything the
neural models gain over this row comes from their non-linearity and their training objective.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from training.models.baseline import Baseline, Flatten, Unflatten


@dataclasses.dataclass
class PCAConfig:
    height: int = 28  # input height, pixels; must equal the Preprocessing's
    width: int = 28  # input width, pixels
    channels: int = 1  # 1 = grayscale, 3 = RGB
    embedding_dim: int = 32  # principal components kept

    def __post_init__(self) -> None:
        assert 0 < self.embedding_dim <= self.channels * self.height * self.width, (
            "PCA keeps between 1 and C*H*W components"
        )


class Project(nn.Module):
    def __init__(self, features: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(features))  # (F,)
        self.register_buffer("components", torch.zeros(dim, features))  # (D, F), orthonormal rows

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        return (vectors - self.mean) @ self.components.T  # (B, F) -> (B, D)


class Reconstruct(Project):
    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return embeddings @ self.components + self.mean  # (B, D) -> (B, F)


class PCA(Baseline):
    architecture = "pca"

    def __init__(self, config: PCAConfig) -> None:
        super().__init__(config)
        shape = (config.channels, config.height, config.width)
        features = math.prod(shape)
        # Encoder and decoder each hold the fitted axes, so each exports as a self-contained ONNX file.
        self.encoder = nn.Sequential(Flatten(shape), Project(features, config.embedding_dim))
        self.decoder = nn.Sequential(Reconstruct(features, config.embedding_dim), Unflatten(shape))

    def fit(self, images: torch.Tensor) -> None:
        vectors = images.flatten(1).double()  # (N, F); float64 keeps small components accurate
        assert len(vectors) >= self.config.embedding_dim, "PCA needs at least as many images as components"
        mean = vectors.mean(0)
        # Right singular vectors of the centred data are the principal axes, largest variance first.
        _, _, vh = torch.linalg.svd(vectors - mean, full_matrices=False)  # vh (min(N, F), F)
        for part in (self.encoder[1], self.decoder[0]):
            part.mean.copy_(mean.float())
            part.components.copy_(vh[: self.config.embedding_dim].float())
