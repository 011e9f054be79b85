"""The model repository format: the contract between training and the encoder service.

(Skeleton; the layout, metadata keys and model card move here next.)
"""

from __future__ import annotations

import re

from lookalike.v1 import images_pb2

# Model names: what ModelRef.name documents. No leading '.', '_' or '-': hidden and temp folders start so.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", re.ASCII)

METRICS = ("cosine", "dot_product", "squared_l2")
METRIC_ENUM = {
    "cosine": images_pb2.METRIC_COSINE,
    "dot_product": images_pb2.METRIC_DOT_PRODUCT,
    "squared_l2": images_pb2.METRIC_SQUARED_L2,
}
METRIC_NAME = {enum: name for name, enum in METRIC_ENUM.items()}


def is_model_name(name: str) -> bool:
    return isinstance(name, str) and MODEL_NAME.fullmatch(name) is not None
