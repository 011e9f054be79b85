"""The ids of a collection's slots, kept compactly: about 40 bytes an item instead of ~140.

A Python list of strings plus a dict of id -> slot cost ~140 bytes an item (the string object,
the list's pointer, the dict's entry and an int object per slot): 0.55x the raw vectors of a
million 64-d items, more than the 0.6x that issue 11 leaves for everything besides them. Here:
- slot -> id: every id's UTF-8 bytes, appended to one `bytearray`, and the offset where each
  ends (an int64 column): the id of slot s is blob[offsets[s]:offsets[s + 1]];
- id -> newest slot: a sorted array of the ids' hashes with their slots, covering the slots
  below `indexed` (built in the background, numpy only, at each rebuild), plus a second one for
  the ids written at slots from `indexed` on (the tail, ~10 % of the items at most), merged by
  the writer at each write (numpy: O(tail), 0.35 ms at 100k). An id's newest slot is the only one
  that can be present: replacing an item appends a new slot. No Python object per item: a dict
  of the tail (its id strings and slot ints) left ~0.4x the raw vectors of 300k items in
  Python's small-object arenas after it was emptied (measured: 0.4x with pymalloc, none with
  PYTHONMALLOC=malloc).

Hashes are Python's `hash(str)`: randomised per process, which is fine because nothing here
is written to disk; equal hashes are checked against the stored bytes, so a collision costs a
comparison, never a wrong answer.

Readers take no lock (one writer at a time, as in item_table.py): the blob and columns only
grow, both sorted arrays are immutable once published, and the writer publishes a new index
before the tail that no longer holds what it covers, so a reader that takes the tail and then
the index always finds an id written before it looked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from search_service.columns import Column

_FEW_SLOTS = 64  # ids_of reads this many or fewer one by one
_GATHER_SLOTS = 65_536  # compaction copies the bytes of this many ids at a time (bounds its temporaries)


@dataclasses.dataclass(frozen=True)
class SortedIds:
    """Slots [0, upto) by the hash of their id (ties by slot): immutable once made."""

    hashes: np.ndarray  # int64, ascending
    slots: np.ndarray  # int64
    upto: int

    def newest(self, hashes: np.ndarray) -> tuple[list[int], list[int]]:
        """For each hash: the range of its entries, oldest to newest slot."""
        return np.searchsorted(self.hashes, hashes, "left").tolist(), np.searchsorted(self.hashes, hashes, "right").tolist()


_NO_INDEX = SortedIds(np.empty(0, np.int64), np.empty(0, np.int64), 0)


class ItemIds:
    def __init__(self) -> None:
        self._blob = bytearray()
        self._offsets = Column(np.int64)
        self._offsets.append(np.zeros(1, np.int64))  # slot s spans offsets[s]:offsets[s + 1]
        self._hashes = Column(np.int64)
        self._index = _NO_INDEX
        self._tail = _NO_INDEX  # the slots from self._index.upto on, by hash (its upto: unused)

    # --- slot -> id ---

    def id_of(self, slot: int) -> str:
        start, end = self._offsets.array[slot : slot + 2].tolist()
        return self._blob[start:end].decode("utf-8")

    def ids_of(self, slots: np.ndarray) -> list[str]:
        """The ids of `slots` (an integer array), in that order."""
        offsets, blob = self._offsets.array, self._blob
        if len(slots) <= _FEW_SLOTS:  # a search's hits: a memoryview's Python ints beat two numpy gathers
            ends = memoryview(offsets)
            return [blob[ends[slot] : ends[slot + 1]].decode("utf-8") for slot in slots.tolist()]
        return [blob[a:b].decode("utf-8") for a, b in zip(offsets[slots].tolist(), offsets[slots + 1].tolist())]

    # --- id -> newest slot ---

    def newest_slots(self, ids: Sequence[str]) -> list[int | None]:
        """Each id's newest slot (present or dead), None for an id never written here."""
        tail = self._tail  # first the tail, then the index: see the module docstring
        index = self._index
        found: list[int | None] = [None] * len(ids)
        missing = list(range(len(ids)))
        for sorted_ids in (tail, index):
            if not missing or not len(sorted_ids.hashes):
                continue
            hashes = np.fromiter((hash(ids[p]) for p in missing), np.int64, len(missing))
            left = []
            for position, low, high in zip(missing, *sorted_ids.newest(hashes)):
                for slot in reversed(sorted_ids.slots[low:high].tolist()):  # newest first
                    if self.id_of(slot) == ids[position]:
                        found[position] = slot
                        break
                else:
                    left.append(position)
            missing = left
        return found

    # --- writes (one writer) ---

    def append(self, ids: Sequence[str]) -> None:
        """The ids of new slots, before the table counts them."""
        encoded = [item_id.encode("utf-8") for item_id in ids]
        ends = len(self._blob) + np.cumsum([len(e) for e in encoded], dtype=np.int64)
        self._blob += b"".join(encoded)
        self._hashes.append(np.fromiter(map(hash, ids), np.int64, len(ids)))
        self._offsets.append(ends)

    def remember(self, ids: Sequence[str], first: int) -> None:
        """After the table counts the new slots first, first + 1, ...: their ids find them."""
        tail = self._tail
        hashes = np.concatenate([tail.hashes, self._hashes.array[first : first + len(ids)]])
        slots = np.concatenate([tail.slots, np.arange(first, first + len(ids), dtype=np.int64)])
        order = np.argsort(hashes, kind="stable")  # ties stay in slot order
        self._tail = SortedIds(hashes[order], slots[order], 0)

    def sorted_index(self, upto: int) -> SortedIds:
        """The index of slots [0, upto), to `use`: numpy only, so it runs beside searches."""
        hashes = self._hashes.values()[:upto]
        order = np.argsort(hashes, kind="stable")
        return SortedIds(hashes[order], order, upto)

    def use(self, index: SortedIds) -> None:
        """Under the write lock: the index, then the tail without what the index covers."""
        self._index = index
        tail = self._tail
        keep = tail.slots >= index.upto
        self._tail = SortedIds(tail.hashes[keep], tail.slots[keep], 0)

    # --- compaction ---

    def compacted(self, present: np.ndarray) -> ItemIds:
        """The ids of `present` (ascending slots), renumbered from 0, indexed whole."""
        offsets = self._offsets.values()
        starts, ends = offsets[present], offsets[present + 1]
        lengths = ends - starts
        new = ItemIds()
        source = np.frombuffer(bytes(self._blob[: int(offsets[-1])]), np.uint8)
        parts = []
        for chunk in range(0, len(present), _GATHER_SLOTS):
            chunk_starts, chunk_lengths = starts[chunk : chunk + _GATHER_SLOTS], lengths[chunk : chunk + _GATHER_SLOTS]
            within = np.arange(int(chunk_lengths.sum())) - np.repeat(np.cumsum(chunk_lengths) - chunk_lengths, chunk_lengths)
            parts.append(source[np.repeat(chunk_starts, chunk_lengths) + within].tobytes())
        new._blob = bytearray(b"".join(parts))
        new._offsets.append(np.cumsum(lengths))
        new._hashes.append(self._hashes.values()[present])
        new._index = new.sorted_index(len(present))
        return new
