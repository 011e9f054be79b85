"""The high-water mark of a collection's log: how far the log is known to reach.

Why: the log alone cannot tell a record torn by a crash (never acknowledged, safe to cut off)
from an acknowledged record the disk later damaged or lost (a flipped byte in the last record,
a log cut short, emptied or deleted). The mark is a second, independent witness: the highest
sequence number that was durably in the log. At load a log that ends before the mark has lost
acknowledged writes, and the collection is refused instead of served without them.

File `high-water` in the collection's directory, 1024 bytes: two 512-byte slots, each

    magic b"LKHM" | u32 format (1) | u64 sequence number | u32 CRC32 of the 16 bytes before it

padded with zeros. Sequence number s goes to slot s % 2, so a write torn by a power cut
damages one slot and the other still holds the number before. The mark is the highest number
in a valid slot; with no valid slot (or no file) it is unknown and the collection is refused.

Cost: after every append, once the record is fsynced and before the write is acknowledged,
one 20-byte pwrite into the page cache, no fsync. A killed process therefore loses nothing
(the kernel has the write); the disk gets it when the kernel writes dirty pages back (about
30 s on Linux) and at every log rotation, which fsyncs it. The mark is never ahead of the log
on disk (its record was fsynced before the mark moved), so an honest disk never makes a
healthy collection look damaged; after a power cut the mark may lag, and damage to the
records written since the last write-back looks like a torn tail again (see
docs/search-storage.md for what can and cannot be detected).
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

from lookalike.errors import FailedPrecondition, Reason
from server_toolkit.durable_files import write_atomically

FILE_NAME = "high-water"
_MAGIC = b"LKHM"
_FORMAT = 1
_BODY = struct.Struct("<4sIQ")  # magic, format, sequence number
_CRC = struct.Struct("<I")
_SLOT_BYTES = 512  # one sector each: a torn write damages at most the slot being written
_SLOTS = 2


class HighWaterMarkDamaged(FailedPrecondition):
    """The mark is missing or unreadable: nobody can tell how far the log should reach."""


def _slot(seq: int) -> bytes:
    body = _BODY.pack(_MAGIC, _FORMAT, seq)
    return body + _CRC.pack(zlib.crc32(body))


def _read_slot(data: bytes) -> int | None:
    """The sequence number of a valid slot, None for a damaged or blank one."""
    if len(data) < _BODY.size + _CRC.size:
        return None
    body = data[: _BODY.size]
    (crc,) = _CRC.unpack_from(data, _BODY.size)
    magic, file_format, seq = _BODY.unpack(body)
    if magic != _MAGIC or file_format != _FORMAT or zlib.crc32(body) != crc:
        return None
    return seq


def exists(directory: Path) -> bool:
    return (directory / FILE_NAME).exists()


def create(directory: Path, *, seq: int = 0, fsync: bool = True) -> None:
    """Writes a new mark at `seq` (atomically: a whole file or none)."""
    slots = bytearray(_SLOT_BYTES * _SLOTS)
    for index in range(_SLOTS):
        slots[index * _SLOT_BYTES : index * _SLOT_BYTES + _BODY.size + _CRC.size] = _slot(seq)
    write_atomically(directory / FILE_NAME, lambda f: f.write(bytes(slots)), fsync=fsync)


class HighWaterMark:
    """An open mark. Not thread-safe: the log moves it under the collection's write lock."""

    def __init__(self, fd: int, seq: int, *, fsync: bool) -> None:
        self._fd = fd
        self._seq = seq
        self._fsync = fsync

    @classmethod
    def open(cls, directory: Path, *, label: str, fsync: bool = True) -> HighWaterMark:
        """HighWaterMarkDamaged (COLLECTION_DAMAGED) when the file is missing or no slot is valid;
        the message names the file, never its directory."""
        path = directory / FILE_NAME
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            raise _damaged(label, f"its high-water mark ({FILE_NAME}) is missing") from None
        try:
            data = os.pread(fd, _SLOT_BYTES * _SLOTS, 0)
            found = [_read_slot(data[i * _SLOT_BYTES : (i + 1) * _SLOT_BYTES]) for i in range(_SLOTS)]
            valid = [seq for seq in found if seq is not None]
            if not valid:
                raise _damaged(label, f"its high-water mark ({FILE_NAME}, {len(data)} bytes) is unreadable")
        except BaseException:
            os.close(fd)
            raise
        return cls(fd, max(valid), fsync=fsync)

    @property
    def seq(self) -> int:
        """The highest sequence number known to be durably in the log."""
        return self._seq

    def advance(self, seq: int) -> None:
        """Records that the log durably holds every record up to `seq` (already fsynced there).
        Into the page cache only: `sync` makes it durable."""
        if seq == self._seq:
            return
        assert seq > self._seq, f"the mark only moves forward ({self._seq} -> {seq})"
        slot = _slot(seq)
        written = os.pwrite(self._fd, slot, (seq % _SLOTS) * _SLOT_BYTES)
        if written != len(slot):
            raise OSError(f"short write to the high-water mark ({written} of {len(slot)} bytes)")
        self._seq = seq

    def sync(self) -> None:
        if self._fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _damaged(label: str, problem: str) -> HighWaterMarkDamaged:
    return HighWaterMarkDamaged(
        f"collection '{label}': {problem}; how far its log should reach is unknown, so it is not loaded",
        reason=Reason.COLLECTION_DAMAGED,
        metadata={"collection": label},
    )
