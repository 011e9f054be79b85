"""One model version loaded in ONNX Runtime: its encoder, optional decoder and metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime

from lookalike import model_format
from lookalike.errors import FailedPrecondition, Reason
from lookalike.model_format import ModelCard


class OnnxModel:
    """Encoder (and decoder) sessions of `models/<name>/<version>/`; thread-safe, as ORT sessions are."""

    def __init__(self, version_dir: Path, providers: list[str], intra_op_threads: int = 0, *, spinning: bool = True) -> None:
        """`spinning` False stops idle intra-op threads from spinning, for a process whose other
        threads need the cores (encoder_service/thread_plan.py)."""
        self.version_dir = version_dir
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        encoder_path, decoder_path = version_dir / model_format.ENCODER_FILE, version_dir / model_format.DECODER_FILE
        self.encoder = onnxruntime.InferenceSession(str(encoder_path), options, providers=providers)
        self.decoder = (
            onnxruntime.InferenceSession(str(decoder_path), options, providers=providers) if decoder_path.exists() else None
        )
        self.card = _read_card(self.encoder, version_dir)
        # What runs, not what was asked: ONNX Runtime falls back to CPU when CUDA fails to start.
        self.execution_provider = self.encoder.get_providers()[0]
        self.requested_provider = providers[0]
        self._check_shapes()

    def embed(self, images: np.ndarray) -> np.ndarray:
        """(B, C, H, W) float32 preprocessed images -> (B, D) float32 embeddings."""
        assert images.shape[1:] == self.card.preprocessing.shape, "callers validate shapes first"
        (embeddings,) = self.encoder.run(["embeddings"], {"images": images})
        return embeddings

    def reconstruct(self, embeddings: np.ndarray) -> np.ndarray:
        """(B, D) embeddings -> (B, C, H, W) images in preprocessed space."""
        if self.decoder is None:
            raise FailedPrecondition(
                f"model {self.card.name} v{self.card.version} has no decoder, so it cannot rebuild images",
                reason=Reason.MODEL_HAS_NO_DECODER,
                metadata={"model": self.card.name, "version": self.card.version},
            )
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
    """The encoder's card, addressed by its folder; ValueError naming the file when it is not valid."""
    props = session.get_modelmeta().custom_metadata_map
    name, version = version_dir.parent.name, model_format.version_of(version_dir.name)
    try:
        return ModelCard.from_metadata(props, name, version)
    except ValueError as error:
        raise ValueError(f"{version_dir / model_format.ENCODER_FILE}: {error}") from None
