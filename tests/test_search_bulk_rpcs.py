"""SearchBatch, UpsertStream, UpdateItems, ListItems and the index report, over real sockets
(the raw stubs: the contract as any client sees it), with the real encoder service."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from google.protobuf import field_mask_pb2

from lookalike.errors import from_rpc_error
from lookalike.v1 import errors_pb2, images_pb2, search_pb2, search_pb2_grpc


@pytest.fixture
def stub(search_address):
    with grpc.insecure_channel(search_address) as channel:
        yield search_pb2_grpc.SearchStub(channel)


def vector_item(item_id: str, values, tags=(), attributes=None) -> search_pb2.Item:
    return search_pb2.Item(id=item_id, vector=images_pb2.Embedding(values=list(values)), tags=list(tags), attributes=attributes or {})


def refusal(call):
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return from_rpc_error(raised.value)


def test_search_batch_answers_each_search_as_search_does(stub, digit_pngs):
    stub.CreateCollection(search_pb2.CreateCollectionRequest(name="digits"))  # the encoder's model: images work
    items = [search_pb2.Item(id=f"d{i}", image=images_pb2.Image(encoded=png), tags=[f"n:{i % 3}"]) for i, png in enumerate(digit_pngs[:60])]
    stub.Upsert(search_pb2.UpsertRequest(collection="digits", items=items))
    searches = [search_pb2.SearchRequest(collection="digits", image=images_pb2.Image(encoded=digit_pngs[i]), k=5) for i in range(6)]
    searches += [
        search_pb2.SearchRequest(collection="digits", item_id="d7", k=8),
        search_pb2.SearchRequest(collection="digits", item_id="d8", k=8, filter=search_pb2.Filter(all_of=["n:1"])),
        search_pb2.SearchRequest(collection="digits", positive_ids=["d1", "d4"], negative_ids=["d2"], k=4),
    ]
    batch = stub.SearchBatch(search_pb2.SearchBatchRequest(searches=searches))
    assert len(batch.results) == len(searches)
    for request, result in zip(searches, batch.results):
        assert result == stub.Search(request)
    assert batch.results[0].neighbors[0].id == "d0"
    assert {n.id for n in batch.results[8].neighbors}.isdisjoint({"d1", "d4", "d2"})

    bad = refusal(lambda: stub.SearchBatch(search_pb2.SearchBatchRequest(searches=[searches[0], search_pb2.SearchRequest(collection="digits", item_id="d1", k=0)])))
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT and [v.field for v in bad.field_violations] == ["searches[1].k"]
    missing = refusal(lambda: stub.SearchBatch(search_pb2.SearchBatchRequest(searches=[search_pb2.SearchRequest(collection="digits", item_id="zz", k=1)])))
    assert missing.code == grpc.StatusCode.NOT_FOUND and [v.field for v in missing.field_violations] == ["searches[0].item_id"]


def test_upsert_stream_reports_bad_items_and_keeps_the_rest(stub, digit_pngs):
    stub.CreateCollection(search_pb2.CreateCollectionRequest(name="digits"))
    model = stub.GetCollection(search_pb2.GetCollectionRequest(name="digits")).model
    good_vector = images_pb2.Embedding(values=[0.5] * 16, model=model)

    def messages():
        yield search_pb2.UpsertStreamRequest(
            collection="digits",
            items=[search_pb2.Item(id=f"a{i}", image=images_pb2.Image(encoded=png)) for i, png in enumerate(digit_pngs[:5])]
            + [search_pb2.Item(id="broken", image=images_pb2.Image(encoded=b"not an image"))]
            + [search_pb2.Item(id="wrong-length", vector=images_pb2.Embedding(values=[1.0] * 3, model=model))],
        )
        yield search_pb2.UpsertStreamRequest(
            items=[
                search_pb2.Item(id="v1", vector=good_vector, attributes={"price": 3}),
                search_pb2.Item(id="no-model", vector=images_pb2.Embedding(values=[0.5] * 16)),
                search_pb2.Item(id="", vector=good_vector),
                search_pb2.Item(id="a0", vector=good_vector, tags=["replaced"]),  # repeats an id of message 0
                search_pb2.Item(id="nothing"),
            ]
        )

    answers = list(stub.UpsertStream(messages()))
    assert [a.request_index for a in answers] == [0, 1] and [a.upserted for a in answers] == [5, 2]
    first = {f.id: (f.item_index, errors_pb2.ErrorReason.Name(f.reason), f.field) for f in answers[0].failures}
    assert first["broken"][:2] == (5, "IMAGE_UNDECODABLE") and first["broken"][2].startswith("items[5].image")
    assert first["wrong-length"] == (6, "DIMENSION_MISMATCH", "items[6].vector")
    second = {f.item_index: (errors_pb2.ErrorReason.Name(f.reason), f.field) for f in answers[1].failures}
    assert second == {
        1: ("REQUIRED_FIELD_MISSING", "items[1].vector.model"),
        2: ("ID_INVALID", "items[2].id"),
        4: ("REQUIRED_FIELD_MISSING", "items[4]"),
    }
    got = stub.Get(search_pb2.GetRequest(collection="digits", ids=["a0", "a4", "v1", "broken", "no-model"]))
    assert [i.id for i in got.items] == ["a0", "a4", "v1"] and list(got.missing_ids) == ["broken", "no-model"]
    assert list(got.items[0].tags) == ["replaced"] and dict(got.items[2].attributes) == {"price": 3.0}

    def other_collection():
        yield search_pb2.UpsertStreamRequest(collection="digits", items=[search_pb2.Item(id="x", vector=good_vector)])
        yield search_pb2.UpsertStreamRequest(collection="elsewhere", items=[search_pb2.Item(id="y", vector=good_vector)])

    error = refusal(lambda: list(stub.UpsertStream(other_collection())))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and error.field_violations[0].field == "collection"


def test_update_items_list_items_and_the_index_report(stub):
    stub.CreateCollection(search_pb2.CreateCollectionRequest(name="vectors", dimension=4))
    rng = np.random.default_rng(2)
    items = [vector_item(f"v{i:02d}", rng.standard_normal(4), [f"g:{i % 2}"], {"price": float(i)}) for i in range(30)]
    stub.Upsert(search_pb2.UpsertRequest(collection="vectors", items=items))
    info = stub.GetCollection(search_pb2.GetCollectionRequest(name="vectors"))
    assert info.index.kind == search_pb2.IndexInfo.KIND_BRUTE_FORCE and info.index.estimated_recall == 1.0
    assert info.index.indexed + info.index.pending == 30

    mask = field_mask_pb2.FieldMask(paths=["tags", "attributes"])
    updated = stub.UpdateItems(
        search_pb2.UpdateItemsRequest(
            collection="vectors",
            items=[search_pb2.Item(id="v03", tags=["sale"], attributes={"price": 1.5}, uri="ignored: not in the mask")],
            update_mask=mask,
        )
    )
    assert updated.updated == 1
    stored = stub.Get(search_pb2.GetRequest(collection="vectors", ids=["v03"])).items[0]
    assert list(stored.tags) == ["sale"] and dict(stored.attributes) == {"price": 1.5} and stored.uri == ""
    assert list(stored.vector.values) == pytest.approx(list(items[3].vector.values))
    bad_path = refusal(lambda: stub.UpdateItems(search_pb2.UpdateItemsRequest(collection="vectors", items=[search_pb2.Item(id="v03")], update_mask=field_mask_pb2.FieldMask(paths=["vector"]))))
    assert (bad_path.code, bad_path.field_violations[0].field) == (grpc.StatusCode.INVALID_ARGUMENT, "update_mask.paths[0]")
    ghost = refusal(lambda: stub.UpdateItems(search_pb2.UpdateItemsRequest(collection="vectors", items=[search_pb2.Item(id="ghost")], update_mask=mask)))
    assert (ghost.code, ghost.reason, ghost.field_violations[0].field) == (grpc.StatusCode.NOT_FOUND, "ITEM_NOT_FOUND", "items[0].id")

    listed, token = [], ""
    ranges = [search_pb2.AttributeRange(attribute="price", max=20)]
    while True:
        page = stub.ListItems(search_pb2.ListItemsRequest(collection="vectors", filter=search_pb2.Filter(all_of=["g:0"], ranges=ranges), page_size=4, page_token=token))
        assert all(not item.HasField("vector") for item in page.items)
        listed += [item.id for item in page.items]
        token = page.next_page_token
        if not token:
            break
    assert listed == [f"v{i:02d}" for i in range(0, 21, 2)]
    ranged = stub.Search(search_pb2.SearchRequest(collection="vectors", vector=items[0].vector, k=30, filter=search_pb2.Filter(ranges=[search_pb2.AttributeRange(attribute="price", min=25)])))
    assert sorted(n.id for n in ranged.neighbors) == [f"v{i}" for i in range(25, 30)]
    assert all(n.attributes["price"] >= 25 for n in ranged.neighbors)
