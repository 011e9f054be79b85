"""A mirror: one collection kept in agreement with another, item by item, re-embedding kept pictures
with the mirror collection's model. A reindex is a mirror from the live collection to the new one,
and after its alias switch a second one back, so a rollback loses no write (search_service/reindex.py).

`sync(ids)` makes the mirror agree with the source on those ids, as the source is now:
- an item gone from the source goes from the mirror;
- an item whose kept picture differs from the one the mirror embedded (or that the mirror lacks)
  is embedded again by the mirror's model, with the source item's tags, uri, timestamp,
  attributes and fingerprint (fingerprints come from the picture, not the model);
- an item whose fields alone differ gets them, without embedding;
- an item without a kept picture cannot be re-embedded: it is noted in `without_source` and kept
  out of the mirror.
A sync holds the lock it is given (both directions of one reindex share one), so two syncs never
interleave on an id: the later one reads the source after the earlier one wrote.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from lookalike.errors import NotFound
from lookalike.v1 import images_pb2
from search_service.collection import UPDATABLE_FIELDS, Collection
from search_service.collection_store import CollectionStore
from search_service.encoder_gateway import EncoderGateway


class Mirror:
    def __init__(
        self, store: CollectionStore, encoder: EncoderGateway, source: str, mirror: str, lock: threading.Lock, timeout_seconds: float
    ) -> None:
        self.store, self.encoder, self.source, self.mirror = store, encoder, source, mirror
        self._lock, self._timeout = lock, timeout_seconds
        self.without_source: set[str] = set()  # source items that kept no picture, as last seen

    def sync(self, ids: Sequence[str]) -> int:
        """How many items of the mirror it changed."""
        with self._lock:
            return self._sync(list(dict.fromkeys(ids)))

    def _sync(self, ids: list[str]) -> int:
        source, target = self.store.get(self.source), self.store.get(self.mirror)
        kept, copies = self.store.sources_of(source.spec.name), self.store.sources_of(target.spec.name)
        live, gone = source.get(ids)
        have = {item.id: item for item in target.get(ids)[0]}
        drop = [i for i in gone if i in have]
        self.without_source.difference_update(gone)
        embed, refresh = [], []
        for item in live:
            digest = kept.digest(item.id) if kept is not None else ""
            if not digest:
                self.without_source.add(item.id)
                if item.id in have:
                    drop.append(item.id)
                continue
            self.without_source.discard(item.id)
            copied = have.get(item.id)
            if copied is None or copies.digest(item.id) != digest:
                embed.append(item)
            elif (copied.tags, copied.uri, copied.timestamp, copied.attributes) != (item.tags, item.uri, item.timestamp, item.attributes):
                refresh.append(item)
        if drop:
            target.delete(drop)
            copies.forget(drop)
        if embed:
            pictures = [kept.read(item.id) for item in embed]
            vectors = self._embed(target, pictures)
            prints = [_fingerprint(source, item.id) for item in embed] if target.spec.find_copies else [b""] * len(embed)
            copies.keep([item.id for item in embed], pictures)
            target.upsert(
                [item.id for item in embed], vectors, [item.tags for item in embed], [item.uri for item in embed],
                [item.timestamp for item in embed], prints, [item.attributes for item in embed],
            )
        if refresh:
            target.update(
                [item.id for item in refresh], UPDATABLE_FIELDS, [item.tags for item in refresh], [item.uri for item in refresh],
                [item.timestamp for item in refresh], [item.attributes for item in refresh],
            )
        return len(drop) + len(embed) + len(refresh)

    def _embed(self, target: Collection, pictures: list[bytes]) -> np.ndarray:
        ref = images_pb2.ModelRef(name=target.spec.model_name, version=target.spec.model_version)
        images = [images_pb2.Image(encoded=p) for p in pictures]
        vectors, _ = self.encoder.embed(ref, images, [f"items[{n}].image" for n in range(len(images))], self._timeout)
        return vectors


def _fingerprint(source: Collection, item_id: str) -> bytes:
    try:
        return source.fingerprint_of(item_id)
    except NotFound:  # deleted since it was read: the delete's own sync removes it again
        return b""
