"""One collection: validated writes, made durable in the write-ahead log, then applied to
memory and the ScaNN index; searches with tag filters; snapshots.

What a write or query must satisfy is validation.py's; how a search uses ScaNN or scans
exactly is vector_index.py's. Here: which items a filtered search may return, the order in
which a write goes to disk and to memory, and the locks.

Files, in the collection's directory (see write_ahead_log.py and snapshot.py for formats):

    collection.json      the spec, written at creation (collection_store.py)
    snapshot-<seq>.npz   every item as of log record <seq>
    wal-<seq>.log        the records after it
    high-water           how far the log is known to reach (high_water_mark.py)
    (fingerprints of a collection with find_copies travel in the log records and snapshots,
    beside the vectors: the same durability)
    quarantine-*.bin     torn log tails cut off at load, kept for an operator

Concurrency: gRPC worker threads call in concurrently. Two locks per collection:
- the write lock serializes writers: the log gets one record at a time, in sequence order,
  and the fsync happens under it but outside the next lock, so searches never wait for disk;
- a readers-writer lock (read_write_lock.py) guards the in-memory state (vectors, ids, tags,
  the ScaNN searcher, which has no lock of its own between search and upsert/delete):
  searches, gets and infos share it; applying a write takes it exclusively for the few
  microseconds of the update.
A write returns only after it is applied, so every search that starts after a write was
acknowledged sees it. Index rebuilds (brute force -> tree, retraining) run under the write
lock only, so searches keep using the old searcher meanwhile (ScaNN releases the GIL while it
builds); the new searcher is swapped in under the exclusive lock.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from copy_detection.features import Fingerprint
from copy_detection.hash_index import HashIndex, hamming
from copy_detection.verdict import Thresholds
from lookalike.errors import FailedPrecondition, LookalikeError, NotFound, Reason, Unavailable
from search_service.high_water_mark import HighWaterMark
from search_service.read_write_lock import ReadWriteLock
from search_service.snapshot import (
    SnapshotData,
    load_latest_snapshot,
    remove_snapshots_before,
    remove_temporary_files,
    write_snapshot,
)
from search_service.tag_filter import TagFilter, TagIndex
from search_service.validation import describe_id, validate_ids, validate_k, validate_query, validate_upsert
from search_service.vector_index import METRICS, Candidates, IndexPolicy, VectorIndex
from search_service.write_ahead_log import DeleteRecord, LogRecord, UpsertRecord, WriteAheadLog

__all__ = [
    "DAMAGED",
    "METRICS",
    "READY",
    "Collection",
    "CollectionInfo",
    "CollectionSpec",
    "CopyCandidate",
    "Hit",
    "StoredItem",
    "TagFilter",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CollectionSpec:
    name: str
    dimension: int
    metric: str  # "cosine" | "dot_product" | "squared_l2"
    model_name: str = ""  # encoder model pinned by the collection ("" = vectors only)
    model_version: int = 0
    copy_thresholds: Thresholds | None = None  # set: the collection keeps fingerprints (find_copies)

    @property
    def find_copies(self) -> bool:
        return self.copy_thresholds is not None


READY = "ready"  # loaded and served
DAMAGED = "damaged"  # refused at load, or its log refuses writes until a restart


@dataclasses.dataclass(frozen=True)
class CollectionInfo:
    spec: CollectionSpec  # for a collection whose spec is unreadable: its name, dimension 0, metric ""
    size: int  # 0 when the collection could not be loaded
    state: str = READY
    state_reason: str = ""  # why it is DAMAGED, for clients: names files, never a server path


@dataclasses.dataclass(frozen=True)
class StoredItem:
    id: str
    vector: np.ndarray  # (dimension,) float32, as upserted
    tags: tuple[str, ...]
    uri: str
    timestamp: int  # 0: none
    has_fingerprint: bool


@dataclasses.dataclass(frozen=True)
class Hit:
    id: str
    score: float  # cosine similarity, dot product (higher is better) or squared L2 distance (lower is better)
    tags: tuple[str, ...]
    uri: str
    timestamp: int  # 0: none


@dataclasses.dataclass(frozen=True)
class CopyCandidate:
    """A stored item that may be a copy of a query: found by its hash, its embedding, or both."""

    hit: Hit  # score: the embedding's, by the collection's metric
    hash_distance: int | None  # bits of 64; None when the item has no fingerprint
    fingerprint: bytes  # b"" when none


class Collection:
    """Use `CollectionStore` to create and open collections; see the module docstring."""

    def __init__(
        self,
        directory: Path,
        spec: CollectionSpec,
        *,
        fsync: bool = True,
        snapshot_every: int = 10_000,
        policy: IndexPolicy | None = None,
    ) -> None:
        """Loads the collection from `directory`: the newest snapshot, then the log after it."""
        self.spec = spec
        self._directory = directory
        self._fsync = fsync
        self._snapshot_every = snapshot_every
        self._index = VectorIndex(spec.dimension, spec.metric, policy, label=spec.name)
        self._tags: dict[str, tuple[str, ...]] = {}
        self._uris: dict[str, str] = {}  # only non-empty ones
        self._timestamps: dict[str, int] = {}  # only non-zero ones
        self._fingerprints: dict[str, bytes] = {}  # items upserted as images, with find_copies
        self._hashes = HashIndex()  # their perceptual hashes
        self._tag_index = TagIndex()
        self._write_lock = threading.Lock()
        self._state_lock = ReadWriteLock()
        self._snapshot_lock = threading.Lock()
        self._closed: Callable[[], LookalikeError] | None = None  # makes the error of every call after close

        remove_temporary_files(directory)
        high_water = HighWaterMark.open(directory, label=spec.name, fsync=fsync)
        try:
            snapshot = load_latest_snapshot(directory, dimension=spec.dimension)
            if snapshot is not None:
                self._apply_upsert(
                    snapshot.ids, snapshot.vectors, snapshot.tags, snapshot.uris, snapshot.timestamps, snapshot.fingerprints
                )
            self._wal, self._records_since_snapshot = WriteAheadLog.open(
                directory,
                label=spec.name,
                after_seq=snapshot.seq if snapshot is not None else 0,
                apply=self._replay,
                high_water=high_water,
                fsync=fsync,
            )
        except BaseException:
            high_water.close()
            raise
        try:
            self._index.install(self._index.build_searcher())
        except BaseException:
            self._wal.close()
            raise
        logger.info(
            "collection %r loaded: %d items, snapshot at record %d, %d log records replayed",
            spec.name,
            len(self._index),
            snapshot.seq if snapshot is not None else 0,
            self._records_since_snapshot,
        )

    # --- reads ---

    def info(self) -> CollectionInfo:
        with self._state_lock.read():
            self._check_open()
            failure = self._wal.failure
            if failure is None:
                return CollectionInfo(self.spec, len(self._index))
            reason = f"its write-ahead log refuses writes until the search service restarts ({failure})"
            return CollectionInfo(self.spec, len(self._index), DAMAGED, reason)

    @property
    def index_kind(self) -> str:
        """The searcher in use: brute_force, tree_ah, or exact (none at the moment: numpy scans)."""
        with self._state_lock.read():
            return self._index.kind

    def get(self, ids: Sequence[str]) -> tuple[list[StoredItem], list[str]]:
        """(the items found, in request order; the requested ids that do not exist)."""
        found, missing = [], []
        with self._state_lock.read():
            self._check_open()
            for item_id in ids:
                if item_id in self._index:
                    found.append(self._stored_item(item_id))
                else:
                    missing.append(item_id)
        return found, missing

    def vector_of(self, id: str) -> np.ndarray:  # noqa: A002 - the API's name
        with self._state_lock.read():
            self._check_open()
            if id not in self._index:
                raise NotFound(
                    f"item {describe_id(id)} not found in collection '{self.spec.name}'",
                    reason=Reason.ITEM_NOT_FOUND,
                    field="item_id",
                    metadata={"item_id": id, "collection": self.spec.name},
                )
            return self._index.vector(id)

    def fingerprint_of(self, id: str) -> bytes:  # noqa: A002 - the API's name
        """The item's stored fingerprint; b"" when it has none; NotFound when there is no such item."""
        self.vector_of(id)  # NotFound, named as a query's item_id
        with self._state_lock.read():
            return self._fingerprints.get(id, b"")

    def search(
        self,
        query: np.ndarray,
        k: int,
        tag_filter: TagFilter | None = None,
        exclude_ids: Iterable[str] = frozenset(),
    ) -> list[Hit]:
        """The k items nearest to `query` that pass `tag_filter` and are not excluded, best first."""
        query = validate_query(self.spec, query)
        k = validate_k(k)
        if tag_filter is not None and tag_filter.is_empty:
            tag_filter = None
        assert not isinstance(exclude_ids, str), "exclude_ids is a set of ids, not one id"
        exclude_ids = frozenset(exclude_ids)
        with self._state_lock.read():
            self._check_open()
            pairs = self._index.search(query, k, self._candidates(tag_filter, exclude_ids))
            return [self._hit(i, score) for i, score in pairs]

    def copy_candidates(
        self,
        query: np.ndarray,
        phash: int | None,
        count: int,
        max_hash_distance: int,
        tag_filter: TagFilter | None = None,
        exclude_ids: Iterable[str] = frozenset(),
    ) -> list[CopyCandidate]:
        """The items a copy search verifies: every item whose perceptual hash is within
        `max_hash_distance` of `phash` (an exact scan: the ANN index cannot make it miss), then
        the `count` nearest by embedding; each once, with its fingerprint and hash distance."""
        query = validate_query(self.spec, query)
        count = validate_k(count)
        if tag_filter is not None and tag_filter.is_empty:
            tag_filter = None
        exclude_ids = frozenset(exclude_ids)
        with self._state_lock.read():
            self._check_open()
            allowed = self._candidates(tag_filter, exclude_ids)
            by_hash = (
                [] if phash is None else [(i, d) for i, d in self._hashes.within(phash, max_hash_distance, count) if _passes(i, allowed)]
            )
            nearest = self._index.search(query, count, allowed)
            scores = dict(nearest)
            missing = [i for i, _ in by_hash if i not in scores]
            if missing:  # hash hits the index did not rank: score them exactly
                scores.update(zip(missing, self._index.scores(query, missing)))
            ordered = list(dict.fromkeys([i for i, _ in by_hash] + [i for i, _ in nearest]))
            return [self._copy_candidate(i, scores[i], phash) for i in ordered]

    def _candidates(self, tag_filter: TagFilter | None, exclude_ids: frozenset[str]) -> Candidates | None:
        """The items a search may return; None for all. A filter that names tags an item must
        carry lists its matches from the tag index; with only none_of and exclusions, what is
        left out is listed instead (it is usually the smaller set)."""
        excluded = {i for i in exclude_ids if i in self._index}
        if tag_filter is None and not excluded:
            return None
        if tag_filter is not None and tag_filter.has_positive_clause:
            return self._index.candidates_among(self._tag_index.matching_ids(tag_filter) - excluded)
        banned = excluded | (self._tag_index.ids_with_any(tag_filter.none_of) if tag_filter else set())
        return self._index.candidates_except(banned)

    # --- writes ---

    def upsert(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        tags: Sequence[Sequence[str]] | None = None,
        uris: Sequence[str] | None = None,
        timestamps: Sequence[int] | None = None,
        fingerprints: Sequence[bytes] | None = None,
    ) -> int:
        """Inserts the items or replaces those with the same ids; all or nothing. Durable on return.
        `fingerprints`: copy_detection's bytes per item (b"" for none), for a collection with find_copies."""
        batch = validate_upsert(self.spec, ids, vectors, tags, uris, timestamps, fingerprints)
        if not batch.ids:
            return 0
        with self._write_lock:
            self._check_open()
            self._wal.append_upsert(batch.ids, batch.vectors, batch.tags, batch.uris, batch.timestamps, batch.fingerprints)
            with self._state_lock.write():
                self._apply_upsert(batch.ids, batch.vectors, batch.tags, batch.uris, batch.timestamps, batch.fingerprints)
            self._after_write()
        self._maybe_snapshot()
        return len(batch.ids)

    def delete(self, ids: Sequence[str]) -> int:
        """Deletes the ids that exist (others are ignored); returns how many existed. Durable on return."""
        ids = validate_ids(ids)
        with self._write_lock:
            self._check_open()
            # Only writers change membership, and they hold the write lock: no race with this check.
            present = list(dict.fromkeys(i for i in ids if i in self._index))
            if not present:
                return 0
            self._wal.append_delete(present)
            with self._state_lock.write():
                self._apply_delete(present)
            self._after_write()
        self._maybe_snapshot()
        return len(present)

    # --- snapshots and lifecycle ---

    def snapshot(self) -> int | None:
        """Writes a snapshot now if anything was logged since the last; returns its sequence number.

        Under the write lock: copy the state and rotate the log (new records go to a new file).
        Then, with writes and searches going on: write the snapshot atomically, delete older
        snapshots and the sealed log files it covers. A crash at any point leaves either the
        old snapshot with every log file, or the new one plus files whose records it skips.
        """
        with self._snapshot_lock:
            with self._write_lock:
                self._check_open()
                if self._records_since_snapshot == 0 and not self._wal.has_sealed_files():
                    return None
                seq = self._wal.last_seq
                ids = self._index.ids()
                data = SnapshotData(
                    seq=seq,
                    ids=ids,
                    vectors=self._index.vectors().copy(),
                    tags=[self._tags[i] for i in ids],
                    uris=[self._uris.get(i, "") for i in ids],
                    timestamps=[self._timestamps.get(i, 0) for i in ids],
                    fingerprints=[self._fingerprints.get(i, b"") for i in ids],
                )
                self._wal.rotate()
                self._records_since_snapshot = 0
            path = write_snapshot(self._directory, data, fsync=self._fsync)
            remove_snapshots_before(self._directory, seq, fsync=self._fsync)
            removed = self._wal.remove_through(seq)
            logger.info(
                "collection %r: snapshot %s (%d items), %d log files removed",
                self.spec.name,
                path.name,
                len(ids),
                removed,
            )
            return seq

    def close(self) -> None:
        """Snapshots (so the next load replays nothing) and closes the log; later calls raise
        Unavailable (SHUTTING_DOWN): the server is stopping, another replica may answer."""
        try:
            self.snapshot()
        except (Unavailable, NotFound, FailedPrecondition):
            pass  # closed or deleted already, or the log failed; the log on disk is what counts then
        except Exception:  # the data is safe in the log; the next load replays it
            logger.exception("collection %r: snapshot on close failed", self.spec.name)
        name = self.spec.name
        self._shut(
            lambda: Unavailable(
                f"collection '{name}' is closed: the server is shutting down",
                reason=Reason.SHUTTING_DOWN,
                metadata={"collection": name},
            )
        )

    def drop(self) -> None:
        """Closes without a snapshot, for deletion: later calls raise NotFound."""
        name = self.spec.name
        self._shut(
            lambda: NotFound(
                f"collection '{name}' not found (it was deleted)",
                reason=Reason.COLLECTION_NOT_FOUND,
                metadata={"collection": name},
            )
        )

    def _shut(self, error: Callable[[], LookalikeError]) -> None:
        with self._snapshot_lock, self._write_lock, self._state_lock.write():
            if self._closed is None:
                self._closed = error
                self._wal.close()

    # --- internals ---

    def _check_open(self) -> None:
        if self._closed is not None:
            raise self._closed()

    def _stored_item(self, item_id: str) -> StoredItem:
        return StoredItem(
            item_id,
            self._index.vector(item_id),
            self._tags[item_id],
            self._uris.get(item_id, ""),
            self._timestamps.get(item_id, 0),
            item_id in self._fingerprints,
        )

    def _hit(self, item_id: str, score: float) -> Hit:
        return Hit(item_id, score, self._tags[item_id], self._uris.get(item_id, ""), self._timestamps.get(item_id, 0))

    def _copy_candidate(self, item_id: str, score: float, phash: int | None) -> CopyCandidate:
        fingerprint = self._fingerprints.get(item_id, b"")
        stored_hash = self._hashes.get(item_id) if fingerprint else None
        distance = None if stored_hash is None or phash is None else int(hamming(phash, np.array([stored_hash], np.uint64))[0])
        return CopyCandidate(self._hit(item_id, score), distance, fingerprint)

    def _after_write(self) -> None:
        """Under the write lock, after a write was applied: count it, rebuild the index if due."""
        self._records_since_snapshot += 1
        if not self._index.needs_rebuild():
            return
        try:
            searcher = self._index.build_searcher()  # searches go on meanwhile, on the old searcher
        except Exception:  # the write is durable and applied; searches stay correct without the rebuild
            logger.exception("collection %r: rebuilding the index failed", self.spec.name)
            return
        with self._state_lock.write():
            self._index.install(searcher)

    def _maybe_snapshot(self) -> None:
        if (
            self._records_since_snapshot < self._snapshot_every
            or self._snapshot_lock.locked()  # another writer is on it
            or self._closed is not None
        ):
            return
        try:
            self.snapshot()
        except Exception:  # the write that triggered this is durable already; the log keeps everything
            logger.exception("collection %r: snapshot failed", self.spec.name)

    def _replay(self, record: LogRecord) -> None:
        if isinstance(record, UpsertRecord):
            if record.vectors.shape[1] != self.spec.dimension:
                raise FailedPrecondition(
                    f"collection '{self.spec.name}': log record {record.seq} has vectors of dimension "
                    f"{record.vectors.shape[1]}, the collection has {self.spec.dimension}",
                    reason=Reason.COLLECTION_DAMAGED,
                    metadata={"collection": self.spec.name},
                )
            self._apply_upsert(record.ids, record.vectors, record.tags, record.uris, record.timestamps, record.fingerprints)
        else:
            assert isinstance(record, DeleteRecord)
            self._apply_delete(record.ids)

    def _apply_upsert(self, ids, vectors: np.ndarray, tags, uris, timestamps, fingerprints) -> None:
        self._index.upsert(list(ids), vectors)
        for item_id, item_tags, uri, timestamp, fingerprint in zip(ids, tags, uris, timestamps, fingerprints):
            old_tags = self._tags.get(item_id)
            if old_tags:
                self._tag_index.remove(item_id, old_tags)
            self._tags[item_id] = item_tags
            self._tag_index.add(item_id, item_tags)
            if uri:
                self._uris[item_id] = uri
            else:
                self._uris.pop(item_id, None)
            if timestamp:
                self._timestamps[item_id] = timestamp
            else:
                self._timestamps.pop(item_id, None)
            if fingerprint:
                self._fingerprints[item_id] = fingerprint
                self._hashes.set(item_id, Fingerprint.from_bytes(fingerprint).phash)
            elif self._fingerprints.pop(item_id, None) is not None:
                self._hashes.remove(item_id)

    def _apply_delete(self, ids) -> None:
        for item_id in self._index.delete(list(ids)):
            self._tag_index.remove(item_id, self._tags.pop(item_id))
            self._uris.pop(item_id, None)
            self._timestamps.pop(item_id, None)
            if self._fingerprints.pop(item_id, None) is not None:
                self._hashes.remove(item_id)


def _passes(item_id: str, allowed: Candidates | None) -> bool:
    return allowed is None or allowed.accept(item_id)
