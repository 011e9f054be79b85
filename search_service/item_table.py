"""Append-only storage of a collection's items, read without a lock while one writer appends.

Every version of an item gets a *slot*, numbered in write order, holding its vector (as
upserted), the inverse of its norm (cosine), its id and its metadata. A slot is never
rewritten: replacing or deleting an item stamps its old slot's `dead_at` with the version
(write number) of that write. A reader works on a `TableState`, made by the writer after each
write: slot s is present for it when s < state.count and state.dead_at[s] > state.version.
So a reader sees exactly the writes up to its version, whatever the writer does meanwhile.

Why that is safe without a lock (CPython, one writer at a time under the collection's write lock):
- numpy columns (columns.py) grow into a new array; the old array, still held by older states,
  keeps every slot and every stamp those states can see (stamps newer than them do not count);
- `meta` is a list that only grows (appending and indexing are atomic under the GIL);
- a tag's posting list (its slots, ascending) and an attribute's column are `Column`s: a reader
  takes the length, then the array, which then holds at least that many entries;
- ids (item_ids.py) find their newest slot; a reader that finds a slot past its state's count
  takes a newer state (see Collection._lookup).

Memory, per item besides its vector: the id (item_ids.py, ~40 bytes), 8 for `dead_at`, 4 for
the inverse norm, 8 for the `meta` pointer; an item with no tags, uri, timestamp, attributes
or fingerprint shares one `NO_META` instead of an object of its own (~70 bytes).

Compaction (`compacted`) copies the slots present at one state into a new, dense table, in
the background; `carry_over` then appends what was written since, under the write lock. A
rebuild when nothing died skips it and indexes the same table (vector_index.py).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import numpy as np

from search_service.columns import Column
from search_service.item_ids import ItemIds

ALIVE = np.iinfo(np.int64).max  # dead_at of a present slot
NO_ATTRIBUTES: Mapping[str, float] = MappingProxyType({})  # shared by every item without attributes, not one dict each
_SLICE = 8_192  # Python-level copies in the background yield the GIL this often (searches wait less)


@dataclasses.dataclass(frozen=True, slots=True)
class ItemMeta:
    """What an item carries besides its vector; immutable, one per slot."""

    tags: tuple[str, ...]
    uri: str = ""
    timestamp: int = 0  # 0: none
    attributes: Mapping[str, float] = dataclasses.field(default_factory=lambda: NO_ATTRIBUTES)
    has_fingerprint: bool = False


NO_META = ItemMeta(())  # shared by every item that carries nothing besides its vector


def item_meta(tags: Sequence[str], uri: str, timestamp: int, attributes: Mapping[str, float] | None, has_fingerprint: bool) -> ItemMeta:
    """The metadata of one item, `NO_META` when it has none."""
    if not (tags or uri or timestamp or attributes or has_fingerprint):
        return NO_META
    return ItemMeta(tuple(tags), uri, timestamp, attributes or NO_ATTRIBUTES, has_fingerprint)


class ItemTable:
    """The slots of one generation of a collection; see the module docstring."""

    def __init__(self, dimension: int, cosine: bool) -> None:
        self.dimension = dimension
        self.cosine = cosine
        self.vectors = Column(np.float32, dimension)
        self.inverse_norms = Column(np.float32) if cosine else None
        self.dead_at = Column(np.int64)
        self.ids = ItemIds()
        self.meta: list[ItemMeta] = []
        self.postings: dict[str, Column] = {}  # tag -> its slots, ascending (dead ones too)
        self.attributes: dict[str, Column] = {}  # name -> value per slot, NaN where an item has none
        self.count = 0  # slots [0, count) have all of their parts
        self.live = 0

    def present_slots(self, ids: Sequence[str]) -> list[int | None]:
        """The slot of each id present now (for the writer: readers check their state instead)."""
        dead_at = self.dead_at.array
        return [None if slot is None or dead_at[slot] != ALIVE else slot for slot in self.ids.newest_slots(ids)]

    def append(self, ids: Sequence[str], vectors: np.ndarray, metas: Sequence[ItemMeta], version: int) -> np.ndarray:
        """New slots for these items (a replaced item's old slot dies at `version`). The new
        slots exist before the ids point at them, so a reader never finds an item missing
        while it is being replaced."""
        replaced = np.array([slot for slot in self.present_slots(ids) if slot is not None], np.int64)
        first = self.count
        self._append_slots(ids, vectors, metas)
        self.ids.remember(ids, first)
        self.dead_at.array[replaced] = version
        self.live += len(ids) - len(replaced)
        return replaced  # the slots that died

    def _append_slots(self, ids: Sequence[str], vectors: np.ndarray, metas: Sequence[ItemMeta]) -> None:
        first = self.count
        self.vectors.append(vectors)
        if self.inverse_norms is not None:
            squared = np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64)
            self.inverse_norms.append((1.0 / np.sqrt(squared)).astype(np.float32))
        self.dead_at.append(np.full(len(ids), ALIVE, np.int64))
        self._append_attributes(metas)
        self.meta.extend(metas)
        self.ids.append(ids)
        by_tag: dict[str, list[int]] = {}
        for offset, meta in enumerate(metas):
            for tag in meta.tags:
                by_tag.setdefault(tag, []).append(first + offset)
        for tag, slots in by_tag.items():
            posting = self.postings.get(tag)
            if posting is None:
                posting = self.postings[tag] = Column(np.int64)
            posting.append(np.asarray(slots, np.int64))
        self.count = first + len(ids)  # last: a slot below `count` has all of its parts

    def kill(self, ids: Sequence[str], version: int) -> tuple[list[str], np.ndarray]:
        """Stamps the present slots of `ids` dead at `version`: (the ids that were present, their slots)."""
        ids = list(dict.fromkeys(ids))
        killed, slots = [], []
        for item_id, slot in zip(ids, self.present_slots(ids)):
            if slot is not None:
                killed.append(item_id)
                slots.append(slot)
        dead = np.asarray(slots, np.int64)
        self.dead_at.array[dead] = version
        self.live -= len(slots)
        return killed, dead

    def _append_attributes(self, metas: Sequence[ItemMeta]) -> None:
        names = {name for meta in metas for name in meta.attributes}
        for name in names - self.attributes.keys():
            column = Column(np.float64)
            column.append(np.full(self.count, math.nan))
            self.attributes[name] = column
        for name, column in self.attributes.items():
            column.append(np.array([meta.attributes.get(name, math.nan) for meta in metas], np.float64))

    # --- compaction ---

    def compacted(self, count: int, version: int, dead_at: np.ndarray) -> tuple[ItemTable, np.ndarray]:
        """A new table of the slots present at (count, version), renumbered densely from 0, and
        the map old slot -> new slot (-1: not carried). Reads only: runs beside the writer."""
        present = np.flatnonzero(dead_at[:count] > version)
        old_to_new = np.full(count, -1, np.int64)
        old_to_new[present] = np.arange(len(present))
        table = ItemTable(self.dimension, self.cosine)
        table.vectors.append(self.vectors.array[present])
        if self.inverse_norms is not None:
            table.inverse_norms.append(self.inverse_norms.array[present])
        table.dead_at.append(np.full(len(present), ALIVE, np.int64))
        for chunk in range(0, len(present), _SLICE):
            table.meta.extend(map(self.meta.__getitem__, present[chunk : chunk + _SLICE].tolist()))
            time.sleep(0)  # a Python loop keeps the GIL for 5 ms slices otherwise: searches would wait
        table.ids = self.ids.compacted(present)
        for tag, posting in list(self.postings.items()):
            slots = posting.values()
            slots = old_to_new[slots[slots < count]]
            slots = slots[slots >= 0]
            if len(slots):
                column = table.postings[tag] = Column(np.int64)
                column.append(slots)
        for name, column in list(self.attributes.items()):
            values = column.values()[:count][present]  # a column is as long as the table (NaN-filled when new)
            if not np.isnan(values).all():
                table.attributes[name] = Column(np.float64)
                table.attributes[name].append(values)
        table.count = table.live = len(present)
        return table, old_to_new

    def carry_over(self, old: ItemTable, count: int, version: int, old_to_new: np.ndarray) -> None:
        """Applies to this compacted table what `old` got after (count, version): the slots
        appended since (with their own death stamps), and the deaths since of slots it carried.
        Under the write lock: `old` does not change meanwhile."""
        dead_at = old.dead_at.array
        stamped = np.flatnonzero((dead_at[:count] > version) & (dead_at[:count] != ALIVE))
        new_slots = old_to_new[stamped]
        assert (new_slots >= 0).all(), "a slot that died after the compaction's state was present in it"
        self.dead_at.array[new_slots] = dead_at[stamped]
        first = self.count
        added = old.ids.ids_of(np.arange(count, old.count))
        self._append_slots(added, old.vectors.array[count : old.count], old.meta[count:])
        self.ids.remember(added, first)  # in slot order: an id written twice ends at its newest slot
        self.dead_at.array[first : self.count] = dead_at[count : old.count]
        self.live = old.live  # the same items as `old` now
