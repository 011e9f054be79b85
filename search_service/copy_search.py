"""FindCopies: which stored pictures the query is a copy of, with a verdict, evidence and region.

The stages (docs/copy-detection.md has the measurements behind them):
1. candidates: every item whose perceptual hash is within HASH_CANDIDATE_DISTANCE bits of the
   query's (an exact scan over 64-bit hashes: an exact or near-exact copy is never lost to the
   approximate index), and the N nearest by embedding (ScaNN);
2. geometric verification: the query's local features, as is and mirrored, against each
   candidate's stored ones (ratio test, RANSAC), outside the collection's lock;
3. a verdict per candidate from the collection's calibrated thresholds (copy_detection.verdict),
   saying which evidence decided; a query too small or flat for local features (or a candidate
   stored as a bare vector) leaves it to the hash and the embedding. A query WITH features and a
   flat candidate is not called a copy on the embedding alone: on the colour set a cat photo's
   embedding was within 0.95 of flat flags, and geometry, not a cosine, is what a copy verdict
   must rest on when there is any;
   copies are ranked by verdict, then by the strength of the evidence (hash, local features,
   embedding), then by its score;
4. for the copies kept: the matched region both ways, what was edited in numbers, and on request
   the picture of it (copy_detection.edit_picture), drawn from the stored thumbnails.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
from PIL import Image

from copy_detection.edit_picture import EditSummary, summarise, summary_and_png
from copy_detection.features import Fingerprint
from copy_detection.verdict import Decision, Evidence, Verdict, decide
from copy_detection.verification import Match, verify_many
from search_service.collection import AttributeRange, Collection, CopyCandidate, TagFilter

HASH_CANDIDATE_DISTANCE = 12  # bits of 64: wider than an exact copy's, so near copies get verified too
_RANK = {Verdict.EXACT_COPY: 3, Verdict.EDITED_COPY: 2, Verdict.SIMILAR: 1, Verdict.UNRELATED: 0}
_STRENGTH = {Evidence.HASH: 2, Evidence.LOCAL_FEATURES: 1, Evidence.EMBEDDING: 0}


@dataclasses.dataclass(frozen=True)
class CopyQuery:
    vector: np.ndarray  # the query's embedding
    fingerprint: Fingerprint | None  # None: the query has none (a stored item upserted as a vector)
    exclude_ids: frozenset[str] = frozenset()  # a stored item asked about is not its own copy


@dataclasses.dataclass(frozen=True)
class CopyOptions:
    k: int
    candidates: int
    tag_filter: TagFilter | None = None
    ranges: tuple[AttributeRange, ...] = ()
    include_similar: bool = False
    edit_pictures: bool = False
    earliest_first: bool = False


@dataclasses.dataclass(frozen=True)
class FoundCopy:
    candidate: CopyCandidate
    decision: Decision
    match: Match | None  # the local features' fit; None when they decided nothing
    edits: EditSummary | None
    edit_picture_png: bytes  # b"" unless asked for and a transform fits


@dataclasses.dataclass(frozen=True)
class CopySearchResult:
    copies: list[FoundCopy]
    query_featureless: bool
    verified: int  # candidates looked at


def find_copies(collection: Collection, query: CopyQuery, options: CopyOptions) -> CopySearchResult:
    spec = collection.spec
    assert spec.copy_thresholds is not None, "the servicer checks find_copies first"
    fingerprint = query.fingerprint
    candidates = collection.copy_candidates(
        query.vector,
        None if fingerprint is None else fingerprint.phash,
        options.candidates,
        HASH_CANDIDATE_DISTANCE,
        options.tag_filter,
        query.exclude_ids,
        options.ranges,
    )
    stored = [Fingerprint.from_bytes(c.fingerprint) if c.fingerprint else None for c in candidates]
    featureless = fingerprint is None or fingerprint.featureless
    matches = [None] * len(candidates) if featureless else verify_many(fingerprint, stored)
    cosine = spec.metric == "cosine"  # the embedding thresholds are cosine similarities
    found = []
    for candidate, original, match in zip(candidates, stored, matches):
        decision = decide(
            hash_distance=candidate.hash_distance,
            match=match,
            embedding_score=candidate.hit.score if cosine else None,
            featureless=featureless or original is None,
            thresholds=spec.copy_thresholds,
        )
        if decision.verdict in (Verdict.EXACT_COPY, Verdict.EDITED_COPY) or (
            options.include_similar and decision.verdict == Verdict.SIMILAR
        ):
            found.append((candidate, original, match, decision))
    found.sort(key=lambda entry: (_RANK[entry[3].verdict], _STRENGTH[entry[3].evidence], entry[3].score), reverse=True)
    if options.earliest_first:  # stable: equal timestamps keep the evidence order
        found.sort(key=lambda entry: (entry[0].hit.timestamp == 0, entry[0].hit.timestamp))
    copies = [_described(entry, fingerprint, options.edit_pictures) for entry in found[: options.k]]
    return CopySearchResult(copies, featureless, len(candidates))


def _described(entry, query: Fingerprint | None, with_picture: bool) -> FoundCopy:
    candidate, original, match, decision = entry
    if match is None or query is None or original is None or decision.verdict == Verdict.SIMILAR:
        return FoundCopy(candidate, decision, None, None, b"")
    arguments = (
        _thumbnail(query),
        _thumbnail(original),
        (query.width, query.height),
        (original.width, original.height),
        match.query_to_original,
    )
    summary, picture = summary_and_png(*arguments) if with_picture else (summarise(*arguments), b"")
    return FoundCopy(candidate, decision, match, summary, picture)


def _thumbnail(fingerprint: Fingerprint) -> Image.Image:
    with Image.open(io.BytesIO(fingerprint.thumbnail)) as image:
        return image.convert("RGB")
