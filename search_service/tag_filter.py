"""Tag filters (the `Filter` of search.proto) and the inverted index that answers them.

A filter keeps the items whose tags satisfy every clause that is set: all of `all_of`,
at least one of `any_of` (when it is not empty), none of `none_of`. The index maps each
tag to the ids carrying it, so a selective filter yields its matching ids without looking
at every item. The collection turns those into the search's candidates; the vector index
then decides between an exact scan over them and an overfetching ScaNN search (see
`VectorIndex.search`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable


@dataclasses.dataclass(frozen=True)
class TagFilter:
    all_of: tuple[str, ...] = ()
    any_of: tuple[str, ...] = ()  # ignored when empty
    none_of: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.all_of or self.any_of or self.none_of)

    @property
    def has_positive_clause(self) -> bool:
        """True when the filter names tags an item must carry (so its matches can be enumerated)."""
        return bool(self.all_of or self.any_of)

    def matches(self, tags: Iterable[str]) -> bool:
        carried = set(tags)
        return (
            all(t in carried for t in self.all_of)
            and (not self.any_of or any(t in carried for t in self.any_of))
            and not any(t in carried for t in self.none_of)
        )


class TagIndex:
    """tag -> ids of the items carrying it. Not thread-safe: the collection's lock guards it."""

    def __init__(self) -> None:
        self._ids_by_tag: dict[str, set[str]] = {}

    def add(self, item_id: str, tags: Iterable[str]) -> None:
        for tag in tags:
            self._ids_by_tag.setdefault(tag, set()).add(item_id)

    def remove(self, item_id: str, tags: Iterable[str]) -> None:
        for tag in tags:
            ids = self._ids_by_tag.get(tag)
            if ids is None:
                continue
            ids.discard(item_id)
            if not ids:
                del self._ids_by_tag[tag]

    def count(self, tag: str) -> int:
        return len(self._ids_by_tag.get(tag, ()))

    def ids_with_any(self, tags: Iterable[str]) -> set[str]:
        """The ids carrying at least one of `tags` (a new set)."""
        result: set[str] = set()
        for tag in tags:
            result |= self._ids_by_tag.get(tag, set())
        return result

    def matching_ids(self, tag_filter: TagFilter) -> set[str]:
        """The ids satisfying `tag_filter`, which must have a positive clause (all_of or any_of)."""
        assert tag_filter.has_positive_clause, "a filter with only none_of matches items the index does not list"
        empty: set[str] = set()
        if tag_filter.all_of:
            # Intersect from the rarest tag up, so the work is bounded by the smallest posting list.
            postings = sorted((self._ids_by_tag.get(t, empty) for t in set(tag_filter.all_of)), key=len)
            candidates = set(postings[0])
            for ids in postings[1:]:
                if not candidates:
                    break
                candidates &= ids
            if tag_filter.any_of:
                any_postings = [self._ids_by_tag.get(t, empty) for t in set(tag_filter.any_of)]
                candidates = {i for i in candidates if any(i in ids for ids in any_postings)}
        else:
            candidates = self.ids_with_any(tag_filter.any_of)
        for tag in set(tag_filter.none_of):
            if not candidates:
                break
            candidates -= self._ids_by_tag.get(tag, empty)
        return candidates
