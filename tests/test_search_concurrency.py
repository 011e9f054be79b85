"""Searches without a lock: concurrent with each other, with writes and with background
rebuilds. Real collections in tmp_path, real ScaNN, real threads."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from search_service import index_tuning
from search_service.collection import Collection, CollectionSpec, TagFilter
from search_service.collection_store import CollectionStore
from search_service.vector_index import IndexPolicy


def make(tmp_path, policy: IndexPolicy, dimension: int = 16, metric: str = "cosine") -> tuple[CollectionStore, Collection]:
    store = CollectionStore(tmp_path, fsync=False, index_policy=policy)
    store.create(CollectionSpec("things", dimension, metric))
    return store, store.get("things")


def unit(rng: np.random.Generator, n: int, dimension: int) -> np.ndarray:
    vectors = rng.standard_normal((n, dimension)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_acknowledged_writes_are_found_and_deleted_ids_never_return_while_rebuilds_run(tmp_path):
    # A rebuild every 64 writes: compactions and swaps happen all the time under the searches.
    store, collection = make(tmp_path, IndexPolicy(tail_rows=64, tail_fraction=0.0, dead_fraction=0.0))
    dimension = 16
    kept: dict[str, np.ndarray] = {}  # acknowledged and never deleted or changed
    deleted: set[str] = set()  # acknowledged deletes
    book = threading.Lock()
    errors: list[BaseException] = []
    stop = threading.Event()
    tables_seen: set[int] = set()

    def writer(seed: int) -> None:
        rng = np.random.default_rng(seed)
        round_ = 0
        while not stop.is_set():
            keep_ids = [f"keep-{seed}-{round_}-{i}" for i in range(8)]
            doomed_ids = [f"tmp-{seed}-{round_}-{i}" for i in range(8)]
            vectors = unit(rng, 16, dimension)
            collection.upsert(keep_ids + doomed_ids, vectors, tags=[["keep"]] * 8 + [["tmp"]] * 8)
            with book:
                kept.update(zip(keep_ids, vectors[:8]))
            collection.delete(doomed_ids[:6])
            with book:
                deleted.update(doomed_ids[:6])
            round_ += 1

    def searcher(seed: int) -> None:
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            with book:  # everything in here was acknowledged before the searches below start
                if not kept:
                    continue
                item_id = list(kept)[rng.integers(len(kept))]
                vector, gone = kept[item_id], set(deleted)
            tables_seen.add(id(collection._index.state.table))
            assert collection.search(vector, 1)[0].id == item_id, "an acknowledged upsert is missing"
            assert collection.search_batch([vector, vector], 1)[1][0].id == item_id
            assert collection.get([item_id])[0], "an acknowledged upsert is missing from Get"
            broad = collection.search(unit(rng, 1, dimension)[0], 60, TagFilter(any_of=("tmp", "keep")) if seed % 2 else None)
            stale = gone & {h.id for h in broad}
            assert not stale, f"deleted ids came back: {sorted(stale)[:3]}"

    def guarded(target, seed):
        try:
            target(seed)
        except BaseException as e:  # surfaced below
            errors.append(e)
            stop.set()

    threads = [threading.Thread(target=guarded, args=(writer, s)) for s in (1, 2)]
    threads += [threading.Thread(target=guarded, args=(searcher, s)) for s in (10, 11, 12)]
    for thread in threads:
        thread.start()
    time.sleep(3.0)
    stop.set()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]
    assert len(kept) > 200 and len(deleted) > 100
    assert len(tables_seen) >= 3, "the searches should have run across several rebuilt tables"
    collection.wait_for_index()
    present = set(collection._index.ids())
    assert set(kept) <= present and not present & deleted
    store.close()
    reopened = CollectionStore(tmp_path, fsync=False).get("things")  # the log says the same
    assert set(reopened._index.ids()) == present


def test_writes_and_searches_go_on_while_a_rebuild_is_held_and_the_swap_keeps_them(tmp_path, monkeypatch):
    policy = IndexPolicy(brute_force_below=3_000, tail_rows=500, tail_fraction=0.0, recall_target=0.9)
    store, collection = make(tmp_path, policy)
    rng = np.random.default_rng(5)
    base = unit(rng, 4_000, 16)
    collection.upsert([f"b{i}" for i in range(4_000)], base)
    collection.wait_for_index()
    assert collection.index_kind == "tree_ah"

    release, started = threading.Event(), threading.Event()
    real_build = index_tuning.build

    def held_build(*args, **kwargs):
        started.set()
        assert release.wait(30), "the test never released the rebuild"
        return real_build(*args, **kwargs)

    monkeypatch.setattr(index_tuning, "build", held_build)
    fresh = unit(rng, 600, 16)
    collection.upsert([f"f{i}" for i in range(600)], fresh)  # past tail_rows: a rebuild starts
    assert started.wait(10)
    assert collection.info().index.rebuilding
    # While it is held: writes are acknowledged, searches answer and see them.
    during = unit(rng, 50, 16)
    began = time.monotonic()
    collection.upsert([f"d{i}" for i in range(50)], during)
    collection.delete([f"b{i}" for i in range(100)] + ["f0"])
    assert time.monotonic() - began < 5, "a write waited for the rebuild"
    assert collection.search(during[7], 1)[0].id == "d7"
    assert collection.search(fresh[3], 1)[0].id == "f3"
    assert "b5" not in {h.id for h in collection.search(base[5], 10)}
    release.set()
    collection.wait_for_index()
    info = collection.info()
    assert not info.index.rebuilding and info.size == 4_000 + 600 + 50 - 101
    # After the swap: the writes made during the build were carried over.
    assert collection.search(during[7], 1)[0].id == "d7"
    assert {h.id for h in collection.search(base[5], 10)}.isdisjoint({"b5", "f0"})
    assert collection.get(["f0", "b99", "d49"])[1] == ["f0", "b99"]
    store.close()


@pytest.mark.parametrize("metric", ["cosine", "dot_product", "squared_l2"])
def test_batch_search_equals_single_searches(tmp_path, metric):
    # A tuned tree, a tail of recent writes and deleted items: every path of the batched call.
    policy = IndexPolicy(brute_force_below=2_000, tail_rows=10_000, recall_target=0.9)
    store, collection = make(tmp_path, policy, metric=metric)
    rng = np.random.default_rng(8)
    vectors = rng.standard_normal((3_000, 16)).astype(np.float32)
    collection.upsert([f"v{i}" for i in range(2_500)], vectors[:2_500])
    collection.wait_for_index()
    collection.upsert([f"v{i}" for i in range(2_500, 3_000)], vectors[2_500:])  # the tail
    collection.delete([f"v{i}" for i in range(0, 3_000, 7)])
    assert collection.info().index.pending == 500 and collection.index_kind == "tree_ah"
    queries = list(rng.standard_normal((40, 16)).astype(np.float32))
    batched = collection.search_batch(queries, 10)
    for query, hits in zip(queries, batched):
        single = collection.search(query, 10)
        assert [h.id for h in hits] == [h.id for h in single]
        np.testing.assert_allclose([h.score for h in hits], [h.score for h in single], rtol=1e-5, atol=1e-5)
    store.close()


def test_the_tuned_index_reaches_its_recall_target_on_fresh_queries(tmp_path):
    n, dimension = 30_000, 32
    rng = np.random.default_rng(4)
    centres = rng.standard_normal((200, dimension)).astype(np.float32)
    vectors = centres[rng.integers(0, 200, n)] + 0.5 * rng.standard_normal((n, dimension)).astype(np.float32)
    store, collection = make(tmp_path, IndexPolicy(recall_target=0.95), dimension=dimension)
    collection.upsert([f"v{i}" for i in range(n)], vectors)
    collection.wait_for_index()
    index = collection.info().index
    assert index.kind == "tree_ah" and index.estimated_recall >= 0.95
    assert index.leaves_to_search < index.num_leaves, "tuned to the target, not to every leaf"
    queries = centres[rng.integers(0, 200, 200)] + 0.5 * rng.standard_normal((200, dimension)).astype(np.float32)
    normalised = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    recalls = []
    for query in queries:
        truth = set(np.argsort(-(normalised @ query))[:10].tolist())
        found = {int(h.id[1:]) for h in collection.search(query, 10)}
        recalls.append(len(truth & found) / 10)
        exact = {int(h.id[1:]) for h in collection.search(query, 10, exact=True)}
        assert exact == truth
    assert np.mean(recalls) >= 0.93, "held-out estimate and fresh queries should agree within a few points"
    store.close()
