"""The write-ahead log of one collection: every acknowledged write is here before it is applied.

Files: `wal-<first sequence number, 20 digits>.log` in the collection's directory. Normally
there is one; a snapshot "rotates" the log (seals the active file, starts the next one) and,
once the snapshot is on disk, deletes the sealed files it covers. A crash in between leaves
sealed files behind; their records are at or below the snapshot's sequence number and are
skipped on replay, so nothing is applied twice. Beside them, `high-water` holds the log's
high-water mark (high_water_mark.py): the highest sequence number known to be in the log,
moved after every append (no extra fsync) and fsynced at every rotation.

Record framing (little-endian):

    magic b"LKW1" | u32 payload length | u32 CRC32(length bytes + payload) | payload

Payload: u32 header length | UTF-8 JSON header | raw float32 vectors | fingerprints (upserts
only). The header holds `seq` (contiguous, starting at 1), `op` ("upsert" or "delete"), `ids`,
and for upserts `dimension`, `tags` and `uris`; when any item has them, `timestamps`,
`attributes` (one JSON object of name: number per item) and `fingerprint_lengths` (bytes of
each item's fingerprint, 0 for none; the fingerprints follow the vectors, concatenated:
copy_detection's format). No pickle anywhere.

On replay, a bad record at the end of the newest file is either a write torn by a crash
(never acknowledged) or an acknowledged record that the disk damaged; the bytes alone cannot
tell, the high-water mark can. When the good records before it reach the mark, the bad bytes
are a torn write: they are cut off, but kept in `quarantine-<seq>-<UTC time>.bin` (never
deleted by the service) and reported at ERROR with their size. When they do not, or when the
log ends before the mark for any other reason (cut short at a record boundary, emptied,
deleted), acknowledged writes are missing: the log refuses to load (`LogCorrupted`) and
touches nothing. So does a bad record followed by a good one, a gap in the sequence numbers,
or a bad record in an older file: refusing is better than silently dropping acknowledged writes.

What a failed append does to the caller: a full disk is ResourceExhausted (STORAGE_FULL;
the partial record is cut off, so a retry once there is room succeeds); a failed fsync, a
partial record that could not be cut off, or a high-water mark that could not be moved,
leaves the file in doubt, and every later append is FailedPrecondition (COLLECTION_DAMAGED)
until a restart re-reads the file. Messages name log files but never their directory: they
may reach a client.
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import json
import logging
import os
import re
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lookalike.errors import FailedPrecondition, Reason, ResourceExhausted
from search_service.high_water_mark import HighWaterMark
from server_toolkit.durable_files import create_file, fsync_directory, numbered_files, write_atomically

logger = logging.getLogger(__name__)

_MAGIC = b"LKW1"
_FRAME = struct.Struct("<4sII")  # magic, payload length, crc32 of (length bytes + payload)
_HEADER_LENGTH = struct.Struct("<I")
_FILE_NAME = re.compile(r"wal-(\d{20})\.log")
QUARANTINE_PREFIX = "quarantine-"  # quarantine-<seq the torn record would have had>-<UTC time>.bin


class LogCorrupted(FailedPrecondition):
    """The log is damaged somewhere other than a torn last record; loading it could lose writes."""


def _corrupted(label: str, problem: str) -> LogCorrupted:
    return LogCorrupted(
        f"collection '{label}': {problem}", reason=Reason.COLLECTION_DAMAGED, metadata={"collection": label}
    )


@dataclasses.dataclass(frozen=True)
class UpsertRecord:
    seq: int
    ids: tuple[str, ...]
    vectors: np.ndarray  # (n, dimension) float32
    tags: tuple[tuple[str, ...], ...]
    uris: tuple[str, ...]
    timestamps: tuple[int, ...]  # 0: none
    fingerprints: tuple[bytes, ...]  # b"": none
    attributes: tuple[dict[str, float], ...]  # {}: none


@dataclasses.dataclass(frozen=True)
class DeleteRecord:
    seq: int
    ids: tuple[str, ...]


LogRecord = UpsertRecord | DeleteRecord


def log_file_name(first_seq: int) -> str:
    return f"wal-{first_seq:020d}.log"


def list_log_files(directory: Path) -> list[tuple[int, Path]]:
    """(first sequence number, path) of every log file, oldest first."""
    return numbered_files(directory, _FILE_NAME)


# --- encoding ---------------------------------------------------------------------------------


def _frame(payload: bytes) -> bytes:
    length = _HEADER_LENGTH.pack(len(payload))
    return _FRAME.pack(_MAGIC, len(payload), zlib.crc32(payload, zlib.crc32(length))) + payload


def _payload(header: dict, body: bytes = b"") -> bytes:
    encoded = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return _HEADER_LENGTH.pack(len(encoded)) + encoded + body


def encode_upsert(seq: int, ids, vectors: np.ndarray, tags, uris, timestamps=None, fingerprints=None, attributes=None) -> bytes:
    """`timestamps`, `fingerprints` and `attributes`: one per item (0, b"" and {} for none), or
    None for none at all."""
    assert vectors.dtype == np.float32 and vectors.ndim == 2 and len(vectors) == len(ids), "validated by the caller"
    timestamps = [0] * len(ids) if timestamps is None else timestamps
    fingerprints = [b""] * len(ids) if fingerprints is None else fingerprints
    assert len(timestamps) == len(fingerprints) == len(ids), "one timestamp and one fingerprint (maybe empty) per item"
    header = {
        "seq": seq,
        "op": "upsert",
        "dimension": int(vectors.shape[1]),
        "ids": list(ids),
        "tags": [list(t) for t in tags],
        "uris": list(uris),
    }
    if any(timestamps):
        header["timestamps"] = [int(t) for t in timestamps]
    if attributes is not None and any(attributes):
        assert len(attributes) == len(ids), "one attribute map (maybe empty) per item"
        header["attributes"] = [dict(a) for a in attributes]
    if any(fingerprints):
        header["fingerprint_lengths"] = [len(f) for f in fingerprints]
    body = np.ascontiguousarray(vectors, dtype="<f4").tobytes() + b"".join(fingerprints)
    return _frame(_payload(header, body))


def encode_delete(seq: int, ids) -> bytes:
    return _frame(_payload({"seq": seq, "op": "delete", "ids": list(ids)}))


def decode_payload(payload: bytes) -> LogRecord:
    """Raises ValueError (or KeyError/TypeError) when a checksummed payload still makes no sense."""
    (header_length,) = _HEADER_LENGTH.unpack_from(payload)
    header = json.loads(payload[_HEADER_LENGTH.size : _HEADER_LENGTH.size + header_length].decode("utf-8"))
    body = payload[_HEADER_LENGTH.size + header_length :]
    seq, ids = int(header["seq"]), tuple(header["ids"])
    if header["op"] == "delete":
        return DeleteRecord(seq, ids)
    if header["op"] != "upsert":
        raise ValueError(f"unknown op {header['op']!r}")
    dimension = int(header["dimension"])
    vector_bytes = len(ids) * dimension * 4
    lengths = [int(n) for n in header.get("fingerprint_lengths", [0] * len(ids))]
    if len(body) != vector_bytes + sum(lengths) or min(lengths, default=0) < 0:
        raise ValueError(f"{len(body)} body bytes for {len(ids)} ids of dimension {dimension} and their fingerprints")
    vectors = np.frombuffer(body[:vector_bytes], dtype="<f4").astype(np.float32).reshape(len(ids), dimension)
    ends = np.cumsum([vector_bytes, *lengths]).tolist()
    fingerprints = tuple(body[start:end] for start, end in zip(ends, ends[1:]))
    tags = tuple(tuple(t) for t in header["tags"])
    uris = tuple(header["uris"])
    timestamps = tuple(int(t) for t in header.get("timestamps", [0] * len(ids)))
    attributes = tuple({str(n): float(v) for n, v in a.items()} for a in header.get("attributes", [{}] * len(ids)))
    if not len(tags) == len(uris) == len(timestamps) == len(fingerprints) == len(attributes) == len(ids):
        raise ValueError("tags, uris, timestamps, attributes or fingerprints do not match the ids")
    return UpsertRecord(seq, ids, vectors, tags, uris, timestamps, fingerprints, attributes)


# --- reading ----------------------------------------------------------------------------------


class _BadFrame(Exception):
    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(reason)
        self.offset = offset
        self.reason = reason


def _read_frames(path: Path):
    """Yields (offset, payload) for each good record; raises _BadFrame at the first bad one."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        offset = 0
        while offset < size:
            header = f.read(_FRAME.size)
            if len(header) < _FRAME.size:
                raise _BadFrame(offset, "truncated record header")
            magic, length, crc = _FRAME.unpack(header)
            if magic != _MAGIC:
                raise _BadFrame(offset, "bad record marker")
            if offset + _FRAME.size + length > size:
                raise _BadFrame(offset, "truncated record")
            payload = f.read(length)
            if zlib.crc32(payload, zlib.crc32(header[4:8])) != crc:
                raise _BadFrame(offset, "checksum mismatch")
            yield offset, payload
            offset += _FRAME.size + length


def _good_frame_after(path: Path, offset: int) -> int | None:
    """The offset of a well-formed, checksummed record starting after `offset`, if any."""
    data = path.read_bytes()
    position = data.find(_MAGIC, offset + 1)
    while position != -1:
        if position + _FRAME.size <= len(data):
            _, length, crc = _FRAME.unpack_from(data, position)
            end = position + _FRAME.size + length
            if end <= len(data):
                payload = data[position + _FRAME.size : end]
                if zlib.crc32(payload, zlib.crc32(data[position + 4 : position + 8])) == crc:
                    return position
        position = data.find(_MAGIC, position + 1)
    return None


# --- the log ----------------------------------------------------------------------------------


class WriteAheadLog:
    """Appends records durably; `open` replays what is on disk first. Not thread-safe: the
    collection serializes writers (one append at a time, in sequence order)."""

    def __init__(self, directory: Path, *, label: str, fsync: bool, high_water: HighWaterMark) -> None:
        self._directory = directory
        self._label = label  # for messages: the collection's name
        self._fsync = fsync
        self._high_water = high_water
        self._fd: int | None = None
        self._active_first_seq = 0
        self._active_size = 0
        self._last_seq = 0
        self._failure: str | None = None  # set when an append failed in a way that leaves the file in doubt

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        label: str,
        after_seq: int,
        apply: Callable[[LogRecord], None],
        high_water: HighWaterMark,
        fsync: bool = True,
    ) -> tuple[WriteAheadLog, int]:
        """Replays every record with seq > after_seq (the snapshot's) through `apply`, checks that
        the log reaches the high-water mark, quarantines a torn tail, and opens the newest file
        for appending. Returns (log, records replayed); the log owns `high_water` from then on.
        LogCorrupted, with nothing on disk changed, when acknowledged records are missing."""
        log = cls(directory, label=label, fsync=fsync, high_water=high_water)
        try:
            replayed = log._recover(after_seq, apply)
        except BaseException:
            if log._fd is not None:
                os.close(log._fd)
            raise
        return log, replayed

    def _recover(self, after_seq: int, apply: Callable[[LogRecord], None]) -> int:
        """The body of `open`: replay, checks, quarantine; returns how many records were replayed."""
        label, high_water = self._label, self._high_water
        files = list_log_files(self._directory)
        expected: int | None = None  # the seq the next record must have
        replayed = 0
        torn: tuple[Path, _BadFrame] | None = None  # a bad tail of the newest file
        active: tuple[Path, int, int] | None = None  # the newest file to append to: path, first seq, good bytes
        for index, (first_seq, path) in enumerate(files):
            if expected is None:
                if first_seq > after_seq + 1:
                    raise _corrupted(
                        label,
                        f"the log starts at record {first_seq} but the snapshot ends at {after_seq}; "
                        "records in between are missing",
                    )
            elif first_seq != expected and first_seq > after_seq + 1:
                # A gap at or below the snapshot is harmless (those records are in the snapshot).
                raise _corrupted(label, f"log file {path.name} starts at record {first_seq}, expected {expected}")
            expected = first_seq
            is_newest = index == len(files) - 1
            end = 0
            try:
                for offset, payload in _read_frames(path):
                    try:
                        record = decode_payload(payload)
                    except (ValueError, KeyError, TypeError, struct.error) as e:
                        raise _corrupted(label, f"record at byte {offset} of {path.name} is unreadable: {e}") from e
                    if record.seq != expected:
                        raise _corrupted(
                            label,
                            f"record at byte {offset} of {path.name} has sequence number {record.seq}, "
                            f"expected {expected}",
                        )
                    expected += 1
                    end = offset + _FRAME.size + len(payload)
                    if record.seq > after_seq:
                        apply(record)
                        replayed += 1
            except _BadFrame as bad:
                following = _good_frame_after(path, bad.offset)
                if not is_newest or following is not None:
                    where = f"; a good record follows at byte {following}" if following is not None else ""
                    raise _corrupted(
                        label,
                        f"{path.name} is corrupt at byte {bad.offset} ({bad.reason}){where}; "
                        "refusing to load rather than drop acknowledged writes",
                    ) from None
                torn = (path, bad)
                end = bad.offset
            if is_newest and expected > after_seq:
                active = (path, first_seq, end)
        last_seq = max(after_seq, (expected or 1) - 1)
        if last_seq < high_water.seq:
            raise _corrupted(label, _missing_records(last_seq, high_water.seq, files, torn))
        if torn is not None:
            self._quarantine(*torn, seq=last_seq + 1)
        if active is not None:
            self._open_file(*active)
        self._last_seq = last_seq
        if self._fd is None:
            # No log yet (a new collection), or every file ends before the snapshot: start afresh
            # so the next record's file name matches its sequence number.
            self._create_file(last_seq + 1)
        elif self._fsync:
            # Records written but not yet fsynced when the process died were just replayed and will
            # be served: make them durable before the mark claims them.
            os.fsync(self._fd)
        high_water.advance(last_seq)
        high_water.sync()
        return replayed

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def failure(self) -> str | None:
        """Why appends are refused until a restart (a failed fsync...); None while they are not."""
        return self._failure

    def append_upsert(self, ids, vectors: np.ndarray, tags, uris, timestamps=None, fingerprints=None, attributes=None) -> int:
        return self._append(lambda seq: encode_upsert(seq, ids, vectors, tags, uris, timestamps, fingerprints, attributes))

    def append_delete(self, ids) -> int:
        return self._append(lambda seq: encode_delete(seq, ids))

    def rotate(self) -> None:
        """Seals the active file and starts `wal-<last_seq + 1>.log` for the records to come;
        the high-water mark is made durable with it."""
        self._check_usable()
        if self._active_first_seq == self._last_seq + 1:
            return  # the active file holds nothing yet
        old_fd = self._fd
        self._create_file(self._last_seq + 1)
        if old_fd is not None:
            os.close(old_fd)
        self._high_water.sync()

    def remove_through(self, seq: int) -> int:
        """Deletes the sealed files whose records are all at or below `seq`; returns how many."""
        files = list_log_files(self._directory)
        removed = 0
        for (first_seq, path), (next_first_seq, _) in zip(files, files[1:]):
            if next_first_seq <= seq + 1 and first_seq != self._active_first_seq:
                path.unlink()
                removed += 1
        if removed and self._fsync:
            fsync_directory(self._directory)
        return removed

    def has_sealed_files(self) -> bool:
        return any(first != self._active_first_seq for first, _ in list_log_files(self._directory))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._high_water.close()

    # --- internals ---

    def _open_file(self, path: Path, first_seq: int, size: int) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        self._active_first_seq = first_seq
        self._active_size = size

    def _create_file(self, first_seq: int) -> None:
        path = self._directory / log_file_name(first_seq)
        fd = create_file(path, os.O_WRONLY | os.O_APPEND)
        try:
            if self._fsync:
                os.fsync(fd)
                fsync_directory(self._directory)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._active_first_seq = first_seq
        self._active_size = os.fstat(fd).st_size

    def _quarantine(self, path: Path, bad: _BadFrame, seq: int) -> None:
        """Moves the bytes from `bad.offset` on out of the log: copied durably into a quarantine
        file first, then cut off. A crash in between copies them again on the next load."""
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        quarantine = self._directory / f"{QUARANTINE_PREFIX}{seq:020d}-{stamp}.bin"
        with open(path, "rb") as source:
            source.seek(bad.offset)
            write_atomically(quarantine, lambda out: shutil.copyfileobj(source, out), fsync=self._fsync)
        size = quarantine.stat().st_size
        with open(path, "r+b") as f:
            f.truncate(bad.offset)
            if self._fsync:
                os.fsync(f.fileno())
        logger.error(
            "collection %r: cut a torn record off the end of %s (%s; %d bytes from byte %d) and kept the "
            "bytes in %s; the log reaches its high-water mark (record %d) without them, so they were "
            "never acknowledged",
            self._label,
            path.name,
            bad.reason,
            size,
            bad.offset,
            quarantine,
            seq - 1,
        )

    def _check_usable(self) -> None:
        problem = self._failure if self._failure is not None else "closed" if self._fd is None else None
        if problem is not None:
            raise FailedPrecondition(
                f"the write-ahead log of collection '{self._label}' is not writable ({problem}); "
                "restart the search service to recover from disk",
                reason=Reason.COLLECTION_DAMAGED,
                metadata={"collection": self._label},
            )

    def _append(self, encode: Callable[[int], bytes]) -> int:
        self._check_usable()
        assert self._fd is not None
        seq = self._last_seq + 1
        frame = encode(seq)
        start = self._active_size
        try:
            view = memoryview(frame)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as e:
            # Cut the partial record off so the next append does not leave garbage in the middle.
            try:
                os.ftruncate(self._fd, start)
            except OSError as truncate_error:
                self._failure = f"a failed append could not be rolled back: {truncate_error}"
            if e.errno == errno.ENOSPC:
                raise self._disk_full() from e
            raise
        if self._fsync:
            try:
                os.fsync(self._fd)
            except OSError as e:
                # After a failed fsync the page cache can no longer be trusted (the "fsyncgate"
                # problem); refuse further writes until a restart re-reads the file.
                self._failure = f"fsync failed: {e}"
                if e.errno == errno.ENOSPC:
                    raise self._disk_full() from e
                raise
        self._active_size = start + len(frame)
        self._last_seq = seq
        try:
            self._high_water.advance(seq)  # after the fsync: the mark never claims more than the disk has
        except OSError as e:
            self._failure = f"the high-water mark could not be moved: {e}"
            raise
        return seq

    def _disk_full(self) -> ResourceExhausted:
        return ResourceExhausted(
            f"no space left on the device for collection '{self._label}'",
            reason=Reason.STORAGE_FULL,
            metadata={"collection": self._label},
        )


def _missing_records(
    last_seq: int, mark: int, files: list[tuple[int, Path]], torn: tuple[Path, _BadFrame] | None
) -> str:
    """Why a log that ends before its high-water mark does, in words without a path."""
    if torn is not None:
        path, bad = torn
        where = f"{path.name} is damaged from byte {bad.offset} on ({bad.reason})"
    elif not files:
        where = "no log file is left"
    else:
        where = f"{files[-1][1].name} ends there ({files[-1][1].stat().st_size} bytes)"
    return (
        f"the log ends at record {last_seq} but records up to {mark} were acknowledged "
        f"(its high-water mark); {where}; refusing to load rather than drop acknowledged writes"
    )
