"""Building a collection's ScaNN searcher, and tuning it to a recall target instead of to 1.000.

Kinds (upstream guidance, scann/docs/algorithms.md, and SHARP_EDGES.md):
- `brute_force` below `brute_force_below` items: exact;
- `tree_ah` from there on: a k-means tree of 2 sqrt(n) leaves (spherical k-means for cosine,
  which reached recall 0.991 with one leaf where the default gave 0.862 on 200k vectors here)
  and anisotropic hashing with 1 dimension per block; the best hashed candidates are rescored
  exactly by the caller, from its own float32 vectors (vector_index.py says why not by ScaNN's
  reordering), and by `tune` the same way. Why 2 sqrt(n) and not ScaNN's sqrt(n): on 100k
  clustered vectors (1,000 clusters, benchmarks/search_scale.py) recall is limited by the
  partition, not the hashing; sqrt(n) = 316 leaves needed 24 leaves searched
  for recall 0.97, 632 leaves needed 2 (each half the size).

How many leaves to search and how many hashed candidates to reorder decide speed and recall.
A fixed fraction of the leaves makes query time grow with the collection (25 % of the leaves:
2.8k queries/s at 1M against 17k with 2 leaves, at recall 0.997). So each build measures: a
sample of the collection's own vectors is searched at growing leaves for a few reorder depths,
against the exact neighbours (each sampled vector left out of its own answer: held out), and
the cheapest setting whose recall@k reaches `recall_target` is kept, with the recall it had.
(The vectors here are float32 as indexed, unit length for cosine; the service rescores the
stored vectors times their inverse norms: the same scores up to the last bit of rounding.)
Cheapest by a cost model, not by a stopwatch, so the choice does not depend on the machine's
load: each searched datapoint costs d/2 (a table lookup per dimension, its 4-bit codes packed
two a byte), each rescored one a float dot product and a cache miss, counted as 8 d.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
from scann.scann_ops.py import scann_ops_pybind

logger = logging.getLogger(__name__)

BRUTE_FORCE = "brute_force"
TREE_AH = "tree_ah"
_LEAVES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
_REORDER_PER_K = (2, 4, 8, 16, 32)  # reorder depths tried, in multiples of k
_EXACT_CHUNK_ROWS = 32_768  # bounds the temporary memory of the exact neighbours
_RESCORE_QUERIES = 32  # sample queries rescored at a time (bounds a (queries, candidates, dimension) block)


@dataclasses.dataclass(frozen=True)
class Tuning:
    """How a searcher is searched, and what that was measured to give."""

    leaves_to_search: int  # 0 for brute force
    reorder: int  # best hashed candidates rescored exactly per query (0 for brute force)
    recall: float  # recall@k on the held-out sample (1.0 for brute force)
    k: int  # the k it was tuned for


@dataclasses.dataclass(frozen=True)
class BuiltSearcher:
    scann: scann_ops_pybind.ScannSearcher
    kind: str  # BRUTE_FORCE or TREE_AH
    num_leaves: int  # 0 for brute force
    tuning: Tuning


def build(
    unit_rows: np.ndarray,
    space: str,
    *,
    spherical: bool,
    brute_force_below: int,
    leaves_per_sqrt_n: float,
    recall_target: float,
    k: int,
    sample_size: int,
    training_threads: int,
    seed: int = 0,
) -> BuiltSearcher:
    """A searcher over `unit_rows` (float32, as ScaNN indexes them: unit length for cosine)."""
    size = len(unit_rows)
    if size < brute_force_below:
        builder = scann_ops_pybind.builder(unit_rows, k, space).score_brute_force()
        builder.set_n_training_threads(training_threads)
        return BuiltSearcher(builder.build(), BRUTE_FORCE, 0, Tuning(0, 0, 1.0, k))
    num_leaves = max(2, min(size // 4, round(leaves_per_sqrt_n * math.sqrt(size))))
    builder = (
        scann_ops_pybind.builder(unit_rows, k, space)
        .tree(
            num_leaves=num_leaves,
            num_leaves_to_search=min(num_leaves, 8),  # a default only: every query passes the tuned value
            # k-means needs enough points per leaf: at 1M items and 2,000 leaves, 100k training
            # points (50 a leaf) needed 64 leaves searched for recall 0.96, 250k needed 4 for 1.000.
            training_sample_size=min(size, max(100_000, 125 * num_leaves)),
            spherical=spherical,
        )
        .score_ah(
            # 1 dimension a block: 4 bits a dimension, 32 bytes a 64-d vector. On 200k x 64, 3 leaves,
            # rescoring the best 20 reached recall 0.986; with 2 dimensions a block it took 60.
            1,
            # Anisotropic quantization helps inner products only (cosine is one, over unit vectors).
            anisotropic_quantization_threshold=0.2 if space == "dot_product" else float("nan"),
        )
    )
    builder.set_n_training_threads(training_threads)
    searcher = builder.build()
    tuning = tune(searcher, unit_rows, space, num_leaves, recall_target=recall_target, k=k, sample_size=sample_size, seed=seed)
    return BuiltSearcher(searcher, TREE_AH, num_leaves, tuning)


def tune(
    searcher: scann_ops_pybind.ScannSearcher,
    rows: np.ndarray,
    space: str,
    num_leaves: int,
    *,
    recall_target: float,
    k: int,
    sample_size: int,
    seed: int = 0,
) -> Tuning:
    """The cheapest (leaves, reorder) reaching `recall_target` on a held-out sample; the most
    thorough setting tried, with its recall, when none does."""
    size, dimension = rows.shape
    sample = np.random.default_rng(seed).choice(size, size=min(sample_size, size), replace=False)
    queries = rows[sample]
    truth = _exact_neighbours(rows, queries, sample, space, k)
    leaf_size = size / num_leaves
    best: tuple[float, Tuning] | None = None
    thorough = Tuning(num_leaves, _REORDER_PER_K[-1] * k, 0.0, k)
    for per_k in _REORDER_PER_K:
        reorder = per_k * k
        for leaves in [n for n in _LEAVES if n < num_leaves] + [num_leaves]:
            candidates, approximate = searcher.search_batched(
                queries,
                final_num_neighbors=reorder + 1,
                pre_reorder_num_neighbors=reorder + 1,
                leaves_to_search=leaves,
            )
            found = _rescored(rows, queries, np.asarray(candidates, np.int64), np.isnan(approximate), space, k + 1)
            recall = _recall(found, sample, truth, k)
            if (leaves, reorder) == (thorough.leaves_to_search, thorough.reorder):
                thorough = Tuning(leaves, reorder, recall, k)
            if recall >= recall_target:
                cost = leaves * leaf_size * dimension / 2 + reorder * dimension * 8
                if best is None or cost < best[0]:
                    best = (cost, Tuning(leaves, reorder, recall, k))
                break  # more leaves at this depth only cost more
            if best is not None and leaves * leaf_size * dimension / 2 > best[0]:
                break  # already dearer than the best found
    chosen = best[1] if best is not None else thorough
    logger.info(
        "tuned %d leaves of %d and reorder %d: recall@%d %.3f on %d held-out vectors (target %.2f)",
        chosen.leaves_to_search,
        num_leaves,
        chosen.reorder,
        k,
        chosen.recall,
        len(sample),
        recall_target,
    )
    return chosen


def _exact_neighbours(rows: np.ndarray, queries: np.ndarray, sample: np.ndarray, space: str, k: int) -> np.ndarray:
    """(len(queries), k) rows nearest to each query, the query's own row left out."""
    best_rows = np.empty((len(queries), 0), np.int64)
    best_keys = np.empty((len(queries), 0), np.float32)
    for start in range(0, len(rows), _EXACT_CHUNK_ROWS):
        block = rows[start : start + _EXACT_CHUNK_ROWS]
        if space == "squared_l2":
            keys = (block * block).sum(axis=1)[None, :] - 2 * (queries @ block.T)  # + |q|^2, the same per query
        else:
            keys = -(queries @ block.T)
        own = (sample >= start) & (sample < start + len(block))
        keys[np.flatnonzero(own), sample[own] - start] = np.inf  # held out: not its own neighbour
        candidates = np.concatenate([best_rows, np.broadcast_to(np.arange(start, start + len(block)), keys.shape)], axis=1)
        keys = np.concatenate([best_keys, keys], axis=1)
        top = np.argpartition(keys, min(k, keys.shape[1] - 1), axis=1)[:, :k]
        best_rows = np.take_along_axis(candidates, top, axis=1)
        best_keys = np.take_along_axis(keys, top, axis=1)
    return best_rows


def _rescored(rows: np.ndarray, queries: np.ndarray, candidates: np.ndarray, missing: np.ndarray, space: str, k: int) -> np.ndarray:
    """The k best of each query's hashed candidates by exact score, as the service rescores
    them (-1 where fewer were found; `missing` marks ScaNN's padding)."""
    best = np.empty((len(queries), k), np.int64)
    for start in range(0, len(queries), _RESCORE_QUERIES):
        stop = start + _RESCORE_QUERIES
        block = rows[candidates[start:stop]]  # (queries, candidates, dimension)
        if space == "squared_l2":
            keys = ((block - queries[start:stop, None, :]) ** 2).sum(axis=2)
        else:
            keys = -np.einsum("qcd,qd->qc", block, queries[start:stop])
        keys[missing[start:stop]] = np.inf
        order = np.argsort(keys, axis=1, kind="stable")[:, :k]
        best[start:stop] = np.where(np.take_along_axis(keys, order, axis=1) < np.inf, np.take_along_axis(candidates[start:stop], order, axis=1), -1)
    return best


def _recall(found: np.ndarray, sample: np.ndarray, truth: np.ndarray, k: int) -> float:
    hits = 0
    for own, row, expected in zip(sample.tolist(), found.tolist(), truth.tolist()):
        got = [r for r in row if r != own][:k]
        hits += len(set(got) & set(expected))
    return hits / (len(sample) * min(k, truth.shape[1]))
