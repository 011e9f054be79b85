"""The parts of a search a catalogue needs beyond "the k nearest": crowding and examples.

- Crowding (Vertex AI's crowding tag, Qdrant's group-by): at most `per_group` hits per value
  of a tag family, e.g. at most 2 per `family:*` tag. An item's group is its first tag that
  starts with the prefix; an item without one is a group of its own. The best hits are kept
  greedily in score order, which is exactly what a brute-force reference does.
- More like these, not like those (Qdrant's recommend, average-vector strategy): the query is
  the mean of the positive examples plus how far it lies from the mean of the negatives,
  `p + (p - n)`; under cosine each example counts as its unit vector.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from lookalike.errors import InvalidArgument, Reason
from search_service.item_table import ItemMeta


@dataclasses.dataclass(frozen=True)
class Crowding:
    tag_prefix: str  # the tag family, e.g. "family:"
    per_group: int  # at most this many hits per value


def crowd(metas: Sequence[ItemMeta], slots: np.ndarray, crowding: Crowding, k: int) -> list[int]:
    """Positions in `slots` (best first) to keep: at most per_group per group, at most k."""
    taken: dict[str, int] = {}
    kept = []
    for position, slot in enumerate(slots.tolist()):
        group = next((tag for tag in metas[slot].tags if tag.startswith(crowding.tag_prefix)), None)
        if group is not None:
            if taken.get(group, 0) >= crowding.per_group:
                continue
            taken[group] = taken.get(group, 0) + 1
        kept.append(position)
        if len(kept) == k:
            break
    return kept


def example_query(positives: np.ndarray, negatives: np.ndarray, cosine: bool) -> np.ndarray:
    """The query vector of positive and negative examples, (n, d) float32 each; at least one positive."""
    assert len(positives), "the caller checks for a positive example"
    if cosine:
        positives = positives / np.linalg.norm(positives, axis=1, keepdims=True)
        negatives = negatives / np.linalg.norm(negatives, axis=1, keepdims=True) if len(negatives) else negatives
    query = positives.astype(np.float64).mean(axis=0)
    if len(negatives):
        query = 2 * query - negatives.astype(np.float64).mean(axis=0)
    if cosine and not np.linalg.norm(query) > 1e-12:
        raise InvalidArgument(
            "the positive and negative examples cancel out: their query has no direction",
            reason=Reason.VECTOR_ZERO_NORM,
            field="negative_ids",
        )
    return query.astype(np.float32)
