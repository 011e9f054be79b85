"""Snapshots of a collection: every item as of one log sequence number, written atomically.

`snapshot-<seq, 20 digits>.npz` holds arrays read back with `allow_pickle=False`: `vectors`,
float32 (n, dimension); `fingerprints`, uint8, every item's fingerprint (copy_detection's
format) concatenated, with `fingerprint_lengths`, int64 (n,), 0 for an item without one; and
`meta`, the UTF-8 bytes of a JSON object with `seq` (the last log record the snapshot
contains), `ids`, `tags`, `uris`, `timestamps`, `attributes` (one object of name: number per
item) and the CRC32 of the vector bytes. Snapshots written before fingerprints existed lack
those arrays and `timestamps`: none, all zero; before attributes, `attributes`: none. The file is written under a temporary name, fsynced, renamed into place and
the directory fsynced, so a reader sees a whole snapshot or none; older snapshots are
deleted only after the new one is durable. The zip format's CRC32 covers both arrays, and
`vectors_crc32` the vectors again: a flipped byte or a cut anywhere in the file makes it
unreadable, never silently different (tests/reliability/ flips and cuts every position).

An unreadable newest snapshot is SnapshotCorrupted (COLLECTION_DAMAGED), whose message names
the file but not its directory: it may reach a client. The cause, path and all, is chained
for the server log.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import zipfile
import zlib
from pathlib import Path

import numpy as np

from lookalike.errors import FailedPrecondition, Reason
from server_toolkit import durable_files
from server_toolkit.durable_files import fsync_directory, numbered_files, write_atomically

logger = logging.getLogger(__name__)

SNAPSHOT_FORMAT = 1
_FILE_NAME = re.compile(r"snapshot-(\d{20})\.npz")


class SnapshotCorrupted(FailedPrecondition):
    """The newest snapshot cannot be read; loading without it would lose writes."""


@dataclasses.dataclass(frozen=True)
class SnapshotData:
    seq: int  # the last write-ahead-log record this snapshot contains
    ids: list[str]
    vectors: np.ndarray  # (len(ids), dimension) float32
    tags: list[tuple[str, ...]]
    uris: list[str]
    timestamps: list[int]  # 0: none
    fingerprints: list[bytes]  # b"": none
    attributes: list[dict[str, float]] = dataclasses.field(default_factory=list)  # {} per item: none; [] for none at all


def snapshot_file_name(seq: int) -> str:
    return f"snapshot-{seq:020d}.npz"


def list_snapshots(directory: Path) -> list[tuple[int, Path]]:
    """(seq, path) of every complete snapshot, oldest first."""
    return numbered_files(directory, _FILE_NAME)


def write_snapshot(directory: Path, data: SnapshotData, *, fsync: bool = True) -> Path:
    vectors = np.ascontiguousarray(data.vectors, dtype=np.float32)
    assert vectors.ndim == 2 and len(vectors) == len(data.ids) == len(data.tags) == len(data.uris)
    assert len(data.timestamps) == len(data.fingerprints) == len(data.ids)
    meta = {
        "format": SNAPSHOT_FORMAT,
        "seq": data.seq,
        "count": len(data.ids),
        "dimension": int(vectors.shape[1]),
        "vectors_crc32": zlib.crc32(vectors.data),
        "ids": data.ids,
        "tags": [list(t) for t in data.tags],
        "uris": data.uris,
        "timestamps": data.timestamps,
        "attributes": data.attributes or [{}] * len(data.ids),
    }
    encoded = np.frombuffer(json.dumps(meta, ensure_ascii=False, separators=(",", ":")).encode("utf-8"), np.uint8)
    lengths = np.array([len(f) for f in data.fingerprints], dtype=np.int64)
    fingerprints = np.frombuffer(b"".join(data.fingerprints), dtype=np.uint8)
    path = directory / snapshot_file_name(data.seq)
    write_atomically(
        path,
        lambda f: np.savez(f, vectors=vectors, meta=encoded, fingerprints=fingerprints, fingerprint_lengths=lengths),
        fsync=fsync,
    )
    return path


def load_latest_snapshot(directory: Path, *, dimension: int) -> SnapshotData | None:
    """The newest snapshot, or None when there is none; SnapshotCorrupted when it is unreadable."""
    snapshots = list_snapshots(directory)
    if not snapshots:
        return None
    seq, path = snapshots[-1]
    cause = None
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(archive["meta"].tobytes().decode("utf-8"))
            vectors = archive["vectors"]
            count = meta["count"]
            has_fingerprints = "fingerprint_lengths" in archive.files
            lengths = archive["fingerprint_lengths"] if has_fingerprints else np.zeros(count, np.int64)
            blob = archive["fingerprints"].tobytes() if has_fingerprints else b""
            timestamps = meta.get("timestamps", [0] * count)
            attributes = meta.get("attributes", [{}] * count)
        problem = None
        if meta.get("format") != SNAPSHOT_FORMAT:
            problem = f"unknown format {meta.get('format')!r}"
        elif meta["seq"] != seq:
            problem = f"holds seq {meta['seq']} but is named for {seq}"
        elif vectors.dtype != np.float32 or vectors.shape != (meta["count"], dimension):
            problem = f"vectors are {vectors.dtype} {vectors.shape}, expected float32 ({meta['count']}, {dimension})"
        elif zlib.crc32(np.ascontiguousarray(vectors).data) != meta["vectors_crc32"]:
            problem = "vector checksum mismatch"
        elif not len(meta["ids"]) == len(meta["tags"]) == len(meta["uris"]) == len(timestamps) == len(lengths) == len(attributes) == count:
            problem = "ids, tags, uris, timestamps, attributes and fingerprints differ in length"
        elif lengths.dtype != np.int64 or lengths.min(initial=0) < 0 or int(lengths.sum()) != len(blob):
            problem = "fingerprint lengths do not add up"
    except OSError as e:
        problem, cause = f"{type(e).__name__}: {e.strerror or 'I/O error'}", e  # str(e) names the path
    except (ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
        problem, cause = f"{type(e).__name__}: {e}", e
    except (NotImplementedError, RuntimeError) as e:  # zipfile, on a flipped flag or method field
        problem, cause = f"{type(e).__name__}: {e}", e
    if problem is not None:
        raise SnapshotCorrupted(
            f"snapshot {path.name} is unreadable: {problem}",
            reason=Reason.COLLECTION_DAMAGED,
            metadata={"collection": directory.name},  # a collection's directory bears its name
        ) from cause
    return SnapshotData(
        seq=seq,
        ids=list(meta["ids"]),
        vectors=vectors,
        tags=[tuple(t) for t in meta["tags"]],
        uris=list(meta["uris"]),
        timestamps=[int(t) for t in timestamps],
        fingerprints=_split(blob, lengths),
        attributes=[{str(n): float(v) for n, v in a.items()} for a in attributes],
    )


def _split(blob: bytes, lengths: np.ndarray) -> list[bytes]:
    ends = np.cumsum(lengths).tolist()
    return [blob[end - length : end] for end, length in zip(ends, lengths.tolist())]


def remove_snapshots_before(directory: Path, seq: int, *, fsync: bool = True) -> int:
    """Deletes the snapshots older than `seq` (which must be durable already); returns how many."""
    removed = 0
    for old_seq, path in list_snapshots(directory):
        if old_seq < seq:
            path.unlink()
            removed += 1
    if removed and fsync:
        fsync_directory(directory)
    return removed


def remove_temporary_files(directory: Path) -> None:
    """Deletes what interrupted atomic writes left behind."""
    for path in durable_files.remove_temporary_files(directory):
        logger.info("removed %s, left by an interrupted write", path)
