"""Typed clients for the Lookalike services: `from lookalike import EncoderClient, SearchClient`.

Thin over the generated stubs: numpy in and out where vectors are concerned, a raised message
limit, a deadline on every call (the client's default or the call's own `timeout`), TLS or any
channel the caller builds, a bearer token on every call (`token=`, see docs/security.md), and
`wait_until_serving` through the standard health service.
A refused call raises the `lookalike.errors` exception its status details describe
(`InvalidArgument` with `reason` and `field_violations`, `NotFound`, ...), never a bare
grpc.RpcError; the original stays on the exception as `rpc_error`.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO, NamedTuple

import grpc
import numpy as np
from google.protobuf import field_mask_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lookalike.errors import from_rpc_error
from lookalike.v1 import encoder_pb2, encoder_pb2_grpc, images_pb2, search_pb2, search_pb2_grpc

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_FLOAT32_LE = np.dtype("<f4")  # packed tensors and embeddings (Tensor.packed_values, EmbedResponse.packed_embeddings)

ImageInput = bytes | np.ndarray  # encoded file bytes, or a preprocessed (C, H, W) float32 tensor
ModelInput = images_pb2.ModelRef | tuple[str, int]  # ("digits", 2) or the ModelRef an embed returned
# A backup file: this magic (format 1), the BackupHeader's length (u32, little-endian) and bytes,
# then the snapshot's bytes as ExportCollection streamed them.
BACKUP_MAGIC = b"LOOKALIKE-BACKUP-1\n"
_BACKUP_CHUNK_BYTES = 1 << 20
AttributeRanges = Mapping[str, tuple[float | None, float | None]]  # {"price": (None, 20.0)}: min, max inclusive; None: unbounded


def message_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """gRPC's 4 MB default receive limit is too small for a batch of photos; raise it on purpose."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]


def new_channel(
    target: str,
    credentials: grpc.ChannelCredentials | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    token: str | None = None,
    load_balancing: str = "",
    reconnect_seconds: float = 0,
) -> grpc.Channel:
    """A channel to `target` ("host:port", "dns:///name:port"), over TLS when `credentials` are given.

    `token` goes with every call as `authorization: Bearer <token>`. Over TLS it travels as call
    credentials, which gRPC never sends on a plaintext channel; on a plaintext channel (loopback,
    tests) it can only travel as plain metadata, readable by anyone on the path.
    `load_balancing` names a gRPC policy ("round_robin": every address `target` resolves to, in
    turn); empty: gRPC's default, pick_first (one connection, to the first address that answers).
    `reconnect_seconds` caps the wait between attempts to reach a server that was down (gRPC's
    default grows to 2 minutes, and calls meanwhile fail at once): for a server's own upstream.
    Such a channel also keeps its connections to itself: gRPC shares them between the channels of a
    process by address, so another channel's failures against that address (a client of a server
    that stopped, whose port a new server now has) would put this one in backoff too.
    """
    options = message_options(max_message_bytes)
    if load_balancing:
        options.append(("grpc.lb_policy_name", load_balancing))
    if reconnect_seconds:
        ms = int(reconnect_seconds * 1000)
        options += [
            ("grpc.initial_reconnect_backoff_ms", min(ms, 1000)),
            ("grpc.max_reconnect_backoff_ms", ms),
            ("grpc.use_local_subchannel_pool", 1),
        ]
    if credentials is None:
        return with_token(grpc.insecure_channel(target, options=options), token)
    if token:
        credentials = grpc.composite_channel_credentials(credentials, grpc.access_token_call_credentials(token))
    return grpc.secure_channel(target, credentials, options=options)


def tls_credentials(
    ca_file: str | Path | None = None, cert_file: str | Path | None = None, key_file: str | Path | None = None
) -> grpc.ChannelCredentials | None:
    """TLS credentials from PEM files, or None (plaintext) when no file is named.

    `ca_file` is the CA that signed the server's certificate (a system bundle such as
    /etc/ssl/certs/ca-certificates.crt for a public one); `cert_file` and `key_file` together are
    this client's certificate, for servers that require mutual TLS.
    """
    if (cert_file is None) != (key_file is None):
        raise ValueError("a client certificate needs both cert_file and key_file")
    if ca_file is None and cert_file is None:
        return None
    pem = [None if path is None else Path(path).read_bytes() for path in (ca_file, key_file, cert_file)]
    return grpc.ssl_channel_credentials(*pem)


def with_token(channel: grpc.Channel, token: str | None) -> grpc.Channel:
    """`channel`, sending `token` as bearer metadata on every call; `channel` itself without a token."""
    return grpc.intercept_channel(channel, _BearerToken(token)) if token else channel


class _CallDetails(
    collections.namedtuple("_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")),
    grpc.ClientCallDetails,
):
    pass


class _BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds the authorization metadata to every call: the unary ones and the streams (EmbedStream)."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._with_token(details), request_iterator)

    def _with_token(self, details) -> _CallDetails:
        metadata = [*(details.metadata or ()), self._header]
        return _CallDetails(details.method, details.timeout, metadata, details.credentials, details.wait_for_ready, details.compression)


@dataclasses.dataclass(frozen=True)
class Neighbor:
    id: str
    score: float
    tags: tuple[str, ...]
    uri: str
    timestamp: int = 0  # as upserted; 0: none
    # numeric, as upserted; left out of the hash so that a Neighbor stays hashable, as before it had them
    attributes: Mapping[str, float] = dataclasses.field(default_factory=dict, hash=False)


@dataclasses.dataclass(frozen=True)
class SearchResults:
    """The neighbours, best first (iterate, index or len() it), and what produced their scores."""

    neighbors: tuple[Neighbor, ...]
    model: images_pb2.ModelRef  # the collection's model; empty name for a collection without one
    metric: int  # images_pb2.Metric: similarities (higher is better) or distances (lower)
    # A sharded deployment's answer without some shards (only when asked with allow_partial):
    # their indexes, and these neighbours are the best of the other shards only.
    unavailable_shards: tuple[int, ...] = ()

    @property
    def partial(self) -> bool:
        return bool(self.unavailable_shards)

    def __iter__(self) -> Iterator[Neighbor]:
        return iter(self.neighbors)

    def __len__(self) -> int:
        return len(self.neighbors)

    def __getitem__(self, index: int) -> Neighbor:
        return self.neighbors[index]


class Embedded(NamedTuple):
    vectors: np.ndarray  # (N, D) float32
    model: images_pb2.ModelRef  # the exact model that made them: pass it on with the vectors


@dataclasses.dataclass(frozen=True)
class ItemToUpsert:
    id: str
    image: ImageInput | None = None
    vector: np.ndarray | Sequence[float] | None = None
    tags: Sequence[str] = ()
    uri: str = ""
    model: ModelInput | None = None  # the model that made `vector`; required by collections that pin one
    timestamp: int = 0  # when the picture was first seen (e.g. Unix seconds); FindCopies can order by it
    attributes: Mapping[str, float] = dataclasses.field(default_factory=dict)  # numeric, to filter on by range


def model_ref(model: ModelInput | None) -> images_pb2.ModelRef | None:
    if model is None or isinstance(model, images_pb2.ModelRef):
        return model
    name, version = model
    return images_pb2.ModelRef(name=name, version=version)


def to_image_message(image: ImageInput) -> images_pb2.Image:
    """Encoded bytes as they are; an array as a tensor of packed little-endian float32."""
    if isinstance(image, (bytes, bytearray)):
        return images_pb2.Image(encoded=bytes(image))
    array = np.asarray(image, dtype=_FLOAT32_LE)
    return images_pb2.Image(tensor=images_pb2.Tensor(shape=array.shape, packed_values=array.tobytes()))


def embeddings_of(response: encoder_pb2.EmbedResponse) -> np.ndarray:
    """(N, D) float32 embeddings of an EmbedResponse, packed or as repeated floats."""
    if response.packed_embeddings:
        return np.frombuffer(response.packed_embeddings, dtype=_FLOAT32_LE).reshape(-1, response.embedding_dim).astype(np.float32)
    return np.array([list(e.values) for e in response.embeddings], dtype=np.float32)


def to_embedding(vector: np.ndarray | Sequence[float], model: ModelInput | None = None) -> images_pb2.Embedding:
    return images_pb2.Embedding(values=np.asarray(vector, np.float32).ravel().tolist(), model=model_ref(model))


def to_item_message(item: ItemToUpsert, model: ModelInput | None = None) -> search_pb2.Item:
    """`model` names the model of the item's vector when the item names none."""
    message = search_pb2.Item(id=item.id, tags=list(item.tags), uri=item.uri, timestamp=item.timestamp, attributes=dict(item.attributes))
    if item.vector is not None:
        message.vector.CopyFrom(to_embedding(item.vector, item.model if item.model is not None else model))
    elif item.image is not None:
        message.image.CopyFrom(to_image_message(item.image))
    return message


def to_filter(
    all_of: Sequence[str] = (), any_of: Sequence[str] = (), none_of: Sequence[str] = (), ranges: AttributeRanges | None = None
) -> search_pb2.Filter:
    """Tags and attribute ranges; a bound left None stays unset, so the range is open on that side."""
    message = search_pb2.Filter(all_of=list(all_of), any_of=list(any_of), none_of=list(none_of))
    for attribute, (low, high) in (ranges or {}).items():
        message.ranges.append(search_pb2.AttributeRange(attribute=attribute, min=low, max=high))
    return message


def search_request(
    collection: str,
    *,
    vector: np.ndarray | Sequence[float] | None = None,
    model: ModelInput | None = None,
    image: ImageInput | None = None,
    item_id: str | None = None,
    k: int = 10,
    all_of: Sequence[str] = (),
    any_of: Sequence[str] = (),
    none_of: Sequence[str] = (),
    ranges: AttributeRanges | None = None,
    score_threshold: float | None = None,
    exact: bool = False,
    crowding: tuple[str, int] | None = None,
    positive_ids: Sequence[str] = (),
    negative_ids: Sequence[str] = (),
    allow_partial: bool = False,
) -> search_pb2.SearchRequest:
    """The SearchRequest `SearchClient.search` sends, for `search_batch`; see `search` for the options."""
    queries = sum(q is not None for q in (vector, image, item_id))
    if queries > 1 or (queries == 0 and not positive_ids):
        raise ValueError("give exactly one of vector, image or item_id (or none, with positive_ids)")
    request = search_pb2.SearchRequest(
        collection=collection,
        k=k,
        filter=to_filter(all_of, any_of, none_of, ranges),
        score_threshold=score_threshold,
        exact=exact,
        crowding=None if crowding is None else search_pb2.Crowding(tag_prefix=crowding[0], per_group=crowding[1]),
        positive_ids=list(positive_ids),
        negative_ids=list(negative_ids),
        allow_partial=allow_partial,
    )
    if vector is not None:
        request.vector.CopyFrom(to_embedding(vector, model))
    elif image is not None:
        request.image.CopyFrom(to_image_message(image))
    elif item_id is not None:
        request.item_id = item_id
    return request


def read_backup_header(source: BinaryIO) -> search_pb2.BackupHeader:
    """The header of a backup file (`SearchClient.export_collection`), leaving `source` at the
    snapshot's first byte; ValueError if it is not a backup file."""
    start = source.read(len(BACKUP_MAGIC) + 4)
    if len(start) < len(BACKUP_MAGIC) + 4 or not start.startswith(BACKUP_MAGIC):
        raise ValueError("not a Lookalike collection backup (export_collection writes them)")
    length = int.from_bytes(start[len(BACKUP_MAGIC) :], "little")
    encoded = source.read(length)
    if len(encoded) != length:
        raise ValueError("the backup file is cut short inside its header")
    return search_pb2.BackupHeader.FromString(encoded)


def search_results(response: search_pb2.SearchResponse) -> SearchResults:
    neighbors = tuple(Neighbor(n.id, n.score, tuple(n.tags), n.uri, n.timestamp, dict(n.attributes)) for n in response.neighbors)
    return SearchResults(neighbors, response.model, response.metric, tuple(response.unavailable_shards))


class _Client:
    service = ""

    def __init__(
        self,
        target: str | grpc.Channel,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        load_balancing: str = "",
    ) -> None:
        """`target` is an address (TLS when `credentials` are given, see `tls_credentials`) or a
        channel the caller owns; `token` is sent as the bearer token of every call; `timeout` is
        the deadline of every call that does not give its own. `load_balancing="round_robin"`
        spreads calls over every address `target` resolves to ("dns:///search.ns.svc:50052", a
        Kubernetes headless Service); the default, pick_first, keeps to one (see `new_channel`)."""
        self._owns_channel = isinstance(target, str)
        self.address = target if isinstance(target, str) else ""
        self.timeout = timeout
        if isinstance(target, str):
            self.channel = new_channel(target, credentials, max_message_bytes, token, load_balancing)
        else:
            self.channel = with_token(target, token)
        self._health = health_pb2_grpc.HealthStub(self.channel)

    def wait_until_serving(self, timeout: float = 30.0) -> None:
        """Blocks until the standard health service answers SERVING; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                status = self._health.Check(health_pb2.HealthCheckRequest(service=self.service), timeout=1.0).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
            except grpc.RpcError as error:
                last = error.code().name
            time.sleep(0.1)
        raise TimeoutError(f"{self.address or 'the channel'} not SERVING after {timeout}s (last: {last})")

    def _call(self, method, request, timeout: float | None):
        try:
            return method(request, timeout=self.timeout if timeout is None else timeout)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    def close(self) -> None:
        if self._owns_channel:
            self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class EncoderClient(_Client):
    service = "lookalike.v1.Encoder"

    def __init__(self, target: str | grpc.Channel = "localhost:50051", **kwargs) -> None:
        super().__init__(target, **kwargs)
        self.stub = encoder_pb2_grpc.EncoderStub(self.channel)

    def embed(
        self, images: Sequence[ImageInput], model: str = "", version: int = 0, *, timeout: float | None = None
    ) -> Embedded:
        """(N, D) float32 embeddings of `images`, and the exact model that made them."""
        response = self._call(self.stub.Embed, _embed_request(images, model, version), timeout)
        return Embedded(embeddings_of(response), response.model)

    def embed_stream(
        self, batches: Iterable[Sequence[ImageInput]], model: str = "", version: int = 0, *, timeout: float | None = None
    ) -> Iterator[Embedded]:
        """The embeddings of each batch, in order, over one EmbedStream: for large jobs, where a call
        per batch would wait for each answer before sending the next. `timeout` bounds the whole
        stream (default: none). A refused batch raises its error after the batches before it
        (`metadata["request"]` is its index)."""
        requests = (encoder_pb2.EmbedStreamRequest(request=_embed_request(batch, model, version)) for batch in batches)
        try:
            for message in self.stub.EmbedStream(requests, timeout=timeout):
                yield Embedded(embeddings_of(message.response), message.response.model)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    def reconstruct(
        self, embeddings: np.ndarray, model: str = "", version: int = 0, *, timeout: float | None = None
    ) -> list[bytes]:
        """PNG bytes rebuilt by the model's decoder, one per embedding row."""
        request = encoder_pb2.ReconstructRequest(
            model=images_pb2.ModelRef(name=model, version=version),
            embeddings=[to_embedding(row) for row in np.asarray(embeddings, np.float32)],
        )
        return list(self._call(self.stub.Reconstruct, request, timeout).png_images)

    def get_model(self, model: str = "", version: int = 0, *, timeout: float | None = None) -> encoder_pb2.ModelInfo:
        request = encoder_pb2.GetModelRequest(model=images_pb2.ModelRef(name=model, version=version))
        return self._call(self.stub.GetModel, request, timeout)

    def list_models(self, *, timeout: float | None = None) -> list[encoder_pb2.ModelInfo]:
        """Every version served, and those that failed to load (`state`, `state_message`)."""
        return list(self._call(self.stub.ListModels, encoder_pb2.ListModelsRequest(), timeout).models)

    def load_model(self, model: str, version: int = 0, *, timeout: float | None = None) -> encoder_pb2.ModelInfo:
        """Serves `model` at `version` (0: the newest in the server's repository); needs an admin token."""
        request = encoder_pb2.LoadModelRequest(model=images_pb2.ModelRef(name=model, version=version))
        return self._call(self.stub.LoadModel, request, timeout).model

    def unload_model(self, model: str, version: int = 0, *, timeout: float | None = None) -> list[images_pb2.ModelRef]:
        """Stops serving `model` at `version` (0: all its versions); needs an admin token."""
        request = encoder_pb2.UnloadModelRequest(model=images_pb2.ModelRef(name=model, version=version))
        return list(self._call(self.stub.UnloadModel, request, timeout).unloaded)


def _embed_request(images: Sequence[ImageInput], model: str, version: int) -> encoder_pb2.EmbedRequest:
    return encoder_pb2.EmbedRequest(
        model=images_pb2.ModelRef(name=model, version=version),
        images=[to_image_message(i) for i in images],
        embedding_encoding=encoder_pb2.EMBEDDING_ENCODING_PACKED_FLOAT32,
    )


class SearchClient(_Client):
    service = "lookalike.v1.Search"

    def __init__(self, target: str | grpc.Channel = "localhost:50052", **kwargs) -> None:
        super().__init__(target, **kwargs)
        self.stub = search_pb2_grpc.SearchStub(self.channel)

    def create_collection(
        self,
        name: str,
        *,
        dimension: int = 0,
        metric: int = images_pb2.METRIC_UNSPECIFIED,
        model: str = "",
        version: int = 0,
        allow_existing: bool = False,
        find_copies: bool = False,
        copy_thresholds: Mapping[str, float] | None = None,
        keep_sources: bool = False,
        timeout: float | None = None,
    ) -> search_pb2.Collection:
        """A new collection; with `allow_existing`, an existing one with these settings is returned
        instead of AlreadyExists, so a retried create is harmless. `find_copies` keeps a fingerprint
        of every image upserted, for `find_copies()`; `copy_thresholds` (the four fields of
        search_pb2.CopyThresholds, e.g. a file `lookalike eval` calibrated) replace the defaults.
        `keep_sources` keeps every image upserted, so `start_reindex` can re-embed the collection."""
        request = search_pb2.CreateCollectionRequest(
            name=name,
            dimension=dimension,
            metric=metric,
            model=images_pb2.ModelRef(name=model, version=version),
            allow_existing=allow_existing,
            find_copies=find_copies,
            copy_thresholds=None if copy_thresholds is None else search_pb2.CopyThresholds(**copy_thresholds),
            keep_sources=keep_sources,
        )
        return self._call(self.stub.CreateCollection, request, timeout)

    def get_collection(self, name: str, *, timeout: float | None = None) -> search_pb2.Collection:
        return self._call(self.stub.GetCollection, search_pb2.GetCollectionRequest(name=name), timeout)

    def list_collections(self, *, timeout: float | None = None) -> list[search_pb2.Collection]:
        return list(self._call(self.stub.ListCollections, search_pb2.ListCollectionsRequest(), timeout).collections)

    def delete_collection(self, name: str, *, allow_missing: bool = False, timeout: float | None = None) -> None:
        """Deletes the collection; with `allow_missing`, a collection already gone is no error."""
        request = search_pb2.DeleteCollectionRequest(name=name, allow_missing=allow_missing)
        self._call(self.stub.DeleteCollection, request, timeout)

    def create_alias(self, name: str, collection: str, *, timeout: float | None = None) -> search_pb2.Alias:
        """A stable name for `collection`: every call that takes a collection name takes it."""
        return self._call(self.stub.CreateAlias, search_pb2.CreateAliasRequest(name=name, collection=collection), timeout)

    def switch_alias(
        self, name: str, collection: str, *, expected_collection: str = "", timeout: float | None = None
    ) -> search_pb2.Alias:
        """Points the alias at `collection` (atomic, durable); switching back to
        `previous_collection` is the rollback. With `expected_collection`, only if it points there now."""
        request = search_pb2.SwitchAliasRequest(name=name, collection=collection, expected_collection=expected_collection)
        return self._call(self.stub.SwitchAlias, request, timeout)

    def delete_alias(self, name: str, *, allow_missing: bool = False, timeout: float | None = None) -> None:
        self._call(self.stub.DeleteAlias, search_pb2.DeleteAliasRequest(name=name, allow_missing=allow_missing), timeout)

    def list_aliases(self, *, timeout: float | None = None) -> list[search_pb2.Alias]:
        return list(self._call(self.stub.ListAliases, search_pb2.ListAliasesRequest(), timeout).aliases)

    def start_reindex(
        self,
        collection: str,
        model: str,
        version: int = 0,
        *,
        target_collection: str = "",
        switch_alias: str = "",
        require_no_worse_copy_recall: bool = False,
        max_copy_recall_drop: float = 0.0,
        report_sample: int = 0,
        label_prefix: str = "",
        max_images_per_second: float = 0.0,
        timeout: float | None = None,
    ) -> search_pb2.Operation:
        """Starts re-embedding `collection` (or an alias's) with `model` v`version` into a new
        collection; returns the operation to poll (`wait_for_operation`). docs/model-upgrades.md."""
        request = search_pb2.StartReindexRequest(
            collection=collection,
            model=images_pb2.ModelRef(name=model, version=version),
            target_collection=target_collection,
            switch_alias=switch_alias,
            policy=search_pb2.MigrationPolicy(
                require_no_worse_copy_recall=require_no_worse_copy_recall, max_copy_recall_drop=max_copy_recall_drop
            ),
            report_sample=report_sample,
            label_prefix=label_prefix,
            max_images_per_second=max_images_per_second,
        )
        return self._call(self.stub.StartReindex, request, timeout)

    def get_operation(self, name: str, *, timeout: float | None = None) -> search_pb2.Operation:
        return self._call(self.stub.GetOperation, search_pb2.GetOperationRequest(name=name), timeout)

    def list_operations(self, *, timeout: float | None = None) -> list[search_pb2.Operation]:
        return list(self._call(self.stub.ListOperations, search_pb2.ListOperationsRequest(), timeout).operations)

    def cancel_operation(self, name: str, *, timeout: float | None = None) -> search_pb2.Operation:
        return self._call(self.stub.CancelOperation, search_pb2.CancelOperationRequest(name=name), timeout)

    def wait_for_operation(
        self, name: str, *, timeout: float = 3600.0, poll_seconds: float = 0.5, on_progress: Callable[[search_pb2.Operation], None] | None = None
    ) -> search_pb2.Operation:
        """Polls the operation until it is done (whatever its state); TimeoutError after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            operation = self.get_operation(name)
            if on_progress is not None:
                on_progress(operation)
            if operation.done:
                return operation
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} is still {operation.phase} after {timeout:.0f} s")
            time.sleep(poll_seconds)

    def export_collection(
        self, collection: str, out: BinaryIO, *, timeout: float | None = None, on_bytes: Callable[[int], None] | None = None
    ) -> search_pb2.BackupHeader:
        """Writes a backup of the collection, as of now, to the binary file `out` (the format
        `import_collection` reads: BACKUP_MAGIC, the header's length and bytes, then the snapshot);
        returns its header. `on_bytes(n)` after each chunk written; `timeout` bounds the whole
        stream (default: none)."""
        request = search_pb2.ExportCollectionRequest(collection=collection)
        header = None
        try:
            for chunk in self.stub.ExportCollection(iter([request]), timeout=timeout):
                if chunk.WhichOneof("part") == "header":
                    header = chunk.header
                    encoded = header.SerializeToString()
                    out.write(BACKUP_MAGIC + len(encoded).to_bytes(4, "little") + encoded)
                else:
                    out.write(chunk.data)
                    if on_bytes is not None:
                        on_bytes(len(chunk.data))
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        assert header is not None, "ExportCollection sends its header first"
        return header

    def import_collection(
        self, source: BinaryIO, name: str, *, timeout: float | None = None, on_bytes: Callable[[int], None] | None = None
    ) -> search_pb2.Collection:
        """Creates the collection `name` from a backup file that `export_collection` wrote. The server
        checks it whole before the collection appears; a damaged file raises InvalidArgument
        (BACKUP_DAMAGED) and creates nothing. ValueError if `source` is not such a file."""
        header = read_backup_header(source)

        def requests() -> Iterator[search_pb2.ImportCollectionRequest]:
            yield search_pb2.ImportCollectionRequest(header=search_pb2.ImportCollectionHeader(name=name, backup=header))
            while chunk := source.read(_BACKUP_CHUNK_BYTES):
                yield search_pb2.ImportCollectionRequest(data=chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))

        try:
            (answer,) = self.stub.ImportCollection(requests(), timeout=timeout)
            return answer.collection
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    def upsert(
        self, collection: str, items: Sequence[ItemToUpsert], *, model: ModelInput | None = None, timeout: float | None = None
    ) -> int:
        """Writes the items; `model` names the model of every vector whose item names none."""
        request = search_pb2.UpsertRequest(collection=collection, items=[to_item_message(item, model) for item in items])
        return self._call(self.stub.Upsert, request, timeout).upserted

    def upsert_stream(
        self,
        collection: str,
        batches: Iterable[Sequence[ItemToUpsert]],
        *,
        model: ModelInput | None = None,
        timeout: float | None = None,
    ) -> Iterator[search_pb2.UpsertStreamResponse]:
        """Each batch's answer, in order (`upserted`, and `failures` naming each item not written), over
        one UpsertStream: for bulk ingest, where a bad item should be reported, not sink its batch,
        and batches go out without waiting for each answer. `timeout` bounds the whole stream
        (default: none). An error that is not an item's (collection missing) raises after the
        answers before it."""
        requests = (
            search_pb2.UpsertStreamRequest(collection=collection, items=[to_item_message(item, model) for item in batch])
            for batch in batches
        )
        try:
            yield from self.stub.UpsertStream(requests, timeout=timeout)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    def update_items(
        self, collection: str, items: Sequence[ItemToUpsert], fields: Sequence[str], *, timeout: float | None = None
    ) -> int:
        """Sets `fields` (of "tags", "uri", "timestamp", "attributes") of existing items to the values of
        `items` (by id, without vector or image), keeping their vectors: nothing is re-embedded.
        All or nothing; an id that does not exist raises NotFound."""
        request = search_pb2.UpdateItemsRequest(
            collection=collection,
            items=[to_item_message(item) for item in items],
            update_mask=field_mask_pb2.FieldMask(paths=list(fields)),
        )
        return self._call(self.stub.UpdateItems, request, timeout).updated

    def list_items(
        self,
        collection: str,
        *,
        all_of: Sequence[str] = (),
        any_of: Sequence[str] = (),
        none_of: Sequence[str] = (),
        ranges: AttributeRanges | None = None,
        page_size: int = 0,
        page_token: str = "",
        with_vectors: bool = False,
        timeout: float | None = None,
    ) -> search_pb2.ListItemsResponse:
        """One page of the items that pass the filter, in id order; pass its `next_page_token` (empty
        after the last page) for the next. `page_size` 0: the server's default (100)."""
        request = search_pb2.ListItemsRequest(
            collection=collection,
            filter=to_filter(all_of, any_of, none_of, ranges),
            page_size=page_size,
            page_token=page_token,
            with_vectors=with_vectors,
        )
        return self._call(self.stub.ListItems, request, timeout)

    def iter_items(self, collection: str, **options) -> Iterator[search_pb2.StoredItem]:
        """Every item that passes the filter, page after page: `list_items`' options, bar `page_token`
        (each call's `timeout` is per page, so a large collection is no single long call)."""
        token = ""
        while True:
            page = self.list_items(collection, page_token=token, **options)
            yield from page.items
            token = page.next_page_token
            if not token:
                return

    def delete(self, collection: str, ids: Sequence[str], *, timeout: float | None = None) -> int:
        request = search_pb2.DeleteRequest(collection=collection, ids=list(ids))
        return self._call(self.stub.Delete, request, timeout).deleted

    def get(self, collection: str, ids: Sequence[str], *, timeout: float | None = None) -> search_pb2.GetResponse:
        return self._call(self.stub.Get, search_pb2.GetRequest(collection=collection, ids=list(ids)), timeout)

    def search(
        self,
        collection: str,
        *,
        vector: np.ndarray | Sequence[float] | None = None,
        model: ModelInput | None = None,
        image: ImageInput | None = None,
        item_id: str | None = None,
        k: int = 10,
        all_of: Sequence[str] = (),
        any_of: Sequence[str] = (),
        none_of: Sequence[str] = (),
        ranges: AttributeRanges | None = None,
        score_threshold: float | None = None,
        exact: bool = False,
        crowding: tuple[str, int] | None = None,
        positive_ids: Sequence[str] = (),
        negative_ids: Sequence[str] = (),
        allow_partial: bool = False,
        timeout: float | None = None,
    ) -> SearchResults:
        """The k nearest items to exactly one of `vector` (made by `model`), `image` or `item_id`.

        `ranges` keeps items whose attributes lie within {name: (min, max)}; `score_threshold` drops
        results scoring worse than it (the metric decides which way is worse); `exact` scans every
        item instead of the index, for recall 1 at a cost; `crowding` (tag_prefix, per_group) keeps at
        most per_group results per tag of that family, so one family cannot fill the page;
        `positive_ids` / `negative_ids` search "more like these, less like those" from stored items
        (the query is then optional) and are left out of the results. `allow_partial`: on a sharded
        deployment (docs/sharding.md) a shard that is down leaves its items out (`results.partial`)
        instead of failing the search with UNAVAILABLE."""
        request = search_request(
            collection,
            vector=vector,
            model=model,
            image=image,
            item_id=item_id,
            k=k,
            all_of=all_of,
            any_of=any_of,
            none_of=none_of,
            ranges=ranges,
            score_threshold=score_threshold,
            exact=exact,
            crowding=crowding,
            positive_ids=positive_ids,
            negative_ids=negative_ids,
            allow_partial=allow_partial,
        )
        return search_results(self._call(self.stub.Search, request, timeout))

    def search_batch(self, requests: Sequence[search_pb2.SearchRequest], *, timeout: float | None = None) -> list[SearchResults]:
        """Each request's results, in order, from one call: cheaper than a call per query, since plain
        searches of one collection with the same k share one batched index call. Build the requests
        with `search_request` (the options of `search`). One invalid request fails them all; its
        field violations name it ("searches[3].vector")."""
        response = self._call(self.stub.SearchBatch, search_pb2.SearchBatchRequest(searches=list(requests)), timeout)
        return [search_results(result) for result in response.results]

    def find_copies(
        self,
        collection: str,
        *,
        image: bytes | None = None,
        item_id: str | None = None,
        k: int = 10,
        candidates: int = 0,
        all_of: Sequence[str] = (),
        any_of: Sequence[str] = (),
        none_of: Sequence[str] = (),
        include_similar: bool = False,
        edit_pictures: bool = False,
        earliest_first: bool = False,
        timeout: float | None = None,
    ) -> search_pb2.FindCopiesResponse:
        """The stored pictures that `image` (a file's bytes) or the stored `item_id` is a copy of, each
        with a verdict, its evidence and the matched region; see FindCopies in search.proto.
        `candidates`: how many nearest by embedding to verify (0: the server's default)."""
        if (image is None) == (item_id is None):
            raise ValueError("give exactly one of image or item_id")
        request = search_pb2.FindCopiesRequest(
            collection=collection,
            k=k,
            candidates=candidates,
            filter=to_filter(all_of, any_of, none_of),
            include_similar=include_similar,
            edit_pictures=edit_pictures,
            order=search_pb2.COPY_ORDER_EARLIEST_FIRST if earliest_first else search_pb2.COPY_ORDER_UNSPECIFIED,
        )
        if image is not None:
            request.image.encoded = bytes(image)
        else:
            request.item_id = item_id
        return self._call(self.stub.FindCopies, request, timeout)
