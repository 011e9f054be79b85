"""Router mode against a single service: three shards (one with two replicas, one a child process
that is killed with SIGKILL and restarted) behind a router, all on real loopback sockets, and one
single-mode service holding the same items. Every read through the router must equal the single
service's answer (exact search, so neither side's index decides), every write must land on the
shard placement.py names, on every replica; a shard that is down is UNAVAILABLE (SHARD_UNAVAILABLE)
or, with allow_partial, a partial answer; a replica that is down leaves its peer to answer reads.
The tests of one module share the deployment and run in order: the destructive ones come last.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest

from encoder_service.server import create_server as create_encoder_server
from encoder_service.settings import EncoderSettings
from lookalike import errors
from lookalike.client import ItemToUpsert, SearchClient, new_channel, search_request, to_item_message
from lookalike.v1 import images_pb2, search_pb2, search_pb2_grpc
from search_service.router.placement import shard_of
from search_service.server import create_server
from search_service.settings import SearchSettings
from server_toolkit.auth import hash_token
from tests.onnx_factory import write_linear_model

ROOT = Path(__file__).resolve().parent.parent
DIM = 16
ITEMS = 3000
SHARDS = 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ShardProcess:
    """`lookalike serve-search` in a child process on a fixed port, so a restart comes back at the same address."""

    def __init__(self, data_dir: Path, encoder_address: str) -> None:
        self.data_dir, self.encoder_address = data_dir, encoder_address
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.start()

    def start(self) -> None:
        flags = ["--host", "127.0.0.1", "--port", str(self.port), "--data-dir", str(self.data_dir), "--encoder-address", self.encoder_address]
        with open(self.data_dir.with_suffix(".log"), "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lookalike_cli.main", "serve-search", *flags, "--log-level", "INFO"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        # A channel of its own subchannels: the test's other channels to this address went into
        # gRPC's growing reconnect backoff when the process was killed, and would hold this one back.
        with SearchClient(new_channel(self.address, reconnect_seconds=1.0), timeout=30) as client:
            try:
                client.wait_until_serving(60)
            except TimeoutError:
                pytest.fail(f"the shard did not start: {self.data_dir.with_suffix('.log').read_text()[-3000:]}")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """(router stub, single-service stub, the in-process servers by name, the shard process)."""
    root = tmp_path_factory.mktemp("sharding")
    write_linear_model(root / "models")
    write_linear_model(root / "models", version=2, dim=12, seed=1)  # for the reindex
    encoder, encoder_port = create_encoder_server(EncoderSettings(host="127.0.0.1", port=0, model_repository=root / "models", refresh_seconds=0))
    encoder.start()
    encoder_address = f"127.0.0.1:{encoder_port}"

    def service(name: str, **settings) -> tuple[grpc.Server, str]:
        server, port = create_server(
            SearchSettings(host="127.0.0.1", port=0, data_dir=root / name, encoder_address=encoder_address, fsync=False, **settings)
        )
        server.start()
        return server, f"127.0.0.1:{port}"

    servers = {name: service(name) for name in ("single", "s0a", "s0b", "s1")}
    child = ShardProcess(root / "s2", encoder_address)
    shards = f"{servers['s0a'][1]}|{servers['s0b'][1]},{servers['s1'][1]},{child.address}"
    servers["router"] = service("router-has-no-data", mode="router", shards=shards)
    channels = {name: grpc.insecure_channel(address) for name, (_, address) in servers.items()}
    channels["s2"] = grpc.insecure_channel(child.address)
    stubs = {name: search_pb2_grpc.SearchStub(channel) for name, channel in channels.items()}
    yield stubs, servers, child
    if child.process.poll() is None:
        child.kill()
    for server, _ in servers.values():
        server.stop(None)
    encoder.stop(None)
    assert not (root / "router-has-no-data").exists(), "a router keeps nothing on disk"


def items(count: int, seed: int = 0, prefix: str = "item") -> list[search_pb2.Item]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, DIM))
    vectors = centres[rng.integers(0, 20, count)] + 0.3 * rng.normal(size=(count, DIM))
    return [
        to_item_message(
            ItemToUpsert(
                id=f"{prefix}-{n:05d}",
                vector=vectors[n],
                tags=[f"family:{n % 37}", "even" if n % 2 == 0 else "odd"],
                attributes={"price": float(n % 100)},
            )
        )
        for n in range(count)
    ]


def both(deployment, method: str, request):
    """(router's answer, single service's answer) to the same request."""
    stubs = deployment[0]
    return getattr(stubs["router"], method)(request, timeout=30), getattr(stubs["single"], method)(request, timeout=30)


def refusal(call) -> errors.LookalikeError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return errors.from_rpc_error(raised.value)


def same_neighbors(routed: search_pb2.SearchResponse, single: search_pb2.SearchResponse) -> None:
    assert single.neighbors, "a comparison of two empty answers would prove nothing"
    assert [n.id for n in routed.neighbors] == [n.id for n in single.neighbors]
    np.testing.assert_allclose([n.score for n in routed.neighbors], [n.score for n in single.neighbors], rtol=1e-5, atol=1e-5)
    assert [list(n.tags) for n in routed.neighbors] == [list(n.tags) for n in single.neighbors]
    assert not routed.partial and not single.partial


def test_writes_land_on_the_shard_the_hash_names_on_every_replica(deployment):
    stubs = deployment[0]
    for metric, name in ((images_pb2.METRIC_COSINE, "shop"), (images_pb2.METRIC_SQUARED_L2, "geo")):
        created, _ = both(deployment, "CreateCollection", search_pb2.CreateCollectionRequest(name=name, dimension=DIM, metric=metric))
        assert created.dimension == DIM and created.size == 0
    catalogue = items(ITEMS)
    for name in ("shop", "geo"):
        for start in range(0, ITEMS, 250):
            routed, single = both(deployment, "Upsert", search_pb2.UpsertRequest(collection=name, items=catalogue[start : start + 250]))
            assert routed.upserted == single.upserted == len(catalogue[start : start + 250])
    ids = [item.id for item in catalogue]
    owners = ["s0a", "s1", "s2"]
    for shard, stub_name in enumerate(owners):
        held = {i.id for i in stubs[stub_name].Get(search_pb2.GetRequest(collection="shop", ids=ids[:1000]), timeout=30).items}
        assert held == {i for i in ids[:1000] if shard_of(i, SHARDS) == shard}
    replica = {i.id for i in stubs["s0b"].Get(search_pb2.GetRequest(collection="shop", ids=ids[:1000]), timeout=30).items}
    assert replica == {i for i in ids[:1000] if shard_of(i, SHARDS) == 0}, "shard 0's second replica holds the same items"
    routed, single = both(deployment, "GetCollection", search_pb2.GetCollectionRequest(name="shop"))
    assert routed.size == single.size == ITEMS


def test_placement_is_the_same_in_every_process():
    ids = [f"item-{n}" for n in range(50)] + ["ü-ñ-日本"]
    here = [shard_of(i, 7) for i in ids]
    code = f"from search_service.router.placement import shard_of; print([shard_of(i, 7) for i in {ids!r}])"
    for seed in ("0", "12345"):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == str(here)
    assert len(set(here)) == 7, "50 ids reach every one of 7 shards"


QUERIES = np.random.default_rng(7).normal(size=(6, DIM))


@pytest.mark.parametrize("collection", ["shop", "geo"])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"k": 50},
        {"all_of": ["even"], "ranges": {"price": (10.0, 40.0)}},
        {"crowding": ("family:", 2), "k": 30},
        {"crowding": ("family:", 1), "k": 40, "none_of": ["odd"]},
        {"score_threshold": None, "k": 200},
    ],
    ids=["plain", "k50", "filtered", "crowded", "crowded-filtered", "threshold"],
)
def test_search_through_the_router_equals_one_service(deployment, collection, options):
    for query in QUERIES[:3]:
        if "score_threshold" in options:  # the 30th best score: 30 of k=200 pass, whichever way the metric goes
            ranked = deployment[0]["single"].Search(search_request(collection, vector=query, k=30, exact=True), timeout=10)
            options = {**options, "score_threshold": ranked.neighbors[-1].score}
        request = search_request(collection, vector=query, exact=True, **{"k": 10, **options})
        same_neighbors(*both(deployment, "Search", request))


@pytest.mark.parametrize("collection", ["shop", "geo"])
def test_search_by_item_and_by_examples_equals_one_service(deployment, collection):
    requests = [
        search_request(collection, item_id="item-00042", k=15, exact=True),
        search_request(collection, item_id="item-00042", k=15, exact=True, crowding=("family:", 1)),
        search_request(collection, positive_ids=["item-00001", "item-00002", "item-00777"], k=20, exact=True),
        search_request(collection, positive_ids=["item-00001"], negative_ids=["item-00500", "item-02999"], k=20, exact=True, crowding=("family:", 1)),
        search_request(collection, vector=QUERIES[3], negative_ids=["item-00003"], k=12, exact=True),
    ]
    for request in requests:
        routed, single = both(deployment, "Search", request)
        same_neighbors(routed, single)
        assert not {"item-00042", "item-00001", "item-00002", "item-00777", "item-00500", "item-02999", "item-00003"} & {n.id for n in routed.neighbors}
    routed, single = both(deployment, "SearchBatch", search_pb2.SearchBatchRequest(searches=requests + [search_request(collection, vector=q, k=10) for q in QUERIES]))
    for r, s in zip(routed.results, single.results, strict=True):
        same_neighbors(r, s)


def test_exclude_ids_leave_items_out_on_a_single_service_too(deployment):
    single = deployment[0]["single"]
    plain = single.Search(search_request("shop", vector=QUERIES[4], k=10, exact=True), timeout=10)
    request = search_request("shop", vector=QUERIES[4], k=10, exact=True)
    request.exclude_ids.extend([plain.neighbors[0].id, plain.neighbors[3].id, "not-stored"])
    without = single.Search(request, timeout=10)
    kept = [n.id for n in plain.neighbors if n.id not in request.exclude_ids]
    assert [n.id for n in without.neighbors][:8] == kept and len(without.neighbors) == 10
    same_neighbors(deployment[0]["router"].Search(request, timeout=10), without)


def test_get_and_list_items_equal_one_service(deployment):
    ids = ["item-00010", "nope", "item-02000", "item-00010", "item-00011"]
    routed, single = both(deployment, "Get", search_pb2.GetRequest(collection="shop", ids=ids))
    assert [i.id for i in routed.items] == [i.id for i in single.items]
    assert list(routed.missing_ids) == list(single.missing_ids) == ["nope"]
    assert routed.items[0].vector.values == single.items[0].vector.values
    for page_size, request_filter in ((250, search_pb2.Filter()), (97, search_pb2.Filter(all_of=["odd"]))):
        pages = {"router": [], "single": []}
        for name in pages:
            token = ""
            while True:
                page = deployment[0][name].ListItems(
                    search_pb2.ListItemsRequest(collection="shop", page_size=page_size, page_token=token, filter=request_filter), timeout=30
                )
                pages[name].append([item.id for item in page.items])
                token = page.next_page_token
                if not token:
                    break
        assert pages["router"] == pages["single"]
        assert sum(len(p) for p in pages["router"]) == (ITEMS if page_size == 250 else ITEMS // 2)
    bad = refusal(lambda: deployment[0]["router"].ListItems(search_pb2.ListItemsRequest(collection="shop", page_token="garbage"), timeout=10))
    assert (bad.code, bad.reason, bad.field_violations[0].field) == (grpc.StatusCode.INVALID_ARGUMENT, "REQUEST_MALFORMED", "page_token")


def test_a_callers_mistake_comes_back_as_one_service_says_it(deployment):
    stubs = deployment[0]
    cases = [
        ("Search", search_request("shop", vector=QUERIES[0], k=0)),
        ("Search", search_request("nowhere", vector=QUERIES[0])),
        ("Search", search_request("shop", item_id="missing-item")),
        ("Search", search_request("shop", positive_ids=["item-00001", "missing-item"])),
        ("Search", search_request("shop", vector=np.zeros(DIM + 1))),
        ("Upsert", search_pb2.UpsertRequest(collection="shop", items=[])),
    ]
    for method, request in cases:
        routed = refusal(lambda: getattr(stubs["router"], method)(request, timeout=10))
        single = refusal(lambda: getattr(stubs["single"], method)(request, timeout=10))
        assert (routed.code, routed.reason, [v.field for v in routed.field_violations]) == (
            single.code,
            single.reason,
            [v.field for v in single.field_violations],
        ), request
        assert routed.code != grpc.StatusCode.INTERNAL
    batch = items(10, seed=3, prefix="bad")
    batch[7].vector.values.append(1.0)  # one value too many, on whichever shard owns "bad-00007"
    routed = refusal(lambda: stubs["router"].Upsert(search_pb2.UpsertRequest(collection="shop", items=batch), timeout=10))
    single = refusal(lambda: stubs["single"].Upsert(search_pb2.UpsertRequest(collection="shop", items=batch), timeout=10))
    assert routed.reason == single.reason and [v.field for v in routed.field_violations] == [v.field for v in single.field_violations] == ["items[7].vector"]


def test_upsert_stream_answers_each_message_in_order_with_its_own_failures(deployment):
    stubs = deployment[0]
    messages = []
    for m in range(6):
        batch = items(40, seed=10 + m, prefix=f"stream{m}")
        batch[m * 3].vector.values.append(0.5)  # a bad item per message, at a different place each time
        messages.append(search_pb2.UpsertStreamRequest(collection="shop" if m == 0 else "", items=batch))
    routed = list(stubs["router"].UpsertStream(iter(messages), timeout=30))
    single = list(stubs["single"].UpsertStream(iter(messages), timeout=30))
    assert [a.request_index for a in routed] == list(range(6))
    assert [(a.upserted, [(f.item_index, f.field, f.reason) for f in a.failures]) for a in routed] == [
        (a.upserted, [(f.item_index, f.field, f.reason) for f in a.failures]) for a in single
    ]
    assert [a.failures[0].field for a in routed] == [f"items[{m * 3}].vector" for m in range(6)]
    nowhere = [search_pb2.UpsertStreamRequest(collection="nowhere", items=items(5, prefix="lost"))]
    missing = refusal(lambda: list(stubs["router"].UpsertStream(iter(nowhere), timeout=10)))
    assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "COLLECTION_NOT_FOUND")


def test_search_by_image_embeds_once_and_equals_one_service(deployment, digit_pngs):
    stubs = deployment[0]
    create = search_pb2.CreateCollectionRequest(name="digits", model=images_pb2.ModelRef(name="tiny"), keep_sources=True)
    routed, single = both(deployment, "CreateCollection", create)
    assert (routed.model.name, routed.model.version, routed.dimension) == (single.model.name, single.model.version, single.dimension) == ("tiny", 2, 12)
    pinned = {stubs[s].GetCollection(search_pb2.GetCollectionRequest(name="digits"), timeout=10).model.version for s in ("s0a", "s0b", "s1", "s2")}
    assert pinned == {2}, "version 0 pinned alike on every shard"
    create.allow_existing = True
    assert stubs["router"].CreateCollection(create, timeout=30).name == "digits"
    create.allow_existing = False
    taken = refusal(lambda: stubs["router"].CreateCollection(create, timeout=30))
    assert (taken.code, taken.reason) == (grpc.StatusCode.ALREADY_EXISTS, "COLLECTION_EXISTS")
    pictures = [search_pb2.Item(id=f"digit-{n}", image=images_pb2.Image(encoded=png)) for n, png in enumerate(digit_pngs[:120])]
    both(deployment, "Upsert", search_pb2.UpsertRequest(collection="digits", items=pictures))
    for png in digit_pngs[150:154]:
        request = search_pb2.SearchRequest(collection="digits", image=images_pb2.Image(encoded=png), k=8, exact=True)
        same_neighbors(*both(deployment, "Search", request))
    undecodable = search_pb2.SearchRequest(collection="digits", image=images_pb2.Image(encoded=b"not a picture"), k=3)
    error = refusal(lambda: stubs["router"].Search(undecodable, timeout=10))
    assert (error.code, error.field_violations[0].field) == (grpc.StatusCode.INVALID_ARGUMENT, "image.encoded")


def test_find_copies_asks_every_shard_and_finds_what_one_service_finds(deployment, digit_pngs):
    stubs = deployment[0]
    both(deployment, "CreateCollection", search_pb2.CreateCollectionRequest(name="copies", model=images_pb2.ModelRef(name="tiny"), find_copies=True))
    pictures = [search_pb2.Item(id=f"pic-{n}", image=images_pb2.Image(encoded=png)) for n, png in enumerate(digit_pngs[:60])]
    both(deployment, "Upsert", search_pb2.UpsertRequest(collection="copies", items=pictures))
    for n in (3, 17, 42):
        request = search_pb2.FindCopiesRequest(collection="copies", image=images_pb2.Image(encoded=digit_pngs[n]), include_similar=True, k=5)
        routed, single = both(deployment, "FindCopies", request)
        assert routed.copies[0].id == single.copies[0].id == f"pic-{n}"
        assert routed.copies[0].verdict == search_pb2.VERDICT_EXACT_COPY
        assert {(c.id, c.verdict) for c in routed.copies} == {(c.id, c.verdict) for c in single.copies}
    by_item = refusal(lambda: stubs["router"].FindCopies(search_pb2.FindCopiesRequest(collection="copies", item_id="pic-3"), timeout=10))
    assert (by_item.code, by_item.reason, by_item.field_violations[0].field) == (grpc.StatusCode.UNIMPLEMENTED, "ROUTER_UNSUPPORTED", "item_id")


def test_aliases_go_to_every_shard(deployment):
    stubs = deployment[0]
    stubs["router"].CreateAlias(search_pb2.CreateAliasRequest(name="current", collection="shop"), timeout=30)
    for name in ("s0a", "s0b", "s1", "s2"):
        assert [(a.name, a.collection) for a in stubs[name].ListAliases(search_pb2.ListAliasesRequest(), timeout=10).aliases] == [("current", "shop")]
    switched = stubs["router"].SwitchAlias(search_pb2.SwitchAliasRequest(name="current", collection="geo", expected_collection="shop"), timeout=30)
    assert (switched.collection, switched.previous_collection) == ("geo", "shop")
    routed = stubs["router"].Search(search_request("current", vector=QUERIES[0], exact=True), timeout=30)
    same_neighbors(routed, stubs["single"].Search(search_request("geo", vector=QUERIES[0], exact=True), timeout=30))
    stubs["router"].DeleteAlias(search_pb2.DeleteAliasRequest(name="current"), timeout=30)
    assert not stubs["router"].ListAliases(search_pb2.ListAliasesRequest(), timeout=10).aliases


def test_a_collection_created_on_some_shards_only_is_completed_by_retrying_the_create(deployment):
    stubs = deployment[0]
    stubs["s1"].CreateCollection(search_pb2.CreateCollectionRequest(name="half", dimension=DIM), timeout=10)  # as if the others had failed
    inconsistent = refusal(lambda: stubs["router"].GetCollection(search_pb2.GetCollectionRequest(name="half"), timeout=10))
    assert (inconsistent.code, inconsistent.reason, inconsistent.metadata["missing_on"]) == (grpc.StatusCode.FAILED_PRECONDITION, "SHARDS_INCONSISTENT", "0, 2")
    created = stubs["router"].CreateCollection(search_pb2.CreateCollectionRequest(name="half", dimension=DIM), timeout=30)
    assert created.name == "half"
    stubs["s0b"].DeleteCollection(search_pb2.DeleteCollectionRequest(name="half"), timeout=10)  # a delete that reached one replica only
    stubs["router"].DeleteCollection(search_pb2.DeleteCollectionRequest(name="half"), timeout=30)
    assert "half" not in {c.name for c in stubs["router"].ListCollections(search_pb2.ListCollectionsRequest(), timeout=10).collections}


def test_a_reindex_runs_on_every_shard_and_is_reported_as_one_operation(deployment):
    stubs = deployment[0]
    request = search_pb2.StartReindexRequest(collection="digits", model=images_pb2.ModelRef(name="tiny", version=1), max_images_per_second=10_000, report_sample=20)
    operation = stubs["router"].StartReindex(request, timeout=30)
    assert operation.name.startswith("operations/") and operation.target_collection == "digits.tiny-v1"
    deadline = time.monotonic() + 60
    while not operation.done:
        assert time.monotonic() < deadline, operation
        time.sleep(0.2)
        operation = stubs["router"].GetOperation(search_pb2.GetOperationRequest(name=operation.name), timeout=30)
    assert operation.state == search_pb2.Operation.STATE_SUCCEEDED, operation.error_message
    assert operation.items_copied == 120, "one replica per shard: every item counted once"
    assert stubs["router"].GetCollection(search_pb2.GetCollectionRequest(name="digits.tiny-v1"), timeout=30).size == 120
    [listed] = [o for o in stubs["router"].ListOperations(search_pb2.ListOperationsRequest(), timeout=30).operations if o.target_collection == "digits.tiny-v1"]
    assert (listed.state, listed.items_copied) == (operation.state, operation.items_copied)
    missing = refusal(lambda: stubs["router"].GetOperation(search_pb2.GetOperationRequest(name="operations/nope"), timeout=10))
    assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "OPERATION_NOT_FOUND")
    # Each replica would switch on its own report, so the shards could disagree: the caller switches.
    request.switch_alias = "current-digits"
    switching = refusal(lambda: stubs["router"].StartReindex(request, timeout=30))
    assert (switching.code, switching.reason, switching.field_violations[0].field) == (grpc.StatusCode.UNIMPLEMENTED, "ROUTER_UNSUPPORTED", "switch_alias")
    export = refusal(lambda: list(stubs["router"].ExportCollection(iter([search_pb2.ExportCollectionRequest(collection="digits")]), timeout=10)))
    assert (export.code, export.reason, export.metadata["option"]) == (grpc.StatusCode.UNIMPLEMENTED, "ROUTER_UNSUPPORTED", "ExportCollection")


def test_a_replica_that_is_down_leaves_reads_to_its_peer_and_fails_writes(deployment):
    stubs, servers, _ = deployment
    servers["s0b"][0].stop(None)
    request = search_request("shop", vector=QUERIES[1], k=20, exact=True)
    for _ in range(4):  # round robin reaches the stopped replica at least once
        same_neighbors(*both(deployment, "Search", request))
    error = refusal(lambda: stubs["router"].Upsert(search_pb2.UpsertRequest(collection="shop", items=items(50, seed=99, prefix="late")), timeout=10))
    assert (error.code, error.reason, error.metadata["shard"]) == (grpc.StatusCode.UNAVAILABLE, "SHARD_UNAVAILABLE", "0")


def test_a_shard_killed_after_acknowledged_writes_is_unavailable_or_partial_and_loses_nothing(deployment):
    stubs, _, shard = deployment
    acknowledged = items(300, seed=5, prefix="acked")
    acknowledged = [item for item in acknowledged if shard_of(item.id, SHARDS) != 0]  # shard 0 has a replica down since the last test
    both(deployment, "Upsert", search_pb2.UpsertRequest(collection="shop", items=acknowledged[:256]))
    shard.kill()
    request = search_request("shop", vector=QUERIES[2], k=25, exact=True)
    down = refusal(lambda: stubs["router"].Search(request, timeout=10))
    assert (down.code, down.reason, down.metadata["shard"]) == (grpc.StatusCode.UNAVAILABLE, "SHARD_UNAVAILABLE", "2")
    assert "127.0.0.1" not in down.message
    request.allow_partial = True
    partial = stubs["router"].Search(request, timeout=10)
    assert partial.partial and list(partial.unavailable_shards) == [2]
    single = stubs["single"].Search(search_request("shop", vector=QUERIES[2], k=200, exact=True), timeout=10)
    expected = [n.id for n in single.neighbors if shard_of(n.id, SHARDS) != 2][:25]
    assert [n.id for n in partial.neighbors] == expected
    batch = stubs["router"].SearchBatch(search_pb2.SearchBatchRequest(searches=[request], allow_partial=True), timeout=10)
    assert batch.partial and list(batch.unavailable_shards) == [2] and [n.id for n in batch.results[0].neighbors] == expected
    assert not stubs["single"].Search(request, timeout=10).partial, "a single service ignores allow_partial"
    with SearchClient(deployment[1]["router"][1], timeout=10) as client:  # the Python client says so too
        answer = client.search("shop", vector=QUERIES[2], k=25, exact=True, allow_partial=True)
        assert answer.partial and answer.unavailable_shards == (2,) and [n.id for n in answer] == expected
    shard.start()
    ids = [item.id for item in acknowledged[:256]]
    deadline = time.monotonic() + 10
    while True:  # the router's channel reconnects within a second (reconnect_seconds); until then: UNAVAILABLE, retryable
        try:
            found = stubs["router"].Get(search_pb2.GetRequest(collection="shop", ids=ids), timeout=30)
            break
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline, error
            time.sleep(0.2)
    assert not found.missing_ids and len(found.items) == len(ids)


def test_the_router_reaches_shards_with_its_own_token_and_passes_their_refusals_on(tmp_path):
    """A shard that checks tokens: the router with shard_token_file is let in; one without gets
    the shard's UNAUTHENTICATED, as its caller would from the shard itself."""
    (tmp_path / "token").write_text("router-secret\n")
    (tmp_path / "tokens").write_text(f"{hash_token('router-secret')} admin\n")
    shard, shard_port = create_server(SearchSettings(host="127.0.0.1", port=0, data_dir=tmp_path / "shard", tokens_file=tmp_path / "tokens", fsync=False))
    shard.start()
    routers = {}
    for name, token_file in (("with", tmp_path / "token"), ("without", None)):
        server, port = create_server(SearchSettings(host="127.0.0.1", port=0, mode="router", shards=f"127.0.0.1:{shard_port}", shard_token_file=token_file))
        server.start()
        routers[name] = (server, search_pb2_grpc.SearchStub(grpc.insecure_channel(f"127.0.0.1:{port}")))
    try:
        create = search_pb2.CreateCollectionRequest(name="guarded", dimension=DIM)
        assert routers["with"][1].CreateCollection(create, timeout=10).name == "guarded"
        refused = refusal(lambda: routers["without"][1].CreateCollection(create, timeout=10))
        assert (refused.code, refused.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING")
    finally:
        for server, _ in routers.values():
            server.stop(None)
        shard.stop(None)


def test_each_shard_call_carries_what_is_left_of_the_callers_deadline(tmp_path):
    """A shard that notes the deadline of the calls it gets: the caller's remaining time when it
    has one, else the router's shard_timeout_seconds."""
    seen: list[float] = []

    class Noting(search_pb2_grpc.SearchServicer):
        def Search(self, request, context):
            seen.append(context.time_remaining())
            return search_pb2.SearchResponse(metric=images_pb2.METRIC_COSINE)

    shard = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    search_pb2_grpc.add_SearchServicer_to_server(Noting(), shard)
    shard_port = shard.add_insecure_port("127.0.0.1:0")
    shard.start()
    router, port = create_server(SearchSettings(host="127.0.0.1", port=0, mode="router", shards=f"127.0.0.1:{shard_port}", shard_timeout_seconds=20))
    router.start()
    try:
        stub = search_pb2_grpc.SearchStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        stub.Search(search_request("any", vector=[1.0, 0.0]), timeout=5)
        stub.Search(search_request("any", vector=[1.0, 0.0]))
        assert 4 < seen[0] <= 5.2 and 19 < seen[1] <= 20.2, seen  # gRPC sends a deadline rounded up a little
    finally:
        router.stop(None)
        shard.stop(None)
