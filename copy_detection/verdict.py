"""The last stage of finding copies: evidence about one (query, candidate) pair becomes a verdict.

Geometry is the strongest evidence. Two pictures whose local features agree on one similarity
transform, with more inliers than unrelated pictures ever reach, share pixels: one is an edited copy
of the other, whatever the embedding says. A pHash within a few bits on top of that makes it an exact
copy (re-encoded or resized, nothing more); the hash alone never does, because flat pictures (icons
on white, blank scans) collide. The embedding decides only what geometry cannot: a copy, when either
picture is featureless (too small or too flat to verify), and otherwise whether an unverified pair is
similar. Each verdict carries the evidence that settled it, so a caller can say why.

The defaults of `Thresholds` come from `python -m benchmarks.copy_verification` (benchmarks/RESULTS.md);
`lookalike eval` calibrates them per model on its own copies and stores them with each collection.
"""

from __future__ import annotations

import dataclasses
import enum

from copy_detection.verification import Match


class Verdict(enum.StrEnum):
    EXACT_COPY = "exact_copy"
    EDITED_COPY = "edited_copy"
    SIMILAR = "similar"
    UNRELATED = "unrelated"


class Evidence(enum.StrEnum):
    HASH = "hash"
    LOCAL_FEATURES = "local_features"
    EMBEDDING = "embedding"


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Calibrated by `lookalike eval`; stored with each collection (to_json/from_json)."""

    # pHash bits at or below which a copy (by geometry or, when featureless, by embedding) is exact.
    # Development set: 0.00% of 150,000 unrelated pairs within 4 bits; 93% of down-scaled JPEG copies
    # and all grey copies are (pHash sees luminance only), and 64% of recoloured ones.
    exact_hash_distance: int = 4
    # RANSAC inliers at or above which a pair is an edited copy. Development set: 0.11% of unrelated
    # pairs reach 16 (pictures that do share parts: flags with one canton, emoji on one face), 0.18%
    # reach 12; true copies reach it 95% of the time where both pictures have 64 keypoints or more.
    edited_inliers: int = 16
    # Cosine at or above which a FEATURELESS pair counts as an edited copy: a placeholder, which
    # `lookalike eval` replaces with the embedding's own calibrated value.
    embedding_copy: float = 0.95
    # Cosine at or above which an unverified pair is similar: a placeholder, likewise.
    embedding_similar: float = 0.8

    def __post_init__(self) -> None:
        """ThresholdError naming the first threshold out of its range."""
        if not 0 <= self.exact_hash_distance <= 64:
            raise ThresholdError("exact_hash_distance", f"a pHash distance, 0..64 bits, got {self.exact_hash_distance}")
        if self.edited_inliers < 3:
            raise ThresholdError("edited_inliers", f"at least 3 (fewer do not pin down a similarity), got {self.edited_inliers}")
        for name in ("embedding_similar", "embedding_copy"):
            if not -1 <= getattr(self, name) <= 1:
                raise ThresholdError(name, f"a cosine, -1..1, got {getattr(self, name)}")
        if self.embedding_copy < self.embedding_similar:
            raise ThresholdError("embedding_copy", f"at least embedding_similar ({self.embedding_similar}), got {self.embedding_copy}")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, fields: dict) -> "Thresholds":
        """Thresholds from `to_json`'s dict; fields it lacks keep their defaults (older collections).
        ValueError on unknown names, values of the wrong type, or values out of range (ThresholdError)."""
        known = {field.name: field.type for field in dataclasses.fields(cls)}
        unknown = set(fields) - set(known)
        if unknown:
            raise ValueError(f"unknown thresholds: {sorted(unknown)}")
        for name, value in fields.items():
            wanted = int if known[name] == "int" else (int, float)
            if isinstance(value, bool) or not isinstance(value, wanted):
                raise ValueError(f"threshold {name} must be {known[name]}, got {value!r}")
        return cls(**fields)


class ThresholdError(ValueError):
    """A threshold out of its range; `field` names it."""

    def __init__(self, field: str, requirement: str) -> None:
        super().__init__(f"{field} must be {requirement}")
        self.field = field


@dataclasses.dataclass(frozen=True)
class Decision:
    verdict: Verdict
    evidence: Evidence
    score: float  # orders decisions: exact copies in [3, 4), edited [2, 3), similar [1, 2), unrelated [0, 1)


def decide(
    *,
    hash_distance: int | None,
    match: Match | None,
    embedding_score: float | None,
    featureless: bool,
    thresholds: Thresholds,
) -> Decision:
    """The verdict on one pair. `match` is verification's answer (None: no plausible fit, or not
    verified), `featureless` says the query or the candidate is too featureless to verify, so a
    missing match is no evidence against a copy; missing hash or embedding scores are left out."""
    verified = match is not None and match.inliers >= thresholds.edited_inliers
    embedded_copy = featureless and embedding_score is not None and embedding_score >= thresholds.embedding_copy
    if verified or embedded_copy:
        if hash_distance is not None and hash_distance <= thresholds.exact_hash_distance:
            return Decision(Verdict.EXACT_COPY, Evidence.HASH, 3 + _share(64 - hash_distance, 64))
        if verified:
            strength = _share(match.inliers, match.inliers + thresholds.edited_inliers)  # 1/2 at the threshold, towards 1
            return Decision(Verdict.EDITED_COPY, Evidence.LOCAL_FEATURES, 2 + strength)
        return Decision(Verdict.EDITED_COPY, Evidence.EMBEDDING, 2 + _cosine_share(embedding_score))
    if embedding_score is not None and embedding_score >= thresholds.embedding_similar:
        return Decision(Verdict.SIMILAR, Evidence.EMBEDDING, 1 + _cosine_share(embedding_score))
    if embedding_score is not None:
        return Decision(Verdict.UNRELATED, Evidence.EMBEDDING, _cosine_share(embedding_score))
    return Decision(Verdict.UNRELATED, Evidence.HASH if featureless else Evidence.LOCAL_FEATURES, 0.0)


def _share(part: float, whole: float) -> float:
    """part / whole kept below 1, so a score never reaches the next verdict's range."""
    return min(part / whole, 0.999) if whole > 0 else 0.0


def _cosine_share(cosine: float) -> float:
    return _share(max(cosine, 0.0), 1.0)
