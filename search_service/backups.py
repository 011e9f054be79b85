"""Backups of one collection, taken from a running service and restored into one.

A backup is the collection's settings plus one snapshot (snapshot.py's file, byte for byte),
as of one moment: `Collection.snapshot()` is asked for a fresh one first, so the backup holds
every write acknowledged before the call. Writes go on meanwhile. The snapshot file is opened
before anything else can delete it (a newer snapshot deletes older ones; an open file stays
readable), so the bytes sent are one whole snapshot.

Restoring writes the bytes into a staging directory, checks them whole (size, SHA-256, then
the snapshot's own CRC32s by loading it), and only then does the store rename the directory
into place with a high-water mark at the snapshot's sequence number: a damaged or cut backup
creates nothing, and a crash during a restore leaves a hidden directory the next start removes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from lookalike.errors import InvalidArgument, Reason
from search_service import high_water_mark
from search_service.collection import Collection
from search_service.snapshot import (
    SnapshotCorrupted,
    SnapshotData,
    list_snapshots,
    load_latest_snapshot,
    snapshot_file_name,
    write_snapshot,
)
from server_toolkit.durable_files import create_file, fsync_directory

CHUNK_BYTES = 1 << 20  # per gRPC message: well under the 4 MiB default message limit of clients


@dataclasses.dataclass(frozen=True)
class BackupFacts:
    sequence: int  # the last log record the snapshot holds
    items: int
    size_bytes: int
    sha256: str  # hex


class OpenBackup:
    """A snapshot held open for streaming; close it (or use `with`) when sent."""

    def __init__(self, file: BinaryIO, facts: BackupFacts) -> None:
        self.file = file
        self.facts = facts

    def chunks(self) -> Iterator[bytes]:
        self.file.seek(0)
        while chunk := self.file.read(CHUNK_BYTES):
            yield chunk

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> OpenBackup:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_backup(collection: Collection, directory: Path) -> OpenBackup:
    """A snapshot of `collection` (kept in `directory`) holding every write acknowledged so far."""
    collection.snapshot()  # writes one when anything was logged since the last
    for _ in range(10):  # a snapshot written meanwhile deletes the one just listed: take the newer
        snapshots = list_snapshots(directory)
        if not snapshots:
            return _empty_backup(collection.spec.dimension)
        seq, path = snapshots[-1]
        try:
            file = open(path, "rb")  # noqa: SIM115 - the caller closes it once sent
        except FileNotFoundError:
            continue
        return OpenBackup(file, _facts(file, seq))
    raise RuntimeError("snapshots kept replacing each other while a backup was opened")


def _empty_backup(dimension: int) -> OpenBackup:
    """A collection never written to has no snapshot: the backup is an empty one at record 0."""
    with tempfile.TemporaryDirectory() as scratch:
        empty = SnapshotData(0, [], np.zeros((0, dimension), np.float32), [], [], [], [], [])
        path = write_snapshot(Path(scratch), empty, fsync=False)
        file = open(path, "rb")  # noqa: SIM115 - unlinked with its directory, readable while open
    return OpenBackup(file, _facts(file, 0))


def _facts(file: BinaryIO, seq: int) -> BackupFacts:
    digest, size = hashlib.sha256(), 0
    while chunk := file.read(CHUNK_BYTES):
        digest.update(chunk)
        size += len(chunk)
    file.seek(0)
    with np.load(file, allow_pickle=False) as archive:  # meta only: the vectors stay on disk
        count = json.loads(archive["meta"].tobytes().decode("utf-8"))["count"]
    return BackupFacts(seq, int(count), size, digest.hexdigest())


def receive_backup(staging: Path, facts: BackupFacts, chunks: Iterable[bytes], *, dimension: int, fsync: bool) -> None:
    """Writes a backup's snapshot and a high-water mark into `staging`, checked whole;
    InvalidArgument (BACKUP_DAMAGED) when it is not the snapshot `facts` describe."""
    if facts.sequence < 0 or facts.items < 0 or facts.size_bytes <= 0:
        raise _damaged("backup.size_bytes", "the header describes no snapshot (size, items and sequence must be positive)")
    path = staging / snapshot_file_name(facts.sequence)
    digest, size = hashlib.sha256(), 0
    with open(create_file(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb") as file:
        for chunk in chunks:
            size += len(chunk)
            if size > facts.size_bytes:
                raise _damaged("data", f"more than the header's {facts.size_bytes} bytes arrived")
            digest.update(chunk)
            file.write(chunk)
        if fsync:
            file.flush()
            os.fsync(file.fileno())
    if size != facts.size_bytes:
        raise _damaged("data", f"{size} of the header's {facts.size_bytes} bytes arrived: the backup is cut short")
    if digest.hexdigest() != facts.sha256.lower():
        raise _damaged("backup.sha256", "the bytes do not match the header's SHA-256")
    try:
        snapshot = load_latest_snapshot(staging, dimension=dimension)
    except SnapshotCorrupted as e:
        raise _damaged("data", e.message) from None
    assert snapshot is not None, "the snapshot was just written"
    if len(snapshot.ids) != facts.items:
        raise _damaged("backup.items", f"the snapshot holds {len(snapshot.ids)} items, the header says {facts.items}")
    high_water_mark.create(staging, seq=facts.sequence, fsync=fsync)
    if fsync:
        fsync_directory(staging)


def _damaged(field: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"the backup is damaged: {why}", reason=Reason.BACKUP_DAMAGED, field=field)
