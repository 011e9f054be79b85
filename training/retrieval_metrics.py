"""Retrieval quality, measured the way users meet it: query -> k nearest -> how many share its label.

Pure numpy on purpose (no torch): the demo reuses it on vectors that came back from the
services, and serving-side code never imports torch.
"""

from __future__ import annotations

import numpy as np

from lookalike.model_format import METRICS


def nearest_neighbors(
    query_vecs: np.ndarray, db_vecs: np.ndarray, k: int, metric: str = "cosine", chunk: int = 1024
) -> np.ndarray:
    """Exact kNN: indices into `db_vecs` of each query's k best matches, best first. Shape (Q, k)."""
    return top_k(query_vecs, db_vecs, k, metric, chunk)[0]


def top_k(
    query_vecs: np.ndarray, db_vecs: np.ndarray, k: int, metric: str = "cosine", chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Exact kNN: (indices, scores), each (Q, k), best first; a higher score is a closer match."""
    result = np.empty((len(query_vecs), k), dtype=np.int64)
    best = np.empty((len(query_vecs), k), dtype=np.float32)
    for start, scores in _score_chunks(query_vecs, db_vecs, metric, chunk):
        assert 0 < k <= scores.shape[1], f"k must be in 1..{scores.shape[1]} (the database size), got {k}"
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (q, k), unordered
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        result[start : start + len(scores)] = np.take_along_axis(top, order, axis=1)
        best[start : start + len(scores)] = np.take_along_axis(scores, result[start : start + len(scores)], axis=1)
    return result, best


def mean_average_precision(
    query_vecs: np.ndarray,
    query_labels: np.ndarray,
    db_vecs: np.ndarray,
    db_labels: np.ndarray,
    metric: str = "cosine",
    chunk: int = 256,
) -> float:
    """mAP over the whole database ranking: for each query, the mean of precision@r over the ranks r
    of its relevant (same-label) items, then the mean over queries with at least one relevant item."""
    query_labels, db_labels = np.asarray(query_labels), np.asarray(db_labels)
    assert len(query_labels) == len(query_vecs) and len(db_labels) == len(db_vecs), "one label per vector"
    ranks = np.arange(1, len(db_vecs) + 1, dtype=np.float64)  # (N,)
    average_precisions = []
    for start, scores in _score_chunks(query_vecs, db_vecs, metric, chunk):
        order = np.argsort(-scores, axis=1, kind="stable")  # (q, N), best first
        relevant = db_labels[order] == query_labels[start : start + len(scores), None]  # (q, N)
        precision = np.cumsum(relevant, axis=1) / ranks  # (q, N), precision@r
        count = relevant.sum(axis=1)  # (q,)
        has = count > 0
        average_precisions.append((precision * relevant).sum(axis=1)[has] / count[has])
    return float(np.concatenate(average_precisions).mean())


def copy_detection(
    query_vecs: np.ndarray, sources: np.ndarray, db_vecs: np.ndarray, metric: str = "cosine", k: int = 10
) -> dict[str, float]:
    """Each query is an edited copy of db item sources[i]; is it found, and can one threshold tell?

    recall_at_1: share of queries whose best match is their source. Where several items tie for the
    best score (Hamming distances of a hash often do), the source counts for the share of them it
    would win by a coin toss, 1 / ties: ties neither help nor hurt by where the items sit.
    micro_ap: the DISC21 copy-detection measure (https://arxiv.org/abs/2106.09672): the top-k
    matches of all queries pooled and sorted by score, average precision of finding the sources,
    with one source per query as the recall denominator. It rewards scores comparable across
    queries, i.e. one similarity threshold for "this is a copy" that works for every image.
    """
    sources = np.asarray(sources)
    assert len(sources) == len(query_vecs), "one source index per query"
    indices, scores = top_k(query_vecs, db_vecs, k, metric)  # (Q, k) each
    correct = indices == sources[:, None]  # (Q, k), at most one True per row
    pooled = np.argsort(-scores.ravel(), kind="stable")
    hits = correct.ravel()[pooled]  # (Q*k,), best score first
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return {
        "recall_at_1": _recall_at_1(query_vecs, sources, db_vecs, metric),
        "micro_ap": float((precision * hits).sum() / len(sources)),
    }


def _recall_at_1(query_vecs: np.ndarray, sources: np.ndarray, db_vecs: np.ndarray, metric: str) -> float:
    """Mean over queries of 1 / (items tied at the best score) when the source is among them, else 0."""
    won = []
    for start, scores in _score_chunks(query_vecs, db_vecs, metric, 1024):
        own = scores[np.arange(len(scores)), sources[start : start + len(scores)]]  # (q,)
        best = scores.max(axis=1)  # (q,)
        ties = (scores >= best[:, None]).sum(axis=1)  # (q,), at least 1
        won.append(np.where(own >= best, 1.0 / ties, 0.0))
    return float(np.concatenate(won).mean())


def _score_chunks(query_vecs: np.ndarray, db_vecs: np.ndarray, metric: str, chunk: int):
    """Yields (first query index, scores (q, N)), higher is better, a chunk of queries at a time,
    so a (Q, N) score matrix never has to fit in memory at once."""
    assert metric in METRICS, f"metric must be one of {METRICS}, got {metric!r}"
    query = _as_2d_float(query_vecs, "query_vecs")  # (Q, D)
    db = _as_2d_float(db_vecs, "db_vecs")  # (N, D)
    assert query.shape[1] == db.shape[1], f"dimension mismatch: queries {query.shape[1]}, database {db.shape[1]}"
    if metric == "cosine":
        query, db = _unit(query), _unit(db)
    db_sq = (db * db).sum(axis=1)  # (N,), only used by squared_l2
    for start in range(0, len(query), chunk):
        q = query[start : start + chunk]  # (q, D)
        scores = q @ db.T  # (q, N)
        if metric == "squared_l2":
            # -|q - x|^2, whole, so that scores compare across queries too (micro-AP pools them).
            scores = 2 * scores - db_sq[None, :] - (q * q).sum(axis=1)[:, None]
        yield start, scores


def precision_at_k(
    query_vecs: np.ndarray,
    query_labels: np.ndarray,
    db_vecs: np.ndarray,
    db_labels: np.ndarray,
    k: int = 10,
    metric: str = "cosine",
) -> float:
    """Mean over queries of (neighbours among the k nearest with the query's label) / k."""
    query_labels = np.asarray(query_labels)
    db_labels = np.asarray(db_labels)
    assert len(query_labels) == len(query_vecs), "one label per query vector"
    assert len(db_labels) == len(db_vecs), "one label per database vector"
    neighbors = nearest_neighbors(query_vecs, db_vecs, k, metric)  # (Q, k)
    hits = db_labels[neighbors] == query_labels[:, None]  # (Q, k)
    return float(hits.mean())


def _as_2d_float(vecs: np.ndarray, name: str) -> np.ndarray:
    vecs = np.asarray(vecs, dtype=np.float32)
    assert vecs.ndim == 2, f"{name} must be (N, D), got shape {vecs.shape}; flatten images first"
    assert np.isfinite(vecs).all(), f"{name} holds NaN or Inf"
    return vecs


def _unit(vecs: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    # An all-zero vector has no direction; leave it at zero so it matches nothing well.
    return vecs / np.maximum(norms, 1e-12)
