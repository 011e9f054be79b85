"""Preprocessed images kept as uint8 pixels, turned into float32 model input one batch at a time.

A 64x64 RGB image is 12 KB as uint8 (H, W, C) and 48 KB as float32 (C, H, W): a million of them
fit on disk (the decoded-image cache, training/image_cache.py) but not in memory as floats. So
datasets keep pixels and convert each batch as it is used. The two steps split
`lookalike.preprocessing.to_model_input` exactly: `to_pixels` keeps everything up to the 8-bit
image, `to_model_batch` does the scaling and normalisation, so a batch is bit for bit what the
encoder service computes from the same file (tests/test_catalogue_training.py checks it).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from lookalike.preprocessing import Preprocessing, to_image, to_model_input


def to_pixels(image: Image.Image, spec: Preprocessing) -> np.ndarray:
    """A decoded image as (H, W, C) uint8 at the spec's size and mode.

    Goes through the one preprocessing and back (`to_image` rounds to the nearest level), which
    returns the 8-bit image exactly: model input is (level / 255 - mean) / std, far from rounding.
    """
    pixels = np.asarray(to_image(to_model_input(image, spec), spec))  # (H, W) or (H, W, 3)
    return pixels.reshape(spec.height, spec.width, spec.channels)


def to_model_batch(pixels: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """(B, H, W, C) uint8 -> (B, C, H, W) float32 model input, with to_model_input's arithmetic."""
    assert pixels.dtype == np.uint8 and pixels.shape[1:] == (spec.height, spec.width, spec.channels), (
        f"expected (B, {spec.height}, {spec.width}, {spec.channels}) uint8 pixels, got {pixels.shape} {pixels.dtype}"
    )
    scaled = pixels.astype(np.float32).transpose(0, 3, 1, 2) / 255.0  # (B, C, H, W)
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(spec.std, dtype=np.float32).reshape(1, -1, 1, 1)
    return np.ascontiguousarray((scaled - mean) / std, dtype=np.float32)


class Pixels:
    """(N, H, W, C) uint8 rows gathered from one or more arrays: in memory, or cache shards on disk
    (training.image_cache.ShardFile, which index like arrays and read only the rows asked for).

    Row i is `arrays[shard[i]][row[i]]`. Indexing with an int gives one (H, W, C) image; with a slice
    or index array, a new (B, H, W, C) array.
    """

    def __init__(self, arrays: list, shard: np.ndarray, row: np.ndarray) -> None:
        assert arrays and all(a.dtype == np.uint8 and a.ndim == 4 for a in arrays), "arrays of (n, H, W, C) uint8"
        assert len({a.shape[1:] for a in arrays}) == 1, "every array holds images of one shape"
        assert shard.shape == row.shape and shard.ndim == 1, "one (shard, row) pair per image"
        self.arrays, self.shard, self.row = arrays, shard.astype(np.int32), row.astype(np.int64)

    @classmethod
    def in_memory(cls, array: np.ndarray) -> "Pixels":
        return cls([array], np.zeros(len(array), np.int32), np.arange(len(array)))

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.shard), *self.arrays[0].shape[1:])

    def __len__(self) -> int:
        return len(self.shard)

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            return np.asarray(self.arrays[self.shard[index]][self.row[index]])
        shard, row = self.shard[index], self.row[index]  # a slice or index array selects the same rows of both
        out = np.empty((len(shard), *self.shape[1:]), np.uint8)  # (B, H, W, C)
        for s in np.unique(shard):
            mine = shard == s
            out[mine] = self.arrays[s][row[mine]]  # (b, H, W, C)
        return out

    def subset(self, indices: np.ndarray) -> "Pixels":
        """The rows `indices`, still where they are (no copy of the pixels)."""
        return Pixels(self.arrays, self.shard[indices], self.row[indices])
