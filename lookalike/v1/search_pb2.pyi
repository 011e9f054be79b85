from google.protobuf import field_mask_pb2 as _field_mask_pb2
from lookalike.v1 import errors_pb2 as _errors_pb2
from lookalike.v1 import images_pb2 as _images_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CopyOrder(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COPY_ORDER_UNSPECIFIED: _ClassVar[CopyOrder]
    COPY_ORDER_EARLIEST_FIRST: _ClassVar[CopyOrder]

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_EXACT_COPY: _ClassVar[Verdict]
    VERDICT_EDITED_COPY: _ClassVar[Verdict]
    VERDICT_SIMILAR: _ClassVar[Verdict]
    VERDICT_UNRELATED: _ClassVar[Verdict]

class Evidence(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVIDENCE_UNSPECIFIED: _ClassVar[Evidence]
    EVIDENCE_HASH: _ClassVar[Evidence]
    EVIDENCE_LOCAL_FEATURES: _ClassVar[Evidence]
    EVIDENCE_EMBEDDING: _ClassVar[Evidence]
COPY_ORDER_UNSPECIFIED: CopyOrder
COPY_ORDER_EARLIEST_FIRST: CopyOrder
VERDICT_UNSPECIFIED: Verdict
VERDICT_EXACT_COPY: Verdict
VERDICT_EDITED_COPY: Verdict
VERDICT_SIMILAR: Verdict
VERDICT_UNRELATED: Verdict
EVIDENCE_UNSPECIFIED: Evidence
EVIDENCE_HASH: Evidence
EVIDENCE_LOCAL_FEATURES: Evidence
EVIDENCE_EMBEDDING: Evidence

class ExportCollectionRequest(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    def __init__(self, collection: _Optional[str] = ...) -> None: ...

class BackupHeader(_message.Message):
    __slots__ = ("collection", "sequence", "items", "size_bytes", "sha256")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    collection: Collection
    sequence: int
    items: int
    size_bytes: int
    sha256: str
    def __init__(self, collection: _Optional[_Union[Collection, _Mapping]] = ..., sequence: _Optional[int] = ..., items: _Optional[int] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class CollectionBackupChunk(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: BackupHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[BackupHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class ImportCollectionHeader(_message.Message):
    __slots__ = ("name", "backup")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BACKUP_FIELD_NUMBER: _ClassVar[int]
    name: str
    backup: BackupHeader
    def __init__(self, name: _Optional[str] = ..., backup: _Optional[_Union[BackupHeader, _Mapping]] = ...) -> None: ...

class ImportCollectionRequest(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: ImportCollectionHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[ImportCollectionHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class ImportCollectionResponse(_message.Message):
    __slots__ = ("collection",)
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    collection: Collection
    def __init__(self, collection: _Optional[_Union[Collection, _Mapping]] = ...) -> None: ...

class StartReindexRequest(_message.Message):
    __slots__ = ("collection", "model", "target_collection", "switch_alias", "policy", "report_sample", "label_prefix", "max_images_per_second")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TARGET_COLLECTION_FIELD_NUMBER: _ClassVar[int]
    SWITCH_ALIAS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    REPORT_SAMPLE_FIELD_NUMBER: _ClassVar[int]
    LABEL_PREFIX_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    collection: str
    model: _images_pb2.ModelRef
    target_collection: str
    switch_alias: str
    policy: MigrationPolicy
    report_sample: int
    label_prefix: str
    max_images_per_second: float
    def __init__(self, collection: _Optional[str] = ..., model: _Optional[_Union[_images_pb2.ModelRef, _Mapping]] = ..., target_collection: _Optional[str] = ..., switch_alias: _Optional[str] = ..., policy: _Optional[_Union[MigrationPolicy, _Mapping]] = ..., report_sample: _Optional[int] = ..., label_prefix: _Optional[str] = ..., max_images_per_second: _Optional[float] = ...) -> None: ...

class MigrationPolicy(_message.Message):
    __slots__ = ("require_no_worse_copy_recall", "max_copy_recall_drop")
    REQUIRE_NO_WORSE_COPY_RECALL_FIELD_NUMBER: _ClassVar[int]
    MAX_COPY_RECALL_DROP_FIELD_NUMBER: _ClassVar[int]
    require_no_worse_copy_recall: bool
    max_copy_recall_drop: float
    def __init__(self, require_no_worse_copy_recall: _Optional[bool] = ..., max_copy_recall_drop: _Optional[float] = ...) -> None: ...

class Operation(_message.Message):
    __slots__ = ("name", "state", "done", "source_collection", "target_collection", "model", "phase", "items_total", "items_copied", "items_without_source", "ids_without_source", "report", "switch_alias", "switched", "switch_refused", "error_message", "error_reason", "started_at_unix_ms", "updated_at_unix_ms")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Operation.State]
        STATE_RUNNING: _ClassVar[Operation.State]
        STATE_SUCCEEDED: _ClassVar[Operation.State]
        STATE_FAILED: _ClassVar[Operation.State]
        STATE_CANCELLED: _ClassVar[Operation.State]
    STATE_UNSPECIFIED: Operation.State
    STATE_RUNNING: Operation.State
    STATE_SUCCEEDED: Operation.State
    STATE_FAILED: Operation.State
    STATE_CANCELLED: Operation.State
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_COLLECTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_COLLECTION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ITEMS_COPIED_FIELD_NUMBER: _ClassVar[int]
    ITEMS_WITHOUT_SOURCE_FIELD_NUMBER: _ClassVar[int]
    IDS_WITHOUT_SOURCE_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    SWITCH_ALIAS_FIELD_NUMBER: _ClassVar[int]
    SWITCHED_FIELD_NUMBER: _ClassVar[int]
    SWITCH_REFUSED_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_REASON_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: Operation.State
    done: bool
    source_collection: str
    target_collection: str
    model: _images_pb2.ModelRef
    phase: str
    items_total: int
    items_copied: int
    items_without_source: int
    ids_without_source: _containers.RepeatedScalarFieldContainer[str]
    report: MigrationReport
    switch_alias: str
    switched: bool
    switch_refused: str
    error_message: str
    error_reason: str
    started_at_unix_ms: int
    updated_at_unix_ms: int
    def __init__(self, name: _Optional[str] = ..., state: _Optional[_Union[Operation.State, str]] = ..., done: _Optional[bool] = ..., source_collection: _Optional[str] = ..., target_collection: _Optional[str] = ..., model: _Optional[_Union[_images_pb2.ModelRef, _Mapping]] = ..., phase: _Optional[str] = ..., items_total: _Optional[int] = ..., items_copied: _Optional[int] = ..., items_without_source: _Optional[int] = ..., ids_without_source: _Optional[_Iterable[str]] = ..., report: _Optional[_Union[MigrationReport, _Mapping]] = ..., switch_alias: _Optional[str] = ..., switched: _Optional[bool] = ..., switch_refused: _Optional[str] = ..., error_message: _Optional[str] = ..., error_reason: _Optional[str] = ..., started_at_unix_ms: _Optional[int] = ..., updated_at_unix_ms: _Optional[int] = ...) -> None: ...

class MigrationReport(_message.Message):
    __slots__ = ("sample_size", "neighbour_overlap_at_10", "before", "after", "edits", "table", "png", "passes_policy")
    SAMPLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    NEIGHBOUR_OVERLAP_AT_10_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    EDITS_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    PASSES_POLICY_FIELD_NUMBER: _ClassVar[int]
    sample_size: int
    neighbour_overlap_at_10: float
    before: ModelFigures
    after: ModelFigures
    edits: _containers.RepeatedScalarFieldContainer[str]
    table: str
    png: bytes
    passes_policy: bool
    def __init__(self, sample_size: _Optional[int] = ..., neighbour_overlap_at_10: _Optional[float] = ..., before: _Optional[_Union[ModelFigures, _Mapping]] = ..., after: _Optional[_Union[ModelFigures, _Mapping]] = ..., edits: _Optional[_Iterable[str]] = ..., table: _Optional[str] = ..., png: _Optional[bytes] = ..., passes_policy: _Optional[bool] = ...) -> None: ...

class ModelFigures(_message.Message):
    __slots__ = ("model", "copy_recall_at_1", "copy_recall_by_edit", "precision_at_10", "nearest_score_percentiles")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    COPY_RECALL_AT_1_FIELD_NUMBER: _ClassVar[int]
    COPY_RECALL_BY_EDIT_FIELD_NUMBER: _ClassVar[int]
    PRECISION_AT_10_FIELD_NUMBER: _ClassVar[int]
    NEAREST_SCORE_PERCENTILES_FIELD_NUMBER: _ClassVar[int]
    model: _images_pb2.ModelRef
    copy_recall_at_1: float
    copy_recall_by_edit: _containers.RepeatedScalarFieldContainer[float]
    precision_at_10: float
    nearest_score_percentiles: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, model: _Optional[_Union[_images_pb2.ModelRef, _Mapping]] = ..., copy_recall_at_1: _Optional[float] = ..., copy_recall_by_edit: _Optional[_Iterable[float]] = ..., precision_at_10: _Optional[float] = ..., nearest_score_percentiles: _Optional[_Iterable[float]] = ...) -> None: ...

class GetOperationRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListOperationsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListOperationsResponse(_message.Message):
    __slots__ = ("operations",)
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    operations: _containers.RepeatedCompositeFieldContainer[Operation]
    def __init__(self, operations: _Optional[_Iterable[_Union[Operation, _Mapping]]] = ...) -> None: ...

class CancelOperationRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class Alias(_message.Message):
    __slots__ = ("name", "collection", "previous_collection", "changed_at_unix_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_COLLECTION_FIELD_NUMBER: _ClassVar[int]
    CHANGED_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    collection: str
    previous_collection: str
    changed_at_unix_ms: int
    def __init__(self, name: _Optional[str] = ..., collection: _Optional[str] = ..., previous_collection: _Optional[str] = ..., changed_at_unix_ms: _Optional[int] = ...) -> None: ...

class CreateAliasRequest(_message.Message):
    __slots__ = ("name", "collection")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    collection: str
    def __init__(self, name: _Optional[str] = ..., collection: _Optional[str] = ...) -> None: ...

class SwitchAliasRequest(_message.Message):
    __slots__ = ("name", "collection", "expected_collection")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_COLLECTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    collection: str
    expected_collection: str
    def __init__(self, name: _Optional[str] = ..., collection: _Optional[str] = ..., expected_collection: _Optional[str] = ...) -> None: ...

class DeleteAliasRequest(_message.Message):
    __slots__ = ("name", "allow_missing")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALLOW_MISSING_FIELD_NUMBER: _ClassVar[int]
    name: str
    allow_missing: bool
    def __init__(self, name: _Optional[str] = ..., allow_missing: _Optional[bool] = ...) -> None: ...

class DeleteAliasResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAliasesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListAliasesResponse(_message.Message):
    __slots__ = ("aliases",)
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    aliases: _containers.RepeatedCompositeFieldContainer[Alias]
    def __init__(self, aliases: _Optional[_Iterable[_Union[Alias, _Mapping]]] = ...) -> None: ...

class Collection(_message.Message):
    __slots__ = ("name", "dimension", "metric", "model", "size", "state", "state_reason", "find_copies", "copy_thresholds", "index", "keep_sources")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Collection.State]
        STATE_READY: _ClassVar[Collection.State]
        STATE_DAMAGED: _ClassVar[Collection.State]
    STATE_UNSPECIFIED: Collection.State
    STATE_READY: Collection.State
    STATE_DAMAGED: Collection.State
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_REASON_FIELD_NUMBER: _ClassVar[int]
    FIND_COPIES_FIELD_NUMBER: _ClassVar[int]
    COPY_THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    KEEP_SOURCES_FIELD_NUMBER: _ClassVar[int]
    name: str
    dimension: int
    metric: _images_pb2.Metric
    model: _images_pb2.ModelRef
    size: int
    state: Collection.State
    state_reason: str
    find_copies: bool
    copy_thresholds: CopyThresholds
    index: IndexInfo
    keep_sources: bool
    def __init__(self, name: _Optional[str] = ..., dimension: _Optional[int] = ..., metric: _Optional[_Union[_images_pb2.Metric, str]] = ..., model: _Optional[_Union[_images_pb2.ModelRef, _Mapping]] = ..., size: _Optional[int] = ..., state: _Optional[_Union[Collection.State, str]] = ..., state_reason: _Optional[str] = ..., find_copies: _Optional[bool] = ..., copy_thresholds: _Optional[_Union[CopyThresholds, _Mapping]] = ..., index: _Optional[_Union[IndexInfo, _Mapping]] = ..., keep_sources: _Optional[bool] = ...) -> None: ...

class IndexInfo(_message.Message):
    __slots__ = ("kind", "indexed", "pending", "rebuilding", "estimated_recall", "recall_k", "num_leaves", "leaves_to_search", "reorder")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[IndexInfo.Kind]
        KIND_EXACT: _ClassVar[IndexInfo.Kind]
        KIND_BRUTE_FORCE: _ClassVar[IndexInfo.Kind]
        KIND_TREE_AH: _ClassVar[IndexInfo.Kind]
    KIND_UNSPECIFIED: IndexInfo.Kind
    KIND_EXACT: IndexInfo.Kind
    KIND_BRUTE_FORCE: IndexInfo.Kind
    KIND_TREE_AH: IndexInfo.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    INDEXED_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    REBUILDING_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_RECALL_FIELD_NUMBER: _ClassVar[int]
    RECALL_K_FIELD_NUMBER: _ClassVar[int]
    NUM_LEAVES_FIELD_NUMBER: _ClassVar[int]
    LEAVES_TO_SEARCH_FIELD_NUMBER: _ClassVar[int]
    REORDER_FIELD_NUMBER: _ClassVar[int]
    kind: IndexInfo.Kind
    indexed: int
    pending: int
    rebuilding: bool
    estimated_recall: float
    recall_k: int
    num_leaves: int
    leaves_to_search: int
    reorder: int
    def __init__(self, kind: _Optional[_Union[IndexInfo.Kind, str]] = ..., indexed: _Optional[int] = ..., pending: _Optional[int] = ..., rebuilding: _Optional[bool] = ..., estimated_recall: _Optional[float] = ..., recall_k: _Optional[int] = ..., num_leaves: _Optional[int] = ..., leaves_to_search: _Optional[int] = ..., reorder: _Optional[int] = ...) -> None: ...

class CopyThresholds(_message.Message):
    __slots__ = ("exact_hash_distance", "edited_inliers", "embedding_copy", "embedding_similar")
    EXACT_HASH_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    EDITED_INLIERS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_COPY_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_SIMILAR_FIELD_NUMBER: _ClassVar[int]
    exact_hash_distance: int
    edited_inliers: int
    embedding_copy: float
    embedding_similar: float
    def __init__(self, exact_hash_distance: _Optional[int] = ..., edited_inliers: _Optional[int] = ..., embedding_copy: _Optional[float] = ..., embedding_similar: _Optional[float] = ...) -> None: ...

class CreateCollectionRequest(_message.Message):
    __slots__ = ("name", "dimension", "metric", "model", "allow_existing", "find_copies", "copy_thresholds", "keep_sources")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ALLOW_EXISTING_FIELD_NUMBER: _ClassVar[int]
    FIND_COPIES_FIELD_NUMBER: _ClassVar[int]
    COPY_THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    KEEP_SOURCES_FIELD_NUMBER: _ClassVar[int]
    name: str
    dimension: int
    metric: _images_pb2.Metric
    model: _images_pb2.ModelRef
    allow_existing: bool
    find_copies: bool
    copy_thresholds: CopyThresholds
    keep_sources: bool
    def __init__(self, name: _Optional[str] = ..., dimension: _Optional[int] = ..., metric: _Optional[_Union[_images_pb2.Metric, str]] = ..., model: _Optional[_Union[_images_pb2.ModelRef, _Mapping]] = ..., allow_existing: _Optional[bool] = ..., find_copies: _Optional[bool] = ..., copy_thresholds: _Optional[_Union[CopyThresholds, _Mapping]] = ..., keep_sources: _Optional[bool] = ...) -> None: ...

class GetCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListCollectionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCollectionsResponse(_message.Message):
    __slots__ = ("collections",)
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    collections: _containers.RepeatedCompositeFieldContainer[Collection]
    def __init__(self, collections: _Optional[_Iterable[_Union[Collection, _Mapping]]] = ...) -> None: ...

class DeleteCollectionRequest(_message.Message):
    __slots__ = ("name", "allow_missing")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALLOW_MISSING_FIELD_NUMBER: _ClassVar[int]
    name: str
    allow_missing: bool
    def __init__(self, name: _Optional[str] = ..., allow_missing: _Optional[bool] = ...) -> None: ...

class DeleteCollectionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Item(_message.Message):
    __slots__ = ("id", "vector", "image", "tags", "uri", "timestamp", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    id: str
    vector: _images_pb2.Embedding
    image: _images_pb2.Image
    tags: _containers.RepeatedScalarFieldContainer[str]
    uri: str
    timestamp: int
    attributes: _containers.ScalarMap[str, float]
    def __init__(self, id: _Optional[str] = ..., vector: _Optional[_Union[_images_pb2.Embedding, _Mapping]] = ..., image: _Optional[_Union[_images_pb2.Image, _Mapping]] = ..., tags: _Optional[_Iterable[str]] = ..., uri: _Optional[str] = ..., timestamp: _Optional[int] = ..., attributes: _Optional[_Mapping[str, float]] = ...) -> None: ...

class UpsertRequest(_message.Message):
    __slots__ = ("collection", "items")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    items: _containers.RepeatedCompositeFieldContainer[Item]
    def __init__(self, collection: _Optional[str] = ..., items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ("upserted",)
    UPSERTED_FIELD_NUMBER: _ClassVar[int]
    upserted: int
    def __init__(self, upserted: _Optional[int] = ...) -> None: ...

class UpsertStreamRequest(_message.Message):
    __slots__ = ("collection", "items")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    items: _containers.RepeatedCompositeFieldContainer[Item]
    def __init__(self, collection: _Optional[str] = ..., items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ...) -> None: ...

class ItemFailure(_message.Message):
    __slots__ = ("item_index", "id", "reason", "field", "message")
    ITEM_INDEX_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    item_index: int
    id: str
    reason: _errors_pb2.ErrorReason
    field: str
    message: str
    def __init__(self, item_index: _Optional[int] = ..., id: _Optional[str] = ..., reason: _Optional[_Union[_errors_pb2.ErrorReason, str]] = ..., field: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class UpsertStreamResponse(_message.Message):
    __slots__ = ("request_index", "upserted", "failures")
    REQUEST_INDEX_FIELD_NUMBER: _ClassVar[int]
    UPSERTED_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    request_index: int
    upserted: int
    failures: _containers.RepeatedCompositeFieldContainer[ItemFailure]
    def __init__(self, request_index: _Optional[int] = ..., upserted: _Optional[int] = ..., failures: _Optional[_Iterable[_Union[ItemFailure, _Mapping]]] = ...) -> None: ...

class UpdateItemsRequest(_message.Message):
    __slots__ = ("collection", "items", "update_mask")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    collection: str
    items: _containers.RepeatedCompositeFieldContainer[Item]
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, collection: _Optional[str] = ..., items: _Optional[_Iterable[_Union[Item, _Mapping]]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateItemsResponse(_message.Message):
    __slots__ = ("updated",)
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    updated: int
    def __init__(self, updated: _Optional[int] = ...) -> None: ...

class ListItemsRequest(_message.Message):
    __slots__ = ("collection", "filter", "page_size", "page_token", "with_vectors")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    WITH_VECTORS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    filter: Filter
    page_size: int
    page_token: str
    with_vectors: bool
    def __init__(self, collection: _Optional[str] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., with_vectors: _Optional[bool] = ...) -> None: ...

class ListItemsResponse(_message.Message):
    __slots__ = ("items", "next_page_token")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[StoredItem]
    next_page_token: str
    def __init__(self, items: _Optional[_Iterable[_Union[StoredItem, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("collection", "ids")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("collection", "ids")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ...) -> None: ...

class StoredItem(_message.Message):
    __slots__ = ("id", "vector", "tags", "uri", "timestamp", "has_fingerprint", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    HAS_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    id: str
    vector: _images_pb2.Embedding
    tags: _containers.RepeatedScalarFieldContainer[str]
    uri: str
    timestamp: int
    has_fingerprint: bool
    attributes: _containers.ScalarMap[str, float]
    def __init__(self, id: _Optional[str] = ..., vector: _Optional[_Union[_images_pb2.Embedding, _Mapping]] = ..., tags: _Optional[_Iterable[str]] = ..., uri: _Optional[str] = ..., timestamp: _Optional[int] = ..., has_fingerprint: _Optional[bool] = ..., attributes: _Optional[_Mapping[str, float]] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("items", "missing_ids")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MISSING_IDS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[StoredItem]
    missing_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, items: _Optional[_Iterable[_Union[StoredItem, _Mapping]]] = ..., missing_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Filter(_message.Message):
    __slots__ = ("all_of", "any_of", "none_of", "ranges")
    ALL_OF_FIELD_NUMBER: _ClassVar[int]
    ANY_OF_FIELD_NUMBER: _ClassVar[int]
    NONE_OF_FIELD_NUMBER: _ClassVar[int]
    RANGES_FIELD_NUMBER: _ClassVar[int]
    all_of: _containers.RepeatedScalarFieldContainer[str]
    any_of: _containers.RepeatedScalarFieldContainer[str]
    none_of: _containers.RepeatedScalarFieldContainer[str]
    ranges: _containers.RepeatedCompositeFieldContainer[AttributeRange]
    def __init__(self, all_of: _Optional[_Iterable[str]] = ..., any_of: _Optional[_Iterable[str]] = ..., none_of: _Optional[_Iterable[str]] = ..., ranges: _Optional[_Iterable[_Union[AttributeRange, _Mapping]]] = ...) -> None: ...

class AttributeRange(_message.Message):
    __slots__ = ("attribute", "min", "max")
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    attribute: str
    min: float
    max: float
    def __init__(self, attribute: _Optional[str] = ..., min: _Optional[float] = ..., max: _Optional[float] = ...) -> None: ...

class Crowding(_message.Message):
    __slots__ = ("tag_prefix", "per_group")
    TAG_PREFIX_FIELD_NUMBER: _ClassVar[int]
    PER_GROUP_FIELD_NUMBER: _ClassVar[int]
    tag_prefix: str
    per_group: int
    def __init__(self, tag_prefix: _Optional[str] = ..., per_group: _Optional[int] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("collection", "vector", "image", "item_id", "k", "filter", "score_threshold", "exact", "crowding", "positive_ids", "negative_ids", "exclude_ids", "allow_partial")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    CROWDING_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_IDS_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_IDS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_IDS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_PARTIAL_FIELD_NUMBER: _ClassVar[int]
    collection: str
    vector: _images_pb2.Embedding
    image: _images_pb2.Image
    item_id: str
    k: int
    filter: Filter
    score_threshold: float
    exact: bool
    crowding: Crowding
    positive_ids: _containers.RepeatedScalarFieldContainer[str]
    negative_ids: _containers.RepeatedScalarFieldContainer[str]
    exclude_ids: _containers.RepeatedScalarFieldContainer[str]
    allow_partial: bool
    def __init__(self, collection: _Optional[str] = ..., vector: _Optional[_Union[_images_pb2.Embedding, _Mapping]] = ..., image: _Optional[_Union[_images_pb2.Image, _Mapping]] = ..., item_id: _Optional[str] = ..., k: _Optional[int] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., score_threshold: _Optional[float] = ..., exact: _Optional[bool] = ..., crowding: _Optional[_Union[Crowding, _Mapping]] = ..., positive_ids: _Optional[_Iterable[str]] = ..., negative_ids: _Optional[_Iterable[str]] = ..., exclude_ids: _Optional[_Iterable[str]] = ..., allow_partial: _Optional[bool] = ...) -> None: ...

class SearchBatchRequest(_message.Message):
    __slots__ = ("searches", "allow_partial")
    SEARCHES_FIELD_NUMBER: _ClassVar[int]
    ALLOW_PARTIAL_FIELD_NUMBER: _ClassVar[int]
    searches: _containers.RepeatedCompositeFieldContainer[SearchRequest]
    allow_partial: bool
    def __init__(self, searches: _Optional[_Iterable[_Union[SearchRequest, _Mapping]]] = ..., allow_partial: _Optional[bool] = ...) -> None: ...

class SearchBatchResponse(_message.Message):
    __slots__ = ("results", "partial", "unavailable_shards")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_SHARDS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SearchResponse]
    partial: bool
    unavailable_shards: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, results: _Optional[_Iterable[_Union[SearchResponse, _Mapping]]] = ..., partial: _Optional[bool] = ..., unavailable_shards: _Optional[_Iterable[int]] = ...) -> None: ...

class Neighbor(_message.Message):
    __slots__ = ("id", "score", "tags", "uri", "timestamp", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    id: str
    score: float
    tags: _containers.RepeatedScalarFieldContainer[str]
    uri: str
    timestamp: int
    attributes: _containers.ScalarMap[str, float]
    def __init__(self, id: _Optional[str] = ..., score: _Optional[float] = ..., tags: _Optional[_Iterable[str]] = ..., uri: _Optional[str] = ..., timestamp: _Optional[int] = ..., attributes: _Optional[_Mapping[str, float]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("neighbors", "model", "metric", "partial", "unavailable_shards")
    NEIGHBORS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_SHARDS_FIELD_NUMBER: _ClassVar[int]
    neighbors: _containers.RepeatedCompositeFieldContainer[Neighbor]
    model: _images_pb2.ModelRef
    metric: _images_pb2.Metric
    partial: bool
    unavailable_shards: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, neighbors: _Optional[_Iterable[_Union[Neighbor, _Mapping]]] = ..., model: _Optional[_Union[_images_pb2.ModelRef, _Mapping]] = ..., metric: _Optional[_Union[_images_pb2.Metric, str]] = ..., partial: _Optional[bool] = ..., unavailable_shards: _Optional[_Iterable[int]] = ...) -> None: ...

class FindCopiesRequest(_message.Message):
    __slots__ = ("collection", "image", "item_id", "k", "candidates", "filter", "include_similar", "edit_pictures", "order", "allow_partial")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_SIMILAR_FIELD_NUMBER: _ClassVar[int]
    EDIT_PICTURES_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    ALLOW_PARTIAL_FIELD_NUMBER: _ClassVar[int]
    collection: str
    image: _images_pb2.Image
    item_id: str
    k: int
    candidates: int
    filter: Filter
    include_similar: bool
    edit_pictures: bool
    order: CopyOrder
    allow_partial: bool
    def __init__(self, collection: _Optional[str] = ..., image: _Optional[_Union[_images_pb2.Image, _Mapping]] = ..., item_id: _Optional[str] = ..., k: _Optional[int] = ..., candidates: _Optional[int] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., include_similar: _Optional[bool] = ..., edit_pictures: _Optional[bool] = ..., order: _Optional[_Union[CopyOrder, str]] = ..., allow_partial: _Optional[bool] = ...) -> None: ...

class Point(_message.Message):
    __slots__ = ("x", "y")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ...) -> None: ...

class EditSummary(_message.Message):
    __slots__ = ("kept_fraction", "mirrored", "rotation_degrees", "scale", "added_fraction", "changed_fraction", "recoloured_fraction")
    KEPT_FRACTION_FIELD_NUMBER: _ClassVar[int]
    MIRRORED_FIELD_NUMBER: _ClassVar[int]
    ROTATION_DEGREES_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    ADDED_FRACTION_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FRACTION_FIELD_NUMBER: _ClassVar[int]
    RECOLOURED_FRACTION_FIELD_NUMBER: _ClassVar[int]
    kept_fraction: float
    mirrored: bool
    rotation_degrees: float
    scale: float
    added_fraction: float
    changed_fraction: float
    recoloured_fraction: float
    def __init__(self, kept_fraction: _Optional[float] = ..., mirrored: _Optional[bool] = ..., rotation_degrees: _Optional[float] = ..., scale: _Optional[float] = ..., added_fraction: _Optional[float] = ..., changed_fraction: _Optional[float] = ..., recoloured_fraction: _Optional[float] = ...) -> None: ...

class Copy(_message.Message):
    __slots__ = ("id", "tags", "uri", "timestamp", "verdict", "evidence", "hash_distance", "inliers", "embedding_score", "region_in_original", "original_in_query", "edits", "edit_picture_png")
    ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    HASH_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    INLIERS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_SCORE_FIELD_NUMBER: _ClassVar[int]
    REGION_IN_ORIGINAL_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_IN_QUERY_FIELD_NUMBER: _ClassVar[int]
    EDITS_FIELD_NUMBER: _ClassVar[int]
    EDIT_PICTURE_PNG_FIELD_NUMBER: _ClassVar[int]
    id: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    uri: str
    timestamp: int
    verdict: Verdict
    evidence: Evidence
    hash_distance: int
    inliers: int
    embedding_score: float
    region_in_original: _containers.RepeatedCompositeFieldContainer[Point]
    original_in_query: _containers.RepeatedCompositeFieldContainer[Point]
    edits: EditSummary
    edit_picture_png: bytes
    def __init__(self, id: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., uri: _Optional[str] = ..., timestamp: _Optional[int] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., evidence: _Optional[_Union[Evidence, str]] = ..., hash_distance: _Optional[int] = ..., inliers: _Optional[int] = ..., embedding_score: _Optional[float] = ..., region_in_original: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., original_in_query: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., edits: _Optional[_Union[EditSummary, _Mapping]] = ..., edit_picture_png: _Optional[bytes] = ...) -> None: ...

class FindCopiesResponse(_message.Message):
    __slots__ = ("copies", "model", "query_featureless", "candidates_verified", "partial", "unavailable_shards")
    COPIES_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    QUERY_FEATURELESS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_VERIFIED_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_SHARDS_FIELD_NUMBER: _ClassVar[int]
    copies: _containers.RepeatedCompositeFieldContainer[Copy]
    model: _images_pb2.ModelRef
    query_featureless: bool
    candidates_verified: int
    partial: bool
    unavailable_shards: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, copies: _Optional[_Iterable[_Union[Copy, _Mapping]]] = ..., model: _Optional[_Union[_images_pb2.ModelRef, _Mapping]] = ..., query_featureless: _Optional[bool] = ..., candidates_verified: _Optional[int] = ..., partial: _Optional[bool] = ..., unavailable_shards: _Optional[_Iterable[int]] = ...) -> None: ...
