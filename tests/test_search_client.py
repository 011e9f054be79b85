"""SearchClient's typed methods for SearchBatch, UpsertStream, UpdateItems, ListItems and the newer
search options, against a real search server: a small collection of 4-dimensional vectors, no model."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.client import ItemToUpsert, search_request
from lookalike.errors import NotFound
from lookalike.v1 import errors_pb2

VECTORS = {
    "a1": [1.0, 0.0, 0.0, 0.0],
    "a2": [0.9, 0.1, 0.0, 0.0],
    "a3": [0.8, 0.2, 0.0, 0.0],
    "b1": [0.0, 1.0, 0.0, 0.0],
    "b2": [0.1, 0.9, 0.0, 0.0],
    "c1": [0.0, 0.0, 1.0, 0.0],
}


@pytest.fixture
def shop(search):
    """Collection "shop": family tags by the id's letter, and a price attribute 1..6 in id order."""
    search.create_collection("shop", dimension=4)
    items = [
        ItemToUpsert(id=i, vector=v, tags=[f"family:{i[0]}"], attributes={"price": float(n)})
        for n, (i, v) in enumerate(VECTORS.items(), start=1)
    ]
    assert search.upsert("shop", items) == len(items)
    return search


def test_upsert_passes_attributes_through(shop):
    stored = {item.id: dict(item.attributes) for item in shop.get("shop", ["a1", "c1"]).items}
    assert stored == {"a1": {"price": 1.0}, "c1": {"price": 6.0}}


def test_neighbours_carry_their_attributes(shop):
    by_id = {n.id: n for n in shop.search("shop", vector=VECTORS["a1"], k=6)}
    assert by_id["a1"].attributes == {"price": 1.0} and by_id["c1"].attributes == {"price": 6.0}
    [batched] = shop.search_batch([search_request("shop", item_id="a1", k=1)])
    assert batched[0].attributes == {"price": 2.0}  # a2, the nearest other item
    shop.upsert("shop", [ItemToUpsert(id="plain", vector=[1.0, 0.0, 0.0, 0.0])])
    plain = next(n for n in shop.search("shop", vector=VECTORS["a1"], k=7) if n.id == "plain")
    assert plain.attributes == {} and len({plain, by_id["a1"]}) == 2  # still hashable


def test_search_options_reach_the_server(shop):
    query = VECTORS["a1"]
    assert [n.id for n in shop.search("shop", vector=query, k=6)][:3] == ["a1", "a2", "a3"]
    assert [n.id for n in shop.search("shop", vector=query, k=6, ranges={"price": (2.0, 3.0)})] == ["a2", "a3"]
    assert {n.id for n in shop.search("shop", vector=query, k=6, ranges={"price": (None, 1.5)})} == {"a1"}
    close = shop.search("shop", vector=query, k=6, score_threshold=0.9, exact=True)
    assert [n.id for n in close] == ["a1", "a2", "a3"] and all(n.score >= 0.9 for n in close)
    crowded = shop.search("shop", vector=query, k=6, crowding=("family:", 1))
    assert [n.id for n in crowded] == ["a1", "b2", "c1"]  # one per family, best first
    liked = shop.search("shop", positive_ids=["b1"], negative_ids=["a1"], k=2)
    assert liked[0].id == "b2" and {"a1", "b1"}.isdisjoint(n.id for n in liked)
    with pytest.raises(ValueError):
        shop.search("shop", k=2)  # no query and no positives


def test_search_batch_answers_each_request_as_search_does(shop):
    requests = [
        search_request("shop", vector=VECTORS["a1"], k=2),
        search_request("shop", item_id="b1", k=1),
        search_request("shop", vector=VECTORS["c1"], k=3, any_of=["family:a"], ranges={"price": (3.0, None)}),
    ]
    results = shop.search_batch(requests)
    assert [[n.id for n in r] for r in results] == [["a1", "a2"], ["b2"], ["a3"]]
    assert results[1] == shop.search("shop", item_id="b1", k=1)


def test_upsert_stream_answers_each_batch_and_names_the_bad_item(shop):
    batches = [
        [ItemToUpsert(id="d1", vector=[0.0, 0.0, 0.0, 1.0], attributes={"price": 7.0})],
        [
            ItemToUpsert(id="d2", vector=[0.0, 0.0, 0.1, 0.9]),
            ItemToUpsert(id="short", vector=[1.0, 0.0]),  # the wrong dimension
            ItemToUpsert(id="d3", vector=[0.0, 0.1, 0.0, 0.9]),
        ],
    ]
    answers = list(shop.upsert_stream("shop", batches))
    assert [(a.request_index, a.upserted) for a in answers] == [(0, 1), (1, 2)]
    assert answers[0].failures == []
    [failure] = answers[1].failures
    assert (failure.item_index, failure.id, failure.field) == (1, "short", "items[1].vector")
    assert failure.reason == errors_pb2.DIMENSION_MISMATCH
    assert shop.get("shop", ["d1", "d2", "d3", "short"]).missing_ids == ["short"]

    with pytest.raises(NotFound):
        list(shop.upsert_stream("nowhere", [[ItemToUpsert(id="x", vector=[1.0, 0.0, 0.0, 0.0])]]))


def test_update_items_changes_only_the_masked_fields(shop):
    updated = shop.update_items(
        "shop", [ItemToUpsert(id="a1", tags=["sale"], uri="ignored://", attributes={"price": 0.5})], ["tags", "attributes"]
    )
    assert updated == 1
    [item] = shop.get("shop", ["a1"]).items
    assert (list(item.tags), item.uri, dict(item.attributes)) == (["sale"], "", {"price": 0.5})
    assert np.allclose(item.vector.values, VECTORS["a1"])  # the vector is kept
    with pytest.raises(NotFound):
        shop.update_items("shop", [ItemToUpsert(id="nope", tags=["x"])], ["tags"])


def test_list_items_pages_and_iter_items_walks_them_all(shop):
    first = shop.list_items("shop", page_size=4)
    assert [i.id for i in first.items] == ["a1", "a2", "a3", "b1"] and first.next_page_token
    rest = shop.list_items("shop", page_size=4, page_token=first.next_page_token)
    assert [i.id for i in rest.items] == ["b2", "c1"] and not rest.next_page_token
    assert [i.id for i in shop.iter_items("shop", page_size=2)] == list(VECTORS)
    cheap = list(shop.iter_items("shop", page_size=1, ranges={"price": (None, 2.0)}, none_of=["family:b"]))
    assert [i.id for i in cheap] == ["a1", "a2"] and not cheap[0].HasField("vector")
    assert list(shop.iter_items("shop", with_vectors=True, any_of=["family:c"]))[0].vector.values == VECTORS["c1"]
