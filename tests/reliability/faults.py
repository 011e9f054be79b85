"""A collection with a known history, copies of it to damage, and the check every case passes."""

from __future__ import annotations

import dataclasses
import enum
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from lookalike.errors import FailedPrecondition, Reason
from search_service.collection import DAMAGED, Collection, CollectionSpec
from search_service.collection_store import CollectionStore
from search_service.write_ahead_log import QUARANTINE_PREFIX, list_log_files

NAME = "things"
SPEC = CollectionSpec(NAME, 4, "squared_l2")
RECORDS = 20  # upserts, each one log record...
PER_RECORD = 10  # ...of this many items: 200 acknowledged items


class Outcome(enum.Enum):
    LOADED = "everything acknowledged loaded"
    REFUSED = "refused as DAMAGED"


@dataclasses.dataclass(frozen=True)
class Golden:
    """A data directory as a killed server left it (no clean shutdown), and what it acknowledged."""

    data_dir: Path
    expected: dict[str, tuple[list[float], tuple[str, ...], str]]

    @property
    def directory(self) -> Path:
        return self.data_dir / "collections" / NAME

    def log_file(self) -> Path:
        return list_log_files(self.directory)[-1][1]


def contents(collection: Collection) -> dict[str, tuple[list[float], tuple[str, ...], str]]:
    ids = sorted(collection._index.ids())
    found, missing = collection.get(ids)
    assert not missing
    return {item.id: (item.vector.tolist(), item.tags, item.uri) for item in found}


def build(data_dir: Path, *, snapshot_after: int | None = None) -> Golden:
    """RECORDS upserts of PER_RECORD items; with `snapshot_after`, a snapshot after that many."""
    store = CollectionStore(data_dir, fsync=False, snapshot_every=10**9)
    store.create(SPEC)
    collection = store.get(NAME)
    rng = np.random.default_rng(0)
    for record in range(RECORDS):
        if record == snapshot_after:
            collection.snapshot()
        ids = [f"item-{record * PER_RECORD + i}" for i in range(PER_RECORD)]
        vectors = rng.standard_normal((PER_RECORD, SPEC.dimension)).astype(np.float32)
        collection.upsert(ids, vectors, tags=[[f"record:{record}"]] * PER_RECORD, uris=[f"file:///{i}" for i in ids])
    expected = contents(collection)
    assert len(expected) == RECORDS * PER_RECORD
    return Golden(data_dir, expected)  # not closed: a close would snapshot and empty the log


def record_starts(data: bytes) -> list[int]:
    """Where each record of a log starts, from its framing (magic, u32 length, u32 crc, payload)."""
    starts, offset = [], 0
    while offset < len(data):
        starts.append(offset)
        (length,) = struct.unpack_from("<I", data, offset + 4)
        offset += 12 + length
    return starts


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(directory.iterdir())}


def load_damaged(golden: Golden, case_dir: Path, damage: Callable[[Path], None]) -> Outcome:
    """Copies the golden data directory to `case_dir`, damages the copy's collection directory,
    loads it and checks the promise: all acknowledged items, or DAMAGED with a path-free reason
    and the files left as they were."""
    shutil.copytree(golden.data_dir, case_dir)
    directory = case_dir / "collections" / NAME
    damage(directory)
    before = _files(directory)
    store = CollectionStore(case_dir, fsync=False)
    try:
        if NAME not in store.failed():
            collection = store.get(NAME)
            held = contents(collection)
            collection.drop()  # closes its files without the snapshot a close would write
            lost = sorted(set(golden.expected) - set(held), key=lambda i: int(i.split("-")[1]))
            assert not lost, f"{len(lost)} acknowledged items lost silently, from {lost[0]}"
            assert held == golden.expected, "acknowledged items changed silently"
            return Outcome.LOADED
        info = store.describe(NAME)
        assert info.state == DAMAGED and info.state_reason
        assert str(case_dir) not in info.state_reason and str(case_dir.parent) not in info.state_reason
        with pytest.raises(FailedPrecondition) as refused:
            store.get(NAME)
        assert refused.value.reason == Reason.COLLECTION_DAMAGED and str(case_dir) not in refused.value.message
        assert _files(directory) == before, "a refused collection's files are left as they were"
        return Outcome.REFUSED
    finally:
        store.close()


def quarantined(directory: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(directory.glob(f"{QUARANTINE_PREFIX}*.bin"))]


def flip(position: int, mask: int = 0xFF) -> Callable[[Path], None]:
    """Damage: XOR one byte of the newest log file."""

    def damage(directory: Path) -> None:
        path = list_log_files(directory)[-1][1]
        data = bytearray(path.read_bytes())
        data[position] ^= mask
        path.write_bytes(bytes(data))

    return damage


def cut(length: int) -> Callable[[Path], None]:
    """Damage: truncate the newest log file to `length` bytes."""

    def damage(directory: Path) -> None:
        path = list_log_files(directory)[-1][1]
        with open(path, "r+b") as f:
            f.truncate(length)

    return damage
