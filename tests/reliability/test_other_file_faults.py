"""Damage to the collection's other files: its spec (collection.json) and its high-water mark.

Every byte of each is flipped, each is cut at every length, deleted and emptied. The spec
carries a CRC32, so a flip never changes a collection's settings silently; the mark has two
checksummed slots, so damage to one falls back to the other (one record lower, which the log
still reaches) and damage to both refuses the collection.
"""

from __future__ import annotations

import pytest

from search_service import high_water_mark
from search_service.collection_store import SPEC_FILE, CollectionStore
from tests.reliability.faults import NAME, SPEC, Golden, Outcome, build, load_damaged


@pytest.fixture(scope="module")
def golden(tmp_path_factory) -> Golden:
    return build(tmp_path_factory.mktemp("golden") / "data")


def damage_file(name: str, position: int, how: str):
    def damage(directory):
        path = directory / name
        data = bytearray(path.read_bytes())
        if how == "flip":
            data[position] ^= 0x01  # the smallest change: 2 -> 3, "a" -> "`"
        else:
            del data[position:]
        path.write_bytes(bytes(data))

    return damage


@pytest.mark.parametrize("how", ["flip", "cut"])
def test_a_damaged_spec_is_refused_never_changed(golden, tmp_path, how):
    size = (golden.directory / SPEC_FILE).stat().st_size
    for position in range(size):
        case = tmp_path / f"{how}-{position}"
        if load_damaged(golden, case, damage_file(SPEC_FILE, position, how)) is Outcome.LOADED:
            # Only what JSON ignores can have been hit (whitespace that stays whitespace): same settings.
            store = CollectionStore(case, fsync=False)
            assert store.describe(NAME).spec == SPEC
            store.close()


MARK_POSITIONS = [*range(0, 24), 100, 511, *range(512, 536), 1000, 1023]  # both slots' 20 bytes, some padding


@pytest.mark.parametrize("how", ["flip", "cut"])
def test_a_damaged_high_water_mark_falls_back_or_is_refused(golden, tmp_path, how):
    mark = golden.directory / high_water_mark.FILE_NAME
    outcomes = {}
    for position in MARK_POSITIONS:
        case = tmp_path / f"{how}-{position}"
        outcomes[position] = load_damaged(golden, case, damage_file(mark.name, position, how))
    if how == "flip":  # one bad slot: the other says record 19 or 20, and the log reaches 20
        assert set(outcomes.values()) == {Outcome.LOADED}
    else:  # slot 0 (record 20) must be whole; slot 1 (record 19) may be lost
        assert {p for p, o in outcomes.items() if o is Outcome.REFUSED} == set(range(0, 20))


@pytest.mark.parametrize("damage", ["spec deleted", "spec emptied", "mark deleted", "mark emptied", "both slots flipped"])
def test_a_lost_spec_or_mark_is_refused(golden, tmp_path, damage):
    def lose(directory):
        path = directory / (SPEC_FILE if damage.startswith("spec") else high_water_mark.FILE_NAME)
        if damage.endswith("deleted"):
            path.unlink()
        elif damage.endswith("emptied"):
            path.write_bytes(b"")
        else:
            data = bytearray(path.read_bytes())
            data[12] ^= 0x01
            data[512 + 12] ^= 0x01
            path.write_bytes(bytes(data))

    assert load_damaged(golden, tmp_path / "case", lose) is Outcome.REFUSED
