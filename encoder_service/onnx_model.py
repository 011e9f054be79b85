"""One model version loaded in ONNX Runtime: its encoder, optional decoder and metadata.

The encoder is any ONNX graph with one float32 input (batch, C, H, W), its batch axis dynamic,
and an output (batch, D): our exports (input `images`, output `embeddings`) and foreign image
encoders alike (lookalike/model_format.py reads either's metadata). What the metadata says is
checked against the graph here, at load, so a model that cannot be fed is refused with why
instead of failing its first caller.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime

from encoder_service.execution_providers import session_providers
from lookalike import model_format
from lookalike.errors import FailedPrecondition, Reason
from lookalike.model_format import ModelCard


class OnnxModel:
    """Encoder (and decoder) sessions of `models/<name>/<version>/`; thread-safe, as ORT sessions are."""

    def __init__(
        self, version_dir: Path, providers: list[str], intra_op_threads: int = 0, *, spinning: bool = True, engine_cache: Path = Path("tensorrt-cache")
    ) -> None:
        """`spinning` False stops idle intra-op threads from spinning, for a process whose other
        threads need the cores (encoder_service/thread_plan.py)."""
        self.version_dir = version_dir
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        if not spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        encoder_path, decoder_path = version_dir / model_format.ENCODER_FILE, version_dir / model_format.DECODER_FILE
        engines = str(engine_cache / version_dir.parent.name / version_dir.name)  # TensorRT's, when it runs
        self.encoder = onnxruntime.InferenceSession(str(encoder_path), options, providers=session_providers(providers, engines))
        self.decoder = (
            onnxruntime.InferenceSession(str(decoder_path), options, providers=session_providers(providers, engines)) if decoder_path.exists() else None
        )
        self.card = _read_card(self.encoder, version_dir)
        # What runs, not what was asked: ONNX Runtime falls back to CPU when CUDA fails to start.
        self.execution_provider = self.encoder.get_providers()[0]
        self.requested_provider = providers[0]
        self.input_name = self._checked_input()
        self.output_name = self._checked_output()

    def embed(self, images: np.ndarray) -> np.ndarray:
        """(B, C, H, W) float32 preprocessed images -> (B, D) float32 embeddings."""
        assert images.shape[1:] == self.card.preprocessing.shape, "callers validate shapes first"
        (embeddings,) = self.encoder.run([self.output_name], {self.input_name: images})
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

    def _checked_input(self) -> str:
        """The encoder's one input, if it takes what the metadata describes: float32 (batch, C, H, W)
        with a dynamic batch axis. A dimension the graph leaves symbolic is the metadata's to set."""
        spec = self.card.preprocessing
        inputs = self.encoder.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"the encoder must take one input, the images; it takes {[i.name for i in inputs]}")
        (model_input,) = inputs
        where = f"encoder input {model_input.name!r} {model_input.type}{model_input.shape}"
        if model_input.type != "tensor(float)":
            raise ValueError(f"{where} must be float32 (tensor(float)): Lookalike sends preprocessed float pixels")
        if len(model_input.shape) != 4:
            raise ValueError(f"{where} must be NCHW, 4 dimensions: (batch, channels, height, width)")
        # Batching merges callers into one run and a request holds up to max_batch_size images: a
        # graph exported for batch 1 cannot take them. Re-export with a dynamic batch axis.
        if isinstance(model_input.shape[0], int):
            raise ValueError(f"{where} has a fixed batch size; Lookalike needs a dynamic batch axis (re-export with one)")
        for axis, (dim, wanted) in enumerate(zip(model_input.shape[1:], spec.shape), start=1):
            if isinstance(dim, int) and dim != wanted:
                raise ValueError(f"{where} does not match the metadata's input (channels, height, width) {spec.shape} at axis {axis}")
        return model_input.name

    def _checked_output(self) -> str:
        """The output holding the embeddings: the one the metadata names, else the graph's only
        one; run once on a zero image to check that it gives (1, embedding_dim)."""
        outputs = [output.name for output in self.encoder.get_outputs()]
        name = self.card.output or (outputs[0] if len(outputs) == 1 else "")
        if name not in outputs:
            wanted = f"has no output {name!r}" if name else "has several outputs; name the embeddings' in 'lookalike.output'"
            raise ValueError(f"the encoder {wanted}; its outputs: {outputs}")
        (got,) = self.encoder.run([name], {self.input_name: np.zeros((1, *self.card.preprocessing.shape), np.float32)})
        if got.shape != (1, self.card.embedding_dim) or got.dtype != np.float32:
            raise ValueError(
                f"encoder output {name!r} gives {got.dtype}{list(got.shape)} for one image; the metadata says "
                f"float32 (batch, {self.card.embedding_dim})"
            )
        return name


def _read_card(session: onnxruntime.InferenceSession, version_dir: Path) -> ModelCard:
    """The encoder's card, addressed by its folder; ValueError naming the file when it is not valid."""
    props = session.get_modelmeta().custom_metadata_map
    name, version = version_dir.parent.name, model_format.version_of(version_dir.name)
    try:
        return model_format.read_card(props, name, version)
    except ValueError as error:
        raise ValueError(f"{version_dir / model_format.ENCODER_FILE}: {error}") from None
