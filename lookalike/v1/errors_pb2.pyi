from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_REASON_UNSPECIFIED: _ClassVar[ErrorReason]
    REQUIRED_FIELD_MISSING: _ClassVar[ErrorReason]
    BATCH_EMPTY: _ClassVar[ErrorReason]
    BATCH_TOO_LARGE: _ClassVar[ErrorReason]
    K_OUT_OF_RANGE: _ClassVar[ErrorReason]
    IMAGE_EMPTY: _ClassVar[ErrorReason]
    IMAGE_UNDECODABLE: _ClassVar[ErrorReason]
    IMAGE_FORMAT_UNSUPPORTED: _ClassVar[ErrorReason]
    IMAGE_TOO_LARGE: _ClassVar[ErrorReason]
    TENSOR_SHAPE_MISMATCH: _ClassVar[ErrorReason]
    VALUES_NOT_FINITE: _ClassVar[ErrorReason]
    DIMENSION_MISMATCH: _ClassVar[ErrorReason]
    VECTOR_ZERO_NORM: _ClassVar[ErrorReason]
    MODEL_MISMATCH: _ClassVar[ErrorReason]
    ID_INVALID: _ClassVar[ErrorReason]
    ID_DUPLICATE: _ClassVar[ErrorReason]
    TAG_INVALID: _ClassVar[ErrorReason]
    URI_INVALID: _ClassVar[ErrorReason]
    NAME_INVALID: _ClassVar[ErrorReason]
    DIMENSION_INVALID: _ClassVar[ErrorReason]
    METRIC_INVALID: _ClassVar[ErrorReason]
    MODEL_NOT_FOUND: _ClassVar[ErrorReason]
    MODEL_HAS_NO_DECODER: _ClassVar[ErrorReason]
    MODELS_LOADING: _ClassVar[ErrorReason]
    COLLECTION_NOT_FOUND: _ClassVar[ErrorReason]
    COLLECTION_EXISTS: _ClassVar[ErrorReason]
    COLLECTION_HAS_NO_MODEL: _ClassVar[ErrorReason]
    COLLECTION_DAMAGED: _ClassVar[ErrorReason]
    ITEM_NOT_FOUND: _ClassVar[ErrorReason]
    STORAGE_FULL: _ClassVar[ErrorReason]
    ENCODER_UNAVAILABLE: _ClassVar[ErrorReason]
    ENCODER_FAILED: _ClassVar[ErrorReason]
    SHUTTING_DOWN: _ClassVar[ErrorReason]
    DEADLINE_TOO_SHORT: _ClassVar[ErrorReason]
ERROR_REASON_UNSPECIFIED: ErrorReason
REQUIRED_FIELD_MISSING: ErrorReason
BATCH_EMPTY: ErrorReason
BATCH_TOO_LARGE: ErrorReason
K_OUT_OF_RANGE: ErrorReason
IMAGE_EMPTY: ErrorReason
IMAGE_UNDECODABLE: ErrorReason
IMAGE_FORMAT_UNSUPPORTED: ErrorReason
IMAGE_TOO_LARGE: ErrorReason
TENSOR_SHAPE_MISMATCH: ErrorReason
VALUES_NOT_FINITE: ErrorReason
DIMENSION_MISMATCH: ErrorReason
VECTOR_ZERO_NORM: ErrorReason
MODEL_MISMATCH: ErrorReason
ID_INVALID: ErrorReason
ID_DUPLICATE: ErrorReason
TAG_INVALID: ErrorReason
URI_INVALID: ErrorReason
NAME_INVALID: ErrorReason
DIMENSION_INVALID: ErrorReason
METRIC_INVALID: ErrorReason
MODEL_NOT_FOUND: ErrorReason
MODEL_HAS_NO_DECODER: ErrorReason
MODELS_LOADING: ErrorReason
COLLECTION_NOT_FOUND: ErrorReason
COLLECTION_EXISTS: ErrorReason
COLLECTION_HAS_NO_MODEL: ErrorReason
COLLECTION_DAMAGED: ErrorReason
ITEM_NOT_FOUND: ErrorReason
STORAGE_FULL: ErrorReason
ENCODER_UNAVAILABLE: ErrorReason
ENCODER_FAILED: ErrorReason
SHUTTING_DOWN: ErrorReason
DEADLINE_TOO_SHORT: ErrorReason
