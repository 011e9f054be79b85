"""The first stage of finding copies: ids by 64-bit perceptual hash, searched by Hamming distance.

A re-encoded or slightly resized copy keeps its pHash within a few bits of the original's, so a
linear scan of packed uint64 hashes finds exact copies before any embedding or local feature is
looked at. A scan costs about a millisecond per million hashes (numpy's popcount over one array;
benchmarks/RESULTS.md), so no tree or multi-index hashing is needed at catalogue sizes. Ids live in
a parallel list, and removal swaps the last entry into the hole so both stay dense.
"""

from __future__ import annotations

import numpy as np


def hamming(a: int, b: np.ndarray) -> np.ndarray:
    """Bit distances (0..64) between the hash `a` and each uint64 of `b`; as int64, not numpy's uint8,
    so that a caller's arithmetic on them cannot wrap around."""
    assert b.dtype == np.uint64, f"hashes are uint64, got {b.dtype}"
    return np.bitwise_count(b ^ np.uint64(a)).astype(np.int64)


class HashIndex:
    """ids -> 64-bit hashes; not thread-safe (the caller's lock guards it)."""

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._positions: dict[str, int] = {}
        self._hashes = np.zeros(1024, dtype=np.uint64)  # grows by doubling; the first len(self) are live

    def set(self, id: str, phash: int) -> None:
        """Adds `id`, or replaces its hash."""
        assert 0 <= phash < 1 << 64, "a pHash is 64 unsigned bits"
        position = self._positions.get(id)
        if position is None:
            position = len(self._ids)
            if position == len(self._hashes):
                self._hashes = np.concatenate([self._hashes, np.zeros_like(self._hashes)])
            self._ids.append(id)
            self._positions[id] = position
        self._hashes[position] = phash

    def remove(self, id: str) -> None:
        """Forgets `id`; an unknown id is no error (removal is idempotent, like the service's deletes)."""
        position = self._positions.pop(id, None)
        if position is None:
            return
        last = len(self._ids) - 1
        if position != last:  # the last entry fills the hole
            moved = self._ids[last]
            self._ids[position] = moved
            self._hashes[position] = self._hashes[last]
            self._positions[moved] = position
        self._ids.pop()

    def get(self, id: str) -> int | None:
        """The stored hash of `id`; None when it has none."""
        position = self._positions.get(id)
        return None if position is None else int(self._hashes[position])

    def within(self, phash: int, max_distance: int, limit: int) -> list[tuple[str, int]]:
        """Up to `limit` (id, distance) with distance <= max_distance, nearest first (ties in no set order)."""
        assert 0 <= phash < 1 << 64, "a pHash is 64 unsigned bits"
        distances = hamming(phash, self._hashes[: len(self._ids)])
        close = np.flatnonzero(distances <= max_distance)
        nearest = close[np.argsort(distances[close], kind="stable")][: max(0, limit)]
        return [(self._ids[i], int(distances[i])) for i in nearest]

    def __len__(self) -> int:
        return len(self._ids)
