"""A numpy array that only grows, safe to read while one writer appends (see item_table.py)."""

from __future__ import annotations

import numpy as np


class Column:
    """Grows by doubling its capacity, but the capacity is `np.empty`: a large array is a fresh
    anonymous mapping whose pages become resident only when written, so the unused half costs
    address space, not memory. Only the copy at a doubling briefly holds the old rows twice."""

    def __init__(self, dtype, width: int = 0) -> None:
        self._shape_tail = (width,) if width else ()
        self.array = np.empty((16, *self._shape_tail), dtype)
        self.length = 0

    def append(self, values: np.ndarray) -> None:
        needed = self.length + len(values)
        if needed > len(self.array):
            grown = np.empty((max(needed, 2 * len(self.array)), *self._shape_tail), self.array.dtype)
            grown[: self.length] = self.array[: self.length]
            self.array = grown  # readers holding the old array keep what they could see
        self.array[self.length : needed] = values
        self.length = needed  # only now can a reader see the new entries

    def values(self) -> np.ndarray:
        length = self.length  # first the length, then the array: it holds at least that many
        return self.array[:length]
