"""The catalogue's queries, each against a brute-force reference: score thresholds, attribute
ranges, crowding, positive and negative examples, listing with a filter, partial updates.
Real collections in tmp_path, real ScaNN (brute force below 20k items: exact, so the answers
must equal the reference exactly)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lookalike.errors import InvalidArgument, NotFound
from search_service.collection import AttributeRange, CollectionSpec, Crowding, TagFilter
from search_service.collection_store import CollectionStore

N, D = 600, 12


@pytest.fixture(params=["cosine", "squared_l2"])
def catalogue(request, tmp_path):
    """(collection, vectors, tags, attributes, metric) of N items: families, prices, years."""
    rng = np.random.default_rng(21)
    vectors = rng.standard_normal((N, D)).astype(np.float32)
    tags = [[f"family:{i % 37}", "shop:eu" if i % 3 else "shop:us"] for i in range(N)]
    attributes = [{"price": float(i % 50) + 0.5, **({"year": 2000 + i % 25} if i % 4 else {})} for i in range(N)]
    store = CollectionStore(tmp_path, fsync=False)
    store.create(CollectionSpec("shop", D, request.param))
    collection = store.get("shop")
    collection.upsert([f"i{i}" for i in range(N)], vectors, tags, attributes=attributes)
    yield collection, vectors, tags, attributes, request.param
    store.close()


def scores_of(vectors: np.ndarray, query: np.ndarray, metric: str) -> np.ndarray:
    v, q = vectors.astype(np.float64), query.astype(np.float64)
    if metric == "squared_l2":
        return ((v - q) ** 2).sum(axis=1)
    return (v @ q) / np.linalg.norm(v, axis=1) / np.linalg.norm(q)


def ranked(scores: np.ndarray, metric: str, keep=None) -> list[int]:
    order = np.argsort(scores if metric == "squared_l2" else -scores, kind="stable").tolist()
    return [i for i in order if keep is None or keep(i)]


def test_score_threshold_keeps_only_what_reaches_it(catalogue):
    collection, vectors, _, _, metric = catalogue
    query = vectors[3] + 0.1
    scores = scores_of(vectors, query, metric)
    ordered = np.sort(scores)
    # Halfway between two scores: float32 (the service) and float64 (here) agree on which side each falls.
    threshold = float((ordered[20] + ordered[21]) / 2 if metric == "squared_l2" else (ordered[-20] + ordered[-21]) / 2)
    hits = collection.search(query, 50, score_threshold=threshold)
    passes = (lambda i: scores[i] <= threshold) if metric == "squared_l2" else (lambda i: scores[i] >= threshold)
    expected = ranked(scores, metric, passes)[:50]
    assert [h.id for h in hits] == [f"i{i}" for i in expected]
    assert len(hits) in (20, 21)  # fewer than k: the threshold cut the rest


@pytest.mark.parametrize(
    "ranges",
    [
        (AttributeRange("price", 10, 20),),
        (AttributeRange("price", maximum=3), AttributeRange("year", 2010)),
        (AttributeRange("year", 2003, 2003),),
        (AttributeRange("colour", 0, 1),),  # no item has it
    ],
)
def test_range_filters_match_brute_force(catalogue, ranges):
    collection, vectors, tags, attributes, metric = catalogue
    query = vectors[11]
    keep = lambda i: all(r.matches(attributes[i]) for r in ranges) and "shop:eu" in tags[i]  # noqa: E731
    hits = collection.search(query, 10, TagFilter(all_of=("shop:eu",)), ranges=ranges)
    expected = ranked(scores_of(vectors, query, metric), metric, keep)[:10]
    assert [h.id for h in hits] == [f"i{i}" for i in expected]
    for hit in hits:
        assert hit.attributes == attributes[int(hit.id[1:])]


@pytest.mark.parametrize("per_group", [1, 2])
def test_crowding_keeps_at_most_per_group_per_family(catalogue, per_group):
    collection, vectors, tags, _, metric = catalogue
    query = vectors[5] * 0.5 + vectors[6] * 0.5
    hits = collection.search(query, 30, crowding=Crowding("family:", per_group), exact=False)
    taken: dict[str, int] = {}
    expected = []
    for i in ranked(scores_of(vectors, query, metric), metric):
        family = tags[i][0]
        if taken.get(family, 0) < per_group:
            taken[family] = taken.get(family, 0) + 1
            expected.append(f"i{i}")
        if len(expected) == 30:
            break
    assert [h.id for h in hits] == expected


def test_positive_and_negative_examples_match_the_average_vector_reference(catalogue):
    collection, vectors, _, _, metric = catalogue
    positives, negatives = [1, 2, 3], [4, 5]
    query = collection.example_vector([f"i{i}" for i in positives], [f"i{i}" for i in negatives])
    rows = vectors / np.linalg.norm(vectors, axis=1, keepdims=True) if metric == "cosine" else vectors
    reference = 2 * rows[positives].astype(np.float64).mean(axis=0) - rows[negatives].astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(query, reference, rtol=1e-5, atol=1e-6)
    examples = {f"i{i}" for i in positives + negatives}
    hits = collection.search(query, 10, exclude_ids=examples)
    expected = ranked(scores_of(vectors, reference.astype(np.float32), metric), metric, lambda i: f"i{i}" not in examples)[:10]
    assert [h.id for h in hits] == [f"i{i}" for i in expected]
    with pytest.raises(NotFound) as missing:
        collection.example_vector(["i1"], ["nope"])
    assert missing.value.field_violations[0].field == "negative_ids[0]"


def test_listing_pages_through_the_filtered_items_in_id_order(catalogue):
    collection, _, tags, attributes, _ = catalogue
    collection.delete(["i7", "i100"])
    tag_filter, ranges = TagFilter(all_of=("shop:us",)), (AttributeRange("price", 0, 25),)
    listed, token, pages = [], "", 0
    while True:
        items, token = collection.list_items(tag_filter, ranges, 17, token)
        listed += [item.id for item in items]
        pages += 1
        if not token:
            break
    expected = sorted(
        f"i{i}" for i in range(N) if i not in (7, 100) and "shop:us" in tags[i] and attributes[i]["price"] <= 25
    )
    assert listed == expected and pages == math.ceil(len(expected) / 17)
    everything, _ = collection.list_items(None, (), 1000, "")
    assert [item.id for item in everything] == sorted(f"i{i}" for i in range(N) if i not in (7, 100))
    with pytest.raises(InvalidArgument) as bad:
        collection.list_items(None, (), 10, "not base64!")
    assert bad.value.field_violations[0].field == "page_token"


def test_partial_update_changes_only_the_masked_fields_and_survives_a_restart(catalogue, tmp_path):
    collection, vectors, tags, attributes, _ = catalogue
    collection.update(["i1", "i2"], ["tags", "attributes"], [["new"], ["new", "also"]], ["", ""], [0, 0], [{"price": 99}, {}])
    collection.update(["i3"], ["uri", "timestamp"], [[]], ["file:///3.png"], [42], [{}])
    found, _ = collection.get(["i1", "i2", "i3"])
    assert [f.tags for f in found] == [("new",), ("new", "also"), tuple(tags[3])]
    assert [f.attributes for f in found] == [{"price": 99.0}, {}, attributes[3]]
    assert (found[2].uri, found[2].timestamp) == ("file:///3.png", 42)
    for item in found:
        np.testing.assert_array_equal(item.vector, vectors[int(item.id[1:])])
    assert sorted(h.id for h in collection.search(vectors[0], 5, TagFilter(all_of=("new",)))) == ["i1", "i2"]
    assert [h.id for h in collection.search(vectors[0], 5, ranges=(AttributeRange("price", 90),))] == ["i1"]
    with pytest.raises(NotFound) as missing:
        collection.update(["i1", "ghost"], ["uri"], [[], []], ["a", "b"], [0, 0], [{}, {}])
    assert missing.value.field_violations[0].field == "items[1].id"
    assert collection.get(["i1"])[0][0].uri == ""  # all or nothing
    collection.snapshot()
    collection.update(["i4"], ["attributes"], [[]], [""], [0], [{"price": -1}])  # in the log after the snapshot
    reopened = CollectionStore(tmp_path, fsync=False).get("shop")
    again, _ = reopened.get(["i1", "i3", "i4"])
    assert [a.attributes for a in again] == [{"price": 99.0}, attributes[3], {"price": -1.0}]
    assert again[1].uri == "file:///3.png" and again[0].tags == ("new",)
