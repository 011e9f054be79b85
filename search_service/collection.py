"""One collection: validated writes, made durable in the write-ahead log, then applied to
memory; searches with filters, crowding and examples; snapshots; background index rebuilds.

What a write or query must satisfy is validation.py's; how the items are kept and searched
without a lock is item_table.py's and vector_index.py's; filters are item_filter.py's,
crowding and examples catalogue_query.py's. Here: the order in which a write goes to disk and
to memory, which items a search may return, the rebuild thread, and snapshots.

Files, in the collection's directory (see write_ahead_log.py and snapshot.py for formats):

    collection.json      the spec, written at creation (collection_store.py)
    snapshot-<seq>.npz   every item as of log record <seq>
    wal-<seq>.log        the records after it
    high-water           how far the log is known to reach (high_water_mark.py)
    (fingerprints of a collection with find_copies travel in the log records and snapshots,
    beside the vectors: the same durability)
    quarantine-*.bin     torn log tails cut off at load, kept for an operator

Concurrency: gRPC worker threads call in concurrently.
- Writers take the write lock: the log gets one record at a time, in sequence order (the
  fsync happens under it); then the write is applied to the index, which publishes a new
  state. A write returns only after that, so every search that starts after a write was
  acknowledged sees it.
- Reads (searches, gets, infos, listings) take no lock at all: each reads one published
  state of the index (vector_index.py), consistent as of one write.
- Index rebuilds run in a background thread (one at a time): compaction, ScaNN training and
  tuning without any lock, then a short swap under the write lock, so no write waits for a
  rebuild and searches use the old index meanwhile.
- Fingerprints and their perceptual hashes (FindCopies only) sit behind a small lock of their
  own, taken by writers while applying and by copy_candidates while scanning the hashes.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from copy_detection.features import Fingerprint
from copy_detection.hash_index import HashIndex, hamming
from lookalike.errors import FailedPrecondition, InvalidArgument, LookalikeError, NotFound, Reason, Unavailable
from search_service.catalogue_query import Crowding, crowd, example_query
from search_service.collection_types import (
    DAMAGED,
    READY,
    UPDATABLE_FIELDS,
    CollectionInfo,
    CollectionSpec,
    CopyCandidate,
    Hit,
    IndexInfo,
    StoredItem,
)
from search_service.high_water_mark import HighWaterMark
from search_service.index_rebuilder import IndexRebuilder
from search_service.item_filter import AttributeRange, TagFilter, allowed
from search_service.item_table import item_meta
from search_service.snapshot import (
    SnapshotData,
    load_latest_snapshot,
    remove_snapshots_before,
    remove_temporary_files,
    write_snapshot,
)
from search_service.validation import describe_id, validate_ids, validate_k, validate_query, validate_upsert
from search_service.vector_index import EXACT, METRICS, IndexPolicy, State, VectorIndex
from search_service.write_ahead_log import DeleteRecord, LogRecord, UpsertRecord, WriteAheadLog

__all__ = [
    "DAMAGED",
    "METRICS",
    "READY",
    "AttributeRange",
    "Collection",
    "CollectionInfo",
    "CollectionSpec",
    "CopyCandidate",
    "Crowding",
    "Hit",
    "IndexInfo",
    "StoredItem",
    "TagFilter",
    "UPDATABLE_FIELDS",
]

logger = logging.getLogger(__name__)

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
        """Loads the collection from `directory`: the newest snapshot, then the log after it,
        then builds the index (before the collection is served, so in the foreground)."""
        self.spec = spec
        self._directory = directory
        self._fsync = fsync
        self._snapshot_every = snapshot_every
        self._index = VectorIndex(spec.dimension, spec.metric, policy, label=spec.name)
        self._fingerprints: dict[str, bytes] = {}  # items upserted as images, with find_copies
        self._hashes = HashIndex()  # their perceptual hashes
        self._copy_lock = threading.Lock()  # guards the two above
        self._write_lock = threading.Lock()
        self._snapshot_lock = threading.Lock()
        self._rebuilder = IndexRebuilder(self._index, self._write_lock, spec.name, lambda: self._closed is None)
        self._closed: Callable[[], LookalikeError] | None = None  # makes the error of every call after close

        remove_temporary_files(directory)
        high_water = HighWaterMark.open(directory, label=spec.name, fsync=fsync)
        try:
            snapshot = load_latest_snapshot(directory, dimension=spec.dimension)
            if snapshot is not None:
                self._apply_upsert(
                    snapshot.ids,
                    snapshot.vectors,
                    snapshot.tags,
                    snapshot.uris,
                    snapshot.timestamps,
                    snapshot.fingerprints,
                    snapshot.attributes or [{}] * len(snapshot.ids),
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
            self._index.install(self._index.build(self._index.state, background=False))
        except BaseException:
            self._wal.close()
            raise
        logger.info(
            "collection %r loaded: %d items, snapshot at record %d, %d log records replayed",
            spec.name,
            self._index.state.live,
            snapshot.seq if snapshot is not None else 0,
            self._records_since_snapshot,
        )

    # --- reads (no lock: one published state each) ---

    def info(self) -> CollectionInfo:
        self._check_open()
        state = self._index.state
        failure = self._wal.failure
        if failure is None:
            return CollectionInfo(self.spec, state.live, index=self._index_info(state))
        reason = f"its write-ahead log refuses writes until the search service restarts ({failure})"
        return CollectionInfo(self.spec, state.live, DAMAGED, reason, self._index_info(state))

    def _index_info(self, state: State) -> IndexInfo:
        base = state.base
        if base is None:
            return IndexInfo(EXACT, 0, state.live, self._rebuilder.running, 1.0, 0, 0, 0, 0)
        tuning = base.tuning
        return IndexInfo(
            kind=base.kind,
            indexed=base.upto - state.base_dead,
            pending=state.count - base.upto,
            rebuilding=self._rebuilder.running,
            estimated_recall=tuning.recall,
            recall_k=tuning.k or self._index.policy.tuning_k,
            num_leaves=base.num_leaves,
            leaves_to_search=tuning.leaves_to_search,
            reorder=tuning.reorder,
        )

    @property
    def index_kind(self) -> str:
        """The searcher in use: brute_force, tree_ah, or exact (none yet: numpy scans)."""
        base = self._index.state.base
        return EXACT if base is None else base.kind

    def get(self, ids: Sequence[str]) -> tuple[list[StoredItem], list[str]]:
        """(the items found, in request order; the requested ids that do not exist)."""
        self._check_open()
        state, slots = self._lookup(ids)
        found = [self._stored_item(state, slot) for slot in slots if slot is not None]
        return found, [i for i, slot in zip(ids, slots) if slot is None]

    def vector_of(self, id: str, field: str = "item_id") -> np.ndarray:  # noqa: A002 - the API's name
        self._check_open()
        state, (slot,) = self._lookup([id])
        if slot is None:
            raise NotFound(
                f"item {describe_id(id)} not found in collection '{self.spec.name}'",
                reason=Reason.ITEM_NOT_FOUND,
                field=field,
                metadata={"item_id": id, "collection": self.spec.name},
            )
        return state.vectors[slot].copy()

    def fingerprint_of(self, id: str) -> bytes:  # noqa: A002 - the API's name
        """The item's stored fingerprint; b"" when it has none; NotFound when there is no such item."""
        self.vector_of(id)  # NotFound, named as a query's item_id
        with self._copy_lock:
            return self._fingerprints.get(id, b"")

    def search(
        self,
        query: np.ndarray,
        k: int,
        tag_filter: TagFilter | None = None,
        exclude_ids: Iterable[str] = frozenset(),
        *,
        ranges: Sequence[AttributeRange] = (),
        score_threshold: float | None = None,
        exact: bool = False,
        crowding: Crowding | None = None,
    ) -> list[Hit]:
        """The k items nearest to `query` that pass `tag_filter` and `ranges`, are not excluded
        and score at least `score_threshold` (for squared L2, a distance: at most), at most
        crowding.per_group per group; best first. `exact`: scan every allowed item exactly."""
        prepared = self._index.prepare_query(validate_query(self.spec, query))
        k = validate_k(k)
        assert not isinstance(exclude_ids, str), "exclude_ids is a set of ids, not one id"
        self._check_open()
        if exclude_ids or ranges or (tag_filter is not None and not tag_filter.is_empty):
            state, excluded = self._lookup(list(exclude_ids))
            mask = allowed(state, tag_filter, tuple(ranges), np.array([s for s in excluded if s is not None], np.int64))
        else:
            state, mask = self._index.state, None
        if crowding is None:
            slots, scores = self._index.search(state, prepared, k, mask, exact)
        else:
            slots, scores = self._crowded(state, prepared, k, mask, exact, crowding)
        return self._hits(state, slots, scores, score_threshold)

    def search_batch(self, queries: Sequence[np.ndarray], k: int) -> list[list[Hit]]:
        """`search` of each query, unfiltered, equal to the single searches; the index answers
        them in one batched ScaNN call on every core."""
        k = validate_k(k)
        matrix = np.stack([validate_query(self.spec, q, f"queries[{i}]") for i, q in enumerate(queries)])
        matrix = self._index.prepare_queries(matrix)
        self._check_open()
        state = self._index.state
        return [self._hits(state, slots, scores, None) for slots, scores in self._index.search_batch(state, matrix, k)]

    def example_vector(self, positive_ids: Sequence[str], negative_ids: Sequence[str], vectors: Sequence[np.ndarray] = ()) -> np.ndarray:
        """The query of examples (catalogue_query.example_query): stored items by id, plus
        `vectors` as further positives. NotFound names the missing id's field."""
        positives = list(vectors) + [self.vector_of(i, f"positive_ids[{n}]") for n, i in enumerate(positive_ids)]
        negatives = [self.vector_of(i, f"negative_ids[{n}]") for n, i in enumerate(negative_ids)]
        empty = np.empty((0, self.spec.dimension), np.float32)
        return example_query(np.array(positives, np.float32), np.array(negatives, np.float32) if negatives else empty, self.spec.metric == "cosine")

    def list_items(
        self, tag_filter: TagFilter | None, ranges: Sequence[AttributeRange], page_size: int, page_token: str
    ) -> tuple[list[StoredItem], str]:
        """A page of the items that pass the filter, in id order (code points, which is UTF-8
        byte order), and the token of the next page ("" after the last). O(n) per page."""
        after = _decode_token(page_token)
        self._check_open()
        state = self._index.state
        mask = allowed(state, tag_filter, tuple(ranges))
        slots = np.flatnonzero(state.dead_at[: state.count] > state.version if mask is None else mask)
        named = zip(state.table.ids.ids_of(slots), slots.tolist())
        page = heapq.nsmallest(page_size + 1, ((item_id, slot) for item_id, slot in named if item_id > after))
        items = [self._stored_item(state, slot) for _, slot in page[:page_size]]
        token = _encode_token(items[-1].id) if len(page) > page_size else ""
        return items, token

    def copy_candidates(
        self,
        query: np.ndarray,
        phash: int | None,
        count: int,
        max_hash_distance: int,
        tag_filter: TagFilter | None = None,
        exclude_ids: Iterable[str] = frozenset(),
        ranges: Sequence[AttributeRange] = (),
    ) -> list[CopyCandidate]:
        """The items a copy search verifies: every item whose perceptual hash is within
        `max_hash_distance` of `phash` (an exact scan: the ANN index cannot make it miss), then
        the `count` nearest by embedding; each once, with its fingerprint and hash distance."""
        query = validate_query(self.spec, query)
        count = validate_k(count)
        self._check_open()
        near = []
        if phash is not None:
            with self._copy_lock:
                near = self._hashes.within(phash, max_hash_distance, count)
        exclude_ids = list(exclude_ids)
        state, slots = self._lookup(exclude_ids + [i for i, _ in near])
        excluded, hash_slots = slots[: len(exclude_ids)], slots[len(exclude_ids) :]
        mask = allowed(state, tag_filter, tuple(ranges), np.array([s for s in excluded if s is not None], np.int64))
        prepared = self._index.prepare_query(query)
        by_hash = [(slot, d) for (_, d), slot in zip(near, hash_slots) if slot is not None and (mask is None or mask[slot])]
        slots, scores = self._index.search(state, prepared, count, mask)
        score_of = dict(zip(slots.tolist(), scores.tolist()))
        missing = np.array([s for s, _ in by_hash if s not in score_of], np.int64)
        if len(missing):  # hash hits the index did not rank: score them exactly
            score_of.update(zip(missing.tolist(), self._index.scores(state, prepared, missing).astype(np.float32).tolist()))
        ordered = list(dict.fromkeys([s for s, _ in by_hash] + slots.tolist()))
        with self._copy_lock:
            return [self._copy_candidate(state, slot, score_of[slot], phash) for slot in ordered]

    def wait_for_index(self) -> None:
        """Returns once no rebuild is under way or due (tests and benchmarks use it)."""
        self._rebuilder.wait()

    def _lookup(self, ids: Sequence[str]) -> tuple[State, list[int | None]]:
        """A state and the present slot of each id in it (None: absent)."""
        while True:
            state = self._index.state
            slots = state.table.ids.newest_slots(ids)
            if all(slot is None or slot < state.count for slot in slots):
                return state, [slot if slot is not None and state.dead_at[slot] > state.version else None for slot in slots]
            time.sleep(0)  # a write is between its new slots and its new state: take the state it publishes

    def _crowded(self, state: State, query: np.ndarray, k: int, mask, exact: bool, crowding: Crowding):
        """Crowding keeps fewer than it fetches: fetch 4x more until k are kept or none are left."""
        fetch = min(4 * k, max(state.live, 1))
        while True:
            slots, scores = self._index.search(state, query, fetch, mask, exact)
            kept = crowd(state.table.meta, slots, crowding, k)
            if len(kept) >= k or len(slots) < fetch or fetch >= state.live:
                return slots[kept], scores[kept]
            fetch = min(state.live, 4 * fetch)

    def _hits(self, state: State, slots: np.ndarray, scores: np.ndarray, threshold: float | None) -> list[Hit]:
        if threshold is not None:
            keep = scores <= threshold if self._index.lower_is_better else scores >= threshold
            slots, scores = slots[keep], scores[keep]
        ids, metas, make = state.table.ids.ids_of(slots), state.table.meta, tuple.__new__  # the fastest way to a NamedTuple
        return [make(Hit, (item_id, score, metas[slot])) for item_id, slot, score in zip(ids, slots.tolist(), scores.tolist())]

    # --- writes ---

    def upsert(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        tags: Sequence[Sequence[str]] | None = None,
        uris: Sequence[str] | None = None,
        timestamps: Sequence[int] | None = None,
        fingerprints: Sequence[bytes] | None = None,
        attributes: Sequence[dict[str, float]] | None = None,
    ) -> int:
        """Inserts the items or replaces those with the same ids; all or nothing. Durable on return.
        `fingerprints`: copy_detection's bytes per item (b"" for none), for a collection with find_copies."""
        batch = validate_upsert(self.spec, ids, vectors, tags, uris, timestamps, fingerprints, attributes)
        if not batch.ids:
            return 0
        with self._write_lock:
            self._check_open()
            self._write_upsert(batch.ids, batch.vectors, batch.tags, batch.uris, batch.timestamps, batch.fingerprints, batch.attributes)
        self._maybe_snapshot()
        return len(batch.ids)

    def update(self, ids: Sequence[str], fields: Sequence[str], tags, uris, timestamps, attributes) -> int:
        """Changes the `fields` (of UPDATABLE_FIELDS) of existing items, keeping their vectors and
        fingerprints: logged as a whole upsert, so it has the same durability. All or nothing;
        NotFound at `items[i].id` for an item that does not exist."""
        assert set(fields) <= set(UPDATABLE_FIELDS), "the servicer checks the field mask"
        count = len(ids)
        given = validate_upsert(self.spec, ids, np.ones((count, self.spec.dimension), np.float32), tags, uris, timestamps, None, attributes)
        with self._write_lock:
            self._check_open()
            state, slots = self._lookup(given.ids)
            for position, slot in enumerate(slots):
                if slot is None:
                    raise NotFound(
                        f"item {describe_id(given.ids[position])} not found in collection '{self.spec.name}'",
                        reason=Reason.ITEM_NOT_FOUND,
                        field=f"items[{position}].id",
                        metadata={"item_id": given.ids[position], "collection": self.spec.name},
                    )
            metas = [state.table.meta[slot] for slot in slots]
            with self._copy_lock:
                prints = [self._fingerprints.get(i, b"") for i in given.ids]
            self._write_upsert(
                given.ids,
                state.vectors[np.array(slots, np.int64)],
                given.tags if "tags" in fields else [m.tags for m in metas],
                given.uris if "uri" in fields else [m.uri for m in metas],
                given.timestamps if "timestamp" in fields else [m.timestamp for m in metas],
                prints,
                given.attributes if "attributes" in fields else [dict(m.attributes) for m in metas],
            )
        self._maybe_snapshot()
        return count

    def delete(self, ids: Sequence[str]) -> int:
        """Deletes the ids that exist (others are ignored); returns how many existed. Durable on return."""
        ids = validate_ids(ids)
        with self._write_lock:
            self._check_open()
            # Only writers change membership, and they hold the write lock: no race with this check.
            unique = list(dict.fromkeys(ids))
            present = [i for i, slot in zip(unique, self._index.state.table.present_slots(unique)) if slot is not None]
            if not present:
                return 0
            self._wal.append_delete(present)
            self._apply_delete(present)
            self._after_write()
        self._maybe_snapshot()
        return len(present)

    def _write_upsert(self, ids, vectors, tags, uris, timestamps, fingerprints, attributes) -> None:
        """Under the write lock: log, apply, count."""
        self._wal.append_upsert(ids, vectors, tags, uris, timestamps, fingerprints, attributes)
        self._apply_upsert(ids, vectors, tags, uris, timestamps, fingerprints, attributes)
        self._after_write()

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
                state = self._index.state
                slots = np.flatnonzero(state.dead_at[: state.count] > state.version)
                ids = state.table.ids.ids_of(slots)
                metas = [state.table.meta[slot] for slot in slots.tolist()]
                with self._copy_lock:
                    fingerprints = [self._fingerprints.get(i, b"") for i in ids]
                data = SnapshotData(
                    seq=seq,
                    ids=ids,
                    vectors=state.vectors[slots],
                    tags=[m.tags for m in metas],
                    uris=[m.uri for m in metas],
                    timestamps=[m.timestamp for m in metas],
                    fingerprints=fingerprints,
                    attributes=[dict(m.attributes) for m in metas],
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
        with self._snapshot_lock, self._write_lock:
            if self._closed is None:
                self._closed = error
                self._wal.close()
        self._rebuilder.stop()

    # --- internals ---

    def _check_open(self) -> None:
        if self._closed is not None:
            raise self._closed()

    def _stored_item(self, state: State, slot: int) -> StoredItem:
        item_id, meta = state.table.ids.id_of(slot), state.table.meta[slot]
        return StoredItem(
            item_id, state.vectors[slot].copy(), meta.tags, meta.uri, meta.timestamp, meta.has_fingerprint, dict(meta.attributes)
        )

    def _copy_candidate(self, state: State, slot: int, score: float, phash: int | None) -> CopyCandidate:
        """Under the copy lock."""
        item_id, meta = state.table.ids.id_of(slot), state.table.meta[slot]
        fingerprint = self._fingerprints.get(item_id, b"")
        stored_hash = self._hashes.get(item_id) if fingerprint else None
        distance = None if stored_hash is None or phash is None else int(hamming(phash, np.array([stored_hash], np.uint64))[0])
        return CopyCandidate(Hit(item_id, score, meta), distance, fingerprint)

    def _after_write(self) -> None:
        """Under the write lock, after a write was applied: count it, start a rebuild if due."""
        self._records_since_snapshot += 1
        self._rebuilder.start_if_due()

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
            self._apply_upsert(
                record.ids, record.vectors, record.tags, record.uris, record.timestamps, record.fingerprints, record.attributes
            )
        else:
            assert isinstance(record, DeleteRecord)
            self._apply_delete(record.ids)

    def _apply_upsert(self, ids, vectors: np.ndarray, tags, uris, timestamps, fingerprints, attributes) -> None:
        metas = [item_meta(t, uri, timestamp, a, bool(f)) for t, uri, timestamp, f, a in zip(tags, uris, timestamps, fingerprints, attributes)]
        with self._copy_lock:  # before the index publishes the items, so a copy search finds their prints
            for item_id, fingerprint in zip(ids, fingerprints):
                if fingerprint:
                    self._fingerprints[item_id] = fingerprint
                    self._hashes.set(item_id, Fingerprint.from_bytes(fingerprint).phash)
                elif self._fingerprints.pop(item_id, None) is not None:
                    self._hashes.remove(item_id)
        self._index.upsert(list(ids), np.asarray(vectors, np.float32), metas)

    def _apply_delete(self, ids) -> None:
        removed = self._index.delete(list(ids))
        with self._copy_lock:
            for item_id in removed:
                if self._fingerprints.pop(item_id, None) is not None:
                    self._hashes.remove(item_id)




def _encode_token(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode("utf-8")).decode("ascii")


def _decode_token(token: str) -> str:
    """The id a page token continues after ("" for the first page); InvalidArgument when it is not ours."""
    if not token:
        return ""
    try:
        return base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidArgument("page_token is not one this service returned", reason=Reason.REQUEST_MALFORMED, field="page_token") from None
