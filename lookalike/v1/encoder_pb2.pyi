from lookalike.v1 import images_pb2 as _images_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EmbeddingEncoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EMBEDDING_ENCODING_UNSPECIFIED: _ClassVar[EmbeddingEncoding]
    EMBEDDING_ENCODING_PACKED_FLOAT32: _ClassVar[EmbeddingEncoding]

class FingerprintKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FINGERPRINT_KIND_UNSPECIFIED: _ClassVar[FingerprintKind]
    FINGERPRINT_KIND_STORED: _ClassVar[FingerprintKind]
    FINGERPRINT_KIND_QUERY: _ClassVar[FingerprintKind]

class ModelState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_STATE_UNSPECIFIED: _ClassVar[ModelState]
    MODEL_STATE_SERVING: _ClassVar[ModelState]
    MODEL_STATE_FAILED: _ClassVar[ModelState]
EMBEDDING_ENCODING_UNSPECIFIED: EmbeddingEncoding
EMBEDDING_ENCODING_PACKED_FLOAT32: EmbeddingEncoding
FINGERPRINT_KIND_UNSPECIFIED: FingerprintKind
FINGERPRINT_KIND_STORED: FingerprintKind
FINGERPRINT_KIND_QUERY: FingerprintKind
MODEL_STATE_UNSPECIFIED: ModelState
MODEL_STATE_SERVING: ModelState
MODEL_STATE_FAILED: ModelState

class ReportModelUseRequest(_message.Message):
    __slots__ = ("user", "uses", "ttl_seconds")
    USER_FIELD_NUMBER: _ClassVar[int]
    USES_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    user: str
    uses: _containers.RepeatedCompositeFieldContainer[ModelUse]
    ttl_seconds: int
    def __init__(self, user: _Optional[str] = ..., uses: _Optional[_Iterable[_Union[ModelUse, _Mapping]]] = ..., ttl_seconds: _Optional[int] = ...) -> None: ...

class ModelUse(_message.Message):
    __slots__ = ("model", "collections")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    model: _images_pb2.ModelRef
    collections: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[_Union[_images_pb2.ModelRef, _Mapping]] = ..., collections: _Optional[_Iterable[str]] = ...) -> None: ...

class ReportModelUseResponse(_message.Message):
    __slots__ = ("not_served",)
    NOT_SERVED_FIELD_NUMBER: _ClassVar[int]
    not_served: _containers.RepeatedCompositeFieldContainer[_images_pb2.ModelRef]
    def __init__(self, not_served: _Optional[_Iterable[_Union[_images_pb2.ModelRef, _Mapping]]] = ...) -> None: ...

class LoadModelRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: _images_pb2.ModelRef
    def __init__(self, model: _Optional[_Union[_images_pb2.ModelRef, _Mapping]] = ...) -> None: ...

class LoadModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: ModelInfo
    def __init__(self, model: _Optional[_Union[ModelInfo, _Mapping]] = ...) -> None: ...

class UnloadModelRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: _images_pb2.ModelRef
    def __init__(self, model: _Optional[_Union[_images_pb2.ModelRef, _Mapping]] = ...) -> None: ...

class UnloadModelResponse(_message.Message):
    __slots__ = ("unloaded",)
    UNLOADED_FIELD_NUMBER: _ClassVar[int]
    unloaded: _containers.RepeatedCompositeFieldContainer[_images_pb2.ModelRef]
    def __init__(self, unloaded: _Optional[_Iterable[_Union[_images_pb2.ModelRef, _Mapping]]] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("model", "images", "fingerprints", "embedding_encoding")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINTS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_ENCODING_FIELD_NUMBER: _ClassVar[int]
    model: _images_pb2.ModelRef
    images: _containers.RepeatedCompositeFieldContainer[_images_pb2.Image]
    fingerprints: FingerprintKind
    embedding_encoding: EmbeddingEncoding
    def __init__(self, model: _Optional[_Union[_images_pb2.ModelRef, _Mapping]] = ..., images: _Optional[_Iterable[_Union[_images_pb2.Image, _Mapping]]] = ..., fingerprints: _Optional[_Union[FingerprintKind, str]] = ..., embedding_encoding: _Optional[_Union[EmbeddingEncoding, str]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("embeddings", "model", "fingerprints", "packed_embeddings", "embedding_dim")
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINTS_FIELD_NUMBER: _ClassVar[int]
    PACKED_EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_DIM_FIELD_NUMBER: _ClassVar[int]
    embeddings: _containers.RepeatedCompositeFieldContainer[_images_pb2.Embedding]
    model: _images_pb2.ModelRef
    fingerprints: _containers.RepeatedScalarFieldContainer[bytes]
    packed_embeddings: bytes
    embedding_dim: int
    def __init__(self, embeddings: _Optional[_Iterable[_Union[_images_pb2.Embedding, _Mapping]]] = ..., model: _Optional[_Union[_images_pb2.ModelRef, _Mapping]] = ..., fingerprints: _Optional[_Iterable[bytes]] = ..., packed_embeddings: _Optional[bytes] = ..., embedding_dim: _Optional[int] = ...) -> None: ...

class EmbedStreamRequest(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: EmbedRequest
    def __init__(self, request: _Optional[_Union[EmbedRequest, _Mapping]] = ...) -> None: ...

class EmbedStreamResponse(_message.Message):
    __slots__ = ("response",)
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    response: EmbedResponse
    def __init__(self, response: _Optional[_Union[EmbedResponse, _Mapping]] = ...) -> None: ...

class ReconstructRequest(_message.Message):
    __slots__ = ("model", "embeddings")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    model: _images_pb2.ModelRef
    embeddings: _containers.RepeatedCompositeFieldContainer[_images_pb2.Embedding]
    def __init__(self, model: _Optional[_Union[_images_pb2.ModelRef, _Mapping]] = ..., embeddings: _Optional[_Iterable[_Union[_images_pb2.Embedding, _Mapping]]] = ...) -> None: ...

class ReconstructResponse(_message.Message):
    __slots__ = ("png_images", "model")
    PNG_IMAGES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    png_images: _containers.RepeatedScalarFieldContainer[bytes]
    model: _images_pb2.ModelRef
    def __init__(self, png_images: _Optional[_Iterable[bytes]] = ..., model: _Optional[_Union[_images_pb2.ModelRef, _Mapping]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: _images_pb2.ModelRef
    def __init__(self, model: _Optional[_Union[_images_pb2.ModelRef, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model", "channels", "height", "width", "embedding_dim", "metric", "architecture", "execution_provider", "has_decoder", "preprocessing_json", "requested_execution_provider", "state", "state_message", "used_by")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_DIM_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    HAS_DECODER_FIELD_NUMBER: _ClassVar[int]
    PREPROCESSING_JSON_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    USED_BY_FIELD_NUMBER: _ClassVar[int]
    model: _images_pb2.ModelRef
    channels: int
    height: int
    width: int
    embedding_dim: int
    metric: _images_pb2.Metric
    architecture: str
    execution_provider: str
    has_decoder: bool
    preprocessing_json: str
    requested_execution_provider: str
    state: ModelState
    state_message: str
    used_by: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[_Union[_images_pb2.ModelRef, _Mapping]] = ..., channels: _Optional[int] = ..., height: _Optional[int] = ..., width: _Optional[int] = ..., embedding_dim: _Optional[int] = ..., metric: _Optional[_Union[_images_pb2.Metric, str]] = ..., architecture: _Optional[str] = ..., execution_provider: _Optional[str] = ..., has_decoder: _Optional[bool] = ..., preprocessing_json: _Optional[str] = ..., requested_execution_provider: _Optional[str] = ..., state: _Optional[_Union[ModelState, str]] = ..., state_message: _Optional[str] = ..., used_by: _Optional[_Iterable[str]] = ...) -> None: ...
