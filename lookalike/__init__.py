"""Lookalike: search by image. The client package: API stubs, typed clients, the errors as data,
the one image preprocessing and contact sheets. It imports no server, ONNX Runtime, ScaNN or torch."""

from lookalike.client import Embedded, EncoderClient, ItemToUpsert, Neighbor, SearchClient, SearchResults
from lookalike.errors import FieldViolation, LookalikeError, Reason

__all__ = [
    "Embedded",
    "EncoderClient",
    "FieldViolation",
    "ItemToUpsert",
    "LookalikeError",
    "Neighbor",
    "Reason",
    "SearchClient",
    "SearchResults",
]
