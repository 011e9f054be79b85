"""One collection: validated writes, made durable in the write-ahead log, then applied to
memory and the ScaNN index; searches with tag filters; snapshots.

Files, in the collection's directory (see write_ahead_log.py and snapshot.py for formats):

    collection.json      the spec, written once at creation (collection_store.py)
    snapshot-<seq>.npz   every item as of log record <seq>
    wal-<seq>.log        the records after it

Concurrency: gRPC worker threads call in concurrently. Two locks per collection:
- the write lock serializes writers: the log gets one record at a time, in sequence order,
  and the fsync happens under it but outside the next lock, so searches never wait for disk;
- a readers-writer lock guards the in-memory state (vectors, ids, tags, the ScaNN searcher,
  which has no lock of its own between search and upsert/delete): searches, gets and infos
  share it; applying a write takes it exclusively for the few microseconds of the update.
A write returns only after it is applied, so every search that starts after a write was
acknowledged sees it. Index rebuilds (brute force -> tree, retraining) run under the write
lock only, so searches keep using the old searcher meanwhile (ScaNN releases the GIL while it
builds); the new searcher is swapped in under the exclusive lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from lookalike.errors import FailedPrecondition, InvalidArgument, LookalikeError, NotFound
from search_service.snapshot import (
    SnapshotData,
    load_latest_snapshot,
    remove_snapshots_before,
    remove_temporary_files,
    write_snapshot,
)
from search_service.tag_filter import TagFilter, TagIndex
from search_service.vector_index import METRICS, IndexPolicy, VectorIndex
from search_service.write_ahead_log import DeleteRecord, LogRecord, UpsertRecord, WriteAheadLog

__all__ = ["METRICS", "Collection", "CollectionInfo", "CollectionSpec", "Hit", "StoredItem", "TagFilter"]

logger = logging.getLogger(__name__)

MAX_ID_BYTES = 512
MAX_TAGS_PER_ITEM = 64
MAX_TAG_BYTES = 256
MAX_URI_BYTES = 2048
_MIN_COSINE_NORM = 1e-30  # below this a vector has no usable direction (and 1/norm overflows float32)


@dataclasses.dataclass(frozen=True)
class CollectionSpec:
    name: str
    dimension: int
    metric: str  # "cosine" | "dot_product" | "squared_l2"
    model_name: str = ""  # encoder model pinned by the collection ("" = vectors only)
    model_version: int = 0


@dataclasses.dataclass(frozen=True)
class CollectionInfo:
    spec: CollectionSpec
    size: int


@dataclasses.dataclass(frozen=True)
class StoredItem:
    id: str
    vector: np.ndarray  # (dimension,) float32, as upserted
    tags: tuple[str, ...]
    uri: str


@dataclasses.dataclass(frozen=True)
class Hit:
    id: str
    score: float  # cosine similarity, dot product (higher is better) or squared L2 distance (lower is better)
    tags: tuple[str, ...]
    uri: str


class _ReadWriteLock:
    """Many readers or one writer; a waiting writer holds back new readers so writes are not starved."""

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        with self._condition:
            while self._writer or self._writers_waiting:
                self._condition.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._condition:
                self._readers -= 1
                if not self._readers:
                    self._condition.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._condition:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._condition.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._condition:
                self._writer = False
                self._condition.notify_all()


def _describe(item_id: str) -> str:
    return repr(item_id if len(item_id) <= 64 else item_id[:61] + "...")


def _utf8_length(text: str, what: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidArgument(f"{what} is not valid UTF-8 text") from None


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
        self._tag_index = TagIndex()
        self._write_lock = threading.Lock()
        self._state_lock = _ReadWriteLock()
        self._snapshot_lock = threading.Lock()
        self._closed: LookalikeError | None = None

        remove_temporary_files(directory)
        snapshot = load_latest_snapshot(directory, dimension=spec.dimension)
        if snapshot is not None:
            self._apply_upsert(snapshot.ids, snapshot.vectors, snapshot.tags, snapshot.uris)
        self._wal, self._records_since_snapshot = WriteAheadLog.open(
            directory,
            label=spec.name,
            after_seq=snapshot.seq if snapshot is not None else 0,
            apply=self._replay,
            fsync=fsync,
        )
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
            return CollectionInfo(self.spec, len(self._index))

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
                raise NotFound(f"item {_describe(id)} not found in collection '{self.spec.name}'")
            return self._index.vector(id)

    def search(
        self,
        query: np.ndarray,
        k: int,
        tag_filter: TagFilter | None = None,
        exclude_ids: Iterable[str] = frozenset(),
    ) -> list[Hit]:
        """The k items nearest to `query` that pass `tag_filter` and are not excluded, best first."""
        query = self._validate_query(query)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidArgument(f"k must be a positive integer, got {k!r}")
        k = int(k)
        if tag_filter is not None and tag_filter.is_empty:
            tag_filter = None
        assert not isinstance(exclude_ids, str), "exclude_ids is a set of ids, not one id"
        exclude_ids = frozenset(exclude_ids)
        with self._state_lock.read():
            self._check_open()
            index = self._index
            query = index.prepare_query(query)
            size = len(index)
            excluded = {i for i in exclude_ids if i in index}
            if size == 0:
                pairs = []
            elif tag_filter is None and not excluded:
                pairs = index.nearest(query, k)
            else:
                if tag_filter is not None and tag_filter.has_positive_clause:
                    allowed = self._tag_index.matching_ids(tag_filter) - excluded
                    matching, accept = len(allowed), allowed.__contains__

                    def matching_rows() -> np.ndarray:
                        return np.fromiter((index.row_of(i) for i in allowed), np.int64, len(allowed))

                else:  # only none_of and exclusions: enumerate what is left out instead
                    banned = excluded | (self._tag_index.ids_with_any(tag_filter.none_of) if tag_filter else set())
                    matching = size - len(banned)

                    def accept(item_id: str) -> bool:
                        return item_id not in banned

                    def matching_rows() -> np.ndarray:
                        keep = np.ones(size, bool)
                        keep[np.fromiter((index.row_of(i) for i in banned), np.int64, len(banned))] = False
                        return np.flatnonzero(keep)

                policy = index.policy
                if matching <= 0:
                    pairs = []
                elif matching <= max(policy.exact_scan_rows, policy.exact_scan_fraction * size):
                    pairs = index.nearest_among(query, k, matching_rows())
                else:
                    pairs = index.nearest_matching(query, k, accept, matching, matching_rows)
            return [Hit(i, score, self._tags[i], self._uris.get(i, "")) for i, score in pairs]

    # --- writes ---

    def upsert(
        self,
        ids: Sequence[str],
        vectors: np.ndarray,
        tags: Sequence[Sequence[str]] | None = None,
        uris: Sequence[str] | None = None,
    ) -> int:
        """Inserts the items or replaces those with the same ids; all or nothing. Durable on return."""
        ids, vectors, item_tags, item_uris = self._validate_upsert(ids, vectors, tags, uris)
        if not ids:
            return 0
        with self._write_lock:
            self._check_open()
            self._wal.append_upsert(ids, vectors, item_tags, item_uris)
            with self._state_lock.write():
                self._apply_upsert(ids, vectors, item_tags, item_uris)
            self._after_write()
        self._maybe_snapshot()
        return len(ids)

    def delete(self, ids: Sequence[str]) -> int:
        """Deletes the ids that exist (others are ignored); returns how many existed. Durable on return."""
        if isinstance(ids, str):
            raise InvalidArgument("ids must be a list of strings, not one string")
        for position, item_id in enumerate(ids):
            if not isinstance(item_id, str):
                raise InvalidArgument(f"ids[{position}] must be a string, got {type(item_id).__name__}")
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
        """Snapshots (so the next load replays nothing) and closes the log; later calls fail."""
        try:
            self.snapshot()
        except FailedPrecondition:
            pass  # closed already, or the log failed; the log on disk is what counts then
        except Exception:  # the data is safe in the log; the next load replays it
            logger.exception("collection %r: snapshot on close failed", self.spec.name)
        self._shut(FailedPrecondition(f"collection '{self.spec.name}' is closed"))

    def drop(self) -> None:
        """Closes without a snapshot, for deletion: later calls raise NotFound."""
        self._shut(NotFound(f"collection '{self.spec.name}' not found (it was deleted)"))

    def _shut(self, error: LookalikeError) -> None:
        with self._snapshot_lock, self._write_lock, self._state_lock.write():
            if self._closed is None:
                self._closed = error
                self._wal.close()

    # --- internals ---

    def _check_open(self) -> None:
        if self._closed is not None:
            raise type(self._closed)(str(self._closed))

    def _stored_item(self, item_id: str) -> StoredItem:
        return StoredItem(item_id, self._index.vector(item_id), self._tags[item_id], self._uris.get(item_id, ""))

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
                    f"{record.vectors.shape[1]}, the collection has {self.spec.dimension}"
                )
            self._apply_upsert(record.ids, record.vectors, record.tags, record.uris)
        else:
            assert isinstance(record, DeleteRecord)
            self._apply_delete(record.ids)

    def _apply_upsert(self, ids, vectors: np.ndarray, tags, uris) -> None:
        self._index.upsert(list(ids), vectors)
        for item_id, item_tags, uri in zip(ids, tags, uris):
            old_tags = self._tags.get(item_id)
            if old_tags:
                self._tag_index.remove(item_id, old_tags)
            self._tags[item_id] = item_tags
            self._tag_index.add(item_id, item_tags)
            if uri:
                self._uris[item_id] = uri
            else:
                self._uris.pop(item_id, None)

    def _apply_delete(self, ids) -> None:
        for item_id in self._index.delete(list(ids)):
            self._tag_index.remove(item_id, self._tags.pop(item_id))
            self._uris.pop(item_id, None)

    def _validate_query(self, query: np.ndarray) -> np.ndarray:
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                query = np.asarray(query, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise InvalidArgument(f"query vector is not a list of numbers: {e}") from None
        if query.ndim != 1:
            raise InvalidArgument(f"query vector must be one-dimensional, got shape {query.shape}")
        if len(query) != self.spec.dimension:
            raise InvalidArgument(
                f"query vector has dimension {len(query)}, collection '{self.spec.name}' has {self.spec.dimension}"
            )
        if not np.isfinite(query).all():
            raise InvalidArgument("query vector contains NaN or infinity")
        if self.spec.metric == "cosine" and np.linalg.norm(query.astype(np.float64)) < _MIN_COSINE_NORM:
            raise InvalidArgument("query vector has zero norm; cosine similarity needs a direction")
        return query

    def _validate_upsert(self, ids, vectors, tags, uris):
        """Checks the whole batch before anything is written; InvalidArgument names the first problem."""
        name, dimension = self.spec.name, self.spec.dimension
        if isinstance(ids, str):
            raise InvalidArgument("ids must be a list of strings, not one string")
        ids = list(ids)
        seen: dict[str, int] = {}
        for position, item_id in enumerate(ids):
            if not isinstance(item_id, str):
                raise InvalidArgument(f"items[{position}].id must be a string, got {type(item_id).__name__}")
            if not item_id:
                raise InvalidArgument(f"items[{position}].id is empty")
            length = _utf8_length(item_id, f"items[{position}].id")
            if length > MAX_ID_BYTES:
                raise InvalidArgument(f"items[{position}].id is {length} bytes, at most {MAX_ID_BYTES} allowed")
            if item_id in seen:
                raise InvalidArgument(
                    f"items[{position}].id {_describe(item_id)} repeats items[{seen[item_id]}].id; ids must be unique "
                    "within a batch"
                )
            seen[item_id] = position

        if not isinstance(vectors, np.ndarray):
            try:
                rows = list(vectors)
            except TypeError:
                raise InvalidArgument("vectors must be a 2-D array or a list of vectors") from None
            for position, row in enumerate(rows):
                if not hasattr(row, "__len__"):
                    raise InvalidArgument(f"items[{position}].vector is not a list of numbers")
                length = len(row)
                if length != dimension:
                    raise InvalidArgument(
                        f"items[{position}].vector has dimension {length}, collection '{name}' has {dimension}"
                    )
            vectors = rows
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # float64 beyond float32 becomes inf: caught below
                vectors = np.array(vectors, dtype=np.float32, copy=True)
        except (TypeError, ValueError) as e:
            raise InvalidArgument(f"vectors are not numbers: {e}") from None
        if vectors.ndim == 1 and len(ids) == 0 and vectors.size == 0:
            vectors = vectors.reshape(0, dimension)
        if vectors.ndim != 2:
            raise InvalidArgument(f"vectors must be a 2-D array (items, dimension), got shape {vectors.shape}")
        if len(vectors) != len(ids):
            raise InvalidArgument(f"got {len(ids)} ids but {len(vectors)} vectors")
        if vectors.shape[1] != dimension and len(ids):
            raise InvalidArgument(
                f"items[0].vector has dimension {vectors.shape[1]}, collection '{name}' has {dimension}"
            )
        finite = np.isfinite(vectors).all(axis=1)
        if not finite.all():
            position = int(np.flatnonzero(~finite)[0])
            raise InvalidArgument(f"items[{position}].vector (id {_describe(ids[position])}) contains NaN or infinity")
        if self.spec.metric == "cosine" and len(ids):
            norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
            if (norms < _MIN_COSINE_NORM).any():
                position = int(np.flatnonzero(norms < _MIN_COSINE_NORM)[0])
                raise InvalidArgument(
                    f"items[{position}].vector (id {_describe(ids[position])}) has zero norm; "
                    f"collection '{name}' uses cosine similarity, which needs a direction"
                )

        if tags is None:
            item_tags = [()] * len(ids)
        else:
            tags = list(tags)
            if len(tags) != len(ids):
                raise InvalidArgument(f"got {len(ids)} ids but {len(tags)} tag lists")
            item_tags = []
            for position, these in enumerate(tags):
                if isinstance(these, str):
                    raise InvalidArgument(f"items[{position}].tags must be a list of strings, not one string")
                try:
                    these = list(these)
                except TypeError:
                    raise InvalidArgument(f"items[{position}].tags must be a list of strings") from None
                for tag in these:
                    if not isinstance(tag, str):
                        raise InvalidArgument(f"items[{position}].tags must be strings, got {type(tag).__name__}")
                these = tuple(dict.fromkeys(these))  # a tag carried twice is carried once
                if len(these) > MAX_TAGS_PER_ITEM:
                    raise InvalidArgument(
                        f"items[{position}] has {len(these)} tags, at most {MAX_TAGS_PER_ITEM} allowed"
                    )
                for tag in these:
                    length = _utf8_length(tag, f"a tag of items[{position}]")
                    if not 1 <= length <= MAX_TAG_BYTES:
                        raise InvalidArgument(
                            f"items[{position}] has a tag of {length} bytes; tags are 1 to {MAX_TAG_BYTES} bytes"
                        )
                item_tags.append(these)

        if uris is None:
            item_uris = [""] * len(ids)
        else:
            if isinstance(uris, str):
                raise InvalidArgument("uris must be a list of strings, not one string")
            item_uris = list(uris)
            if len(item_uris) != len(ids):
                raise InvalidArgument(f"got {len(ids)} ids but {len(item_uris)} uris")
            for position, uri in enumerate(item_uris):
                if not isinstance(uri, str):
                    raise InvalidArgument(f"items[{position}].uri must be a string, got {type(uri).__name__}")
                length = _utf8_length(uri, f"items[{position}].uri")
                if length > MAX_URI_BYTES:
                    raise InvalidArgument(f"items[{position}].uri is {length} bytes, at most {MAX_URI_BYTES} allowed")
        return ids, vectors, item_tags, item_uris
