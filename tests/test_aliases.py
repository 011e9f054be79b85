"""Aliases (issue 13): a stable name in front of a collection, switched atomically and durably,
against a real search server; and the alias file under kill -9."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from lookalike.client import ItemToUpsert
from lookalike.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from search_service.aliases import FILE, AliasTableUnreadable
from search_service.collection import CollectionSpec
from search_service.collection_store import CollectionStore


@pytest.fixture
def two(search):
    """Collections "shop-v1" and "shop-v2" (2-d, cosine), each with one item named after it, and
    the alias "shop" pointing at v1."""
    for version in ("v1", "v2"):
        search.create_collection(f"shop-{version}", dimension=2)
        search.upsert(f"shop-{version}", [ItemToUpsert(id=f"from-{version}", vector=[1.0, 0.0])])
    search.create_alias("shop", "shop-v1")
    return search


def ids(client, collection: str) -> list[str]:
    return [n.id for n in client.search(collection, vector=[1.0, 0.0], k=10)]


def test_every_call_through_an_alias_reaches_the_collection_it_points_at(two):
    assert ids(two, "shop") == ["from-v1"]
    assert two.get_collection("shop").name == "shop-v1", "GetCollection says which collection answers"
    two.upsert("shop", [ItemToUpsert(id="through-alias", vector=[0.0, 1.0])])
    assert [item.id for item in two.get("shop-v1", ["through-alias"]).items] == ["through-alias"]
    assert [item.id for item in two.list_items("shop").items] == ["from-v1", "through-alias"]
    assert two.delete("shop", ["through-alias"]) == 1


def test_a_switch_moves_every_later_call_and_switching_back_is_the_rollback(two):
    switched = two.switch_alias("shop", "shop-v2", expected_collection="shop-v1")
    assert (switched.collection, switched.previous_collection) == ("shop-v2", "shop-v1")
    assert ids(two, "shop") == ["from-v2"]
    with pytest.raises(FailedPrecondition) as moved:
        two.switch_alias("shop", "shop-v2", expected_collection="shop-v1")  # a second migration, too late
    assert moved.value.reason == "ALIAS_MOVED" and moved.value.metadata["collection"] == "shop-v2"
    back = two.switch_alias("shop", switched.previous_collection)
    assert (back.collection, back.previous_collection) == ("shop-v1", "shop-v2")
    assert ids(two, "shop") == ["from-v1"]
    assert [(a.name, a.collection) for a in two.list_aliases()] == [("shop", "shop-v1")]


def test_aliases_and_collections_share_one_namespace(two):
    with pytest.raises(AlreadyExists) as taken:
        two.create_collection("shop", dimension=2, allow_existing=True)
    assert taken.value.reason == "ALIAS_EXISTS"
    with pytest.raises(AlreadyExists) as taken:
        two.create_alias("shop-v2", "shop-v1")
    assert taken.value.reason == "ALIAS_EXISTS"
    with pytest.raises(AlreadyExists):
        two.create_alias("shop", "shop-v2")  # exists, pointing elsewhere: that is a switch
    assert two.create_alias("shop", "shop-v1").collection == "shop-v1", "a retried create succeeds"
    with pytest.raises(NotFound) as missing:
        two.create_alias("other", "nowhere")
    assert missing.value.reason == "COLLECTION_NOT_FOUND" and missing.value.field_violations[0].field == "collection"
    with pytest.raises(NotFound):
        two.create_alias("alias-of-alias", "shop")
    with pytest.raises(InvalidArgument) as invalid:
        two.create_alias("../etc", "shop-v1")
    assert invalid.value.reason == "NAME_INVALID"


def test_a_collection_cannot_be_deleted_under_an_alias_nor_through_one(two):
    with pytest.raises(FailedPrecondition) as pointed_at:
        two.delete_collection("shop-v1")
    assert pointed_at.value.reason == "COLLECTION_HAS_ALIASES" and pointed_at.value.metadata["aliases"] == "shop"
    with pytest.raises(FailedPrecondition) as through:
        two.delete_collection("shop", allow_missing=True)
    assert through.value.reason == "ALIAS_EXISTS"
    two.delete_alias("shop")
    with pytest.raises(NotFound) as gone:
        two.delete_alias("shop")
    assert gone.value.reason == "ALIAS_NOT_FOUND"
    two.delete_alias("shop", allow_missing=True)
    assert ids(two, "shop-v1") == ["from-v1"], "deleting an alias keeps its collection"
    two.delete_collection("shop-v1")


def test_aliases_survive_a_restart_and_a_damaged_table_stops_the_start(tmp_path):
    store = CollectionStore(tmp_path)
    for name in ("a", "b"):
        store.create(CollectionSpec(name, 2, "cosine"))
    store.create_alias("live", "a")
    store.switch_alias("live", "b")
    store.close()
    reopened = CollectionStore(tmp_path)
    assert reopened.get("live").spec.name == "b" and reopened.aliases()[0].previous_collection == "a"
    reopened.close()
    document = json.loads((tmp_path / FILE).read_text())
    document["aliases"][0]["collection"] = "a"  # an edit the checksum does not cover
    (tmp_path / FILE).write_text(json.dumps(document))
    with pytest.raises(AliasTableUnreadable, match="checksum") as unreadable:
        CollectionStore(tmp_path)
    assert str(tmp_path) not in str(unreadable.value)


SWITCHER = """
import sys
from search_service.collection_store import CollectionStore
store = CollectionStore(sys.argv[1])
for n in range(1_000_000):
    store.switch_alias("live", "abc"[n % 3])
    print(n, flush=True)
"""


def test_kill_9_during_alias_switches_leaves_the_alias_on_one_whole_collection(tmp_path):
    store = CollectionStore(tmp_path)
    for name in ("a", "b", "c"):
        store.create(CollectionSpec(name, 2, "cosine"))
    store.create_alias("live", "c")
    store.close()
    for cycle in range(12):
        child = subprocess.Popen([sys.executable, "-c", SWITCHER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        acknowledged = -1
        deadline = time.monotonic() + 30
        while acknowledged < 3 + cycle % 5 and time.monotonic() < deadline:
            acknowledged = int(child.stdout.readline())
        time.sleep(0.001 * cycle)
        child.send_signal(signal.SIGKILL)
        rest = child.stdout.read().split()
        child.wait()
        last = int(rest[-1]) if rest else acknowledged
        reopened = CollectionStore(tmp_path)  # raises if the kill left a torn table
        [alias] = reopened.aliases()
        # Each run starts again at "a", so the last acknowledged switch and the one in flight when
        # the kill came are the only possible states: the third collection would be an older one.
        acknowledged_target, in_flight_target = "abc"[last % 3], "abc"[(last + 1) % 3]
        assert alias.collection in {acknowledged_target, in_flight_target}, f"cycle {cycle}: an acknowledged switch was lost"
        assert reopened.get("live").spec.name == alias.collection
        assert alias.previous_collection == "abc"[("abc".index(alias.collection) - 1) % 3]
        reopened.close()
