"""The vectors of one collection and the searchers over them: searched without a lock.

Layout, as in an LSM tree (or Milvus' sealed and growing segments): the items live in an
append-only `ItemTable` (item_table.py); a ScaNN searcher, immutable once built, covers the
slots [0, base.upto) that were present when it was built (the *base*); slots written since
(the *tail*) are scanned exactly with numpy. A write appends slots and stamps dead ones, then
publishes a new `State` (one attribute assignment); a search takes the state once and answers
from it alone, so searches never wait for writes, writes never wait for searches, and a search
that starts after a write was acknowledged sees it.

A rebuild (`build`, then `install`) builds and tunes a new base (index_tuning.py) over the
slots of one state, in the background, while writes go on; `install`, under the collection's
write lock, publishes a state with the new base. When some of those slots are dead, the build
first compacts the present ones into a new table and `install` carries the writes made
meanwhile over to it; when none is, it indexes the same table (no copy of the vectors). Due
when the tail reaches `tail_rows` or `tail_fraction` of the base, when `dead_fraction` of the
base died (deleted or replaced), or when the collection crosses `brute_force_below` either way.

Search, given the items a search may return (`allowed`: a mask over the state's slots that
includes presence; every present item when None):
- few allowed (at most `exact_scan_rows`, or `exact_scan_fraction` of the collection), an
  exact request, or no base: an exact numpy scan over them;
- otherwise the base, asked for k results, or with a filter or dead slots for more in proportion
  to how rare the allowed ones are, widening 4x until k of them are found; past
  `widen_fraction` of the base, or when a tree search comes back short: the exact scan. Plus
  the exact scan of the tail, merged.
With a brute-force base every result is therefore exact; with a tree it is as approximate as
the tuning (index_tuning.py) measured.

A long tail (a bulk upsert of 125k items into 1M, or the writes made during a long rebuild) would
make every search scan it exactly until the rebuild that folds it in is swapped in: 8-26 ms a
search at 1M, against 0.1 ms. So when a rebuild starts with at least `delta_rows` in the tail, the
tail first gets a searcher of its own (`build_delta`, seconds where the whole takes a minute), the
*delta*, over [base.upto, delta.upto), searched like the base and merged; only what was written
after it is scanned exactly. The next base covers the delta's slots and replaces it. A filtered
search scans the tail exactly, delta or not.

A tree base is ScaNN's partitioning and anisotropic hashing only, at 4 bits a dimension: its
`reorder` best hashed candidates are rescored exactly here, from the table's vectors, instead
of by ScaNN's reordering, which keeps a copy of every vector of its own beside the table's
(float32: ScaNN 1.09x the raw vectors at 1M; int8: 0.37x, and recall fell from 0.985 to 0.957).
Hashing each dimension on its own (rather than pairs) makes the hashed order good enough that
few candidates need rescoring: on 200k x 64 at 3 leaves, the best 20 rescored gave recall
0.986 where pairs needed 60 (an earlier pass rescored 80 and lost 40 % of the speed to it).
Every returned score is exact, the same as the tail's and the exact scan's.

Cosine is a dot product over normalised vectors; the table keeps the vectors as given (Get
returns them unchanged) plus their inverse norms.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time

import numpy as np

from lookalike.model_format import METRICS
from search_service import index_tuning
from search_service.index_tuning import BRUTE_FORCE, TREE_AH, Tuning
from search_service.item_ids import SortedIds
from search_service.item_table import ALIVE, ItemMeta, ItemTable

__all__ = ["BRUTE_FORCE", "EXACT", "METRICS", "TREE_AH", "IndexPolicy", "State", "VectorIndex"]

logger = logging.getLogger(__name__)

EXACT = "exact"  # no searcher yet: numpy scans every row
_EXACT_CHUNK_ROWS = 65_536  # bounds the temporary memory of an exact scan
_SORT_WHOLE = 512  # scores up to this many are sorted whole to pick the best


@dataclasses.dataclass(frozen=True)
class IndexPolicy:
    """How collections index and search; docs/search-storage.md says why these defaults."""

    brute_force_below: int = 20_000  # items; a tree+AH index from there on (ScaNN's guidance)
    leaves_per_sqrt_n: float = 2.0  # the tree's leaves (index_tuning.py says why 2)
    recall_target: float = 0.97  # recall@tuning_k the tree is tuned to, on a held-out sample
    tuning_k: int = 10
    tuning_sample: int = 256  # held-out vectors searched per setting tried
    tail_rows: int = 2_048  # items written since the last build that trigger a rebuild...
    tail_fraction: float = 0.1  # ...or this share of the built index, whichever is more
    dead_fraction: float = 0.1  # deleted or replaced share of the built index that triggers one
    delta_rows: int = 20_000  # a tail at least this long gets a searcher of its own before a rebuild
    exact_scan_rows: int = 2_048  # a filter matching at most this many items is scanned exactly...
    exact_scan_fraction: float = 0.05  # ...as is one matching at most this share of the collection
    widen_fraction: float = 0.25  # overfetching past this share of the collection scans exactly instead
    training_threads: int = 0  # ScaNN's training threads when a collection loads; 0 lets ScaNN decide
    rebuild_threads: int = 1  # ...and for background rebuilds: one, so searches keep a core (2-core hosts)


@dataclasses.dataclass(frozen=True)
class Base:
    """A built searcher over the slots [start, upto) of `table`: the base (start 0) or a delta."""

    scann: object  # the pybind searcher, called without the Python wrapper's overhead
    kind: str
    upto: int
    num_leaves: int
    tuning: Tuning
    start: int = 0  # the searcher's row 0 is this slot


@dataclasses.dataclass(frozen=True, slots=True)
class State:
    """What a search reads: everything as of write `version`."""

    version: int
    count: int  # slots [0, count) exist
    live: int  # items present
    table: ItemTable
    vectors: np.ndarray  # the table's arrays as of this state (rows below count are final)
    inverse_norms: np.ndarray | None
    dead_at: np.ndarray
    base: Base | None
    base_dead: int  # slots of the base dead at this version
    delta: Base | None  # over [base.upto, delta.upto), or None


@dataclasses.dataclass(frozen=True)
class Rebuilt:
    """A base built as of (count, version) of `source_table`, to `install`: over a compacted
    `table` (then `old_to_new` maps the source's slots to its), or over the source table itself."""

    source_table: ItemTable
    count: int
    version: int
    table: ItemTable
    old_to_new: np.ndarray | None  # None: built in place, over `source_table`
    ids: SortedIds | None  # in place: the id index of the slots the base covers
    base: Base


class VectorIndex:
    """One writer at a time (the collection's write lock); any number of readers, lock-free."""

    def __init__(self, dimension: int, metric: str, policy: IndexPolicy | None = None, *, label: str = "") -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        self.dimension = dimension
        self.metric = metric
        self.policy = policy or IndexPolicy()
        self._label = label  # for log lines: the collection's name
        self._space = "squared_l2" if metric == "squared_l2" else "dot_product"
        self.lower_is_better = metric == "squared_l2"
        self._table = ItemTable(dimension, cosine=metric == "cosine")
        self._version = 0
        self._base: Base | None = None
        self._base_dead = 0
        self._delta: Base | None = None
        self.state = self._state()

    def ids(self) -> list[str]:
        """The ids present now."""
        state = self.state
        return state.table.ids.ids_of(np.flatnonzero(state.dead_at[: state.count] > state.version))

    # --- writes (one at a time) ---

    def upsert(self, ids: list[str], vectors: np.ndarray, metas: list[ItemMeta]) -> None:
        """Inserts or replaces; `vectors` is (len(ids), dimension) float32, finite, validated by the caller."""
        assert vectors.shape == (len(ids), self.dimension) and vectors.dtype == np.float32
        assert len(set(ids)) == len(ids), "ids must be unique within a batch"
        self._version += 1
        dead = self._table.append(ids, vectors, metas, self._version)
        self._count_dead(dead)
        self.state = self._state()

    def delete(self, ids: list[str]) -> list[str]:
        """Removes the ids present (others are ignored); returns the ids removed."""
        self._version += 1
        removed, dead = self._table.kill(ids, self._version)
        self._count_dead(dead)
        self.state = self._state()
        return removed

    def _count_dead(self, slots: np.ndarray) -> None:
        if self._base is not None and len(slots):
            self._base_dead += int(np.count_nonzero(slots < self._base.upto))

    def _state(self) -> State:
        table = self._table
        return State(
            self._version,
            table.count,
            table.live,
            table,
            table.vectors.array,
            None if table.inverse_norms is None else table.inverse_norms.array,
            table.dead_at.array,
            self._base,
            self._base_dead,
            self._delta,
        )

    # --- rebuilds ---

    def needs_rebuild(self, settled: bool = False) -> bool:
        """Whether a rebuild is due; `settled`: once writes have paused, when the tail or the dead
        slots reach `tail_rows` at all (index_rebuilder.py says why)."""
        state, policy = self.state, self.policy
        base = state.base
        if base is None:
            return True
        tail = state.count - base.upto
        if settled:
            return tail >= policy.tail_rows or state.base_dead >= policy.tail_rows
        is_tree = base.kind == TREE_AH
        wants_tree = state.live >= (policy.brute_force_below // 2 if is_tree else policy.brute_force_below)  # hysteresis
        return (
            tail >= max(policy.tail_rows, policy.tail_fraction * (base.upto - state.base_dead))
            or state.base_dead >= max(policy.tail_rows, policy.dead_fraction * base.upto)
            or wants_tree != is_tree
        )

    def build(self, source: State, *, background: bool = True) -> Rebuilt:
        """A tuned base as of `source`, over a compacted table when some of its slots are dead;
        reads only, so writes and searches go on meanwhile (ScaNN releases the GIL while it
        trains, and the rest is numpy or yields the GIL)."""
        started = time.monotonic()
        count, version, dead_at = source.count, source.version, source.dead_at
        source_table = source.table
        present = np.flatnonzero(dead_at[:count] > version)
        size = len(present)
        compact = size < count
        # The searcher is built before the table is compacted, so that the rows ScaNN gets (a
        # copy: unit length for cosine, or gathered) and its training never coexist with a
        # second table: the peak of a compacting rebuild is one copy of the vectors lower.
        rows = source.vectors[present] if compact else source.vectors[:count]
        if source.inverse_norms is not None:  # cosine: ScaNN indexes unit rows
            norms = source.inverse_norms[present] if compact else source.inverse_norms[:count]
            if compact:
                rows *= norms[:, None]  # a copy already
            else:
                rows = rows * norms[:, None]
        kind_threshold = self.policy.brute_force_below
        if source.base is not None and source.base.kind == TREE_AH:
            kind_threshold //= 2  # hysteresis: a tree stays a tree down to half the threshold
        del source  # the state's other arrays (the old base's) need not live through the build
        if size == 0:  # nothing to index: every search scans the (empty, then growing) tail
            built = None
        else:
            built = self._searcher(rows, kind_threshold, self.policy.rebuild_threads if background else self.policy.training_threads)
        del rows
        if compact:
            table, old_to_new = source_table.compacted(count, version, dead_at)
            ids = None
        else:
            table, old_to_new, ids = source_table, None, source_table.ids.sorted_index(count)
        if built is None:
            return Rebuilt(source_table, count, version, table, old_to_new, ids, _NO_BASE)
        base = Base(built.scann.searcher, built.kind, size, built.num_leaves, built.tuning)
        logger.info(
            "collection %r: built a %s index of %d items in %.2fs (%s; recall@%d %.3f, %d leaves, reorder %d)",
            self._label,
            built.kind,
            size,
            time.monotonic() - started,
            "in place" if old_to_new is None else "compacted",
            built.tuning.k,
            built.tuning.recall,
            built.tuning.leaves_to_search,
            built.tuning.reorder,
        )
        return Rebuilt(source_table, count, version, table, old_to_new, ids, base)

    def install(self, rebuilt: Rebuilt) -> None:
        """Swaps in a rebuilt base (and table), carrying over the writes made since its source."""
        assert rebuilt.source_table is self._table, "built from a table that was replaced meanwhile"
        if rebuilt.old_to_new is not None:
            rebuilt.table.carry_over(self._table, rebuilt.count, rebuilt.version, rebuilt.old_to_new)
            self._table = rebuilt.table
        else:
            self._table.ids.use(rebuilt.ids)
        self._base, self._delta = rebuilt.base, None  # the new base covers the delta's slots
        self._base_dead = int(np.count_nonzero(self._table.dead_at.array[: rebuilt.base.upto] != ALIVE))
        self.state = self._state()

    def build_delta(self, source: State) -> Base | None:
        """A searcher over the tail of `source` when it is at least `delta_rows` long (module
        docstring), built like a base; reads only."""
        base, policy = source.base, self.policy
        tail = source.count - base.upto if base is not None else 0
        # A tail over a quarter of the whole would cost a good part of the rebuild it waits for.
        if base is None or base.upto == 0 or tail < policy.delta_rows or 4 * tail > source.count:
            return None
        started, start, upto = time.monotonic(), base.upto, source.count
        rows = source.vectors[start:upto]
        if source.inverse_norms is not None:  # cosine: ScaNN indexes unit rows
            rows = rows * source.inverse_norms[start:upto, None]
        built = self._searcher(rows, policy.brute_force_below, policy.rebuild_threads)
        logger.info(
            "collection %r: built a %s index of the %d items written since the last build in %.2fs",
            self._label,
            built.kind,
            upto - start,
            time.monotonic() - started,
        )
        return Base(built.scann.searcher, built.kind, upto, built.num_leaves, built.tuning, start)

    def install_delta(self, delta: Base, source: State) -> bool:
        """Publishes `delta`, built from `source`, unless its base or table was replaced meanwhile;
        whether it did."""
        if self._base is not source.base or self._table is not source.table:
            return False
        self._delta = delta
        self.state = self._state()
        return True

    def _searcher(self, rows: np.ndarray, brute_force_below: int, threads: int) -> index_tuning.BuiltSearcher:
        """A tuned searcher over `rows` (as ScaNN indexes them: unit length for cosine)."""
        policy = self.policy
        return index_tuning.build(
            rows,
            self._space,
            spherical=self.metric == "cosine",
            brute_force_below=brute_force_below,
            leaves_per_sqrt_n=policy.leaves_per_sqrt_n,
            recall_target=policy.recall_target,
            k=policy.tuning_k,
            sample_size=policy.tuning_sample,
            training_threads=threads,
        )

    # --- search ---

    def prepare_query(self, query: np.ndarray) -> np.ndarray:
        """float32 (dimension,), normalised for cosine; the caller validated it."""
        if self.metric != "cosine":
            return query
        wide = query.astype(np.float64)  # float64: no square of a float32 under- or overflows
        return query * np.float32(1 / math.sqrt(float(wide @ wide)))

    def prepare_queries(self, queries: np.ndarray) -> np.ndarray:
        """`prepare_query` of each row (n, dimension), with the same arithmetic, so a batched
        search gets the very queries the single ones do."""
        if self.metric != "cosine":
            return queries
        wide = queries.astype(np.float64)
        factors = (1 / np.sqrt(np.einsum("ij,ij->i", wide, wide))).astype(np.float32)
        return queries * factors[:, None]

    def search(
        self, state: State, query: np.ndarray, k: int, allowed: np.ndarray | None = None, exact: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """(slots, scores) of the k best allowed items for a prepared `query`, best first."""
        base = state.base
        if allowed is None and not exact and state.base_dead == 0 and base is not None and state.count == base.upto and k <= base.tuning.k:
            # The common case, kept short: every item in the index, none of it dead, k as tuned.
            if base.kind != TREE_AH:
                return base.scann.search(query, k, -1, -1)
            tuning = base.tuning  # the depth tuned for tuning.k serves any smaller k as well
            rows, _ = base.scann.search(query, tuning.reorder, tuning.reorder, tuning.leaves_to_search)
            return self._rescored(state, query, rows, k)
        if allowed is not None:
            count = int(np.count_nonzero(allowed))
            if count == 0:
                return _EMPTY
            policy = self.policy
            if count <= max(policy.exact_scan_rows, policy.exact_scan_fraction * state.live):
                exact = True
        if exact or base is None:
            return self._exact(state, query, k, allowed)
        found = self._filtered(state, query, k, allowed)
        if found is None:
            return self._exact(state, query, k, allowed)
        if state.count == base.upto:
            return found
        return self._merge(found, self._tail(state, query, k, allowed), k)

    def search_batch(self, state: State, queries: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """`search` for each of `queries` (prepared), unfiltered: the base's candidates for all of
        them come from one batched ScaNN call on every core, then each is finished as alone."""
        base = state.base
        if base is None or base.upto == 0 or len(queries) == 1:
            return [self.search(state, q, k) for q in queries]
        plain = state.base_dead == 0 and state.count == base.upto and k <= base.tuning.k  # as in search()
        fetch = k if plain else self._fetch(state, k)
        results = []
        for query, found in zip(queries, self._from_base_batched(state, queries, fetch)):
            if plain:
                results.append(found)
                continue
            found = self._keep(state, *found, k, None)
            if len(found[0]) < min(k, base.upto - state.base_dead):  # dead slots crowded it out: widen alone
                results.append(self.search(state, query, k))
                continue
            if state.count > base.upto:
                found = self._merge(found, self._tail(state, query, k, None), k)
            results.append(found)
        return results

    def scores(self, state: State, query: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """The exact scores of `slots` against a prepared `query` (float32, like search's)."""
        return self._score(state, query, slots)

    def _fetch(self, state: State, k: int) -> int:
        base = state.base
        live_in_base = base.upto - state.base_dead
        if state.base_dead == 0 or live_in_base <= 0:
            return min(k, base.upto)
        return min(base.upto, math.ceil(1.2 * k * base.upto / live_in_base) + 4)

    def _depth(self, base: Base, fetch: int) -> int:
        """Hashed candidates to rescore for `fetch` results: the tuned depth, in proportion."""
        tuning = base.tuning
        return max(tuning.reorder, math.ceil(tuning.reorder * fetch / tuning.k))

    def _from_base(self, state: State, query: np.ndarray, fetch: int, base: Base | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The `fetch` best of the base (or of `base`, a delta) for a prepared query, as slots: a
        tree's best hashed candidates rescored exactly (module docstring), a brute-force
        searcher's answer as it is."""
        base = base or state.base
        if base.kind != TREE_AH:
            rows, scores = base.scann.search(query, fetch, -1, -1)
            return (rows + base.start if base.start else rows), scores
        depth = self._depth(base, fetch)
        rows, _ = base.scann.search(query, depth, depth, base.tuning.leaves_to_search)
        return self._rescored(state, query, rows + base.start if base.start else rows, fetch)

    def _tail(self, state: State, query: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The k best of the slots past the base: the delta's (when there is one and no filter)
        merged with the exact scan of the slots past it; else the exact scan of them all."""
        delta, start = state.delta, state.base.upto
        if delta is None or allowed is not None:
            return self._exact(state, query, k, allowed, start=start)
        rows, scores = self._from_base(state, query, min(delta.upto - delta.start, 2 * k), delta)
        found = self._keep(state, rows, scores, k, None)
        if len(found[0]) < k:  # slots of the delta died, or its tree came back short: scan it instead
            found = self._exact(state, query, k, None, start=start, stop=delta.upto)
        if state.count == delta.upto:
            return found
        return self._merge(found, self._exact(state, query, k, None, start=delta.upto), k)

    def _from_base_batched(self, state: State, queries: np.ndarray, fetch: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """`_from_base` of each query, equal to it. Batches of one query per ScaNN task: its
        batched tree search picks leaves for a block of queries at once and then sometimes
        picks others than for each query alone (seen here, 8 to 14 of 40 queries at 4 leaves
        of 50); one per task gives exactly the single answers."""
        base = state.base
        if base.kind != TREE_AH:
            rows, scores = base.scann.search_batched(queries, fetch, -1, -1, True, 1)
            return [(r[~np.isnan(s)], s[~np.isnan(s)]) for r, s in zip(rows, scores)]  # short answers come padded with NaN
        depth = self._depth(base, fetch)
        rows, approximate = base.scann.search_batched(queries, depth, depth, base.tuning.leaves_to_search, True, 1)
        return [self._rescored(state, q, r[~np.isnan(a)], fetch) for q, r, a in zip(queries, rows, approximate)]

    def _rescored(self, state: State, query: np.ndarray, rows: np.ndarray, fetch: int) -> tuple[np.ndarray, np.ndarray]:
        scores = self._score(state, query, rows)
        top = self._best(scores, fetch)
        return rows[top], scores[top]

    def _filtered(self, state: State, query: np.ndarray, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
        """The base's k best among its allowed slots, overfetching and widening as the
        module docstring says; None when the exact scan must answer instead."""
        base = state.base
        upto = base.upto
        if allowed is None:
            fetch = self._fetch(state, k)
        else:
            in_base = int(np.count_nonzero(allowed[:upto]))
            if in_base == 0:
                return _EMPTY
            fetch = min(upto, max(k, math.ceil(1.5 * k * upto / in_base)) + 8)
        if fetch <= 0:
            return _EMPTY
        while True:
            rows, scores = self._from_base(state, query, fetch)
            found = self._keep(state, rows, scores, k, allowed)
            if len(found[0]) >= k or fetch >= upto:
                return found
            # A tree search can come back short when the leaves it scanned hold fewer than asked for.
            if len(rows) < fetch or fetch * 4 > upto * self.policy.widen_fraction:
                return None
            fetch = min(upto, fetch * 4)

    def _keep(self, state: State, rows: np.ndarray, scores: np.ndarray, k: int, allowed: np.ndarray | None):
        keep = allowed[rows] if allowed is not None else state.dead_at[rows] > state.version
        if not keep.all():
            rows, scores = rows[keep], scores[keep]
        return rows[:k], scores[:k]

    def _exact(
        self, state: State, query: np.ndarray, k: int, allowed: np.ndarray | None, start: int = 0, stop: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over the allowed (else present) slots [start, stop), in chunks to bound
        memory. A chunk where most slots count is scored as the contiguous block it is: copying
        out its rows first (a gather of 16 MB per 65k rows of 64 floats) cost more than the
        dot products, and the tail of recent writes is scanned so on every search."""
        best_rows, best_scores = _EMPTY
        end = state.count if stop is None else stop
        for chunk in range(start, end, _EXACT_CHUNK_ROWS):
            until = min(end, chunk + _EXACT_CHUNK_ROWS)
            keep = allowed[chunk:until] if allowed is not None else state.dead_at[chunk:until] > state.version
            offsets = np.flatnonzero(keep)
            if not len(offsets):
                continue
            if 2 * len(offsets) >= until - chunk:
                scores = self._score_block(state, query, chunk, until)[offsets]
            else:
                scores = self._score(state, query, offsets + chunk)
            rows = np.concatenate([best_rows, offsets + chunk])
            scores = np.concatenate([best_scores, scores])
            top = self._best(scores, k)
            best_rows, best_scores = rows[top], scores[top]
        return best_rows, best_scores

    def _score_block(self, state: State, query: np.ndarray, start: int, stop: int) -> np.ndarray:
        """`_score` of the slots [start, stop), read in place."""
        block = state.vectors[start:stop]
        if self.metric == "squared_l2":
            difference = block - query
            return np.einsum("ij,ij->i", difference, difference)
        scores = block @ query
        if state.inverse_norms is not None:
            scores *= state.inverse_norms[start:stop]
        return scores

    def _score(self, state: State, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        block = state.vectors[rows]
        if self.metric == "squared_l2":
            difference = block - query
            return np.einsum("ij,ij->i", difference, difference)
        scores = block @ query
        if state.inverse_norms is not None:
            scores *= state.inverse_norms[rows]
        return scores

    def _merge(self, first, second, k: int) -> tuple[np.ndarray, np.ndarray]:
        rows = np.concatenate([first[0].astype(np.int64), second[0]])
        scores = np.concatenate([first[1], second[1]]).astype(np.float32)
        top = self._best(scores, k)
        return rows[top], scores[top]

    def _best(self, scores: np.ndarray, k: int) -> np.ndarray:
        """Indices of the k best scores, best first."""
        key = scores if self.lower_is_better else -scores
        if k < len(key) > _SORT_WHOLE:
            top = np.argpartition(key, k - 1)[:k]
            return top[np.argsort(key[top], kind="stable")]
        return np.argsort(key, kind="stable")[:k]  # a rescored candidate list: one call beats two


_EMPTY = (np.empty(0, np.int64), np.empty(0, np.float32))
_NO_BASE = Base(None, BRUTE_FORCE, 0, 0, Tuning(0, 0, 1.0, 0))
