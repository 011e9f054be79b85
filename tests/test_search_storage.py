"""Collections and the store: real files in tmp_path, real ScaNN.

Covers round trips, validation (every bad field of a batch, with its path and reason),
errors as data (reasons, no server path in a message), search under every metric, filters
against brute force, crash recovery (reopen without close, torn tails, snapshots interrupted
at each step), damaged collections listed as DAMAGED, file modes, the upgrade of collections
from before high-water marks, the tree index at 25k items, and searches racing writes.
Disk faults at every position of the files are tests/reliability/'s.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lookalike.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Reason,
    Unavailable,
)
from search_service import collection as collection_module
from search_service import high_water_mark
from search_service.collection import DAMAGED, READY, Collection, CollectionSpec, TagFilter
from search_service.collection_store import CollectionStore
from search_service.snapshot import (
    SnapshotCorrupted,
    SnapshotData,
    list_snapshots,
    load_latest_snapshot,
    write_snapshot,
)
from search_service.vector_index import IndexPolicy
from search_service.write_ahead_log import QUARANTINE_PREFIX, WriteAheadLog, encode_upsert, list_log_files

METRICS = ["cosine", "dot_product", "squared_l2"]


@pytest.fixture
def store(tmp_path):
    store = CollectionStore(tmp_path)
    yield store
    store.close()


def make(store: CollectionStore, name="things", dimension=8, metric="squared_l2") -> Collection:
    store.create(CollectionSpec(name, dimension, metric))
    return store.get(name)


def random_vectors(n: int, dimension: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dimension)).astype(np.float32)


def items(collection: Collection) -> dict:
    """Everything the collection holds, as comparable plain values."""
    ids = sorted(collection._index.ids())
    found, missing = collection.get(ids)
    assert not missing
    return {item.id: (item.vector.tolist(), item.tags, item.uri) for item in found}


def exact_scores(vectors: np.ndarray, query: np.ndarray, metric: str) -> np.ndarray:
    vectors, query = vectors.astype(np.float64), query.astype(np.float64)
    if metric == "squared_l2":
        return ((vectors - query) ** 2).sum(axis=1)
    if metric == "cosine":
        return (vectors @ query) / np.linalg.norm(vectors, axis=1) / np.linalg.norm(query)
    return vectors @ query


def exact_top(vectors, query, metric, k) -> np.ndarray:
    scores = exact_scores(vectors, query, metric)
    return np.argsort(scores if metric == "squared_l2" else -scores, kind="stable")[:k]


# --- the store ----------------------------------------------------------------------------


def test_create_get_list_and_delete_collections(store, tmp_path):
    info = store.create(CollectionSpec("b-1", 4, "cosine", model_name="digits", model_version=2))
    assert info.size == 0 and info.spec.model_name == "digits"
    store.create(CollectionSpec("a.x", 3, "dot_product"))
    assert [i.spec.name for i in store.list()] == ["a.x", "b-1"]
    with pytest.raises(AlreadyExists) as exists:
        store.create(CollectionSpec("a.x", 3, "cosine"))
    assert exists.value.reason == Reason.COLLECTION_EXISTS and exists.value.metadata == {"collection": "a.x"}
    with pytest.raises(NotFound, match="'nope'") as missing:
        store.get("nope")
    assert missing.value.reason == Reason.COLLECTION_NOT_FOUND and missing.value.metadata == {"collection": "nope"}

    handle = store.get("b-1")
    store.delete("b-1")
    assert not (tmp_path / "collections" / "b-1").exists()
    for call in (lambda: store.get("b-1"), lambda: store.delete("b-1"), lambda: handle.upsert(["x"], np.ones((1, 4)))):
        with pytest.raises(NotFound) as deleted:  # the last: a handle held across the delete
            call()
        assert deleted.value.reason == Reason.COLLECTION_NOT_FOUND and deleted.value.metadata == {"collection": "b-1"}
    assert [i.spec.name for i in CollectionStore(tmp_path).list()] == ["a.x"]


@pytest.mark.parametrize(
    "spec, field, reason",
    [
        (CollectionSpec("", 4, "cosine"), "name", Reason.NAME_INVALID),
        (CollectionSpec("-starts-with-dash", 4, "cosine"), "name", Reason.NAME_INVALID),
        (CollectionSpec("a/b", 4, "cosine"), "name", Reason.NAME_INVALID),
        (CollectionSpec("é", 4, "cosine"), "name", Reason.NAME_INVALID),
        (CollectionSpec("x" * 129, 4, "cosine"), "name", Reason.NAME_INVALID),
        (CollectionSpec("ok", 0, "cosine"), "dimension", Reason.DIMENSION_INVALID),
        (CollectionSpec("ok", 65_537, "cosine"), "dimension", Reason.DIMENSION_INVALID),
        (CollectionSpec("ok", 4, "l1"), "metric", Reason.METRIC_INVALID),
        (CollectionSpec("ok", 4, "cosine", model_name="_hidden"), "model.name", Reason.NAME_INVALID),
        (CollectionSpec("ok", 4, "cosine", model_name="a/b"), "model.name", Reason.NAME_INVALID),
        (CollectionSpec("ok", 4, "cosine", model_version=-1), "model.version", Reason.NAME_INVALID),
    ],
)
def test_create_rejects_invalid_specs(store, spec, field, reason):
    with pytest.raises(InvalidArgument, match=field.replace("model.", "model ")) as refused:
        store.create(spec)
    assert refused.value.reason == reason
    assert [(v.field, v.reason) for v in refused.value.field_violations] == [(field, reason)]
    assert store.list() == []


def test_longest_name_and_largest_dimension_are_accepted(store):
    store.create(CollectionSpec("x" * 128, 65_536, "squared_l2"))
    assert store.get("x" * 128).info().spec.dimension == 65_536


def test_a_closed_store_is_unavailable_as_when_shutting_down(tmp_path):
    store = CollectionStore(tmp_path)
    collection = make(store)
    store.close()
    calls = [
        lambda: store.get("things"),
        lambda: store.list(),
        lambda: store.create(CollectionSpec("new", 8, "cosine")),
        lambda: collection.search(np.ones(8), 1),
        lambda: collection.upsert(["a"], np.ones((1, 8))),
        lambda: collection.get(["a"]),
    ]
    for call in calls:
        with pytest.raises(Unavailable) as closed:  # clients retry on another replica
            call()
        assert closed.value.reason == Reason.SHUTTING_DOWN


# --- items --------------------------------------------------------------------------------


def test_upsert_get_round_trip(store):
    collection = make(store, metric="cosine")
    vectors = random_vectors(3, 8)
    assert collection.upsert(["a", "b", "ü"], vectors, tags=[["x", "y"], [], ["x"]], uris=["s3://a", "", "u"]) == 3
    found, missing = collection.get(["ü", "nope", "a", "also-nope"])
    assert [i.id for i in found] == ["ü", "a"] and missing == ["nope", "also-nope"]
    np.testing.assert_array_equal(found[1].vector, vectors[0])  # as given, not normalised
    assert found[1].tags == ("x", "y") and found[1].uri == "s3://a" and found[0].uri == "u"
    np.testing.assert_array_equal(collection.vector_of("b"), vectors[1])
    assert collection.info().size == 3


def test_upsert_replaces_items_with_the_same_id(store):
    collection = make(store)
    collection.upsert(["a", "b"], random_vectors(2, 8), tags=[["old"], ["keep"]], uris=["u1", "u2"])
    new = random_vectors(1, 8, seed=5)
    collection.upsert(["a"], new, tags=[["new"]])
    assert collection.info().size == 2
    (item,), _ = collection.get(["a"])
    np.testing.assert_array_equal(item.vector, new[0])
    assert item.tags == ("new",) and item.uri == ""
    assert collection.search(new[0], 5, TagFilter(all_of=("old",))) == []
    assert [h.id for h in collection.search(new[0], 5, TagFilter(all_of=("new",)))] == ["a"]
    assert collection.search(new[0], 1)[0].id == "a"


def test_delete_counts_what_existed(store):
    collection = make(store)
    collection.upsert(["a", "b", "c"], random_vectors(3, 8))
    assert collection.delete(["a", "missing", "a", "c"]) == 2
    assert collection.delete(["missing"]) == 0
    assert collection.get(["a", "b", "c"])[1] == ["a", "c"]
    assert [h.id for h in collection.search(np.zeros(8), 10)] == ["b"]


def test_vector_of_a_missing_item_is_not_found(store):
    collection = make(store)
    with pytest.raises(NotFound, match="'ghost'.*'things'") as missing:
        collection.vector_of("ghost")
    assert missing.value.reason == Reason.ITEM_NOT_FOUND
    assert missing.value.metadata == {"item_id": "ghost", "collection": "things"}
    assert [v.field for v in missing.value.field_violations] == ["item_id"]


AB, ONES = ["a", "b"], np.ones((2, 8))


@pytest.mark.parametrize(
    "batch, expected",  # (ids, vectors, tags, uris), (the first violation's field, its reason, the message)
    [
        (
            (AB, np.ones((2, 10)), None, None),
            ("items[0].vector", Reason.DIMENSION_MISMATCH, r"items\[0\]\.vector has dimension 10, collection 'things'"),
        ),
        (
            (AB, [[1.0] * 8, [1.0] * 7], None, None),
            ("items[1].vector", Reason.DIMENSION_MISMATCH, r"items\[1\]\.vector has dimension 7"),
        ),
        (
            (AB, [[1.0] * 8, []], None, None),
            ("items[1].vector", Reason.REQUIRED_FIELD_MISSING, r"items\[1\]\.vector is empty"),
        ),
        (
            (AB, np.array([[1.0] * 8, [np.nan] * 8]), None, None),
            ("items[1].vector", Reason.VALUES_NOT_FINITE, r"items\[1\]\.vector contains NaN"),
        ),
        (
            (AB, np.array([[1.0] * 8, [1e39] * 8]), None, None),
            ("items[1].vector", Reason.VALUES_NOT_FINITE, "infinity"),
        ),
        (
            (AB, np.array([[1.0] * 8, [3e38] * 8]), None, None),  # finite, but its scores would overflow float32
            ("items[1].vector", Reason.VALUES_TOO_LARGE, r"items\[1\]\.vector has length 8\.49e\+38, over the limit"),
        ),
        (
            (AB, np.array([[1.0] * 8, [0.0] * 7 + [1.1e18]]), None, None),
            ("items[1].vector", Reason.VALUES_TOO_LARGE, "over the limit of 1e[+]18"),
        ),
        (
            (AB, np.array([[1.0] * 8, [0.0] * 8]), None, None),
            ("items[1].vector", Reason.VECTOR_ZERO_NORM, r"items\[1\]\.vector has zero norm"),
        ),
        (
            (AB, [["1"] * 8, ["x"] * 8], None, None),
            ("items[1].vector", Reason.VALUES_NOT_FINITE, "not a list of numbers"),
        ),
        (
            (["a", ""], ONES, None, None),
            ("items[1].id", Reason.ID_INVALID, r"items\[1\]\.id is empty"),
        ),
        (
            (["a", 7], ONES, None, None),
            ("items[1].id", Reason.ID_INVALID, "must be a string, got int"),
        ),
        (
            (["a", "b", "a"], np.ones((3, 8)), None, None),
            ("items[2].id", Reason.ID_DUPLICATE, r"items\[2\]\.id 'a' repeats items\[0\]"),
        ),
        (
            (["a", "é" * 257], ONES, None, None),
            ("items[1].id", Reason.ID_INVALID, r"items\[1\]\.id is 514 bytes"),
        ),
        (
            (["a", "\ud800"], ONES, None, None),
            ("items[1].id", Reason.ID_INVALID, "not valid UTF-8"),
        ),
        (
            (AB, ONES, [["x"], [f"t{i}" for i in range(65)]], None),
            ("items[1].tags", Reason.TAG_INVALID, r"items\[1\]\.tags holds 65 tags"),
        ),
        (
            (AB, ONES, [["x"], [""]], None),
            ("items[1].tags", Reason.TAG_INVALID, "a tag of 0 bytes"),
        ),
        (
            (AB, ONES, [["x"], ["t" * 257]], None),
            ("items[1].tags", Reason.TAG_INVALID, "257 bytes"),
        ),
        (
            (AB, ONES, [["x"], "xy"], None),
            ("items[1].tags", Reason.TAG_INVALID, "not one string"),
        ),
        (
            (AB, ONES, None, ["", "u" * 2049]),
            ("items[1].uri", Reason.URI_INVALID, r"items\[1\]\.uri is 2049 bytes"),
        ),
        (
            (AB, np.ones((3, 8)), None, None),
            ("items", Reason.REQUIRED_FIELD_MISSING, "2 ids but 3 vectors"),
        ),
        (
            (AB, ONES, [["x"]], None),
            ("items", Reason.REQUIRED_FIELD_MISSING, "2 ids but 1 tag lists"),
        ),
        (
            ("ab", ONES, None, None),
            ("items", Reason.ID_INVALID, "not one string"),
        ),
    ],
)
def test_invalid_upserts_change_nothing(store, tmp_path, batch, expected):
    collection = make(store, metric="cosine")
    collection.upsert(["a"], np.full((1, 8), 2.0), tags=[["before"]], uris=["before"])
    before = items(collection)
    log_sizes = [p.stat().st_size for _, p in list_log_files(tmp_path / "collections" / "things")]

    field, reason, message = expected
    with pytest.raises(InvalidArgument, match=message) as refused:
        collection.upsert(*batch)

    assert refused.value.reason == reason
    assert (refused.value.field_violations[0].field, refused.value.field_violations[0].reason) == (field, reason)
    assert items(collection) == before
    assert [p.stat().st_size for _, p in list_log_files(tmp_path / "collections" / "things")] == log_sizes
    assert [h.id for h in collection.search(np.ones(8), 5)] == ["a"]
    reopened = CollectionStore(tmp_path).get("things")
    assert items(reopened) == before


def test_a_batch_reports_every_bad_field_at_its_path(store):
    collection = make(store, dimension=4, metric="cosine")
    vectors = [[1.0] * 4, [1.0] * 4, [1.0] * 4, [1.0] * 3, [0.0] * 4]
    with pytest.raises(InvalidArgument) as refused:
        collection.upsert(["a", "b", "a", "d", ""], vectors, uris=["", "u" * 2049, "", "", ""])

    error = refused.value
    assert error.field_violations == (
        FieldViolation("items[1].uri", "items[1].uri is 2049 bytes, at most 2048 allowed", Reason.URI_INVALID),
        FieldViolation(
            "items[2].id", "items[2].id 'a' repeats items[0].id; ids must be unique within a batch", Reason.ID_DUPLICATE
        ),
        FieldViolation(
            "items[3].vector", "items[3].vector has dimension 3, collection 'things' has 4", Reason.DIMENSION_MISMATCH
        ),
        FieldViolation("items[4].id", "items[4].id is empty", Reason.ID_INVALID),
        FieldViolation(
            "items[4].vector",
            "items[4].vector has zero norm; collection 'things' uses cosine similarity, which needs a direction",
            Reason.VECTOR_ZERO_NORM,
        ),
    )
    assert error.reason == Reason.URI_INVALID  # the first violation's
    assert error.message.startswith("4 items are invalid: items[1].uri is 2049 bytes")
    assert "; and " not in error.message  # five violations: all spelled out
    assert error.metadata == {"collection": "things"}
    assert collection.info().size == 0


def test_a_large_bad_batch_spells_out_only_the_first_violations(store):
    collection = make(store, dimension=4)
    with pytest.raises(InvalidArgument) as refused:
        collection.upsert([f"i{n}" for n in range(100)], np.ones((100, 3)))
    assert len(refused.value.field_violations) == 100
    assert refused.value.message.startswith("100 items are invalid: items[0].vector has dimension 3")
    assert refused.value.message.endswith("; and 95 more")


def test_id_of_exactly_512_bytes_is_accepted(store):
    collection = make(store)
    assert collection.upsert(["é" * 256], np.ones((1, 8))) == 1


# --- search -------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", METRICS)
def test_an_items_own_vector_finds_it_first(store, metric):
    collection = make(store, dimension=16, metric=metric)
    vectors = random_vectors(500, 16)
    if metric == "dot_product":  # with unequal norms a longer vector can out-score the item itself
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"item-{i}" for i in range(500)]
    collection.upsert(ids, vectors)
    for i in range(0, 500, 25):
        hits = collection.search(vectors[i], 5)
        assert hits[0].id == ids[i]
        expected_best = {"cosine": 1.0, "dot_product": 1.0, "squared_l2": 0.0}[metric]
        assert hits[0].score == pytest.approx(expected_best, abs=1e-5)
        expected = exact_scores(vectors, vectors[i], metric)[[int(h.id.split("-")[1]) for h in hits]]
        np.testing.assert_allclose([h.score for h in hits], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("metric", METRICS)
def test_search_is_correct_through_updates_and_deletes(tmp_path, metric):
    """Replacements and deletes kill slots, rebuilds compact them (while writes go on, carried over
    at the swap); results must still map to the right ids."""
    # A tree from 300 items on, tuned to recall 1.0, rebuilt every 50 writes in the background.
    policy = IndexPolicy(brute_force_below=300, recall_target=1.0, tail_rows=50)
    store = CollectionStore(tmp_path, fsync=False, index_policy=policy)
    collection = make(store, dimension=8, metric=metric)
    rng = np.random.default_rng(1)
    truth: dict[str, np.ndarray] = {}
    for step in range(12):
        new_ids = [f"s{step}-{i}" for i in range(80)]
        vectors = rng.standard_normal((80, 8)).astype(np.float32)
        replaced = list(rng.choice(sorted(truth), size=min(10, len(truth)), replace=False)) if truth else []
        replacements = rng.standard_normal((len(replaced), 8)).astype(np.float32)
        if metric == "dot_product":  # unit vectors, so each item is its own best match
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            replacements /= np.linalg.norm(replacements, axis=1, keepdims=True)
        collection.upsert(new_ids + replaced, np.vstack([vectors, replacements]))
        truth.update(zip(new_ids, vectors))
        truth.update(zip(replaced, replacements))
        doomed = list(rng.choice(sorted(truth), size=40, replace=False))
        collection.delete(doomed)
        for item_id in doomed:
            del truth[item_id]
        for item_id in rng.choice(sorted(truth), size=20, replace=False):
            assert collection.search(truth[item_id], 3)[0].id == item_id
        assert sorted(collection._index.ids()) == sorted(truth)
    collection.wait_for_index()
    assert collection.index_kind == "tree_ah"  # 12 * 40 items remain, past the lowered threshold
    for item_id in sorted(truth):
        assert collection.search(truth[item_id], 3)[0].id == item_id
    store.close()


def test_search_validates_its_arguments(store):
    collection = make(store, metric="cosine")
    collection.upsert(["a"], np.ones((1, 8)))
    for query, k, message, field, reason in [
        (np.ones(7), 1, "dimension 7, collection 'things' has 8", "vector", Reason.DIMENSION_MISMATCH),
        (np.full(8, np.nan), 1, "NaN", "vector", Reason.VALUES_NOT_FINITE),
        (np.zeros(8), 1, "zero norm", "vector", Reason.VECTOR_ZERO_NORM),
        (np.full(8, 3e38), 1, "over the limit of 1e[+]18", "vector", Reason.VALUES_TOO_LARGE),
        (np.ones((2, 8)), 1, "one-dimensional", "vector", Reason.DIMENSION_MISMATCH),
        (["x"] * 8, 1, "not a list of numbers", "vector", Reason.VALUES_NOT_FINITE),
        (np.ones(8), 0, "k must be a positive integer", "k", Reason.K_OUT_OF_RANGE),
        (np.ones(8), -3, "k must be a positive integer", "k", Reason.K_OUT_OF_RANGE),
        (np.ones(8), True, "k must be a positive integer", "k", Reason.K_OUT_OF_RANGE),
    ]:
        with pytest.raises(InvalidArgument, match=message) as refused:
            collection.search(query, k)
        assert refused.value.reason == reason
        assert [(v.field, v.reason) for v in refused.value.field_violations] == [(field, reason)]


@pytest.mark.parametrize("metric", METRICS)
def test_finite_vectors_whose_scores_would_overflow_are_refused_and_scores_stay_finite(store, metric):
    """3e38 is a finite float32, but 3e38 * 3e38 is not: such vectors would score infinity."""
    collection = make(store, dimension=4, metric=metric)
    with pytest.raises(InvalidArgument) as refused:
        collection.upsert(["huge", "fine"], np.array([[3e38, 0, 0, 0], [1, 2, 3, 4]], np.float32))
    assert refused.value.reason == Reason.VALUES_TOO_LARGE
    assert [(v.field, v.reason) for v in refused.value.field_violations] == [("items[0].vector", Reason.VALUES_TOO_LARGE)]
    assert refused.value.metadata == {"collection": "things", "limit": "1e+18"}
    assert collection.info().size == 0
    largest = np.array([[1e18, 0, 0, 0], [-1e18, 0, 0, 0]], np.float32)  # at the limit: accepted
    collection.upsert(["big", "opposite"], largest)
    hits = collection.search(np.array([-1e18, 0, 0, 0], np.float32), 2)
    assert all(np.isfinite(h.score) for h in hits), [h.score for h in hits]


def test_tiny_collections(store):
    collection = make(store)
    assert collection.search(np.ones(8), 10) == []
    collection.upsert(["only"], np.ones((1, 8)))
    assert [h.id for h in collection.search(np.zeros(8), 1000)] == ["only"]
    assert collection.search(np.zeros(8), 5, exclude_ids=frozenset({"only"})) == []
    collection.delete(["only"])
    assert collection.search(np.ones(8), 10) == [] and collection.info().size == 0
    collection.upsert(["again", "more"], np.stack([np.ones(8), np.zeros(8)]))
    assert [h.id for h in collection.search(np.ones(8), 10)] == ["again", "more"]


# --- filters against brute force -----------------------------------------------------------

TAG_RATES = {"common": 0.6, "half": 0.5, "some": 0.2, "few": 0.05, "rare": 0.01, "none": 0.0}
POLICIES = {
    "default": IndexPolicy(),
    "always overfetch": IndexPolicy(exact_scan_rows=0, exact_scan_fraction=0.0),
    "always exact": IndexPolicy(exact_scan_rows=10**9),
}
FILTER_COLLECTION_SIZE = 3_000


@pytest.fixture(scope="module")
def filter_collections(tmp_path_factory):
    """(metric, policy) -> (collection, vectors, tags), built once and shared by the hypothesis examples."""
    built: dict = {}
    stores = []

    def get(metric: str, policy: str):
        if (metric, policy) not in built:
            directory = tmp_path_factory.mktemp(f"filters-{metric}-{policy.replace(' ', '-')}")
            store = CollectionStore(directory, fsync=False, index_policy=POLICIES[policy])
            stores.append(store)
            collection = make(store, dimension=12, metric=metric)
            rng = np.random.default_rng(7)
            vectors = rng.standard_normal((FILTER_COLLECTION_SIZE, 12)).astype(np.float32)
            tags = [[t for t, rate in TAG_RATES.items() if rng.random() < rate] for _ in range(FILTER_COLLECTION_SIZE)]
            collection.upsert([f"i{n}" for n in range(FILTER_COLLECTION_SIZE)], vectors, tags=tags)
            built[metric, policy] = (collection, vectors, tags)
        return built[metric, policy]

    yield get
    for store in stores:
        store.close()


tag_names = st.sampled_from(sorted(TAG_RATES) + ["unknown"])
filters = st.builds(
    TagFilter,
    all_of=st.lists(tag_names, max_size=2).map(tuple),
    any_of=st.lists(tag_names, max_size=3).map(tuple),
    none_of=st.lists(tag_names, max_size=2).map(tuple),
)


@pytest.mark.parametrize("policy", sorted(POLICIES))
@pytest.mark.parametrize("metric", METRICS)
@settings(max_examples=40, deadline=None)
@given(
    tag_filter=filters,
    k=st.sampled_from([1, 5, 10, 100, 5000]),
    seed=st.integers(0, 2**32 - 1),
    excluded=st.integers(0, 30),
)
def test_filtered_search_returns_the_exact_filtered_top_k(
    filter_collections, metric, policy, tag_filter, k, seed, excluded
):
    collection, vectors, tags = filter_collections(metric, policy)
    rng = np.random.default_rng(seed)
    query = rng.standard_normal(12).astype(np.float32)
    exclude = frozenset(f"i{n}" for n in rng.choice(FILTER_COLLECTION_SIZE, size=excluded, replace=False))

    hits = collection.search(query, k, tag_filter, exclude)

    allowed = np.array([tag_filter.matches(t) and f"i{n}" not in exclude for n, t in enumerate(tags)])
    rows = np.flatnonzero(allowed)
    best = rows[exact_top(vectors[rows], query, metric, k)]
    assert len(hits) == len(best)
    returned_rows = [int(h.id[1:]) for h in hits]
    assert all(allowed[r] for r in returned_rows), "a hit fails the filter or is excluded"
    assert len(set(returned_rows)) == len(returned_rows)
    # Same scores in the same order; ids equal up to ties (scores from float32 arithmetic).
    scores = [h.score for h in hits]
    np.testing.assert_allclose(scores, exact_scores(vectors[best], query, metric), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(scores, exact_scores(vectors[returned_rows], query, metric), rtol=1e-4, atol=1e-4)
    assert all(h.tags == tuple(tags[r]) for h, r in zip(hits, returned_rows))


# --- durability ---------------------------------------------------------------------------


def write_a_history(collection: Collection) -> None:
    collection.upsert(["a", "b", "c"], random_vectors(3, 8), tags=[["x"], ["y"], []], uris=["ua", "ub", ""])
    collection.upsert(["d"], random_vectors(1, 8, seed=1))
    collection.delete(["b"])
    collection.upsert(["a"], random_vectors(1, 8, seed=2), tags=[["z"]])


def test_reopening_without_close_keeps_every_acknowledged_write(tmp_path):
    store = CollectionStore(tmp_path)
    collection = make(store, metric="cosine")
    write_a_history(collection)
    make(store, name="empty")
    expected = items(collection)

    crashed = CollectionStore(tmp_path)  # the first store is never closed: as after kill -9
    assert items(crashed.get("things")) == expected
    assert set(expected) == {"a", "c", "d"} and expected["a"][1] == ("z",)
    assert crashed.get("empty").info().size == 0
    assert [h.id for h in crashed.get("things").search(np.asarray(expected["d"][0]), 1)] == ["d"]


def test_a_torn_tail_is_quarantined_on_reopen(tmp_path, caplog):
    store = CollectionStore(tmp_path)
    collection = make(store)
    write_a_history(collection)
    expected = items(collection)
    directory = tmp_path / "collections" / "things"
    ((_, log_path),) = list_log_files(directory)
    # A crash 30 bytes into the fifth record: it was never acknowledged, so the mark is at 4.
    torn = encode_upsert(5, ["torn"], np.ones((1, 8), np.float32), [()], [""])[:30]
    with open(log_path, "ab") as f:
        f.write(torn)

    with caplog.at_level(logging.ERROR):
        reopened = CollectionStore(tmp_path).get("things")
    assert "cut a torn record off the end" in caplog.text and "30 bytes" in caplog.text
    assert items(reopened) == expected
    (quarantine,) = directory.glob(f"{QUARANTINE_PREFIX}*.bin")
    assert quarantine.name.startswith(f"{QUARANTINE_PREFIX}{5:020d}-") and quarantine.read_bytes() == torn
    reopened.upsert(["after"], np.ones((1, 8)))
    assert "after" in items(CollectionStore(tmp_path).get("things"))
    assert quarantine.exists(), "quarantined bytes are never deleted by the service"


def test_an_acknowledged_write_cut_off_the_log_refuses_the_collection(tmp_path):
    """The case that used to lose writes silently: the last acknowledged record cut short."""
    store = CollectionStore(tmp_path)
    collection = make(store)
    write_a_history(collection)
    expected = items(collection)
    directory = tmp_path / "collections" / "things"
    ((_, log_path),) = list_log_files(directory)
    whole = log_path.read_bytes()
    collection.upsert(["acknowledged"], np.ones((1, 8)))
    cut = log_path.read_bytes()[: len(whole) + 30]
    log_path.write_bytes(cut)

    reopened = CollectionStore(tmp_path)
    assert "records up to 5 were acknowledged" in reopened.failed()["things"]
    info = reopened.describe("things")
    assert (info.state, info.size, info.spec.dimension) == (DAMAGED, 0, 8)
    assert "wal-00000000000000000001.log is damaged" in info.state_reason and str(tmp_path) not in info.state_reason
    with pytest.raises(FailedPrecondition, match="records up to 5 were acknowledged") as damaged:
        reopened.get("things")
    assert damaged.value.reason == Reason.COLLECTION_DAMAGED and str(tmp_path) not in damaged.value.message
    assert log_path.read_bytes() == cut and not list(directory.glob(f"{QUARANTINE_PREFIX}*"))

    # The operator accepts the loss (docs/search-storage.md): a mark at 0 claims nothing.
    high_water_mark.create(directory, seq=0)
    repaired = CollectionStore(tmp_path)
    assert items(repaired.get("things")) == expected
    (quarantine,) = directory.glob(f"{QUARANTINE_PREFIX}*.bin")
    assert quarantine.read_bytes() == cut[len(whole) :]


def test_corruption_in_the_middle_keeps_the_collection_offline(tmp_path):
    store = CollectionStore(tmp_path)
    write_a_history(make(store))
    make(store, name="healthy").upsert(["h"], np.ones((1, 8)))
    (_, log_path), = list_log_files(tmp_path / "collections" / "things")
    data = bytearray(log_path.read_bytes())
    data[40] ^= 0x01  # inside the first record
    log_path.write_bytes(bytes(data))

    reopened = CollectionStore(tmp_path)
    assert "things" in reopened.failed() and "refusing to load" in reopened.failed()["things"]
    with pytest.raises(FailedPrecondition, match="could not be loaded") as damaged:
        reopened.get("things")
    assert damaged.value.reason == Reason.COLLECTION_DAMAGED and damaged.value.metadata == {"collection": "things"}
    with pytest.raises(AlreadyExists):
        reopened.create(CollectionSpec("things", 8, "cosine"))
    assert [(i.spec.name, i.state) for i in reopened.list()] == [("healthy", READY), ("things", DAMAGED)]
    assert "is corrupt at byte" in reopened.describe("things").state_reason
    assert log_path.read_bytes() == bytes(data)
    reopened.delete("things")  # an operator may drop it
    assert reopened.failed() == {} and [i.spec.name for i in reopened.list()] == ["healthy"]


def test_snapshots_then_more_writes_then_reopen(tmp_path):
    directory = tmp_path / "collections" / "things"
    store = CollectionStore(tmp_path, snapshot_every=3)
    collection = make(store)
    for i in range(8):
        collection.upsert([f"item-{i}"], random_vectors(1, 8, seed=i), tags=[[f"t{i % 2}"]])
    collection.delete(["item-0"])  # record 9: a snapshot at 9 covers it
    collection.upsert(["item-9"], random_vectors(1, 8, seed=9))
    expected = items(collection)
    assert [seq for seq, _ in list_snapshots(directory)] == [9]
    assert [first for first, _ in list_log_files(directory)] == [10]

    reopened = CollectionStore(tmp_path, snapshot_every=3)
    assert items(reopened.get("things")) == expected
    assert [h.id for h in reopened.get("things").search(np.zeros(8), 20, TagFilter(all_of=("t1",)))] != []
    reopened.close()
    assert [seq for seq, _ in list_snapshots(directory)] == [10]
    assert all(p.stat().st_size == 0 for _, p in list_log_files(directory))
    assert items(CollectionStore(tmp_path).get("things")) == expected


def test_close_then_reopen_replays_nothing(tmp_path, caplog):
    store = CollectionStore(tmp_path)
    write_a_history(make(store))
    expected = items(store.get("things"))
    store.close()
    with caplog.at_level(logging.INFO, logger=collection_module.__name__):
        reopened = CollectionStore(tmp_path)
    assert "0 log records replayed" in caplog.text
    assert items(reopened.get("things")) == expected


@pytest.mark.parametrize("crash_point", ["before the snapshot is written", "before the old log is removed"])
def test_a_crash_during_a_snapshot_loses_and_repeats_nothing(tmp_path, monkeypatch, crash_point, caplog):
    store = CollectionStore(tmp_path)
    collection = make(store)
    write_a_history(collection)

    class Crash(Exception):
        pass

    def crash(*args, **kwargs):
        raise Crash

    target = (collection_module, "write_snapshot") if crash_point.startswith("before the snapshot") else (
        WriteAheadLog,
        "remove_through",
    )
    monkeypatch.setattr(*target, crash)
    with pytest.raises(Crash):
        collection.snapshot()
    monkeypatch.undo()
    collection.upsert(["late"], np.ones((1, 8)))  # lands in the new log file
    expected = items(collection)

    with caplog.at_level(logging.INFO, logger=collection_module.__name__):
        reopened = CollectionStore(tmp_path)
    assert items(reopened.get("things")) == expected
    replayed = 5 if crash_point.startswith("before the snapshot") else 1  # 4 records + "late", or only "late"
    assert f"{replayed} log records replayed" in caplog.text
    reopened.close()
    directory = tmp_path / "collections" / "things"
    assert len(list_log_files(directory)) == 1 and len(list_snapshots(directory)) == 1
    assert items(CollectionStore(tmp_path).get("things")) == expected


def test_a_snapshot_beside_a_log_it_partly_covers(tmp_path, caplog):
    """A snapshot at record 2 next to an unrotated log of records 1..4: records 1-2 must be skipped."""
    store = CollectionStore(tmp_path)
    collection = make(store)
    collection.upsert(["a"], random_vectors(1, 8))
    collection.upsert(["b"], random_vectors(1, 8, seed=1))
    at_two = items(collection)
    collection.delete(["a"])
    collection.upsert(["c"], random_vectors(1, 8, seed=2))
    expected = items(collection)
    ids = sorted(at_two)
    write_snapshot(
        tmp_path / "collections" / "things",
        SnapshotData(
            seq=2,
            ids=ids,
            vectors=np.array([at_two[i][0] for i in ids], np.float32),
            tags=[at_two[i][1] for i in ids],
            uris=[at_two[i][2] for i in ids],
            timestamps=[0] * len(ids),
            fingerprints=[b""] * len(ids),
        ),
    )
    with caplog.at_level(logging.INFO, logger=collection_module.__name__):
        reopened = CollectionStore(tmp_path)
    assert "2 log records replayed" in caplog.text
    assert items(reopened.get("things")) == expected


@pytest.mark.parametrize("damage", ["a flipped byte", "a directory in its place"])
def test_a_corrupt_snapshot_keeps_the_collection_offline_and_no_message_names_a_path(tmp_path, damage, caplog):
    store = CollectionStore(tmp_path)
    write_a_history(make(store))
    store.close()
    directory = tmp_path / "collections" / "things"
    (_, path), = list_snapshots(directory)
    if damage == "a flipped byte":
        data = bytearray(path.read_bytes())
        data[len(data) // 3] ^= 0xFF
        path.write_bytes(bytes(data))
    else:  # reading it fails with an OSError, whose text names the path
        path.unlink()
        path.mkdir()

    with pytest.raises(SnapshotCorrupted) as corrupted:
        load_latest_snapshot(directory, dimension=8)
    assert corrupted.value.reason == Reason.COLLECTION_DAMAGED
    assert path.name in corrupted.value.message and str(tmp_path) not in corrupted.value.message

    with caplog.at_level(logging.ERROR):
        reopened = CollectionStore(tmp_path)
    assert "things" in reopened.failed()
    assert str(directory) in caplog.text  # the operator finds the path in the server log
    with pytest.raises(FailedPrecondition) as damaged:
        reopened.get("things")
    assert damaged.value.reason == Reason.COLLECTION_DAMAGED
    assert str(tmp_path) not in damaged.value.message and "server log" in damaged.value.message


def test_an_unreadable_spec_keeps_the_collection_offline_without_naming_a_path(tmp_path):
    CollectionStore(tmp_path).create(CollectionSpec("things", 8, "cosine"))
    (tmp_path / "collections" / "things" / "collection.json").unlink()  # its error names the path
    reopened = CollectionStore(tmp_path)
    assert str(tmp_path) in reopened.failed()["things"]  # for the server log
    with pytest.raises(FailedPrecondition) as damaged:
        reopened.get("things")
    assert damaged.value.reason == Reason.COLLECTION_DAMAGED and str(tmp_path) not in damaged.value.message


def test_an_unreadable_spec_is_listed_by_name_only(tmp_path):
    CollectionStore(tmp_path).create(CollectionSpec("things", 8, "cosine"))
    spec_path = tmp_path / "collections" / "things" / "collection.json"
    spec_path.write_text(spec_path.read_text().replace('"dimension": 8', '"dimension": 9'))  # checksummed
    reopened = CollectionStore(tmp_path)
    (info,) = reopened.list()
    assert (info.spec.name, info.spec.dimension, info.state) == ("things", 0, DAMAGED)
    assert info.state_reason == "collection 'things': collection.json is unreadable (ValueError: checksum mismatch)"


def test_a_collection_from_before_high_water_marks_is_upgraded_at_load(tmp_path, caplog):
    store = CollectionStore(tmp_path)
    write_a_history(make(store))
    expected = items(store.get("things"))
    directory = tmp_path / "collections" / "things"
    spec_path = directory / "collection.json"
    legacy = json.loads(spec_path.read_text())
    del legacy["crc32"]
    legacy["format"] = 1
    spec_path.write_text(json.dumps(legacy))  # as the store wrote it before marks existed
    (directory / high_water_mark.FILE_NAME).unlink()

    with caplog.at_level(logging.WARNING):
        upgraded = CollectionStore(tmp_path)
    assert "predates them" in caplog.text
    assert items(upgraded.get("things")) == expected
    assert json.loads(spec_path.read_text())["format"] == 2
    assert high_water_mark.HighWaterMark.open(directory, label="things").seq == 4
    (directory / high_water_mark.FILE_NAME).unlink()  # from now on a lost mark is damage
    assert "high-water mark (high-water) is missing" in CollectionStore(tmp_path).describe("things").state_reason


def test_a_log_that_failed_to_fsync_shows_the_collection_as_damaged(tmp_path, monkeypatch):
    from search_service import write_ahead_log

    store = CollectionStore(tmp_path)
    collection = make(store)
    collection.upsert(["a"], np.ones((1, 8)))

    def failing_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(write_ahead_log.os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        collection.upsert(["b"], np.ones((1, 8)))
    monkeypatch.undo()
    info = store.describe("things")
    assert info.state == DAMAGED and "fsync failed" in info.state_reason and str(tmp_path) not in info.state_reason
    assert [h.id for h in collection.search(np.ones(8), 5)] == ["a"]  # reads still work


def test_files_and_directories_get_private_modes_whatever_the_umask(tmp_path):
    old_umask = os.umask(0o000)  # the most permissive: without explicit modes, files would be 0666
    try:
        store = CollectionStore(tmp_path / "data", snapshot_every=2)
        collection = make(store)
        for i in range(3):
            collection.upsert([f"i{i}"], random_vectors(1, 8, seed=i))
        store.close()
        directory = tmp_path / "data" / "collections" / "things"
        ((_, log_path),) = list_log_files(directory)
        with open(log_path, "ab") as f:  # a torn tail, to make a quarantine file at the next load
            f.write(b"LKW1 torn")
        CollectionStore(tmp_path / "data").close()
    finally:
        os.umask(old_umask)
    paths = [tmp_path / "data", tmp_path / "data" / "collections", *(tmp_path / "data").rglob("*")]
    names = {p.name for p in directory.iterdir()}
    assert any(n.startswith(QUARANTINE_PREFIX) for n in names) and any(n.startswith("snapshot-") for n in names)
    modes = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in paths}
    assert all(mode == ("0o700" if (tmp_path / path).is_dir() else "0o600") for path, mode in modes.items()), modes


# --- scale and concurrency -----------------------------------------------------------------


def test_a_larger_collection_uses_the_tree_index_with_high_recall(tmp_path):
    n, dimension = 25_000, 16
    rng = np.random.default_rng(3)
    centers = rng.standard_normal((60, dimension))
    vectors = (centers[rng.integers(0, 60, n)] + 0.4 * rng.standard_normal((n, dimension))).astype(np.float32)
    tags = [["rare"] if i % 100 == 0 else ["even"] if i % 2 == 0 else [] for i in range(n)]
    store = CollectionStore(tmp_path, fsync=False)
    collection = make(store, dimension=dimension, metric="squared_l2")
    for start in range(0, n, 5_000):
        batch = slice(start, start + 5_000)
        collection.upsert([f"v{i}" for i in range(start, start + 5_000)], vectors[batch], tags[batch])
    collection.wait_for_index()  # rebuilds run in the background
    assert collection.index_kind == "tree_ah"

    queries = vectors[rng.integers(0, n, 100)] + 0.1 * rng.standard_normal((100, dimension)).astype(np.float32)
    recalls, filtered_recalls = [], []
    even = np.arange(0, n, 2)
    for query in queries:
        truth = {f"v{i}" for i in exact_top(vectors, query, "squared_l2", 10)}
        recalls.append(len(truth & {h.id for h in collection.search(query, 10)}) / 10)
        truth = {f"v{even[i]}" for i in exact_top(vectors[even], query, "squared_l2", 10)}
        found = collection.search(query, 10, TagFilter(any_of=("even", "rare")))
        filtered_recalls.append(len(truth & {h.id for h in found}) / 10)
    assert np.mean(recalls) >= 0.95
    assert np.mean(filtered_recalls) >= 0.95
    # A selective filter is scanned exactly, tree or not.
    rare = np.arange(0, n, 100)
    hits = collection.search(queries[0], 10, TagFilter(all_of=("rare",)))
    assert [h.id for h in hits] == [f"v{rare[i]}" for i in exact_top(vectors[rare], queries[0], "squared_l2", 10)]

    reopened = CollectionStore(tmp_path, fsync=False).get("things")  # rebuilt from the log as a tree
    assert reopened.index_kind == "tree_ah" and reopened.info().size == n
    collection.delete([f"v{i}" for i in range(16_000)])
    collection.wait_for_index()
    assert collection.index_kind == "brute_force" and collection.info().size == 9_000


def test_searches_racing_writes_never_see_acknowledged_deletes(store):
    collection = make(store, dimension=8)
    collection.upsert([f"base-{i}" for i in range(1_000)], random_vectors(1_000, 8))
    deleted: set[str] = set()
    deleted_lock = threading.Lock()
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer():
        rng = np.random.default_rng(11)
        round_ = 0
        while not stop.is_set():
            ids = [f"w{round_}-{i}" for i in range(20)]
            vectors = rng.standard_normal((20, 8)).astype(np.float32)
            collection.upsert(ids, vectors, tags=[["fresh"]] * 20)
            assert collection.search(vectors[3], 1)[0].id == ids[3], "an acknowledged upsert is not visible"
            collection.delete(ids[:15])
            with deleted_lock:
                deleted.update(ids[:15])
            round_ += 1

    def searcher(seed):
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            with deleted_lock:
                gone = set(deleted)  # acknowledged before this search starts
            query = rng.standard_normal(8).astype(np.float32)
            tag_filter = TagFilter(all_of=("fresh",)) if rng.random() < 0.3 else None
            hits = collection.search(query, 50, tag_filter)
            stale = gone & {h.id for h in hits}
            assert not stale, f"search returned deleted ids {sorted(stale)[:3]}"

    def guarded(target, *args):
        try:
            target(*args)
        except BaseException as e:  # surfaced by the assertion below
            errors.append(e)
            stop.set()

    threads = [threading.Thread(target=guarded, args=(writer,))] + [
        threading.Thread(target=guarded, args=(searcher, seed)) for seed in range(3)
    ]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    stop.set()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]
    assert len(deleted) > 100
    assert not set(collection._index.ids()) & deleted


def test_a_snapshot_keeps_timestamps_and_fingerprints(tmp_path):
    fingerprints = [b"\x01\x02", b"", b"x" * 1000]
    data = SnapshotData(
        seq=4,
        ids=["a", "b", "c"],
        vectors=np.ones((3, 2), np.float32),
        tags=[(), ("t",), ()],
        uris=["", "u", ""],
        timestamps=[7, 0, -3],
        fingerprints=fingerprints,
    )
    write_snapshot(tmp_path, data)
    loaded = load_latest_snapshot(tmp_path, dimension=2)
    assert loaded.timestamps == [7, 0, -3] and loaded.fingerprints == fingerprints
