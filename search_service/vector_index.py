"""The vectors of one collection, by id, and the ScaNN searcher over them.

Search (`VectorIndex.search`), given the items a search may return (`Candidates`, all when None):
- few candidates (at most `exact_scan_rows`, or `exact_scan_fraction` of the collection):
  an exact numpy scan over their rows;
- otherwise ScaNN, asked for k results, or with a filter for more in proportion to how rare
  candidates are, widening 4x until k of them are found; past `widen_fraction` of the
  collection, when a tree search comes back short, or without a searcher: the exact scan.
With a brute-force searcher every result is therefore exact; with a tree it is as
approximate as an unfiltered search.

Row r of one float32 matrix (grown by doubling) holds the vector of item `ids[r]`. A delete
moves the last row into the hole, which is exactly what ScaNN's own delete does to its
datapoints, so ScaNN's datapoint index always equals our row and results map back to ids
through our list. ScaNN is therefore used without its docid list, whose wrapper mutates
before validating and pickles on serialize; the searcher is never serialized at all; it is
rebuilt from the vectors on load.

Index kinds (upstream guidance, scann/docs/algorithms.md):
- `brute_force` below `brute_force_below` items (20k): exact, and cheap to update in place;
- `tree_ah` from there on: a k-means tree of ~sqrt(n) leaves, anisotropic hashing with 2
  dimensions per block, and exact reordering of `min_reorder` (> k) candidates.
Writes update the searcher in place (ScaNN upsert/delete); the collection rebuilds it when the
kind should change or the tree was trained on half or twice the current size. Until the first
build, or after a ScaNN update failed, searches scan exactly, so they never miss a write.

Cosine is a dot product over normalised vectors; the matrix keeps the vectors as given (Get
returns them unchanged) plus their inverse norms.

Not thread-safe: the collection holds a lock around writes and searches (see collection.py).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Set

import numpy as np
from scann.scann_ops.py import scann_ops_pybind

from lookalike.model_format import METRICS

logger = logging.getLogger(__name__)

BRUTE_FORCE = "brute_force"
TREE_AH = "tree_ah"
EXACT = "exact"  # no searcher: numpy scans every row
_EXACT_CHUNK_ROWS = 65_536  # bounds the temporary memory of an exact scan


@dataclasses.dataclass(frozen=True)
class IndexPolicy:
    """How collections index and search; the defaults follow ScaNN's upstream guidance."""

    brute_force_below: int = 20_000  # items; a tree+AH index from there on
    leaves_to_search_fraction: float = 0.25  # of the tree's leaves, per query
    min_reorder: int = 400  # AH candidates rescored exactly per query (must exceed k)
    exact_scan_rows: int = 2_048  # a filter matching at most this many items is scanned exactly...
    exact_scan_fraction: float = 0.05  # ...as is one matching at most this share of the collection
    widen_fraction: float = 0.25  # overfetching past this share of the collection scans exactly instead
    training_threads: int = 0  # ScaNN's training threads; 0 lets ScaNN decide


@dataclasses.dataclass(frozen=True)
class Candidates:
    """The items a search may return, when not all of them; made by `VectorIndex.candidates_*`
    and valid until the next write."""

    count: int
    accept: Callable[[str], bool]  # is this id one of them?
    rows: Callable[[], np.ndarray]  # their rows, int64; computed only for an exact scan


@dataclasses.dataclass(frozen=True)
class Searcher:
    """A built ScaNN searcher and what it was built as."""

    scann: scann_ops_pybind.ScannSearcher
    kind: str  # BRUTE_FORCE or TREE_AH
    built_size: int


class VectorIndex:
    def __init__(self, dimension: int, metric: str, policy: IndexPolicy | None = None, *, label: str = "") -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        self.dimension = dimension
        self.metric = metric
        self.policy = policy or IndexPolicy()
        self._label = label  # for log lines: the collection's name
        self._space = "squared_l2" if metric == "squared_l2" else "dot_product"
        self._lower_is_better = metric == "squared_l2"
        self._vectors = np.empty((0, dimension), np.float32)  # rows [0, len) are live
        self._inverse_norms = np.empty(0, np.float64) if metric == "cosine" else None
        self._ids: list[str] = []
        self._rows: dict[str, int] = {}
        self._searcher: Searcher | None = None

    # --- items ---

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._rows

    def ids(self) -> list[str]:
        return list(self._ids)

    def vector(self, item_id: str) -> np.ndarray:
        """A copy of the stored vector; KeyError when the id is absent."""
        return self._vectors[self._rows[item_id]].copy()

    def vectors(self) -> np.ndarray:
        """A read-only view of every live row, in row order (valid until the next write)."""
        view = self._vectors[: len(self._ids)]
        view.flags.writeable = False
        return view

    @property
    def kind(self) -> str:
        return self._searcher.kind if self._searcher is not None else EXACT

    def upsert(self, ids: list[str] | tuple[str, ...], vectors: np.ndarray) -> None:
        """Inserts or replaces; `vectors` is (len(ids), dimension) float32, finite, validated by the caller."""
        assert vectors.shape == (len(ids), self.dimension) and vectors.dtype == np.float32
        assert len(set(ids)) == len(ids), "ids must be unique within a batch"
        size = len(self._ids)
        rows = []
        for item_id in ids:
            row = self._rows.get(item_id)
            if row is None:
                row = len(self._ids)
                self._rows[item_id] = row
                self._ids.append(item_id)
            rows.append(row)
        self._reserve(len(self._ids))
        rows_array = np.asarray(rows, dtype=np.int64)
        self._vectors[rows_array] = vectors
        if self._inverse_norms is not None:
            self._inverse_norms[rows_array] = 1.0 / np.linalg.norm(vectors.astype(np.float64), axis=1)
        if self._searcher is not None:
            indices = [row if row < size else None for row in rows]  # None: ScaNN appends, in order
            try:
                placed = self._searcher.scann.searcher.upsert(indices, self._scann_rows(rows_array), max(1, len(rows)))
                if list(placed) != rows:
                    raise RuntimeError(f"ScaNN placed upserted points at {list(placed)[:5]}, expected {rows[:5]}")
            except (RuntimeError, ValueError):
                logger.exception("collection %r: ScaNN upsert failed; exact search until the rebuild", self._label)
                self._searcher = None

    def delete(self, ids: list[str] | tuple[str, ...]) -> list[str]:
        """Removes the ids present (others are ignored); returns the ids removed."""
        removed, indices = [], []
        for item_id in ids:
            row = self._rows.pop(item_id, None)
            if row is None:
                continue
            last = len(self._ids) - 1
            if row != last:  # move the last row into the hole, as ScaNN does
                moved = self._ids[last]
                self._ids[row] = moved
                self._rows[moved] = row
                self._vectors[row] = self._vectors[last]
                if self._inverse_norms is not None:
                    self._inverse_norms[row] = self._inverse_norms[last]
            self._ids.pop()
            removed.append(item_id)
            indices.append(row)
        if self._searcher is not None and indices:
            try:
                self._searcher.scann.searcher.delete(indices)
                if self._searcher.scann.size() != len(self._ids):
                    raise RuntimeError(f"ScaNN holds {self._searcher.scann.size()} points, expected {len(self._ids)}")
            except (RuntimeError, ValueError, KeyError):
                logger.exception("collection %r: ScaNN delete failed; exact search until the rebuild", self._label)
                self._searcher = None
        return removed

    # --- the searcher ---

    def needs_rebuild(self) -> bool:
        searcher, size = self._searcher, len(self._ids)
        if searcher is None:
            return True
        if searcher.kind == BRUTE_FORCE:
            return size >= self.policy.brute_force_below
        # A tree: back to brute force well below the threshold (hysteresis), retrain when the
        # size has doubled or halved since training (num_leaves ~ sqrt(n) drifts otherwise).
        return (
            size < self.policy.brute_force_below // 2
            or size > 2 * searcher.built_size
            or size < searcher.built_size // 2
        )

    def build_searcher(self) -> Searcher:
        """Builds a searcher over the current rows; reads only, so it may run while searches do.
        ScaNN releases the GIL while building."""
        size = len(self._ids)
        data = self._scann_rows(slice(0, size))
        started = time.monotonic()
        searcher = None
        if size >= self.policy.brute_force_below:
            try:
                searcher = Searcher(self._build_tree(data), TREE_AH, size)
            except (RuntimeError, ValueError):
                logger.exception("collection %r: building a tree index failed; using brute force", self._label)
        if searcher is None:
            builder = scann_ops_pybind.builder(data, 10, self._space).score_brute_force()
            builder.set_n_training_threads(self.policy.training_threads)
            searcher = Searcher(builder.build(), BRUTE_FORCE, size)
        logger.info(
            "collection %r: built a %s index of %d items in %.2fs",
            self._label,
            searcher.kind,
            size,
            time.monotonic() - started,
        )
        return searcher

    def install(self, searcher: Searcher) -> None:
        """Swaps in a searcher from `build_searcher`; no write may have happened in between."""
        assert searcher.scann.size() == len(self._ids), "the index changed while the searcher was built"
        self._searcher = searcher

    def _build_tree(self, data: np.ndarray) -> scann_ops_pybind.ScannSearcher:
        size = len(data)
        num_leaves = max(2, round(math.sqrt(size)))
        builder = (
            scann_ops_pybind.builder(data, 10, self._space)
            .tree(
                num_leaves=num_leaves,
                num_leaves_to_search=max(1, math.ceil(num_leaves * self.policy.leaves_to_search_fraction)),
                training_sample_size=min(size, 250_000),
            )
            .score_ah(
                2,
                # Anisotropic quantization helps maximum inner product search only.
                anisotropic_quantization_threshold=0.2 if self._space == "dot_product" else float("nan"),
            )
            .reorder(self.policy.min_reorder)
        )
        builder.set_n_training_threads(self.policy.training_threads)
        return builder.build()

    # --- search ---

    def candidates_among(self, ids: Set[str]) -> Candidates:
        """The items in `ids`, each of which must be in the index."""
        return Candidates(
            count=len(ids),
            accept=ids.__contains__,
            rows=lambda: np.fromiter((self._rows[i] for i in ids), np.int64, len(ids)),
        )

    def candidates_except(self, ids: Set[str]) -> Candidates:
        """Every item but those in `ids`, each of which must be in the index."""
        size = len(self._ids)

        def rows() -> np.ndarray:
            keep = np.ones(size, bool)
            keep[np.fromiter((self._rows[i] for i in ids), np.int64, len(ids))] = False
            return np.flatnonzero(keep)

        return Candidates(count=size - len(ids), accept=lambda item_id: item_id not in ids, rows=rows)

    def search(self, query: np.ndarray, k: int, candidates: Candidates | None = None) -> list[tuple[str, float]]:
        """The k items nearest to `query` among `candidates` (every item when None), best first,
        as (id, score); fewer when fewer exist. The caller checked the query's shape, values and
        norm. The policy is the module docstring's."""
        size = len(self._ids)
        count = size if candidates is None else candidates.count
        if count <= 0:
            return []
        query = self._prepare_query(query)
        policy = self.policy
        few = candidates is not None and count <= max(policy.exact_scan_rows, policy.exact_scan_fraction * size)
        if not few and self._searcher is not None:
            found = self._scann_search(query, k, candidates)
            if found is not None:
                return found
        return self._pairs(*self._exact(query, k, None if candidates is None else candidates.rows()))

    def scores(self, query: np.ndarray, ids: list[str]) -> list[float]:
        """The exact scores of the given stored items against `query` (float32 values, like search's)."""
        rows = np.array([self._rows[i] for i in ids], np.int64)
        _, scores = self._exact(self._prepare_query(query), len(rows), rows)
        order = {row: score for row, score in zip(rows.tolist(), scores.astype(np.float32).tolist())}
        return [order[row] for row in rows.tolist()]

    def _scann_search(self, query: np.ndarray, k: int, candidates: Candidates | None) -> list[tuple[str, float]] | None:
        """ScaNN's k best among `candidates`, overfetching and widening as the module docstring
        says; None when the exact scan must answer instead."""
        size = len(self._ids)
        if candidates is None:
            fetch = min(k, size)
        else:
            fetch = min(size, max(k, math.ceil(1.5 * k * size / candidates.count)) + 8)
        while True:
            rows, scores = self._approximate(query, fetch)
            hit_rows, hit_scores = rows, scores
            if candidates is not None:
                keep = np.fromiter((candidates.accept(self._ids[r]) for r in rows.tolist()), bool, len(rows))
                hit_rows, hit_scores = rows[keep], scores[keep]
            if len(hit_rows) >= k or len(rows) >= size:
                return self._pairs(hit_rows[:k], hit_scores[:k])
            # A tree search can come back short when the leaves it scanned hold fewer than asked for.
            if len(rows) < fetch or fetch >= size or fetch * 4 > size * self.policy.widen_fraction:
                return None
            fetch = min(size, fetch * 4)

    def _prepare_query(self, query: np.ndarray) -> np.ndarray:
        """float32 (dimension,), normalised for cosine."""
        query = np.asarray(query, dtype=np.float32).reshape(self.dimension)
        if self.metric == "cosine":
            query = (query.astype(np.float64) / np.linalg.norm(query.astype(np.float64))).astype(np.float32)
        return query

    def _approximate(self, query: np.ndarray, fetch: int) -> tuple[np.ndarray, np.ndarray]:
        searcher = self._searcher
        assert searcher is not None
        if searcher.kind == TREE_AH:
            rows, scores = searcher.scann.search(
                query, final_num_neighbors=fetch, pre_reorder_num_neighbors=max(self.policy.min_reorder, 2 * fetch)
            )
        else:
            rows, scores = searcher.scann.search(query, final_num_neighbors=fetch)
        return rows.astype(np.int64), scores

    def _exact(self, query: np.ndarray, k: int, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over `rows` (every row when None), in chunks to bound memory."""
        total = len(self._ids) if rows is None else len(rows)
        best_rows = np.empty(0, np.int64)
        best_scores = np.empty(0, np.float64)
        for start in range(0, total, _EXACT_CHUNK_ROWS):
            stop = min(total, start + _EXACT_CHUNK_ROWS)
            chunk_rows = np.arange(start, stop) if rows is None else rows[start:stop]
            block = self._vectors[start:stop] if rows is None else self._vectors[chunk_rows]
            if self.metric == "squared_l2":
                difference = block - query
                scores = np.einsum("ij,ij->i", difference, difference).astype(np.float64)
            else:
                scores = (block @ query).astype(np.float64)
                if self._inverse_norms is not None:
                    scores *= self._inverse_norms[chunk_rows]
            best_rows = np.concatenate([best_rows, chunk_rows])
            best_scores = np.concatenate([best_scores, scores])
            keep = self._best(best_scores, k)
            best_rows, best_scores = best_rows[keep], best_scores[keep]
        return best_rows, best_scores

    def _best(self, scores: np.ndarray, k: int) -> np.ndarray:
        """Indices of the k best scores, best first."""
        key = scores if self._lower_is_better else -scores
        if k < len(key):
            top = np.argpartition(key, k - 1)[:k]
            return top[np.argsort(key[top], kind="stable")]
        return np.argsort(key, kind="stable")

    def _pairs(self, rows: np.ndarray, scores: np.ndarray) -> list[tuple[str, float]]:
        # float32 like ScaNN's scores (and the proto's), whichever path computed them.
        return [(self._ids[r], s) for r, s in zip(rows.tolist(), scores.astype(np.float32).tolist())]

    # --- storage ---

    def _scann_rows(self, rows: np.ndarray | slice) -> np.ndarray:
        """The rows as ScaNN indexes them: unit length for cosine, as stored otherwise."""
        if self._inverse_norms is None:
            return np.ascontiguousarray(self._vectors[rows])
        return (self._vectors[rows] * self._inverse_norms[rows, None]).astype(np.float32)

    def _reserve(self, size: int) -> None:
        capacity = len(self._vectors)
        if size <= capacity:
            return
        capacity = max(size, 2 * capacity, 16)
        grown = np.empty((capacity, self.dimension), np.float32)
        grown[: len(self._vectors)] = self._vectors
        self._vectors = grown
        if self._inverse_norms is not None:
            norms = np.empty(capacity, np.float64)
            norms[: len(self._inverse_norms)] = self._inverse_norms
            self._inverse_norms = norms
