"""One model version loaded in ONNX Runtime: its encoder, optional decoder and metadata."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import onnxruntime

from lookalike.errors import FailedPrecondition
from lookalike.preprocessing import Preprocessing

log = logging.getLogger(__name__)

METRICS = ("cosine", "dot_product", "squared_l2")


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """What the model files say about themselves (their `metadata_props`)."""

    name: str
    version: int
    architecture: str
    embedding_dim: int
    metric: str
    preprocessing: Preprocessing
    extra: dict


class OnnxModel:
    """Encoder (and decoder) sessions of `models/<name>/<version>/`; thread-safe, as ORT sessions are."""

    def __init__(self, version_dir: Path, providers: list[str], intra_op_threads: int = 0) -> None:
        self.version_dir = version_dir
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        self.encoder = onnxruntime.InferenceSession(str(version_dir / "encoder.onnx"), options, providers=providers)
        decoder_path = version_dir / "decoder.onnx"
        self.decoder = (
            onnxruntime.InferenceSession(str(decoder_path), options, providers=providers) if decoder_path.exists() else None
        )
        self.card = _read_card(self.encoder, version_dir)
        self.execution_provider = self.encoder.get_providers()[0]
        self._check_shapes()

    def embed(self, images: np.ndarray) -> np.ndarray:
        """(B, C, H, W) float32 preprocessed images -> (B, D) float32 embeddings."""
        assert images.shape[1:] == self.card.preprocessing.shape, "callers validate shapes first"
        (embeddings,) = self.encoder.run(["embeddings"], {"images": images})
        return embeddings

    def reconstruct(self, embeddings: np.ndarray) -> np.ndarray:
        """(B, D) embeddings -> (B, C, H, W) images in preprocessed space."""
        if self.decoder is None:
            raise FailedPrecondition(f"model {self.card.name} v{self.card.version} has no decoder, so it cannot rebuild images")
        (images,) = self.decoder.run(["images"], {"embeddings": embeddings})
        return images

    def _check_shapes(self) -> None:
        spec = self.card.preprocessing
        (model_input,) = self.encoder.get_inputs()
        # Fail at load, not on the first request, when the metadata and the graph disagree.
        if model_input.name != "images" or list(model_input.shape[1:]) != list(spec.shape):
            raise ValueError(
                f"{self.version_dir}: encoder input {model_input.name}{model_input.shape} does not match "
                f"the preprocessing shape {spec.shape}"
            )
        probe = np.zeros((1, *spec.shape), np.float32)
        width = self.embed(probe).shape[1]
        if width != self.card.embedding_dim:
            raise ValueError(f"{self.version_dir}: encoder gives {width} values, metadata says {self.card.embedding_dim}")


def _read_card(session: onnxruntime.InferenceSession, version_dir: Path) -> ModelCard:
    props = session.get_modelmeta().custom_metadata_map
    missing = {"lookalike.preprocessing", "lookalike.model"} - props.keys()
    if missing:
        raise ValueError(f"{version_dir}/encoder.onnx lacks metadata {sorted(missing)}; export it with `lookalike export`")
    info = json.loads(props["lookalike.model"])
    metric = info.get("metric", "cosine")
    if metric not in METRICS:
        raise ValueError(f"{version_dir}: unknown metric {metric!r}")
    return ModelCard(
        name=version_dir.parent.name,
        version=int(version_dir.name),
        architecture=str(info.get("architecture", "")),
        embedding_dim=int(info["embedding_dim"]),
        metric=metric,
        preprocessing=Preprocessing.from_json(props["lookalike.preprocessing"]),
        extra=info,
    )
