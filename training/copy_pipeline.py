"""Finding copies with the whole pipeline, as `lookalike eval` measures it: the evidence per query.

The service finds the original of an edited picture in stages (copy_detection/): candidates from the
pHash index (`HashIndex.within`) and from the embedding's nearest neighbours (ScaNN's top N there,
exact cosine here), local features of the query checked against each candidate's stored features
(`verify_many`: ratio test, RANSAC), and a verdict per candidate (`decide`). This module runs those
stages on the study's queries and keeps, per query and candidate, everything `decide` looks at, so
thresholds can be tried again and again without verifying again (training/copy_calibration.py):

- copies: the study's own edited copies of indexed pictures (copy_detection/copy_edits.py, the same seed,
  so the same pictures the embedding-only rows were measured on), each edit alone and mixed;
- non-copies: pictures of the same kinds that are NOT indexed (the study's test split), unedited and
  edited by the same suite. Any copy verdict for one of them is a false alarm.

Fingerprints are made from the decoded pictures (at most study.MAX_SIDE a side, as the copies are
made from), one at a time: a collection of photos does not fit in memory at full size.

    queries = gather(row, study, PipelineOptions())
    position, decision = answer(queries[0], Thresholds())
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Iterable, Iterator

import numpy as np
from PIL import Image
from tqdm import tqdm

from copy_detection.features import Fingerprint, fingerprint
from copy_detection.hash_index import HashIndex, hamming
from copy_detection.verdict import Decision, Thresholds, Verdict, decide
from copy_detection.verification import Match, verify_many
from encoder_service.onnx_model import OnnxModel
from copy_detection import copy_edits
from training.pixels import to_model_batch, to_pixels
from training.retrieval_metrics import top_k
from training.study import COPY_EDITS, COPY_SEED, Row, StudyData, embed, original_picture

log = logging.getLogger(__name__)

UNEDITED = "none"  # a non-copy query shown as it is
CANDIDATES = 50  # the embedding's top N that go to verification (the service's ScaNN N)
HASH_DISTANCE = 12  # pHash stage: indexed pictures within this many bits are candidates too...
HASH_LIMIT = 20  # ...at most this many, nearest first
NON_COPY_PICTURES = 500  # not-indexed pictures, each unedited and under every edit: >= 1,000 queries
QUICK_QUERIES = 4  # quick mode: copies per edit and non-copy pictures, to check the machinery
NON_COPY_SEED = COPY_SEED + 1  # the non-copies' edits and which test pictures are taken
CALIBRATION_SEED = 7  # which originals' copies (and which non-copy pictures) calibrate the thresholds
COPY_VERDICTS = (Verdict.EXACT_COPY, Verdict.EDITED_COPY)
RANK = {Verdict.EXACT_COPY: 3, Verdict.EDITED_COPY: 2, Verdict.SIMILAR: 1, Verdict.UNRELATED: 0}


@dataclasses.dataclass(frozen=True)
class PipelineOptions:
    candidates: int = CANDIDATES  # embedding top N
    quick: bool = False  # a handful of queries per edit: checks the machinery, not the figures
    threads: int = 2  # ONNX Runtime threads
    progress: bool = True


@dataclasses.dataclass
class Query:
    """One query's evidence about each of its candidates (positions in the study's indexed pictures)."""

    edit: str  # a COPY_EDITS name, or UNEDITED (non-copies only)
    picture: int  # the dataset's index of the picture the query was made from (the original, or a test picture)
    source: int  # position of the original among the indexed pictures; -1 for a non-copy
    calibration: bool  # in the half that chooses the thresholds (the other half reports them)
    candidates: np.ndarray  # (K,) int, the union of both stages, embedding's first
    hash_distances: np.ndarray  # (K,) int, pHash bits from the query
    embedding_scores: np.ndarray  # (K,) float32, cosine with the query
    featureless: np.ndarray  # (K,) bool, the query or the candidate has too few keypoints to verify
    matches: list[Match | None]  # (K,) verify_many's answer
    verify_ms: float  # verify_many over all K candidates
    fingerprint_ms: float  # the query's fingerprint, mirrored features included
    embedding_won: float  # 1 when the embedding's nearest picture is the source, else 0
    hash_won: float  # the pHash-alone answer: 1 / ties at the nearest distance when the source is among them

    @property
    def is_copy(self) -> bool:
        return self.source >= 0


@dataclasses.dataclass
class _Index:
    """The indexed pictures as the service would hold them."""

    vectors: np.ndarray  # (N, D) embedding, unit length
    stored: list[Fingerprint]  # fingerprints without mirrored features
    hashes: np.ndarray  # (N,) uint64
    featureless: np.ndarray  # (N,) bool
    by_hash: HashIndex  # ids are str(position)


def gather(row: Row, study: StudyData, options: PipelineOptions) -> list[Query]:
    """Every query's evidence: the study's copies of indexed pictures, then the non-copies."""
    model = OnnxModel(row.version_dir, ["CPUExecutionProvider"], intra_op_threads=options.threads)
    indexed = study.split.train_val
    count = min(QUICK_QUERIES, len(study.copy_sources)) if options.quick else len(study.copy_sources)
    sources = study.copy_sources[:count]  # (Q,) a prefix, so the copies are the study's (picture i draws from (seed, i))
    index, originals = _index(model, study, set(sources.tolist()), options.progress)
    calibration = _halves(count)
    queries = []
    for edit in tqdm(COPY_EDITS, desc="finding copies", unit="edit", disable=not options.progress):
        pictures = copy_edits.copies((originals[s] for s in sources), edit, COPY_SEED)
        vectors = embed(model, study.copy_inputs(edit)[:count])  # (Q, D), the embedding-only rows' vectors
        queries += _queries(pictures, vectors, indexed[sources], sources, calibration, edit, index, options.candidates)
    del originals
    queries += _non_copies(model, study, index, options)
    return queries


def answer(query: Query, thresholds: Thresholds) -> tuple[int, Decision]:
    """The pipeline's answer: (position of the indexed picture, its decision); verdict first, then score."""
    decisions = decisions_of(query, thresholds)
    best = max(range(len(decisions)), key=lambda k: (RANK[decisions[k].verdict], decisions[k].score))
    return int(query.candidates[best]), decisions[best]


def decisions_of(query: Query, thresholds: Thresholds) -> list[Decision]:
    return [
        decide(
            hash_distance=int(query.hash_distances[k]),
            match=query.matches[k],
            embedding_score=float(query.embedding_scores[k]),
            featureless=bool(query.featureless[k]),
            thresholds=thresholds,
        )
        for k in range(len(query.candidates))
    ]


def _index(model: OnnxModel, study: StudyData, keep: set[int], progress: bool) -> tuple[_Index, dict[int, Image.Image]]:
    """Fingerprints and vectors of every indexed picture; returns the originals at positions `keep` too,
    which the copies are made from."""
    indexed = study.split.train_val
    stored, originals, by_hash = [], {}, HashIndex()
    for position in tqdm(range(len(indexed)), desc="fingerprints", unit="picture", disable=not progress):
        picture = original_picture(study.dataset, indexed[position])
        stored.append(fingerprint(picture).stored())
        by_hash.set(str(position), stored[-1].phash)
        if position in keep:
            originals[position] = picture
    vectors = _unit(embed(model, study.dataset.images[indexed]))
    hashes = np.array([f.phash for f in stored], dtype=np.uint64)
    featureless = np.array([f.featureless for f in stored])
    return _Index(vectors, stored, hashes, featureless, by_hash), originals


def _non_copies(model: OnnxModel, study: StudyData, index: _Index, options: PipelineOptions) -> list[Query]:
    """Test pictures (not indexed), unedited and under every edit: any copy verdict is a false alarm."""
    test = study.split.test
    count = min(QUICK_QUERIES if options.quick else NON_COPY_PICTURES, len(test))
    chosen = test[np.sort(np.random.default_rng(NON_COPY_SEED).permutation(len(test))[:count])]
    pictures = [original_picture(study.dataset, i) for i in chosen]
    calibration = _halves(count)
    no_source = np.full(count, -1)
    queries = []
    for edit in tqdm((UNEDITED, *COPY_EDITS), desc="non-copies", unit="edit", disable=not options.progress):
        edited = pictures if edit == UNEDITED else list(copy_edits.copies(pictures, edit, NON_COPY_SEED))
        pixels = np.stack([to_pixels(p, study.dataset.spec) for p in edited])  # (P, H, W, C)
        vectors = embed(model, to_model_batch(pixels, study.dataset.spec))
        queries += _queries(edited, vectors, chosen, no_source, calibration, edit, index, options.candidates)
    return queries


def _queries(
    pictures: Iterable[Image.Image],
    vectors: np.ndarray,
    made_from: np.ndarray,
    sources: np.ndarray,
    calibration: np.ndarray,
    edit: str,
    index: _Index,
    candidates: int,
) -> Iterator[Query]:
    """One Query per picture; vectors (Q, D) are the pictures' embeddings, in the same order, made_from
    (Q,) the dataset's index of the picture each was made from."""
    vectors = _unit(vectors)
    nearest, _ = top_k(vectors, index.vectors, min(candidates, len(index.vectors)))  # (Q, N), best first
    for i, picture in enumerate(pictures):
        started = time.perf_counter()
        query = fingerprint(picture, mirrored=True)
        fingerprint_ms = (time.perf_counter() - started) * 1000
        close = [int(id) for id, _ in index.by_hash.within(query.phash, HASH_DISTANCE, HASH_LIMIT)]
        chosen = np.array(list(dict.fromkeys([*nearest[i].tolist(), *close])), dtype=np.int64)  # (K,)
        started = time.perf_counter()
        matches = verify_many(query, [index.stored[c] for c in chosen])
        verify_ms = (time.perf_counter() - started) * 1000
        source = int(sources[i])
        yield Query(
            edit=edit,
            picture=int(made_from[i]),
            source=source,
            calibration=bool(calibration[i]),
            candidates=chosen,
            hash_distances=hamming(query.phash, index.hashes[chosen]),
            embedding_scores=index.vectors[chosen] @ vectors[i],
            featureless=query.featureless | index.featureless[chosen],
            matches=matches,
            verify_ms=verify_ms,
            fingerprint_ms=fingerprint_ms,
            embedding_won=float(nearest[i, 0] == source),
            hash_won=_hash_won(query.phash, index.hashes, source),
        )


def _hash_won(phash: int, hashes: np.ndarray, source: int) -> float:
    """pHash alone, as the reference row ranks it: nearest Hamming distance, ties a coin toss."""
    if source < 0:
        return 0.0
    distances = hamming(phash, hashes)  # (N,)
    best = distances.min()
    return float(distances[source] == best) / int((distances == best).sum())


def _halves(count: int) -> np.ndarray:
    """(count,) bool: a seeded half of the positions calibrates, the rest reports."""
    calibration = np.zeros(count, dtype=bool)
    calibration[np.random.default_rng(CALIBRATION_SEED).permutation(count)[: count // 2]] = True
    return calibration


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
