"""The search core's compact parts: ids kept as a blob with a hash index, a tree whose hashed
candidates are rescored exactly from the table, and the rebuild that folds a tail in once writes
pause. Real collections in tmp_path, real ScaNN, real threads."""

from __future__ import annotations

import time

import numpy as np

from search_service import index_rebuilder
from search_service.collection_store import CollectionStore
from search_service.collection_types import CollectionSpec
from search_service.item_ids import ItemIds
from search_service.vector_index import IndexPolicy


def test_compact_ids_find_the_newest_slot_through_reindexing_and_compaction():
    # Without ScaNN: the id store alone, against a dict as the reference.
    ids, reference, slots_of = ItemIds(), {}, []
    rng = np.random.default_rng(3)
    for round_ in range(6):
        batch = list(dict.fromkeys(f"id-{rng.integers(0, 300)}-é" for _ in range(120)))  # replaces some, non-ASCII too
        first = len(slots_of)
        ids.append(batch)
        ids.remember(batch, first)
        slots_of += batch
        reference.update(zip(batch, range(first, first + len(batch))))
        if round_ % 2:
            ids.use(ids.sorted_index(len(slots_of)))  # what an in-place rebuild installs
        wanted = list(reference) + ["never-written"]
        assert ids.newest_slots(wanted) == [reference.get(i) for i in wanted]
        assert ids.ids_of(np.arange(len(slots_of))) == slots_of  # many: numpy's way
        assert ids.ids_of(np.arange(len(slots_of))[-5:]) == slots_of[-5:]  # a search's few: one by one
    present = np.array(sorted(reference.values()), np.int64)
    compacted = ids.compacted(present)
    assert compacted.ids_of(np.arange(len(present))) == [slots_of[s] for s in present]
    assert compacted.newest_slots(list(reference)) == [int(np.searchsorted(present, reference[i])) for i in reference]


def test_a_tree_returns_exact_scores_and_get_returns_the_vectors_as_upserted(tmp_path):
    store = CollectionStore(tmp_path, fsync=False, index_policy=IndexPolicy(brute_force_below=1_000, recall_target=0.9))
    store.create(CollectionSpec("things", 16, "cosine"))
    collection = store.get("things")
    rng = np.random.default_rng(5)
    vectors = (rng.standard_normal((3_000, 16)) * rng.uniform(0.1, 10, (3_000, 1))).astype(np.float32)  # not unit length
    collection.upsert([f"v{i}" for i in range(3_000)], vectors)
    collection.wait_for_index()
    assert collection.index_kind == "tree_ah" and collection.info().index.pending == 0
    unit = vectors / np.linalg.norm(vectors.astype(np.float64), axis=1, keepdims=True)
    for query in rng.standard_normal((20, 16)).astype(np.float32):
        hits = collection.search(query, 10)
        exact = unit[[int(h.id[1:]) for h in hits]] @ (query / np.linalg.norm(query.astype(np.float64)))
        np.testing.assert_allclose([h.score for h in hits], exact, rtol=0, atol=1e-5)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    found, missing = collection.get(["v7", "v2999"])
    assert not missing and np.array_equal(found[0].vector, vectors[7]) and np.array_equal(found[1].vector, vectors[2999])
    store.close()


def test_a_tail_left_when_writes_pause_is_folded_into_the_index(tmp_path, monkeypatch):
    monkeypatch.setattr(index_rebuilder, "_SETTLE_SECONDS", 0.2)
    policy = IndexPolicy(brute_force_below=1_000, tail_rows=100, tail_fraction=10.0, recall_target=0.9)  # no tail is due by share
    store = CollectionStore(tmp_path, fsync=False, index_policy=policy)
    store.create(CollectionSpec("things", 16, "cosine"))
    collection = store.get("things")
    rng = np.random.default_rng(6)
    collection.upsert([f"v{i}" for i in range(2_000)], rng.standard_normal((2_000, 16)).astype(np.float32))
    collection.wait_for_index()
    collection.upsert([f"w{i}" for i in range(50)], rng.standard_normal((50, 16)).astype(np.float32))
    time.sleep(1.0)
    assert collection.info().index.pending == 50, "below tail_rows: scanned exactly, no rebuild"
    collection.upsert([f"w{i}" for i in range(50, 150)], rng.standard_normal((100, 16)).astype(np.float32))
    deadline = time.monotonic() + 30
    while collection.info().index.pending and time.monotonic() < deadline:
        time.sleep(0.05)
    info = collection.info().index
    assert info.pending == 0 and info.indexed == 2_150 and info.kind == "tree_ah"
    store.close()
