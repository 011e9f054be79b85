"""The one path of every write to a collection's items: Upsert, UpsertStream, UpdateItems, Delete.

Beyond the collection's own write (log, then table), a write here
- keeps the items' pictures first, when the collection keeps sources (search_service/source_store.py),
  so every item the log acknowledges has its picture;
- then hands the written ids to the mirrors following this collection (search_service/mirror.py:
  a reindex's, both ways after its switch), which bring their collections up to date with them
  before the call is answered: a write acknowledged during a reindex is in both collections. A
  mirror that cannot (the encoder is down) leaves the ids to the reindex's next pass; the write
  itself stands, as it is durable. A mirror whose collection was deleted stops following.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from lookalike.errors import NotFound
from lookalike.v1 import search_pb2
from search_service.collection import Collection
from search_service.collection_store import CollectionStore

log = logging.getLogger(__name__)


def picture_of(item: search_pb2.Item) -> bytes | None:
    """The encoded picture an upserted item carries; None for a vector or a tensor, which have none."""
    if item.WhichOneof("content") == "image" and item.image.WhichOneof("source") == "encoded":
        return item.image.encoded
    return None


class Follower(Protocol):
    """What follows a collection's writes: a reindex's `sync`."""

    def sync(self, ids: Sequence[str]) -> int: ...


class ItemWrites:
    def __init__(self, store: CollectionStore) -> None:
        self.store = store
        self._followers: dict[str, list[Follower]] = {}  # collection name -> followers; copied on change

    def follow(self, collection: str, follower: Follower) -> None:
        self._followers = {**self._followers, collection: [*self._followers.get(collection, []), follower]}

    def unfollow(self, collection: str, follower: Follower) -> None:
        rest = [f for f in self._followers.get(collection, []) if f is not follower]
        self._followers = {name: fs for name, fs in {**self._followers, collection: rest}.items() if fs}

    def upsert(self, collection: Collection, ids, vectors, tags, uris, timestamps, fingerprints, attributes, pictures: Sequence[bytes | None]) -> int:
        """Collection.upsert, with each item's encoded picture (None for an item sent as a vector)."""
        sources = self.store.sources_of(collection.spec.name)
        if sources is not None:
            sources.keep(ids, pictures)
        written = collection.upsert(ids, vectors, tags, uris, timestamps, fingerprints, attributes)
        self._tell(collection, ids)
        return written

    def update(self, collection: Collection, ids, fields, tags, uris, timestamps, attributes) -> int:
        updated = collection.update(ids, fields, tags, uris, timestamps, attributes)
        self._tell(collection, ids)
        return updated

    def delete(self, collection: Collection, ids: Sequence[str]) -> int:
        deleted = collection.delete(ids)
        sources = self.store.sources_of(collection.spec.name)
        if sources is not None:  # after the delete is logged: a crash between leaves a picture nobody uses
            sources.forget(ids)
        self._tell(collection, ids)
        return deleted

    def _tell(self, collection: Collection, ids: Sequence[str]) -> None:
        for follower in self._followers.get(collection.spec.name, ()):
            try:
                follower.sync(ids)
            except NotFound:  # its other collection was deleted: nothing left to follow for
                self.unfollow(collection.spec.name, follower)
            except Exception:  # the write is durable: the reindex's next pass copies these ids
                log.exception("a reindex could not follow a write now; its next pass will", extra={"fields": {"collection": collection.spec.name}})
