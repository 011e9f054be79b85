"""Retrieval quality, measured the way users meet it: query -> k nearest -> how many share its label.

Pure numpy on purpose (no torch): the demo reuses it on vectors that came back from the
services, and serving-side code never imports torch.
"""

from __future__ import annotations

import numpy as np

METRICS = ("cosine", "dot_product", "squared_l2")


def nearest_neighbors(
    query_vecs: np.ndarray, db_vecs: np.ndarray, k: int, metric: str = "cosine", chunk: int = 1024
) -> np.ndarray:
    """Exact kNN: indices into `db_vecs` of each query's k best matches, best first. Shape (Q, k)."""
    assert metric in METRICS, f"metric must be one of {METRICS}, got {metric!r}"
    query = _as_2d_float(query_vecs, "query_vecs")  # (Q, D)
    db = _as_2d_float(db_vecs, "db_vecs")  # (N, D)
    assert query.shape[1] == db.shape[1], f"dimension mismatch: queries {query.shape[1]}, database {db.shape[1]}"
    assert 0 < k <= len(db), f"k must be in 1..{len(db)} (the database size), got {k}"
    if metric == "cosine":
        query, db = _unit(query), _unit(db)
    db_sq = (db * db).sum(axis=1)  # (N,), only used by squared_l2
    result = np.empty((len(query), k), dtype=np.int64)
    # Chunk the queries so a (Q, N) score matrix never has to fit in memory at once.
    for start in range(0, len(query), chunk):
        q = query[start : start + chunk]  # (q, D)
        scores = q @ db.T  # (q, N), higher is better
        if metric == "squared_l2":
            # -|q - x|^2 = 2 q.x - |x|^2 - |q|^2; the |q|^2 term does not change the ranking.
            scores = 2 * scores - db_sq[None, :]
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (q, k), unordered
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        result[start : start + chunk] = np.take_along_axis(top, order, axis=1)
    return result


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
