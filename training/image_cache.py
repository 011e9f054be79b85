"""Decoded images on disk, keyed by file content and preprocessing: a folder is decoded once, ever.

Decoding is the slow part of loading a catalogue (thousands of PNG and JPEG files, some huge); the
result, a small uint8 image per file, is kept here and found again by any later run (training,
eval, index) that asks for the same bytes under the same preprocessing:

    <cache dir>/decoded/<spec key>/spec.json            what the spec key stands for, for people
    <cache dir>/decoded/<spec key>/shard-<id>.u8        uint8 (rows, H, W, C), raw, C order
    <cache dir>/decoded/<spec key>/shard-<id>.json      {"rows", "shape", "keys", "refused"}: the shard's index

- A file's key is the sha256 of its bytes: a renamed or moved file is found again, an edited one is not.
- The spec key hashes `Preprocessing.to_json()`, Pillow's version (its resampling makes the pixels),
  the decode path's `PIXELS_VERSION` and FORMAT: any change there is a new, empty directory rather
  than stale pixels.
- A refusal by the decode path (`ImageDecodeError`: a bomb, a truncated file, not an image) is a
  property of the bytes, so it is kept too (`refused`: key -> reason) and a second load decodes
  nothing at all. Anything else that failed (an unreadable file, an unexpected error) is retried.
- New images are written as shards of up to SHARD_BYTES, each committed by writing its data and
  then its index atomically (server_toolkit.durable_files): a reader only trusts an index, so a
  crash or Ctrl-C loses at most the shard in progress, and two runs never write the same file.
  Nothing is ever modified in place; delete the directory to reclaim the space.
- Shards are read with pread, only the rows a batch asks for (`ShardFile`): the kernel's page cache
  keeps what was read, not this process, so its memory stays flat however large the collection
  (a memory map would count every page it touched in the process's RSS: 12 GB for a million).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
import weakref
from pathlib import Path

import numpy as np
import PIL

from lookalike.preprocessing import PIXELS_VERSION, Preprocessing
from server_toolkit.durable_files import write_atomically

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the layout or the meaning of the pixels changes
SHARD_BYTES = 64 * 2**20  # new pixels held in memory before they are written as one shard
READ_BYTES = 2**30  # at most this much per read call (Linux caps one read at just under 2 GiB)


def content_key(data: bytes) -> str:
    """The cache key of one file's bytes."""
    return hashlib.sha256(data).hexdigest()


def spec_key(spec: Preprocessing) -> str:
    """Names the pixels `spec` makes with this Pillow: the directory of their shards."""
    identity = f"{FORMAT}\n{PIL.__version__}\n{PIXELS_VERSION}\n{spec.to_json()}"
    return hashlib.sha256(identity.encode()).hexdigest()[:20]


class DecodedImageCache:
    """The shards of one preprocessing spec: look images up by content key, add new ones, commit."""

    def __init__(self, cache_dir: str | Path, spec: Preprocessing) -> None:
        self.spec = spec
        self.dir = Path(cache_dir) / "decoded" / spec_key(spec)
        self.dir.mkdir(parents=True, exist_ok=True)
        spec_file = self.dir / "spec.json"
        if not spec_file.exists():
            text = json.dumps(
                {"format": FORMAT, "pillow": PIL.__version__, "pixels": PIXELS_VERSION, "preprocessing": json.loads(spec.to_json())}
            )
            write_atomically(spec_file, lambda f: f.write(text.encode()), fsync=False)
        self.shape = (spec.height, spec.width, spec.channels)  # of one image
        self.arrays: list[ShardFile] = []  # one per shard
        self.where: dict[str, tuple[int, int]] = {}  # content key -> (position in arrays, row)
        self.refused: dict[str, str] = {}  # content key -> why the decode path refused those bytes
        for index_file in sorted(self.dir.glob("shard-*.json")):
            self._read_shard(index_file)
        self._new: dict[str, np.ndarray] = {}  # added since the last commit: key -> (H, W, C), in row order
        self._new_refused: dict[str, str] = {}

    def __contains__(self, key: str) -> bool:
        return any(key in keys for keys in (self.where, self.refused, self._new, self._new_refused))

    def known(self) -> frozenset[str]:
        """Every key already committed, pixels or refusal: what loading need not decode."""
        return frozenset(self.where) | frozenset(self.refused)

    def add(self, key: str, pixels: np.ndarray) -> None:
        """Queues one decoded image (H, W, C) uint8; commits a shard once SHARD_BYTES are queued."""
        assert pixels.shape == self.shape and pixels.dtype == np.uint8, f"cache rows are {self.shape} uint8"
        if key in self:
            return  # the same bytes twice in one folder: one row serves both
        self._new[key] = pixels
        if len(self._new) * pixels.nbytes >= SHARD_BYTES:
            self.commit()

    def refuse(self, key: str, reason: str) -> None:
        self._new_refused[key] = reason

    def commit(self) -> None:
        """Writes what was queued as one shard: data first, then the index that makes it visible."""
        if not self._new and not self._new_refused:
            return
        name = f"shard-{uuid.uuid4().hex[:16]}"
        if self._new:
            pixels = np.stack(list(self._new.values()))  # (rows, H, W, C)
            write_atomically(self.dir / f"{name}.u8", lambda f: f.write(pixels.data))
        index = {"rows": len(self._new), "shape": list(self.shape), "keys": list(self._new), "refused": self._new_refused}
        write_atomically(self.dir / f"{name}.json", lambda f: f.write(json.dumps(index).encode()))
        self._new, self._new_refused = {}, {}
        self._read_shard(self.dir / f"{name}.json")

    def locate(self, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(shard, row) arrays of committed keys, for `training.pixels.Pixels(cache.arrays, ...)`."""
        found = [self.where[key] for key in keys]
        shard = np.fromiter((s for s, _ in found), np.int32, len(found))
        row = np.fromiter((r for _, r in found), np.int64, len(found))
        return shard, row

    def _read_shard(self, index_file: Path) -> None:
        """Adds one committed shard; one that does not add up is left out (its images decode again)."""
        try:
            index = json.loads(index_file.read_text())
            rows, keys, shape = index["rows"], index["keys"], tuple(index["shape"])
            array = None
            if shape != self.shape or len(keys) != rows:
                raise ValueError(f"holds {rows} images of {shape} under {len(keys)} keys, this spec makes {self.shape}")
            if rows:
                data_file = index_file.with_suffix(".u8")
                if data_file.stat().st_size != rows * int(np.prod(shape)):
                    raise ValueError(f"{data_file.name} is {data_file.stat().st_size} bytes, not {rows} images")
                array = ShardFile(data_file, rows, shape)
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("ignoring cache shard %s: %s", index_file, error)
            return
        if array is not None:
            self.arrays.append(array)
            position = len(self.arrays) - 1
            self.where.update((key, (position, row)) for row, key in enumerate(keys))
        self.refused.update(index["refused"])


class ShardFile:
    """One shard's images on disk, indexed like a (rows, H, W, C) uint8 array: `shard[i]` is one
    image, `shard[rows]` a new (B, H, W, C) array. Reads just those rows, one read per run of
    consecutive rows, so a batch costs a few reads and a whole-shard slice one."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, path: Path, rows: int, shape: tuple[int, int, int]) -> None:
        self.path, self.shape = path, (rows, *shape)
        self.row_bytes = int(np.prod(shape))
        self._fd = os.open(path, os.O_RDONLY)
        weakref.finalize(self, os.close, self._fd)  # closed with the last dataset that reads it

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            return self._read(int(index), 1)[0]
        rows = np.arange(len(self))[index] if isinstance(index, slice) else np.asarray(index, dtype=np.int64)
        order = np.argsort(rows, kind="stable")  # (B,), reading in file order merges neighbours
        ordered = rows[order]
        assert len(rows) == 0 or (0 <= ordered[0] and ordered[-1] < len(self)), f"rows outside 0..{len(self) - 1}"
        out = np.empty((len(rows), *self.shape[1:]), np.uint8)  # (B, H, W, C)
        for run in np.split(np.arange(len(rows)), np.flatnonzero(np.diff(ordered) != 1) + 1):
            if len(run):
                out[order[run]] = self._read(int(ordered[run[0]]), len(run))
        return out

    def _read(self, first: int, count: int) -> np.ndarray:
        """Rows first .. first+count-1 as (count, H, W, C)."""
        data = bytearray(count * self.row_bytes)
        view, done = memoryview(data), 0
        while done < len(data):
            read = os.preadv(self._fd, [view[done : done + READ_BYTES]], first * self.row_bytes + done)
            if read == 0:
                raise EOFError(f"{self.path} ends before row {first + count}: changed since it was committed")
            done += read
        return np.frombuffer(data, np.uint8).reshape(count, *self.shape[1:])
