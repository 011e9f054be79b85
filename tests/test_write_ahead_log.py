"""The write-ahead log on its own: framing, replay, torn tails, corruption, rotation, failed appends."""

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
from search_service import write_ahead_log
from search_service.write_ahead_log import (
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


def open_log(directory: Path, after_seq: int = 0) -> tuple[WriteAheadLog, list]:
    records: list = []
    log, replayed = WriteAheadLog.open(directory, label="test", after_seq=after_seq, apply=records.append)
    assert replayed == len(records)
    return log, records


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


def test_a_torn_last_record_is_truncated_wherever_the_write_stopped(tmp_path, caplog):
    source = tmp_path / "source"
    source.mkdir()
    log, _ = open_log(source)
    upsert(log, ["a"])
    upsert(log, ["b"])
    upsert(log, ["c", "d"])
    log.close()
    (path,) = source.iterdir()
    whole = path.read_bytes()
    last_start = record_offsets(path)[-1]

    for cut in range(last_start + 1, len(whole)):
        directory = tmp_path / f"cut-{cut}"
        directory.mkdir()
        (directory / path.name).write_bytes(whole[:cut])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=write_ahead_log.__name__):
            log, records = open_log(directory)
        assert [r.ids for r in records] == [("a",), ("b",)]
        assert "truncating a torn record" in caplog.text
        assert (directory / path.name).stat().st_size == last_start
        # The next write reuses the unacknowledged record's sequence number and reads back cleanly.
        assert log.append_delete(["a"]) == 3
        log.close()
        _, records = open_log(directory)
        assert [r.seq for r in records] == [1, 2, 3]


def test_zeroed_tail_blocks_are_truncated(tmp_path):
    log, _ = open_log(tmp_path)
    upsert(log, ["a"])
    log.close()
    (path,) = tmp_path.iterdir()
    with open(path, "ab") as f:
        f.write(b"\0" * 4096)  # a file system that extended the file but never wrote the data
    _, records = open_log(tmp_path)
    assert [r.ids for r in records] == [("a",)]


@pytest.mark.parametrize("damage", ["payload byte", "length field", "marker"])
def test_corruption_before_good_records_refuses_to_load(tmp_path, damage):
    log, _ = open_log(tmp_path)
    for i in range(3):
        upsert(log, [f"item-{i}"], seed=i)
    log.close()
    (path,) = tmp_path.iterdir()
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
