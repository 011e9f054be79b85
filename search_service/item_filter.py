"""Filters (the `Filter` of search.proto): tags and numeric attribute ranges, as a mask over slots.

A filter keeps the items whose tags satisfy every clause that is set (all of `all_of`, at
least one of `any_of` when it is not empty, none of `none_of`) and whose attributes lie in
every range (an item without the attribute is outside it). The table keeps each tag's slots
(its posting list) and each attribute's values by slot, so `allowed` builds the mask of the
slots a search may return from them with a few numpy operations, presence at the reader's
state included. The vector index then decides between an exact scan over them and an
overfetching ScaNN search (see `VectorIndex.search`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import numpy as np

from search_service.vector_index import State


@dataclasses.dataclass(frozen=True)
class TagFilter:
    all_of: tuple[str, ...] = ()
    any_of: tuple[str, ...] = ()  # ignored when empty
    none_of: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.all_of or self.any_of or self.none_of)

    def matches(self, tags: Iterable[str]) -> bool:
        carried = set(tags)
        return (
            all(t in carried for t in self.all_of)
            and (not self.any_of or any(t in carried for t in self.any_of))
            and not any(t in carried for t in self.none_of)
        )


@dataclasses.dataclass(frozen=True)
class AttributeRange:
    """minimum <= attribute <= maximum (either bound may be infinite); items without it fail."""

    name: str
    minimum: float = -math.inf
    maximum: float = math.inf

    def matches(self, attributes) -> bool:
        value = attributes.get(self.name)
        return value is not None and self.minimum <= value <= self.maximum


def allowed(
    state: State, tag_filter: TagFilter | None, ranges: tuple[AttributeRange, ...] = (), excluded: np.ndarray | None = None
) -> np.ndarray | None:
    """A mask over the state's slots of the items present that pass; None when nothing filters."""
    if (tag_filter is None or tag_filter.is_empty) and not ranges and (excluded is None or not len(excluded)):
        return None
    count = state.count
    mask = state.dead_at[:count] > state.version
    if tag_filter is not None:
        for tag in dict.fromkeys(tag_filter.all_of):
            mask &= _carrying(state, (tag,))
        if tag_filter.any_of:
            mask &= _carrying(state, tag_filter.any_of)
        if tag_filter.none_of:
            mask &= ~_carrying(state, tag_filter.none_of)
    for attribute_range in ranges:
        column = state.table.attributes.get(attribute_range.name)
        if column is None:
            return np.zeros(count, bool)
        values = column.values()[:count]
        within = (values >= attribute_range.minimum) & (values <= attribute_range.maximum)  # NaN: outside
        mask[: len(values)] &= within
        mask[len(values) :] = False
    if excluded is not None and len(excluded):
        mask[excluded[excluded < count]] = False
    return mask


def _carrying(state: State, tags: Iterable[str]) -> np.ndarray:
    """Which slots below the state's count carry at least one of `tags`."""
    count = state.count
    carrying = np.zeros(count, bool)
    for tag in tags:
        posting = state.table.postings.get(tag)
        if posting is not None:
            slots = posting.values()
            carrying[slots[slots < count]] = True
    return carrying
