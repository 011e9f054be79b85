"""Damage to the write-ahead log: byte flips and cuts at every position of its last records and at
every record boundary, a deleted, emptied or zeroed log, and torn writes of every length.

The golden collection holds 200 acknowledged items in 20 log records (tests/reliability/faults.py).
Its high-water mark says record 20 was acknowledged, so any damage that costs a record is refused;
only a torn write (bytes after record 20, never acknowledged) is cut off, and kept in quarantine.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from search_service.write_ahead_log import encode_upsert
from tests.reliability.faults import (
    RECORDS,
    Golden,
    Outcome,
    build,
    cut,
    flip,
    load_damaged,
    quarantined,
    record_starts,
)

LAST_RECORDS = 1  # every byte of these is flipped and cut at; in the others, the offsets of `interior`


@pytest.fixture(scope="module")
def golden(tmp_path_factory) -> Golden:
    return build(tmp_path_factory.mktemp("golden") / "data")


def interior(start: int, end: int) -> set[int]:
    """A record's first byte, length, checksum, header length, JSON header, middle and last byte."""
    return {start, start + 4, start + 8, start + 12, start + 20, (start + end) // 2, end - 1}


def positions(data: bytes) -> list[int]:
    """Every byte of the last records, and the interior offsets of every other record."""
    starts = record_starts(data)
    found = set(range(starts[-LAST_RECORDS], len(data)))
    for start, end in zip(starts, starts[1:]):
        found |= interior(start, end)
    return sorted(found)


def test_a_byte_flipped_in_the_log_is_refused_never_lost(golden, tmp_path):
    data = golden.log_file().read_bytes()
    assert len(positions(data)) > 700
    for position in positions(data):
        outcome = load_damaged(golden, tmp_path / f"flip-{position}", flip(position))
        assert outcome is Outcome.REFUSED, f"a flipped byte at {position} was not noticed"


def test_a_log_cut_short_is_refused_never_lost(golden, tmp_path):
    data = golden.log_file().read_bytes()
    lengths = positions(data)  # every record boundary among them, 0 too
    assert set(record_starts(data)) <= set(lengths) and len(lengths) > 700
    for length in lengths:
        outcome = load_damaged(golden, tmp_path / f"cut-{length}", cut(length))
        assert outcome is Outcome.REFUSED, f"a log cut to {length} of {len(data)} bytes was not noticed"


@pytest.mark.parametrize("damage", ["deleted", "emptied", "zeroed"])
def test_a_lost_log_is_refused(golden, tmp_path, damage):
    def lose(directory):
        path = golden.log_file().name
        if damage == "deleted":
            (directory / path).unlink()
        else:
            size = (directory / path).stat().st_size
            (directory / path).write_bytes(b"" if damage == "emptied" else b"\0" * size)

    assert load_damaged(golden, tmp_path / "case", lose) is Outcome.REFUSED


def test_a_torn_write_of_any_length_is_quarantined_and_nothing_acknowledged_is_lost(golden, tmp_path, caplog):
    """A crash while record 21 was being written: its bytes, cut anywhere, were never acknowledged."""
    frame = encode_upsert(RECORDS + 1, [f"torn-{i}" for i in range(10)], np.ones((10, 4), np.float32), [()] * 10, [""] * 10)
    tails = [frame[:length] for length in range(1, len(frame))]
    tails += [b"\0" * 4096, bytes(np.random.default_rng(1).integers(0, 256, 700, dtype=np.uint8))]
    for index, tail in enumerate(tails):
        case = tmp_path / f"torn-{index}"

        def append(directory, tail=tail):
            with open(directory / golden.log_file().name, "ab") as f:
                f.write(tail)

        caplog.clear()
        with caplog.at_level(logging.ERROR):
            assert load_damaged(golden, case, append) is Outcome.LOADED
        assert quarantined(case / "collections" / "things") == [tail], "what recovery cuts off is kept"
        assert f"; {len(tail)} bytes from byte" in caplog.text, "reported at ERROR with its size"
