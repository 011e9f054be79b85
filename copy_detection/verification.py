"""Geometric verification: do two pictures share pixels under one similarity transform?

For each query descriptor, its two nearest descriptors in the candidate; Lowe's ratio test keeps
the match when the nearest is clearly nearer than the second (RATIO), and each candidate keypoint
keeps only its best match, so one repeated texture cannot vote many times. RANSAC then fits a
4-degree-of-freedom similarity (rotation, uniform scale, translation: what crops, resizes, small
rotations, captions and letterboxes do) with cv2.estimateAffinePartial2D. A similarity cannot
mirror, so mirrored copies are caught by the query's mirrored features, fitted in mirrored
coordinates and composed with the flip afterwards. A fit is refused when its scale is absurd or its
inliers huddle in a speck of the original (a shared logo or glyph, not a shared picture).

Speed: the descriptors of the query (and of its mirror image) meet those of every candidate in one
matrix product (RootSIFT dot products are Hellinger similarities), and two reductions over it find
each descriptor's two nearest per candidate; RANSAC runs only for candidates with MIN_MATCHES
ratio-test matches, which unrelated candidates seldom reach. Figures: benchmarks/RESULTS.md.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import cv2
import numpy as np

from copy_detection.features import DESCRIPTOR_SCALE, DESCRIPTOR_SIZE, MAX_KEYPOINTS, Fingerprint, LocalFeatures, work_scale

RATIO = 0.8  # Lowe's ratio test on distances: his figure for SIFT
MIN_MATCHES = 8  # fewer ratio-test matches are not worth a RANSAC fit
RANSAC_WORK_PIXELS = 3.0  # reprojection error allowed, in pixels of the original's work picture
RANSAC_ITERATIONS = 500  # 2-point samples: enough down to ~10% inliers at 99% confidence
SCALE_RANGE = (1 / 8, 8.0)  # query pixels per original pixel beyond this is no copy
MIN_SPREAD = 0.01  # the inliers' hull must cover this share of the original's area
_CHUNK = 1 << 22  # similarity entries per matrix product (16 MB of float32), bounding memory


@dataclasses.dataclass(frozen=True)
class Match:
    inliers: int  # RANSAC inliers of the fitted transform
    matches: int  # descriptor matches that passed the ratio test
    mirrored: bool  # the query is a mirror image of the original
    # (2, 3) float64 affine map: query full-size pixel (x, y, 1) -> original full-size pixel (includes
    # the mirroring when mirrored)
    query_to_original: np.ndarray
    region_in_original: np.ndarray  # (4, 2) float32: the query's corners (0,0),(w,0),(w,h),(0,h) in the original
    original_in_query: np.ndarray  # (4, 2) float32: the original's corners mapped into the query


def verify(query: Fingerprint, candidate: Fingerprint) -> Match | None:
    """The best fit of `query` onto `candidate`, as is or mirrored; None: no plausible fit."""
    return verify_many(query, [candidate])[0]


def verify_many(query: Fingerprint, candidates: Sequence[Fingerprint | None]) -> list[Match | None]:
    """`verify` for each candidate (None for a missing one), with one matrix product per chunk of them."""
    attempts = [(query.features, False)] + ([(query.mirrored, True)] if query.mirrored is not None else [])
    attempts = [(features, mirrored) for features, mirrored in attempts if len(features) >= MIN_MATCHES]
    usable = [i for i, c in enumerate(candidates) if c is not None and len(c.features) >= MIN_MATCHES]
    results: list[Match | None] = [None] * len(candidates)
    if not attempts or not usable:
        return results
    queries = np.concatenate([features.descriptors for features, _ in attempts]).astype(np.float32)
    per_chunk = max(1, _CHUNK // (len(queries) * MAX_KEYPOINTS))
    for start in range(0, len(usable), per_chunk):
        chunk = usable[start : start + per_chunk]
        nearest, passed = _nearest([candidates[i].features for i in chunk], queries)
        row = 0
        for features, mirrored in attempts:
            rows = slice(row, row + len(features))
            row = rows.stop
            for column, i in enumerate(chunk):
                query_index = np.flatnonzero(passed[rows, column])
                if len(query_index) < MIN_MATCHES:
                    continue
                query_index, candidate_index = _one_to_one(query_index, nearest[rows, column][query_index])
                match = _fit(query, features, mirrored, candidates[i], query_index, candidate_index)
                if match is not None and (results[i] is None or match.inliers > results[i].inliers):
                    results[i] = match
    return results


def _nearest(stored: list[LocalFeatures], queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query descriptor (row) and candidate (column): the index of its nearest descriptor in
    that candidate, and whether it passes the ratio test; both (queries, candidates).

    Candidates are padded with zero descriptors to the longest among them, so one matrix product and
    two reductions serve them all; a zero descriptor is as far from a RootSIFT descriptor as any can
    be (their components are not negative), so padding never wins. RootSIFT descriptors have unit
    length, so the squared distance is 2 - 2 x similarity; with the uint8 scale S left in the
    similarities s (x S^2), the test d1 < RATIO d2 becomes S^2 - s1 < RATIO^2 (S^2 - s2).
    """
    longest = max(len(features) for features in stored)
    padded = np.zeros((len(stored), longest, DESCRIPTOR_SIZE), np.float32)
    for column, features in enumerate(stored):
        padded[column, : len(features)] = features.descriptors
    # (queries, candidates x longest). cv2.gemm runs on one thread; numpy's matmul would hand the product
    # to OpenBLAS's threads, which on 2 busy cores measured slower (benchmarks/RESULTS.md).
    similarity = cv2.gemm(queries, padded.reshape(-1, DESCRIPTOR_SIZE), 1.0, None, 0.0, flags=cv2.GEMM_2_T)
    similarity = similarity.reshape(len(queries), len(stored), longest)
    nearest = similarity.argmax(axis=2)  # (queries, candidates)
    best = np.take_along_axis(similarity, nearest[..., None], axis=2)[..., 0]
    np.put_along_axis(similarity, nearest[..., None], -1.0, axis=2)  # out of the way of the second nearest
    second = similarity.max(axis=2)
    unit = np.float32(DESCRIPTOR_SCALE**2)
    return nearest, unit - best < RATIO**2 * (unit - second)


def _one_to_one(query_index: np.ndarray, candidate_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One match per candidate keypoint (the first query keypoint, the strongest, wins), so that a
    repeated texture cannot vote many times for one place."""
    _, first = np.unique(candidate_index, return_index=True)
    return query_index[first], candidate_index[first]


def _fit(
    query: Fingerprint,
    features: LocalFeatures,
    mirrored: bool,
    candidate: Fingerprint,
    query_index: np.ndarray,
    candidate_index: np.ndarray,
) -> Match | None:
    """RANSAC on the matches of one set of query features to one candidate, then sanity checks."""
    if len(query_index) < MIN_MATCHES:
        return None
    points = features.keypoints[query_index]
    if mirrored:  # fit in the mirror image's own coordinates, where a similarity can hold
        points = points * np.float32([-1, 1]) + np.float32([query.width, 0])
    targets = candidate.features.keypoints[candidate_index]
    fitted, inlying = cv2.estimateAffinePartial2D(
        points,
        targets,
        method=cv2.RANSAC,
        ransacReprojThreshold=RANSAC_WORK_PIXELS / work_scale(candidate.width, candidate.height),
        maxIters=RANSAC_ITERATIONS,
    )
    if fitted is None:
        return None
    inlying = inlying.ravel().astype(bool)
    scale = float(np.sqrt(abs(np.linalg.det(fitted[:, :2]))))
    if not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1] or not _spread(targets[inlying], candidate):
        return None
    if mirrored:  # query pixel -> its mirror image's pixel -> original pixel
        fitted = fitted @ np.array([[-1.0, 0.0, query.width], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    return Match(
        inliers=int(inlying.sum()),
        matches=len(query_index),
        mirrored=mirrored,
        query_to_original=fitted,
        region_in_original=_transformed(fitted, _corners(query.width, query.height)),
        original_in_query=_transformed(cv2.invertAffineTransform(fitted), _corners(candidate.width, candidate.height)),
    )


def _spread(points: np.ndarray, candidate: Fingerprint) -> bool:
    """Do the inliers span more than a speck of the original?"""
    if len(points) < 3:
        return False
    hull = cv2.convexHull(points.reshape(-1, 1, 2))
    return cv2.contourArea(hull) >= MIN_SPREAD * candidate.width * candidate.height


def _corners(width: int, height: int) -> np.ndarray:
    return np.float32([[0, 0], [width, 0], [width, height], [0, height]])


def _transformed(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    return (points.astype(np.float64) @ affine[:, :2].T + affine[:, 2]).astype(np.float32)
