"""The search service over real sockets, calling the real encoder service."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from lookalike.client import ItemToUpsert, SearchClient
from lookalike.v1 import images_pb2


def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code(), raised.value.details()


def test_embed_upsert_search_returns_the_image_itself_first(search, digit_pngs):
    collection = search.create_collection("digits")  # the encoder's default model, pinned
    assert (collection.dimension, collection.model.name, collection.model.version) == (16, "tiny", 1)
    items = [ItemToUpsert(id=f"d{i}", image=png, tags=[f"n:{i % 3}"], uri=f"file:///d{i}.png") for i, png in enumerate(digit_pngs[:50])]
    assert search.upsert("digits", items) == 50
    for i in (0, 17, 49):
        best = search.search("digits", image=digit_pngs[i], k=5)[0]
        assert best.id == f"d{i}" and best.score == pytest.approx(1.0, abs=1e-4)
        assert best.uri == f"file:///d{i}.png" and best.tags == (f"n:{i % 3}",)
    assert search.get_collection("digits").size == 50


def test_search_by_item_id_leaves_the_item_out_and_filters_apply(search, digit_pngs):
    search.create_collection("digits")
    search.upsert("digits", [ItemToUpsert(id=f"d{i}", image=png, tags=[f"n:{i % 3}"]) for i, png in enumerate(digit_pngs[:60])])
    by_id = search.search("digits", item_id="d3", k=10)
    assert len(by_id) == 10 and "d3" not in {n.id for n in by_id}
    filtered = search.search("digits", image=digit_pngs[3], k=10, all_of=["n:1"])
    assert len(filtered) == 10 and all(n.tags == ("n:1",) for n in filtered)
    excluded = search.search("digits", image=digit_pngs[3], k=60, none_of=["n:0"])
    assert len(excluded) == 40 and "d3" not in {n.id for n in excluded}


def test_vectors_get_delete_and_metrics(search):
    search.create_collection("vectors", dimension=3, metric=images_pb2.METRIC_SQUARED_L2)
    search.upsert("vectors", [ItemToUpsert(id="a", vector=[0, 0, 0]), ItemToUpsert(id="b", vector=[1, 0, 0])])
    hits = search.search("vectors", vector=[0.9, 0, 0], k=2)
    assert [h.id for h in hits] == ["b", "a"] and hits[0].score == pytest.approx(0.01, abs=1e-5)
    got = search.get("vectors", ["b", "zzz"])
    assert [i.id for i in got.items] == ["b"] and list(got.missing_ids) == ["zzz"]
    assert list(got.items[0].vector.values) == [1, 0, 0]
    assert search.delete("vectors", ["a", "zzz"]) == 1
    assert [h.id for h in search.search("vectors", vector=[0, 0, 0], k=5)] == ["b"]


def test_bad_requests_get_clear_status_codes_and_the_server_keeps_serving(search, digit_pngs):
    search.create_collection("digits")
    search.create_collection("vectors", dimension=4)
    cases = [
        (lambda: search.create_collection("digits"), grpc.StatusCode.ALREADY_EXISTS, "digits"),
        (lambda: search.create_collection("bad/name", dimension=4), grpc.StatusCode.INVALID_ARGUMENT, "name"),
        (lambda: search.create_collection("m", model="nope"), grpc.StatusCode.FAILED_PRECONDITION, "nope"),
        (lambda: search.search("missing", vector=[1, 2, 3, 4]), grpc.StatusCode.NOT_FOUND, "missing"),
        (lambda: search.upsert("vectors", [ItemToUpsert(id="x", vector=[1, 2, 3])]), grpc.StatusCode.INVALID_ARGUMENT, "items[0].vector has dimension 3"),
        (lambda: search.search("vectors", vector=[1, 2]), grpc.StatusCode.INVALID_ARGUMENT, "dimension"),
        (lambda: search.search("vectors", vector=[1, 2, 3, 4], k=0), grpc.StatusCode.INVALID_ARGUMENT, "k must be between 1 and 1000"),
        (lambda: search.search("vectors", item_id="ghost"), grpc.StatusCode.NOT_FOUND, "ghost"),
        (lambda: search.upsert("vectors", [ItemToUpsert(id="x", image=digit_pngs[0])]), grpc.StatusCode.FAILED_PRECONDITION, "no encoder model"),
        (
            lambda: search.upsert("digits", [ItemToUpsert(id="ok", image=digit_pngs[0]), ItemToUpsert(id="bad", image=b"GIF89a broken")]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "items[1].image: ",
        ),
        (lambda: search.search("digits", image=b""), grpc.StatusCode.INVALID_ARGUMENT, "image: empty image"),
        (lambda: search.upsert("vectors", [ItemToUpsert(id="", vector=[1, 2, 3, 4])]), grpc.StatusCode.INVALID_ARGUMENT, "id"),
        (lambda: search.upsert("vectors", [ItemToUpsert(id="n", vector=[np.nan, 2, 3, 4])]), grpc.StatusCode.INVALID_ARGUMENT, "items[0]"),
        (lambda: search.upsert("vectors", [ItemToUpsert(id=str(i), vector=[1, 2, 3, 4]) for i in range(257)]), grpc.StatusCode.RESOURCE_EXHAUSTED, "257"),
    ]
    for call, code, detail in cases:
        got_code, got_detail = code_of(call)
        assert got_code == code and detail in got_detail, (code, detail, got_code, got_detail)
    assert search.get_collection("digits").size == 0  # the refused batch wrote nothing
    search.upsert("vectors", [ItemToUpsert(id="fine", vector=[1, 2, 3, 4])])
    assert search.search("vectors", vector=[1, 2, 3, 4], k=1)[0].id == "fine"


def test_acknowledged_writes_survive_a_restart_without_clean_shutdown(search_settings, encoder_address):
    from search_service.server import create_server

    server, port = create_server(search_settings)
    server.start()
    with SearchClient(f"127.0.0.1:{port}") as client:
        client.create_collection("v", dimension=2)
        client.upsert("v", [ItemToUpsert(id=str(i), vector=[1, i]) for i in range(10)])
        client.delete("v", ["3"])
    server.stop(None)  # no store.close(): no snapshot, as after a crash

    server, port = create_server(search_settings)
    server.start()
    try:
        with SearchClient(f"127.0.0.1:{port}") as client:
            client.wait_until_serving(10)
            assert client.get_collection("v").size == 9
            assert client.search("v", item_id="9", k=1)[0].id == "8"
            assert list(client.get("v", ["3"]).missing_ids) == ["3"]
    finally:
        server.stop(None)


def test_collections_list_and_delete(search):
    search.create_collection("b", dimension=2)
    search.create_collection("a", dimension=2)
    assert [c.name for c in search.list_collections()] == ["a", "b"]
    search.delete_collection("a")
    assert [c.name for c in search.list_collections()] == ["b"]
    assert code_of(lambda: search.delete_collection("a"))[0] == grpc.StatusCode.NOT_FOUND
