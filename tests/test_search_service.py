"""The search service over real sockets, calling the real encoder service."""

from __future__ import annotations

import threading
import time
from concurrent import futures

import grpc
import numpy as np
import pytest

from lookalike.client import ItemToUpsert, SearchClient
from lookalike.errors import LookalikeError
from lookalike.v1 import encoder_pb2, encoder_pb2_grpc, images_pb2, search_pb2


def refused(call) -> LookalikeError:
    with pytest.raises(LookalikeError) as raised:
        call()
    return raised.value


def test_embed_upsert_search_returns_the_image_itself_first(search, digit_pngs):
    collection = search.create_collection("digits")  # the encoder's default model, pinned
    assert (collection.dimension, collection.model.name, collection.model.version) == (16, "tiny", 1)
    items = [ItemToUpsert(id=f"d{i}", image=png, tags=[f"n:{i % 3}"], uri=f"file:///d{i}.png") for i, png in enumerate(digit_pngs[:50])]
    assert search.upsert("digits", items) == 50
    for i in (0, 17, 49):
        results = search.search("digits", image=digit_pngs[i], k=5)
        best = results[0]
        assert best.id == f"d{i}" and best.score == pytest.approx(1.0, abs=1e-4)
        assert best.uri == f"file:///d{i}.png" and best.tags == (f"n:{i % 3}",)
        assert (results.model.name, results.model.version, results.metric) == ("tiny", 1, images_pb2.METRIC_COSINE)
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
    assert hits.model.name == "" and hits.metric == images_pb2.METRIC_SQUARED_L2
    got = search.get("vectors", ["b", "zzz"])
    assert [i.id for i in got.items] == ["b"] and list(got.missing_ids) == ["zzz"]
    assert list(got.items[0].vector.values) == [1, 0, 0]
    assert search.delete("vectors", ["a", "zzz"]) == 1
    assert [h.id for h in search.search("vectors", vector=[0, 0, 0], k=5)] == ["b"]


def test_a_vector_must_name_the_model_of_a_collection_that_pins_one(search, encoder, digit_pngs):
    search.create_collection("digits")  # pinned to tiny v1
    vectors, model = encoder.embed(digit_pngs[:2])
    assert search.upsert("digits", [ItemToUpsert(id="a", vector=vectors[0])], model=model) == 1
    assert search.search("digits", vector=vectors[0], model=model, k=1)[0].id == "a"
    stored = search.get("digits", ["a"]).items[0].vector  # names its model: can be searched as is
    assert (stored.model.name, stored.model.version) == ("tiny", 1)

    missing = refused(lambda: search.search("digits", vector=vectors[0], k=1))
    assert (missing.code, missing.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "REQUIRED_FIELD_MISSING")
    assert [v.field for v in missing.field_violations] == ["vector.model"]
    for other in [("tiny", 2), ("other", 1)]:
        mismatch = refused(lambda: search.upsert("digits", [ItemToUpsert(id="b", vector=vectors[1], model=other)]))
        assert (mismatch.code, mismatch.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "MODEL_MISMATCH")
        assert [v.field for v in mismatch.field_violations] == ["items[0].vector.model"]
        assert mismatch.metadata == {"model": "tiny", "version": "1"}
        query = refused(lambda: search.search("digits", vector=vectors[1], model=other, k=1))
        assert query.reason == "MODEL_MISMATCH"
    assert search.get_collection("digits").size == 1


def test_bad_requests_get_clear_status_codes_reasons_and_fields(search, digit_pngs):
    search.create_collection("digits")
    search.create_collection("vectors", dimension=4)
    INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
    cases = [
        (lambda: search.create_collection("digits"), grpc.StatusCode.ALREADY_EXISTS, "COLLECTION_EXISTS", []),
        (lambda: search.create_collection("bad/name", dimension=4), INVALID, "NAME_INVALID", ["name"]),
        (lambda: search.create_collection("m", model="nope"), grpc.StatusCode.FAILED_PRECONDITION, "MODEL_NOT_FOUND", ["model"]),
        (lambda: search.search("missing", vector=[1, 2, 3, 4]), NOT_FOUND, "COLLECTION_NOT_FOUND", []),
        (lambda: search.upsert("vectors", [ItemToUpsert(id="x", vector=[1, 2, 3])]), INVALID, "DIMENSION_MISMATCH", ["items[0].vector"]),
        (lambda: search.search("vectors", vector=[1, 2]), INVALID, "DIMENSION_MISMATCH", ["vector"]),
        (lambda: search.search("vectors", vector=[1, 2, 3, 4], k=0), INVALID, "K_OUT_OF_RANGE", ["k"]),
        (lambda: search.search("vectors", vector=[1, 2, 3, 4], k=1001), INVALID, "K_OUT_OF_RANGE", ["k"]),
        (lambda: search.search("vectors", item_id="ghost"), NOT_FOUND, "ITEM_NOT_FOUND", ["item_id"]),
        (lambda: search.upsert("vectors", [ItemToUpsert(id="x", image=digit_pngs[0])]), grpc.StatusCode.FAILED_PRECONDITION, "COLLECTION_HAS_NO_MODEL", ["items[0].image"]),
        (
            lambda: search.upsert("digits", [ItemToUpsert(id="ok", image=digit_pngs[0]), ItemToUpsert(id="bad", image=b"GIF89a broken")]),
            INVALID,
            "IMAGE_UNDECODABLE",
            ["items[1].image.encoded"],
        ),
        (lambda: search.search("digits", image=b""), INVALID, "IMAGE_EMPTY", ["image.encoded"]),
        (lambda: search.upsert("vectors", [ItemToUpsert(id="", vector=[1, 2, 3, 4])]), INVALID, "ID_INVALID", ["items[0].id"]),
        (lambda: search.upsert("vectors", [ItemToUpsert(id="n", vector=[np.nan, 2, 3, 4])]), INVALID, "VALUES_NOT_FINITE", ["items[0].vector"]),
        (lambda: search.upsert("vectors", [ItemToUpsert(id="h", vector=[3e38, 0, 0, 0])]), INVALID, "VALUES_TOO_LARGE", ["items[0].vector"]),
        (lambda: search.search("vectors", vector=[0, 3e38, 0, 0]), INVALID, "VALUES_TOO_LARGE", ["vector"]),
        (lambda: search.get("vectors", [str(i) for i in range(1001)]), INVALID, "BATCH_TOO_LARGE", ["ids"]),
        (lambda: search.upsert("vectors", [ItemToUpsert(id=str(i), vector=[1, 2, 3, 4]) for i in range(257)]), INVALID, "BATCH_TOO_LARGE", ["items"]),
        (lambda: search.upsert("vectors", [ItemToUpsert(id="z")]), INVALID, "REQUIRED_FIELD_MISSING", ["items[0]"]),
    ]
    for call, code, reason, fields in cases:
        error = refused(call)
        assert (error.code, error.reason) == (code, reason), (reason, error)
        assert [v.field for v in error.field_violations] == fields, (reason, error.field_violations)
    assert search.get_collection("digits").size == 0  # the refused batch wrote nothing
    search.upsert("vectors", [ItemToUpsert(id="fine", vector=[1, 2, 3, 4])])
    assert search.search("vectors", vector=[1, 2, 3, 4], k=1)[0].id == "fine"


def test_every_bad_image_of_a_batch_is_named_in_the_callers_terms(search, digit_pngs):
    search.create_collection("digits")
    items = [ItemToUpsert(id="v", vector=np.ones(16), model=("tiny", 1))]
    items += [ItemToUpsert(id=f"i{i}", image=data) for i, data in enumerate([digit_pngs[0], b"", digit_pngs[1], b"junk"])]
    error = refused(lambda: search.upsert("digits", items))
    assert [(v.field, v.reason) for v in error.field_violations] == [
        ("items[2].image.encoded", "IMAGE_EMPTY"),
        ("items[4].image.encoded", "IMAGE_UNDECODABLE"),
    ]


def test_creates_and_deletes_can_be_retried(search):
    first = search.create_collection("shop", dimension=8, allow_existing=True)
    again = search.create_collection("shop", dimension=8, allow_existing=True)
    assert first == again
    other = refused(lambda: search.create_collection("shop", dimension=9, allow_existing=True))
    assert (other.code, other.reason) == (grpc.StatusCode.ALREADY_EXISTS, "COLLECTION_EXISTS")
    search.delete_collection("shop", allow_missing=True)
    search.delete_collection("shop", allow_missing=True)  # gone already: still fine
    gone = refused(lambda: search.delete_collection("shop"))
    assert (gone.code, gone.reason, gone.metadata) == (grpc.StatusCode.NOT_FOUND, "COLLECTION_NOT_FOUND", {"collection": "shop"})


def test_a_retried_create_with_version_0_matches_the_version_it_pinned(search, encoder, model_repository):
    from tests.onnx_factory import write_linear_model

    pinned = search.create_collection("shop", model="tiny", allow_existing=True)
    write_linear_model(model_repository, version=2, seed=1)
    deadline = time.monotonic() + 10
    while encoder.get_model("tiny").model.version != 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    again = search.create_collection("shop", model="tiny", allow_existing=True)  # the newest is v2 now
    assert again.model.version == pinned.model.version == 1


class _SlowEncoder(encoder_pb2_grpc.EncoderServicer):
    """A stand-in encoder that records how much of the deadline each Embed call got."""

    def __init__(self) -> None:
        self.time_remaining: list[float] = []
        self.seen = threading.Event()

    def GetModel(self, request, context):
        return encoder_pb2.ModelInfo(model=images_pb2.ModelRef(name="slow", version=1), embedding_dim=2, metric=images_pb2.METRIC_COSINE)

    def Embed(self, request, context):
        self.time_remaining.append(context.time_remaining())
        self.seen.set()
        time.sleep(min(context.time_remaining(), 5))
        context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "too slow")


def test_the_callers_deadline_travels_to_the_encoder(tmp_path):
    from search_service.server import create_server
    from search_service.settings import SearchSettings

    slow = _SlowEncoder()
    encoder_server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    encoder_pb2_grpc.add_EncoderServicer_to_server(slow, encoder_server)
    encoder_port = encoder_server.add_insecure_port("127.0.0.1:0")
    encoder_server.start()
    settings = SearchSettings(host="127.0.0.1", port=0, data_dir=tmp_path / "data", encoder_address=f"127.0.0.1:{encoder_port}")
    server, port = create_server(settings)
    server.start()
    try:
        with SearchClient(f"127.0.0.1:{port}") as client:
            client.create_collection("c", model="slow")
            started = time.monotonic()
            error = refused(lambda: client.search("c", image=b"any bytes", k=1, timeout=1.5))
            assert error.code == grpc.StatusCode.DEADLINE_EXCEEDED
            assert time.monotonic() - started < 3  # not the 30 s cap
            assert slow.seen.wait(5)
            assert 0 < slow.time_remaining[0] < 2  # the caller's 1.5 s (gRPC rounds it up a little), not 30 s
    finally:
        server.stop(None)
        encoder_server.stop(None)


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
    assert refused(lambda: search.delete_collection("a")).code == grpc.StatusCode.NOT_FOUND


def test_get_takes_at_most_max_get_ids_ids(search):
    search.create_collection("vectors", dimension=2)
    search.upsert("vectors", [ItemToUpsert(id="a", vector=[1, 0])])
    got = search.get("vectors", ["a"] + [f"missing-{i}" for i in range(999)])  # 1000: the default limit
    assert [i.id for i in got.items] == ["a"] and len(got.missing_ids) == 999
    error = refused(lambda: search.get("vectors", ["a"] * 1001))
    assert (error.code, error.reason, error.metadata) == (grpc.StatusCode.INVALID_ARGUMENT, "BATCH_TOO_LARGE", {"limit": "1000"})
    assert [v.field for v in error.field_violations] == ["ids"]


def test_a_damaged_collection_is_listed_with_its_reason_while_the_others_are_served(search_settings):
    from grpc_health.v1 import health_pb2

    from search_service.server import create_server

    server, port = create_server(search_settings)
    server.start()
    with SearchClient(f"127.0.0.1:{port}") as client:
        for name in ("kept", "broken"):
            client.create_collection(name, dimension=2)
            client.upsert(name, [ItemToUpsert(id=str(i), vector=[1, i]) for i in range(10)])  # 10 records each
            for i in range(10, 20):
                client.upsert(name, [ItemToUpsert(id=str(i), vector=[1, i])])
    server.stop(None)  # no clean shutdown: the writes are in the logs only
    directory = search_settings.data_dir / "collections" / "broken"
    (log,) = directory.glob("wal-*.log")
    log.write_bytes(log.read_bytes()[: log.stat().st_size // 2])  # the disk loses the second half

    server, port = create_server(search_settings)
    server.start()
    try:
        with SearchClient(f"127.0.0.1:{port}") as client:
            client.wait_until_serving(10)  # one damaged collection does not take the others out of rotation
            health = client._health.Check(health_pb2.HealthCheckRequest(service="lookalike.v1.Search"))
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            broken = client.get_collection("broken")
            assert (broken.state, broken.dimension, broken.size) == (search_pb2.Collection.STATE_DAMAGED, 2, 0)
            assert "records up to 11 were acknowledged" in broken.state_reason
            assert str(search_settings.data_dir) not in broken.state_reason and "/" not in broken.state_reason
            assert {c.name: c.state for c in client.list_collections()} == {
                "broken": search_pb2.Collection.STATE_DAMAGED,
                "kept": search_pb2.Collection.STATE_READY,
            }
            assert client.get_collection("kept").state_reason == ""
            for call in (
                lambda: client.search("broken", vector=[1, 0], k=1),
                lambda: client.upsert("broken", [ItemToUpsert(id="x", vector=[1, 0])]),
                lambda: client.get("broken", ["1"]),
            ):
                error = refused(call)
                assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "COLLECTION_DAMAGED")
                assert str(search_settings.data_dir) not in error.message
            assert client.get_collection("kept").size == 20
            assert client.search("kept", vector=[1, 19], k=1)[0].id == "19"
            client.delete_collection("broken")  # an operator may drop it
            assert [c.name for c in client.list_collections()] == ["kept"]
    finally:
        server.stop(None)
