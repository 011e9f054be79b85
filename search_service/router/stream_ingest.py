"""UpsertStream through the router: one stream per replica of each shard, answers in the caller's order.

Each message is split by owning shard and each part goes down a long-lived UpsertStream to every
replica of its shard, so the shards keep writing many messages as one log record (bulk_ingest.py)
and answer a part once it is durable. A message is answered once every replica answered its part
(write-all): its `upserted` adds up the shards' parts, its failures are the shards' item failures
renamed to the message's positions, in item order. The shards answer late (when a record fills,
or when the stream ends), so answers are sent as they complete, in order, and the rest when the
caller closes its side. An error on any shard stream ends the call with that error (a shard that
is down: SHARD_UNAVAILABLE); the messages answered before it are written on every replica.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Iterable, Iterator

import grpc

from lookalike.errors import InvalidArgument, LookalikeError, Reason
from lookalike.v1 import search_pb2
from search_service.router import placement
from search_service.router.shard_pool import ShardPool, translated, unavailable
from search_service.router.writes import relocate_text
from search_service.settings import SearchSettings

_END = object()
_NO_DEADLINE = 365 * 24 * 3600.0  # seconds; more is gRPC's infinite future


@dataclasses.dataclass
class _Message:
    index: int
    parts: dict[int, list[int]]  # shard -> the message's item positions sent to it
    answers: dict[tuple[int, int], search_pb2.UpsertStreamResponse] = dataclasses.field(default_factory=dict)
    replicas: int = 0  # answers expected: the replicas of every shard with a part


class _ReplicaStream:
    """One UpsertStream to one replica; its answers go to `inbox` as (key, answer or error)."""

    def __init__(self, pool: ShardPool, shard: int, replica: int, timeout: float | None, inbox: queue.Queue) -> None:
        self.key = (shard, replica)
        self.sent: list[int] = []  # the router message each of this stream's messages belongs to
        self.ended = False
        self._outbox: queue.Queue = queue.Queue()
        self._call = pool.stub(shard, replica).UpsertStream(iter(self._outbox.get, _END), timeout=timeout)
        self._reader = threading.Thread(target=self._read, args=(inbox,), daemon=True, name=f"shard-stream-{shard}.{replica}")
        self._reader.start()

    def send(self, message: int, request: search_pb2.UpsertStreamRequest) -> None:
        self.sent.append(message)
        self._outbox.put(request)

    def close(self) -> None:
        self._outbox.put(_END)

    def cancel(self) -> None:
        self._call.cancel()

    def join(self) -> None:
        self._reader.join()

    def _read(self, inbox: queue.Queue) -> None:
        try:
            for answer in self._call:
                inbox.put((self.key, answer))
        except grpc.RpcError as failure:
            inbox.put((self.key, translated(failure, self.key[0])))
        inbox.put((self.key, _END))


def ingest(
    requests: Iterable[search_pb2.UpsertStreamRequest], pool: ShardPool, settings: SearchSettings, time_left: float | None
) -> Iterator[search_pb2.UpsertStreamResponse]:
    pool.deadline(time_left)  # refuses a deadline already past
    # The caller's deadline, not shard_timeout_seconds: a bulk ingest may stream for hours. A call
    # without a deadline reports about 292 years left (gRPC's infinite future): none here either.
    timeout = time_left if time_left is not None and time_left < _NO_DEADLINE else None
    inbox: queue.Queue = queue.Queue()
    streams: dict[tuple[int, int], _ReplicaStream] = {}
    messages: list[_Message] = []
    answered = 0
    collection = ""
    try:
        for index, request in enumerate(requests):
            collection = _collection_of(request, collection, index)
            if len(request.items) > settings.max_batch_size:  # split, each part would pass a shard's limit
                raise InvalidArgument(
                    f"message {index} holds {len(request.items)} items, the limit is {settings.max_batch_size}",
                    reason=Reason.BATCH_TOO_LARGE,
                    field="items",
                    metadata={"limit": settings.max_batch_size},
                )
            message = _Message(index, placement.split([item.id for item in request.items], pool.count))
            messages.append(message)
            for shard, positions in message.parts.items():
                part = search_pb2.UpsertStreamRequest(collection=collection, items=[request.items[p] for p in positions])
                for replica in range(pool.replicas(shard)):
                    key = (shard, replica)
                    if key not in streams:
                        streams[key] = _ReplicaStream(pool, shard, replica, timeout, inbox)
                    streams[key].send(message.index, part)
                    message.replicas += 1
            _collect(inbox, streams, messages, block=False)
            while answered < len(messages) and _complete(messages[answered]):
                yield _answer(messages[answered])
                answered += 1
        for stream in streams.values():
            stream.close()
        while answered < len(messages):
            if not _complete(messages[answered]):
                if all(stream.ended for stream in streams.values()):  # a stream cut short without an error
                    raise unavailable(sorted({shard for shard in messages[answered].parts if (shard, 0) not in messages[answered].answers} or {0}))
                _collect(inbox, streams, messages, block=True)
                continue
            yield _answer(messages[answered])
            answered += 1
    finally:
        for stream in streams.values():
            stream.close()
            stream.cancel()  # no-op once a stream ended; else the caller is gone or failed
        for stream in streams.values():
            stream.join()


def _collection_of(request: search_pb2.UpsertStreamRequest, collection: str, index: int) -> str:
    if not collection:
        if not request.collection:
            raise InvalidArgument("the stream's first message must name the collection", reason=Reason.REQUIRED_FIELD_MISSING, field="collection")
        return request.collection
    if request.collection not in ("", collection):
        raise InvalidArgument(
            f"message {index} names collection {request.collection!r}; a stream writes to {collection!r} only",
            reason=Reason.NAME_INVALID,
            field="collection",
        )
    return collection


def _collect(inbox: queue.Queue, streams: dict, messages: list[_Message], *, block: bool) -> None:
    """Files the shard answers waiting in `inbox` under their router messages (at least one when
    `block`); raises a shard stream's error."""
    while True:
        try:
            key, answer = inbox.get(block=block)
        except queue.Empty:
            return
        block = False
        if isinstance(answer, LookalikeError):
            raise answer
        if answer is _END:
            streams[key].ended = True
            continue
        stream = streams[key]
        message = messages[stream.sent[answer.request_index]]
        message.answers[key] = answer


def _complete(message: _Message) -> bool:
    return len(message.answers) == message.replicas


def _answer(message: _Message) -> search_pb2.UpsertStreamResponse:
    """The shards' answers to a message's parts, as one answer to the message."""
    failures = []
    upserted = 0
    for shard, positions in message.parts.items():
        first = message.answers[(shard, 0)]
        upserted += first.upserted
        for failure in first.failures:
            failures.append(
                search_pb2.ItemFailure(
                    item_index=positions[failure.item_index],
                    id=failure.id,
                    reason=failure.reason,
                    field=relocate_text(failure.field, positions),
                    message=relocate_text(failure.message, positions),
                )
            )
    failures.sort(key=lambda f: f.item_index)
    return search_pb2.UpsertStreamResponse(request_index=message.index, upserted=upserted, failures=failures)

