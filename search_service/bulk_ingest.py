"""UpsertStream: bulk ingest, where a bad item is reported and the rest are written.

Each message of the stream is a batch of items. Its bad items (no content, a vector of
another model, an image the encoder cannot read, an invalid id, vector, tag, uri or
attribute) become `ItemFailure`s with the reason and field the unary Upsert would have
raised; the good ones join a buffer written as one log record (one fsync) once it holds
`max_stream_record_items`, when a message repeats an id it holds, and at the end of the
stream. Each message is answered after the write that holds its items, so what an answer
counts is durable. Errors that are not an item's (the collection, the encoder service, the
disk) end the stream with their status; the messages answered before are written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from lookalike.errors import FieldViolation, InvalidArgument, LookalikeError, Reason
from lookalike.v1 import encoder_pb2, errors_pb2, search_pb2
from search_service.collection import Collection
from search_service.collection_store import CollectionStore
from search_service.item_writes import ItemWrites, picture_of
from search_service.search_requests import check_model
from search_service.settings import SearchSettings
from search_service.validation import check_upsert

# (collection, images, their fields, fingerprint kind) -> (vectors, fingerprints), as the servicer embeds
Embed = Callable[[Collection, list, list[str], int], tuple[np.ndarray, list[bytes]]]


class _Buffer:
    """Validated items waiting to be written together."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.vectors: list[np.ndarray] = []
        self.tags: list[tuple[str, ...]] = []
        self.uris: list[str] = []
        self.timestamps: list[int] = []
        self.fingerprints: list[bytes] = []
        self.attributes: list[dict[str, float]] = []
        self.pictures: list[bytes | None] = []

    def write(self, writes: ItemWrites, collection: Collection) -> None:
        if self.ids:
            writes.upsert(
                collection, self.ids, np.stack(self.vectors), self.tags, self.uris, self.timestamps, self.fingerprints, self.attributes, self.pictures
            )
        self.__init__()


def ingest(
    requests: Iterable[search_pb2.UpsertStreamRequest], store: CollectionStore, writes: ItemWrites, settings: SearchSettings, embed: Embed
) -> Iterator[search_pb2.UpsertStreamResponse]:
    """One response per message, in order, each once its items are durable."""
    collection: Collection | None = None
    buffer = _Buffer()
    waiting: list[search_pb2.UpsertStreamResponse] = []  # the answers to the messages in the buffer
    for index, request in enumerate(requests):
        if collection is None:
            if not request.collection:
                raise InvalidArgument("the stream's first message must name the collection", reason=Reason.REQUIRED_FIELD_MISSING, field="collection")
            collection = store.get(request.collection)
        elif request.collection not in ("", collection.spec.name):
            raise InvalidArgument(
                f"message {index} names collection {request.collection!r}; a stream writes to {collection.spec.name!r} only",
                reason=Reason.NAME_INVALID,
                field="collection",
            )
        items = request.items
        if len(items) > settings.max_batch_size:
            raise InvalidArgument(
                f"message {index} holds {len(items)} items, the limit is {settings.max_batch_size}",
                reason=Reason.BATCH_TOO_LARGE,
                field="items",
                metadata={"limit": settings.max_batch_size},
            )
        bad: dict[int, list[FieldViolation]] = {}
        rows, prints = _contents(collection, items, bad, embed)
        good = [i for i in range(len(items)) if i not in bad]
        batch, invalid = check_upsert(
            collection.spec,
            [items[i].id for i in good],
            [rows[i] for i in good],  # rows, not a matrix: a row of the wrong length is named, not fatal
            [list(items[i].tags) for i in good],
            [items[i].uri for i in good],
            [items[i].timestamp for i in good],
            [prints[i] for i in good],
            [dict(items[i].attributes) for i in good],
        )
        for position, violations in invalid.items():  # positions among the good ones: renamed to the message's
            original = good[position]
            bad[original] = [_renamed(v, position, original) for v in violations]
        accepted = [p for p, i in enumerate(good) if i not in bad]
        held = set(buffer.ids)
        if any(batch.ids[p] in held for p in accepted):  # one record holds each id once
            buffer.write(writes, collection)
            yield from waiting
            waiting.clear()
        for p in accepted:
            buffer.ids.append(batch.ids[p])
            buffer.vectors.append(batch.vectors[p])
            buffer.tags.append(batch.tags[p])
            buffer.uris.append(batch.uris[p])
            buffer.timestamps.append(batch.timestamps[p])
            buffer.fingerprints.append(batch.fingerprints[p])
            buffer.attributes.append(batch.attributes[p])
            buffer.pictures.append(picture_of(items[good[p]]))
        waiting.append(
            search_pb2.UpsertStreamResponse(
                request_index=index, upserted=len(accepted), failures=[_failure(i, items[i].id, bad[i][0]) for i in sorted(bad)]
            )
        )
        if len(buffer.ids) >= settings.max_stream_record_items:
            buffer.write(writes, collection)
            yield from waiting
            waiting.clear()
    if collection is not None:
        buffer.write(writes, collection)
    yield from waiting


def _contents(collection: Collection, items, bad: dict[int, list[FieldViolation]], embed: Embed) -> tuple[list, list[bytes]]:
    """Each item's vector (None for a bad one) and fingerprint; records the bad ones in `bad`."""
    spec = collection.spec
    rows: list = [None] * len(items)
    prints = [b""] * len(items)
    with_images = []
    for i, item in enumerate(items):
        content = item.WhichOneof("content")
        if content == "vector":
            try:
                check_model(spec, item.vector, f"items[{i}].vector")
            except LookalikeError as error:  # this item's: reported, the others go on
                bad[i] = _violations(error, f"items[{i}].vector")
                continue
            rows[i] = item.vector.values
        elif content == "image":
            with_images.append(i)
        else:
            field = f"items[{i}]"
            bad[i] = [FieldViolation(field, f"{field} has neither a vector nor an image", Reason.REQUIRED_FIELD_MISSING)]
    kind = encoder_pb2.FINGERPRINT_KIND_STORED if spec.find_copies else encoder_pb2.FINGERPRINT_KIND_UNSPECIFIED
    for _ in range(2):  # a second call without the images the first refused
        if not with_images:
            break
        fields = [f"items[{i}].image" for i in with_images]
        try:
            vectors, fingerprints = embed(collection, [items[i].image for i in with_images], fields, kind)
        except InvalidArgument as error:
            refused = {i for i, field in zip(with_images, fields) for v in error.field_violations if v.field.startswith(field)}
            if not refused:
                raise  # not about any one image
            for i, field in zip(with_images, fields):
                if i in refused:
                    bad[i] = [v for v in error.field_violations if v.field.startswith(field)]
            with_images = [i for i in with_images if i not in refused]
            continue
        for position, i in enumerate(with_images):
            rows[i] = vectors[position]
            if fingerprints and fingerprints[position]:
                prints[i] = fingerprints[position]
        break
    return rows, prints


def _violations(error: LookalikeError, field: str) -> list[FieldViolation]:
    return list(error.field_violations) or [FieldViolation(field, error.message, error.reason)]


def _renamed(violation: FieldViolation, position: int, original: int) -> FieldViolation:
    """A violation of the good items' batch, at the item's path in its message."""
    old, new = f"items[{position}]", f"items[{original}]"
    return FieldViolation(violation.field.replace(old, new, 1), violation.description.replace(old, new, 1), violation.reason)


def _failure(position: int, item_id: str, violation: FieldViolation) -> search_pb2.ItemFailure:
    return search_pb2.ItemFailure(
        item_index=position,
        id=item_id,
        reason=errors_pb2.ErrorReason.Value(violation.reason),
        field=violation.field,
        message=violation.description,
    )
