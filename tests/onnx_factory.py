"""Tiny but real ONNX models written with onnx.helper, for service tests that need no torch: our
autoencoders' format, and a foreign image encoder that only names its input in flat metadata."""

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
        _save(graph, card.to_metadata(), version_dir / filename)
    return version_dir


# What a foreign RGB encoder's exporter would write: ImageNet normalisation, and which of its two
# outputs is the embedding. Tests drop or change keys to see each refused by name.
FOREIGN_METADATA = {
    model_format.CHANNELS_KEY: "3",
    model_format.HEIGHT_KEY: "32",
    model_format.WIDTH_KEY: "32",
    model_format.MEAN_KEY: "0.485,0.456,0.406",
    model_format.STD_KEY: "0.229,0.224,0.225",
    model_format.EMBEDDING_DIM_KEY: "16",
    model_format.OUTPUT_KEY: "pooled",
}


def write_foreign_model(
    repository: Path, name: str = "foreign", version: int = 1, *, metadata: dict[str, str] = FOREIGN_METADATA, batch: str | int = "N", seed: int = 0
) -> np.ndarray:
    """An encoder as another toolkit exports one: input `pixel_values` (batch, 3, 32, 32), outputs
    `pooled` = GlobalAveragePool -> Flatten -> @ W, (batch, 16), and `channel_means` (batch, 3);
    no decoder, no Lookalike card, only `metadata`. Returns W (3, 16), to recompute it in numpy."""
    weights = np.random.default_rng(seed).normal(size=(3, 16)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["pixel_values"], ["averaged"]),  # (B, 3, 1, 1)
            helper.make_node("Flatten", ["averaged"], ["channel_means"], axis=1),  # (B, 3)
            helper.make_node("MatMul", ["channel_means", "W"], ["pooled"]),  # (B, 16)
        ],
        "foreign_encoder",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, [batch, 3, 32, 32])],
        [
            helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [batch, 16]),
            helper.make_tensor_value_info("channel_means", TensorProto.FLOAT, [batch, 3]),
        ],
        [numpy_helper.from_array(weights, "W")],
    )
    version_dir = model_format.version_dir(repository, name, version)
    version_dir.mkdir(parents=True)
    _save(graph, metadata, version_dir / model_format.ENCODER_FILE)
    return weights


def _save(graph: onnx.GraphProto, metadata: dict[str, str], path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    onnx.save(model, path)
