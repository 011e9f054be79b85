"""Tiny but real ONNX autoencoders written with onnx.helper, for service tests that need no torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lookalike import model_format
from lookalike.model_format import ModelCard
from lookalike.preprocessing import Preprocessing


def write_linear_model(
    repository: Path, name: str = "tiny", version: int = 1, *, spec: Preprocessing = Preprocessing(), dim: int = 16, seed: int = 0
) -> Path:
    """A random linear encoder (pixels @ W) and its transpose as decoder, with Lookalike metadata."""
    rng = np.random.default_rng(seed)
    pixels = int(np.prod(spec.shape))
    weights = (rng.normal(size=(pixels, dim)) / np.sqrt(pixels)).astype(np.float32)
    card = ModelCard(
        name=name,
        version=version,
        architecture="linear_test",
        config={},
        embedding_dim=dim,
        metric="cosine",
        preprocessing=spec,
        data_hash="",
        trained_at="",
        metrics={},
        parity_max_abs_error=0.0,
    )
    version_dir = model_format.version_dir(repository, name, version)
    version_dir.mkdir(parents=True)
    encoder = helper.make_graph(
        [
            helper.make_node("Flatten", ["images"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "W"], ["embeddings"]),
        ],
        "encoder",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", *spec.shape])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", dim])],
        [numpy_helper.from_array(weights, "W")],
    )
    shape = np.array([-1, *spec.shape], dtype=np.int64)
    decoder = helper.make_graph(
        [
            helper.make_node("MatMul", ["embeddings", "WT"], ["flat"]),
            helper.make_node("Reshape", ["flat", "shape"], ["images"]),
        ],
        "decoder",
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", dim])],
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", *spec.shape])],
        [numpy_helper.from_array(np.ascontiguousarray(weights.T), "WT"), numpy_helper.from_array(shape, "shape")],
    )
    for graph, filename in ((encoder, model_format.ENCODER_FILE), (decoder, model_format.DECODER_FILE)):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        helper.set_model_props(model, card.to_metadata())
        onnx.checker.check_model(model)
        onnx.save(model, version_dir / filename)
    return version_dir
