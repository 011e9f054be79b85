"""Damage to a snapshot: byte flips and cuts across the whole file (every byte of the zip and
.npy headers, every 8th byte of the array data), a deleted or emptied snapshot, and the log
written after it lost.

The golden collection: 50 items in a snapshot (record 5), 150 more in the log after it. The
log files the snapshot covers are gone, so the snapshot is the only copy of its items: damage
to it must be refused (or, where a zip field nobody reads was hit, change nothing).
"""

from __future__ import annotations

import zipfile

import pytest

from search_service.snapshot import list_snapshots
from search_service.write_ahead_log import list_log_files
from tests.reliability.faults import Golden, Outcome, build, load_damaged

DATA_STRIDE = 8  # every 8th byte of the arrays' data; every byte of everything else


@pytest.fixture(scope="module")
def golden(tmp_path_factory) -> Golden:
    golden = build(tmp_path_factory.mktemp("golden") / "data", snapshot_after=5)
    assert [seq for seq, _ in list_snapshots(golden.directory)] == [5]
    assert [first for first, _ in list_log_files(golden.directory)] == [6]
    return golden


def snapshot_file(directory) -> object:
    ((_, path),) = list_snapshots(directory)
    return path


def member_data(path) -> set[int]:
    """The positions of the zip members' data (.npy header and array), which the zip CRC32 covers."""
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
    found = set()
    with open(path, "rb") as f:
        for member in members:
            f.seek(member.header_offset + 26)
            name_length, extra_length = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
            data_start = member.header_offset + 30 + name_length + extra_length
            found |= set(range(data_start, data_start + member.compress_size))
    return found


def positions(path) -> list[int]:
    """Every byte of the zip structure and the .npy headers; every DATA_STRIDE-th byte of array data."""
    size = path.stat().st_size
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
    found = set(range(size))
    with open(path, "rb") as f:
        for member in members:
            f.seek(member.header_offset + 26)
            name_length, extra_length = int.from_bytes(f.read(2), "little"), int.from_bytes(f.read(2), "little")
            data_start = member.header_offset + 30 + name_length + extra_length
            f.seek(data_start + 8)
            header_length = int.from_bytes(f.read(2), "little")  # .npy format 1.0
            array_start = data_start + 10 + header_length
            array_end = data_start + member.compress_size
            found -= {p for p in range(array_start, array_end) if (p - array_start) % DATA_STRIDE}
    return sorted(found)


def damage_snapshot(position: int, how: str):
    def damage(directory):
        path = snapshot_file(directory)
        data = bytearray(path.read_bytes())
        if how == "flip":
            data[position] ^= 0xFF
            path.write_bytes(bytes(data))
        else:
            path.write_bytes(bytes(data[:position]))

    return damage


@pytest.mark.parametrize("how", ["flip", "cut"])
def test_a_damaged_snapshot_is_refused_never_lost(golden, tmp_path, how):
    path = snapshot_file(golden.directory)
    cases, checksummed = positions(path), member_data(path)
    assert len(cases) > 800
    loaded = []
    for position in cases:
        if load_damaged(golden, tmp_path / f"{how}-{position}", damage_snapshot(position, how)) is Outcome.LOADED:
            loaded.append(position)  # load_damaged checked that every item is there, unchanged
    if how == "cut":
        assert loaded == []
    else:  # zip fields nobody reads (a timestamp, "version made by") may change nothing; data never
        assert not checksummed & set(loaded), "a flip in the checksummed data went unnoticed"


@pytest.mark.parametrize("damage", ["snapshot deleted", "snapshot emptied", "log after it deleted", "log after it emptied"])
def test_a_lost_snapshot_or_the_log_after_it_is_refused(golden, tmp_path, damage):
    def lose(directory):
        path = snapshot_file(directory) if damage.startswith("snapshot") else list_log_files(directory)[-1][1]
        if damage.endswith("deleted"):
            path.unlink()
        else:
            path.write_bytes(b"")

    assert load_damaged(golden, tmp_path / "case", lose) is Outcome.REFUSED
