"""Reindex and the migration report (issue 13), on real servers: a collection re-embedded by a new
model version under concurrent searches and writes, the report against a recomputation, the alias
switch and its rollback, and the refusals."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from copy_detection.copy_edits import copies
from lookalike.client import ItemToUpsert
from lookalike.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from lookalike.v1 import search_pb2
from search_service import migration_report
from tests.onnx_factory import write_linear_model

NEW_DIM = 12  # the new version makes embeddings of another size: the new collection follows it


@pytest.fixture
def two_versions(model_repository):
    """tiny v1 (16-d, from conftest) and tiny v2 (12-d, other weights), before the encoder starts."""
    write_linear_model(model_repository, version=2, dim=NEW_DIM, seed=1)
    return model_repository


def pictures(count: int, seed: int = 0) -> list[bytes]:
    """Distinct greyscale 28x28 pictures: blocks of noise, so edited copies stay findable."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        small = rng.integers(0, 256, (7, 7), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(small).resize((28, 28), Image.NEAREST).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def fill(search, name: str, count: int, **options) -> dict[str, bytes]:
    search.create_collection(name, model="tiny", version=1, keep_sources=True, **options)
    items = {f"item-{n:05d}": picture for n, picture in enumerate(pictures(count))}
    ids = list(items)
    for start in range(0, len(ids), 64):
        batch = [ItemToUpsert(id=i, image=items[i], tags=[f"class:{int(i[-5:]) % 7}"]) for i in ids[start : start + 64]]
        search.upsert(name, batch)
    return items


def embedded(encoder, pictures: list[bytes], version: int) -> np.ndarray:
    rows = [encoder.embed(pictures[start : start + 64], model="tiny", version=version).vectors for start in range(0, len(pictures), 64)]
    return np.concatenate(rows)


def test_a_reindex_under_searches_and_writes_copies_every_item_with_the_new_version(two_versions, search, encoder):
    items = fill(search, "shop-v1", 2000)
    search.create_alias("shop", "shop-v1")
    query = pictures(1, seed=99)[0]
    failures, searches, stop = [], [0], threading.Event()

    def searching() -> None:
        while not stop.is_set():
            try:
                search.search("shop", image=query, k=5)
                searches[0] += 1
            except Exception as error:  # noqa: BLE001 - every failure is the finding
                failures.append(error)

    written: dict[str, bytes] = {}
    deleted: list[str] = []

    def writing() -> None:
        extra = pictures(120, seed=7)
        try:
            for n in range(0, 120, 8):
                batch = {f"new-{n + k:03d}": extra[n + k] for k in range(8)}
                search.upsert("shop", [ItemToUpsert(id=i, image=p, tags=["class:new"]) for i, p in batch.items()])
                written.update(batch)
                gone = [f"item-{n * 3 + k:05d}" for k in range(3)]
                search.delete("shop", gone)
                deleted.extend(gone)
            search.update_items("shop", [ItemToUpsert(id="item-01999", tags=["class:changed"])], ["tags"])
        except Exception as error:  # noqa: BLE001 - a write that fails (or times out) during a reindex is the finding
            failures.append(error)

    threads = [threading.Thread(target=searching), threading.Thread(target=writing)]
    for thread in threads:
        thread.start()
    operation = search.start_reindex("shop", "tiny", 2, switch_alias="shop", max_images_per_second=20_000)
    assert operation.name.startswith("operations/") and operation.target_collection == "shop-v1.tiny-v2"
    threads[1].join(120)
    assert not threads[1].is_alive(), "the writes finished"
    done = search.wait_for_operation(operation.name, timeout=300)
    stop.set()
    threads[0].join(30)

    assert done.state == search_pb2.Operation.STATE_SUCCEEDED, done.error_message
    assert done.switched and search.get_collection("shop").name == "shop-v1.tiny-v2"
    assert not failures and searches[0] > 0, f"{len(failures)} searches or writes failed: {failures[:1]}"
    expected = {i: p for i, p in {**items, **written}.items() if i not in set(deleted)}
    copied = {item.id: item for item in search.iter_items("shop-v1.tiny-v2", with_vectors=True, page_size=1000)}
    assert copied.keys() == expected.keys(), "every live item, no deleted one, the writes made meanwhile too"
    ids = sorted(expected)
    vectors = np.array([copied[i].vector.values for i in ids], np.float32)
    assert vectors.shape == (len(ids), NEW_DIM)
    assert np.allclose(vectors, embedded(encoder, [expected[i] for i in ids], 2), atol=1e-5), "embedded by the new version"
    assert list(copied["item-01999"].tags) == ["class:changed"] and list(copied["new-000"].tags) == ["class:new"]
    assert done.items_without_source == 0 and done.report.sample_size == 200


def test_the_migration_report_equals_a_recomputation_and_the_rollback_is_one_call(two_versions, search, encoder):
    items = fill(search, "small", 60)
    search.upsert("small", [ItemToUpsert(id="as-vector", vector=np.ones(16, np.float32))], model=("tiny", 1))  # keeps no picture
    search.create_alias("live", "small")
    operation = search.start_reindex("live", "tiny", 0, switch_alias="live", report_sample=1000, label_prefix="class:")
    done = search.wait_for_operation(operation.name, timeout=120)
    assert done.state == search_pb2.Operation.STATE_SUCCEEDED, done.error_message
    assert done.model.version == 2, "version 0 is pinned to the newest"
    assert done.items_without_source == 1 and list(done.ids_without_source) == ["as-vector"]
    report = done.report
    assert report.sample_size == 60 and report.png.startswith(b"\x89PNG") and "| copy recall@1, every edit |" in report.table

    ids = sorted(items)
    before = {i: np.array(v.vector.values) for i, v in zip(ids, search.get("small", ids).items)}
    after = {i: np.array(v.vector.values) for i, v in zip(ids, search.get(done.target_collection, ids).items)}
    before["as-vector"] = np.ones(16)  # a neighbour in the old collection, absent from the new one
    tags = {i: f"class:{int(i[-5:]) % 7}" for i in ids}

    def nearest(vectors: dict, query: np.ndarray, k: int, exclude: str = "") -> list[tuple[str, float]]:
        names = [i for i in vectors if i != exclude]
        matrix = np.array([vectors[i] for i in names])
        scores = matrix @ query / np.linalg.norm(matrix, axis=1) / np.linalg.norm(query)
        order = np.argsort(-scores, kind="stable")[:k]
        return [(names[j], float(scores[j])) for j in order]

    old = {i: nearest(before, before[i], 10, i) for i in ids}
    new = {i: nearest(after, after[i], 10, i) for i in ids}
    overlap = np.mean([len({a for a, _ in old[i]} & {b for b, _ in new[i]}) / 10 for i in ids])
    assert report.neighbour_overlap_at_10 == pytest.approx(overlap, abs=1e-6)
    for figures, found in ((report.before, old), (report.after, new)):
        expected_scores = np.percentile([found[i][0][1] for i in ids], migration_report.PERCENTILES)
        assert list(figures.nearest_score_percentiles) == pytest.approx(expected_scores, abs=1e-4)
        precision = np.mean([np.mean([tags.get(n) == tags[i] for n, _ in found[i]]) for i in ids])
        assert figures.precision_at_10 == pytest.approx(precision, abs=1e-6)
    originals = [Image.open(io.BytesIO(items[i])) for i in ids]
    for figures, vectors, version in ((report.before, before, 1), (report.after, after, 2)):
        recalls = []
        for edit in report.edits:
            edited = [migration_report._png(c) for c in copies(originals, edit, migration_report.SEED)]
            queries = embedded(encoder, edited, version)
            recalls.append(np.mean([nearest(vectors, q, 1)[0][0] == i for i, q in zip(ids, queries)]))
        assert list(figures.copy_recall_by_edit) == pytest.approx(recalls, abs=1e-6)
        assert figures.copy_recall_at_1 == pytest.approx(np.mean(recalls), abs=1e-6)

    switched = search.list_aliases()[0]
    assert (switched.collection, switched.previous_collection) == (done.target_collection, "small")
    late = pictures(1, seed=42)[0]
    search.upsert("live", [ItemToUpsert(id="after-switch", image=late)])  # lands in v2's collection...
    search.delete("live", ["item-00001"])
    search.switch_alias("live", switched.previous_collection)  # the rollback
    assert search.get_collection("live").name == "small"
    [kept] = search.get("live", ["after-switch"]).items  # ...and is in v1's too, embedded by v1
    assert np.allclose(kept.vector.values, embedded(encoder, [late], 1)[0], atol=1e-5)
    assert list(search.get("live", ["item-00001"]).missing_ids) == ["item-00001"]
    assert search.search("live", image=late, k=1)[0].id == "after-switch"


def test_a_policy_that_fails_leaves_the_alias_and_the_refusals_name_their_field(two_versions, search, encoder):
    fill(search, "strict", 30)
    search.create_alias("strict-alias", "strict")
    # v3 makes 1-d embeddings: every picture is one of two points, so copies are not told apart.
    write_linear_model(two_versions, version=3, dim=1, seed=2)
    deadline = time.monotonic() + 30
    while not any(m.model.version == 3 for m in encoder.list_models()):
        assert time.monotonic() < deadline, "the encoder did not load v3"
        time.sleep(0.1)
    operation = search.start_reindex("strict-alias", "tiny", 3, switch_alias="strict-alias", require_no_worse_copy_recall=True, max_copy_recall_drop=0.05)
    done = search.wait_for_operation(operation.name, timeout=120)
    assert done.state == search_pb2.Operation.STATE_SUCCEEDED and not done.report.passes_policy
    assert done.report.after.copy_recall_at_1 < done.report.before.copy_recall_at_1 - 0.05
    assert not done.switched and "copy recall@1 falls" in done.switch_refused
    assert search.get_collection("strict-alias").name == "strict"
    search.create_collection("no-sources", model="tiny", version=1)
    with pytest.raises(FailedPrecondition) as refused:
        search.start_reindex("no-sources", "tiny", 2)
    assert refused.value.reason == "SOURCES_NOT_KEPT"
    with pytest.raises(AlreadyExists) as taken:
        search.start_reindex("strict", "tiny", 2, target_collection="no-sources")
    assert taken.value.field_violations[0].field == "target_collection"
    with pytest.raises(InvalidArgument) as invalid:
        search.start_reindex("strict", "tiny", 2, max_copy_recall_drop=2.0)
    assert invalid.value.field_violations[0].field == "policy.max_copy_recall_drop"
    with pytest.raises(InvalidArgument):
        search.start_reindex("strict", "", 2)
    assert [o.name for o in search.list_operations()][-1] == operation.name
