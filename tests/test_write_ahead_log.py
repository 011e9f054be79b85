"""The write-ahead log on its own: framing, replay, torn tails, corruption, rotation, failed appends,
and the high-water mark that tells a torn write from acknowledged records the disk lost."""

from __future__ import annotations

import errno
import logging
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lookalike.errors import FailedPrecondition, Reason, ResourceExhausted
from search_service import high_water_mark, write_ahead_log
from search_service.high_water_mark import HighWaterMark, HighWaterMarkDamaged
from search_service.write_ahead_log import (
    QUARANTINE_PREFIX,
    DeleteRecord,
    LogCorrupted,
    UpsertRecord,
    WriteAheadLog,
    decode_payload,
    encode_delete,
    encode_upsert,
    list_log_files,
    log_file_name,
)

FRAME_HEADER_BYTES = 12


def open_log(directory: Path, after_seq: int = 0, *, fsync: bool = True) -> tuple[WriteAheadLog, list]:
    """The log in `directory` with its records; a directory without a mark gets one at 0 (no claim)."""
    if not high_water_mark.exists(directory):
        high_water_mark.create(directory, fsync=fsync)
    mark = HighWaterMark.open(directory, label="test", fsync=fsync)
    records: list = []
    try:
        log, replayed = WriteAheadLog.open(
            directory, label="test", after_seq=after_seq, apply=records.append, high_water=mark, fsync=fsync
        )
    except BaseException:
        mark.close()
        raise
    assert replayed == len(records)
    return log, records


def the_log_file(directory: Path) -> Path:
    ((_, path),) = list_log_files(directory)
    return path


def quarantined(directory: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(directory.glob(f"{QUARANTINE_PREFIX}*.bin"))]


def upsert(log: WriteAheadLog, ids: list[str], seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((len(ids), 4)).astype(np.float32)
    log.append_upsert(ids, vectors, [("t",)] * len(ids), ["u"] * len(ids))
    return vectors


def record_offsets(path: Path) -> list[int]:
    """Where each record starts, read from the framing."""
    data, offsets, offset = path.read_bytes(), [], 0
    while offset < len(data):
        offsets.append(offset)
        (length,) = struct.unpack_from("<I", data, offset + 4)
        offset += FRAME_HEADER_BYTES + length
    return offsets


ids_strategy = st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=8, unique=True)


@settings(max_examples=60, deadline=None)
@given(ids=ids_strategy, dimension=st.integers(1, 16), data=st.data())
def test_upsert_records_round_trip(ids, dimension, data):
    floats = st.floats(allow_nan=False, allow_infinity=False, width=32)
    row = st.lists(floats, min_size=dimension, max_size=dimension)
    rows = data.draw(st.lists(row, min_size=len(ids), max_size=len(ids)))
    vectors = np.array(rows, dtype=np.float32).reshape(len(ids), dimension)
    tags = tuple(tuple(data.draw(st.lists(st.text(min_size=1, max_size=5), max_size=3, unique=True))) for _ in ids)
    uris = tuple(data.draw(st.text(max_size=30)) for _ in ids)
    frame = encode_upsert(7, ids, vectors, tags, uris)
    record = decode_payload(frame[FRAME_HEADER_BYTES:])
    assert isinstance(record, UpsertRecord)
    assert (record.seq, record.ids, record.tags, record.uris) == (7, tuple(ids), tags, uris)
    np.testing.assert_array_equal(record.vectors, vectors)


@settings(max_examples=40, deadline=None)
@given(ids=ids_strategy, data=st.data())
def test_timestamps_and_fingerprints_travel_with_their_items(ids, data):
    vectors = np.ones((len(ids), 3), np.float32)
    timestamps = data.draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=len(ids), max_size=len(ids)))
    fingerprints = data.draw(st.lists(st.binary(max_size=40), min_size=len(ids), max_size=len(ids)))
    frame = encode_upsert(5, ids, vectors, [()] * len(ids), [""] * len(ids), timestamps, fingerprints)
    record = decode_payload(frame[FRAME_HEADER_BYTES:])
    assert record.timestamps == tuple(timestamps) and record.fingerprints == tuple(fingerprints)
    np.testing.assert_array_equal(record.vectors, vectors)


@settings(max_examples=30, deadline=None)
@given(ids=ids_strategy)
def test_delete_records_round_trip(ids):
    assert decode_payload(encode_delete(3, ids)[FRAME_HEADER_BYTES:]) == DeleteRecord(3, tuple(ids))


def test_replay_returns_every_record_in_order_and_appends_continue(tmp_path):
    log, records = open_log(tmp_path)
    assert records == [] and log.last_seq == 0
    vectors = upsert(log, ["a", "b"])
    log.append_delete(["a"])
    log.close()

    log, records = open_log(tmp_path)
    assert [r.seq for r in records] == [1, 2]
    assert records[0].ids == ("a", "b") and records[1] == DeleteRecord(2, ("a",))
    np.testing.assert_array_equal(records[0].vectors, vectors)
    assert log.append_delete(["b"]) == 3
    log.close()
    _, records = open_log(tmp_path, after_seq=2)
    assert [r.seq for r in records] == [3]


def three_records(directory: Path) -> tuple[Path, bytes, int]:
    """A log of records 1-3 (the last one holds two items): (its file, its bytes, where record 3 starts)."""
    directory.mkdir(exist_ok=True)
    log, _ = open_log(directory)
    upsert(log, ["a"])
    upsert(log, ["b"])
    upsert(log, ["c", "d"])
    log.close()
    path = the_log_file(directory)
    return path, path.read_bytes(), record_offsets(path)[-1]


def test_a_torn_last_record_is_quarantined_wherever_the_write_stopped(tmp_path, caplog):
    path, whole, last_start = three_records(tmp_path / "source")

    for cut in range(last_start + 1, len(whole)):
        directory = tmp_path / f"cut-{cut}"
        directory.mkdir()
        (directory / path.name).write_bytes(whole[:cut])
        high_water_mark.create(directory, seq=2, fsync=False)  # record 3 was being written: never acknowledged
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger=write_ahead_log.__name__):
            log, records = open_log(directory, fsync=False)
        assert [r.ids for r in records] == [("a",), ("b",)]
        assert f"cut a torn record off the end of {path.name}" in caplog.text
        assert f"{cut - last_start} bytes from byte {last_start}" in caplog.text
        assert (directory / path.name).stat().st_size == last_start
        assert quarantined(directory) == [whole[last_start:cut]], "what is cut off is kept, byte for byte"
        # The next write reuses the unacknowledged record's sequence number and reads back cleanly.
        assert log.append_delete(["a"]) == 3
        log.close()
        _, records = open_log(directory, fsync=False)
        assert [r.seq for r in records] == [1, 2, 3]


def test_an_acknowledged_last_record_cut_short_or_flipped_refuses_to_load(tmp_path):
    path, whole, last_start = three_records(tmp_path / "source")
    assert HighWaterMark.open(tmp_path / "source", label="test").seq == 3  # moved by every append
    damaged_copies = [whole[:cut] for cut in range(last_start, len(whole))]  # at the boundary too
    for position in range(last_start, len(whole)):
        flipped = bytearray(whole)
        flipped[position] ^= 0x01
        damaged_copies.append(bytes(flipped))

    for index, data in enumerate(damaged_copies):
        directory = tmp_path / f"case-{index}"
        directory.mkdir()
        (directory / path.name).write_bytes(data)
        (directory / high_water_mark.FILE_NAME).write_bytes((tmp_path / "source" / high_water_mark.FILE_NAME).read_bytes())
        with pytest.raises(LogCorrupted, match="records up to 3 were acknowledged") as corrupted:
            open_log(directory, fsync=False)
        assert corrupted.value.reason == Reason.COLLECTION_DAMAGED
        assert str(tmp_path) not in corrupted.value.message
        assert (directory / path.name).read_bytes() == data, "a log that refuses to load is left untouched"
        assert quarantined(directory) == []


@pytest.mark.parametrize("damage", ["deleted", "emptied"])
def test_a_lost_log_is_refused_when_the_mark_says_records_were_written(tmp_path, damage):
    path, whole, _ = three_records(tmp_path)
    if damage == "deleted":
        path.unlink()
    else:
        path.write_bytes(b"")
    with pytest.raises(LogCorrupted, match="records up to 3 were acknowledged") as corrupted:
        open_log(tmp_path)
    assert ("no log file is left" if damage == "deleted" else "(0 bytes)") in corrupted.value.message
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [high_water_mark.FILE_NAME] + ([path.name] if damage == "emptied" else [])
    ), "nothing created or removed"


def test_the_mark_lags_safely_and_catches_up_at_load(tmp_path):
    """After a power cut the mark on disk may be behind the log: the log wins, and the mark is moved."""
    path, _, _ = three_records(tmp_path)
    high_water_mark.create(tmp_path, seq=1)
    log, records = open_log(tmp_path)
    assert [r.seq for r in records] == [1, 2, 3] and quarantined(tmp_path) == []
    log.close()
    assert HighWaterMark.open(tmp_path, label="test").seq == 3


@pytest.mark.parametrize("damage", ["missing", "empty", "both slots flipped"])
def test_an_unreadable_mark_is_refused(tmp_path, damage):
    three_records(tmp_path / "c")
    mark = tmp_path / "c" / high_water_mark.FILE_NAME
    if damage == "missing":
        mark.unlink()
    elif damage == "empty":
        mark.write_bytes(b"")
    else:
        data = bytearray(mark.read_bytes())
        data[8] ^= 0x01
        data[512 + 8] ^= 0x01
        mark.write_bytes(bytes(data))
    with pytest.raises(HighWaterMarkDamaged, match="high-water mark") as damaged:
        HighWaterMark.open(tmp_path / "c", label="test")
    assert damaged.value.reason == Reason.COLLECTION_DAMAGED and str(tmp_path) not in damaged.value.message


def test_one_damaged_slot_falls_back_to_the_other(tmp_path):
    three_records(tmp_path)  # record 3 went to slot 1, record 2 is in slot 0
    mark = tmp_path / high_water_mark.FILE_NAME
    data = bytearray(mark.read_bytes())
    data[512 + 10] ^= 0x01  # as a write torn by a power cut
    mark.write_bytes(bytes(data))
    assert HighWaterMark.open(tmp_path, label="test").seq == 2
    _, records = open_log(tmp_path)
    assert [r.seq for r in records] == [1, 2, 3]


def test_zeroed_tail_blocks_are_quarantined(tmp_path):
    log, _ = open_log(tmp_path)
    upsert(log, ["a"])
    log.close()
    path = the_log_file(tmp_path)
    with open(path, "ab") as f:
        f.write(b"\0" * 4096)  # a file system that extended the file but never wrote the data
    _, records = open_log(tmp_path)
    assert [r.ids for r in records] == [("a",)]
    assert quarantined(tmp_path) == [b"\0" * 4096]


@pytest.mark.parametrize("damage", ["payload byte", "length field", "marker"])
def test_corruption_before_good_records_refuses_to_load(tmp_path, damage):
    log, _ = open_log(tmp_path)
    for i in range(3):
        upsert(log, [f"item-{i}"], seed=i)
    log.close()
    path = the_log_file(tmp_path)
    data = bytearray(path.read_bytes())
    second = record_offsets(path)[1]
    if damage == "payload byte":
        data[second + FRAME_HEADER_BYTES + 10] ^= 0x40
    elif damage == "length field":
        struct.pack_into("<I", data, second + 4, 1 << 30)
    else:
        data[second] ^= 0xFF
    path.write_bytes(bytes(data))

    with pytest.raises(LogCorrupted, match="refusing to load") as corrupted:
        open_log(tmp_path)
    assert path.read_bytes() == bytes(data), "a log that refuses to load must be left untouched"
    assert corrupted.value.reason == Reason.COLLECTION_DAMAGED and corrupted.value.metadata == {"collection": "test"}
    assert path.name in corrupted.value.message and str(tmp_path) not in corrupted.value.message


def test_a_gap_in_sequence_numbers_refuses_to_load(tmp_path):
    vectors = np.zeros((1, 2), np.float32)
    frames = encode_upsert(1, ["a"], vectors, [()], [""]) + encode_upsert(3, ["b"], vectors, [()], [""])
    (tmp_path / log_file_name(1)).write_bytes(frames)
    with pytest.raises(LogCorrupted, match="expected 2") as corrupted:
        open_log(tmp_path)
    assert corrupted.value.reason == Reason.COLLECTION_DAMAGED


def test_a_log_starting_after_the_snapshot_refuses_to_load(tmp_path):
    (tmp_path / log_file_name(5)).write_bytes(encode_delete(5, ["a"]))
    with pytest.raises(LogCorrupted, match="missing") as corrupted:
        open_log(tmp_path, after_seq=2)
    assert corrupted.value.reason == Reason.COLLECTION_DAMAGED


def test_rotation_seals_a_file_and_removal_keeps_what_the_snapshot_lacks(tmp_path):
    log, _ = open_log(tmp_path)
    upsert(log, ["a"])
    upsert(log, ["b"])
    log.rotate()
    log.rotate()  # nothing written since: no new file
    upsert(log, ["c"])
    assert [first for first, _ in list_log_files(tmp_path)] == [1, 3]
    assert log.has_sealed_files()

    # Crash before the removal: replay from a snapshot at 2 skips the sealed records.
    _, records = open_log(tmp_path, after_seq=2)
    assert [r.seq for r in records] == [3]
    # Or without a snapshot at all (it never became durable): every record, once.
    _, records = open_log(tmp_path, after_seq=0)
    assert [r.seq for r in records] == [1, 2, 3]

    assert log.remove_through(2) == 1
    assert [first for first, _ in list_log_files(tmp_path)] == [3]
    assert not log.has_sealed_files()
    log.close()
    _, records = open_log(tmp_path, after_seq=2)
    assert [r.ids for r in records] == [("c",)]


def test_a_torn_record_in_a_sealed_file_is_corruption(tmp_path):
    log, _ = open_log(tmp_path)
    upsert(log, ["a"])
    upsert(log, ["b"])
    log.rotate()
    upsert(log, ["c"])
    log.close()
    first = tmp_path / log_file_name(1)
    first.write_bytes(first.read_bytes()[:-3])
    with pytest.raises(LogCorrupted):
        open_log(tmp_path)


def test_a_snapshot_newer_than_every_log_file_starts_a_fresh_file(tmp_path):
    log, _ = open_log(tmp_path)
    upsert(log, ["a"])
    log.close()
    log, records = open_log(tmp_path, after_seq=4)  # e.g. the newer log files were lost after a snapshot at 4
    assert records == [] and log.last_seq == 4
    assert log.append_delete(["a"]) == 5
    log.close()
    _, records = open_log(tmp_path, after_seq=4)
    assert [r.seq for r in records] == [5]


def test_a_failed_append_is_rolled_back_and_reported(tmp_path, monkeypatch):
    log, _ = open_log(tmp_path)
    upsert(log, ["a"])
    real_write = os.write

    def half_then_disk_full(fd, data):
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(write_ahead_log.os, "write", half_then_disk_full)
    try:
        with pytest.raises(ResourceExhausted, match="no space") as full:
            upsert(log, ["b"])
    finally:
        monkeypatch.undo()
    assert full.value.reason == Reason.STORAGE_FULL and full.value.metadata == {"collection": "test"}
    assert log.last_seq == 1
    assert log.append_delete(["a"]) == 2  # no garbage left between the records
    log.close()
    _, records = open_log(tmp_path)
    assert [(r.seq, r.ids) for r in records] == [(1, ("a",)), (2, ("a",))]


def test_a_failed_fsync_makes_the_log_refuse_further_writes(tmp_path, monkeypatch):
    log, _ = open_log(tmp_path)

    def failing_fsync(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(write_ahead_log.os, "fsync", failing_fsync)
    try:
        with pytest.raises(OSError):
            upsert(log, ["a"])
    finally:
        monkeypatch.undo()
    with pytest.raises(FailedPrecondition, match="restart") as unusable:
        upsert(log, ["b"])
    assert unusable.value.reason == Reason.COLLECTION_DAMAGED and str(tmp_path) not in unusable.value.message
    log.close()


def test_a_mark_that_cannot_be_moved_makes_the_log_refuse_further_writes(tmp_path, monkeypatch):
    log, _ = open_log(tmp_path)

    def failing_pwrite(fd, data, offset):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(high_water_mark.os, "pwrite", failing_pwrite)
    try:
        with pytest.raises(OSError):
            upsert(log, ["a"])
    finally:
        monkeypatch.undo()
    assert log.failure is not None and "high-water mark" in log.failure
    with pytest.raises(FailedPrecondition, match="restart") as unusable:
        upsert(log, ["b"])
    assert unusable.value.reason == Reason.COLLECTION_DAMAGED
    log.close()
    _, records = open_log(tmp_path)  # the record itself was durable: a restart serves it
    assert [r.ids for r in records] == [("a",)]
