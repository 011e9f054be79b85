"""The encoder keeps serving a model version while a collection uses it, and ListModels says which
(issue 13): real encoder and search servers, the search service reporting its collections."""

from __future__ import annotations

import time

import grpc
import pytest

from encoder_service.server import create_server as create_encoder_server
from encoder_service.settings import EncoderSettings
from lookalike.client import EncoderClient, SearchClient
from lookalike.errors import FailedPrecondition, InvalidArgument, from_rpc_error
from lookalike.v1 import encoder_pb2, images_pb2
from search_service.server import create_server as create_search_server
from search_service.settings import SearchSettings
from tests.onnx_factory import write_linear_model


@pytest.fixture
def servers(tmp_path):
    """An encoder serving only the newest version of each model (keep_versions 1) over tiny v1,
    and a search service named "search-test" in front of it."""
    repository = tmp_path / "models"
    write_linear_model(repository)
    encoder_server, encoder_port = create_encoder_server(
        EncoderSettings(host="127.0.0.1", port=0, model_repository=repository, refresh_seconds=0.2, keep_versions=1)
    )
    encoder_server.start()
    search_server, search_port = create_search_server(
        SearchSettings(host="127.0.0.1", port=0, data_dir=tmp_path / "data", encoder_address=f"127.0.0.1:{encoder_port}", instance_name="search-test")
    )
    search_server.start()
    with EncoderClient(f"127.0.0.1:{encoder_port}", timeout=10) as encoder, SearchClient(f"127.0.0.1:{search_port}", timeout=10) as search:
        encoder.wait_until_serving(10)
        search.wait_until_serving(10)
        yield repository, encoder, search
    search_server.stop(None)
    encoder_server.stop(None)


def until(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def versions(encoder: EncoderClient) -> dict[int, list[str]]:
    return {m.model.version: list(m.used_by) for m in encoder.list_models() if m.state == encoder_pb2.MODEL_STATE_SERVING}


def test_a_version_in_use_stays_served_and_cannot_be_unloaded_until_its_collection_goes(servers):
    repository, encoder, search = servers
    search.create_collection("shop", model="tiny", version=1)
    until(lambda: versions(encoder).get(1) == ["search-test/shop"])
    with pytest.raises(FailedPrecondition) as refused:
        encoder.unload_model("tiny", 1)
    assert refused.value.reason == "MODEL_IN_USE" and refused.value.metadata["used_by"] == "search-test/shop"

    write_linear_model(repository, version=2, seed=1)  # keep_versions 1 would drop v1 now...
    until(lambda: 2 in versions(encoder))
    time.sleep(0.5)  # ...two more scans
    assert versions(encoder) == {1: ["search-test/shop"], 2: []}, "v1 is kept while shop uses it"

    search.delete_collection("shop")
    until(lambda: 1 not in versions(encoder))  # the policy drops it at the next scan
    assert versions(encoder) == {2: []}


def test_reports_expire_and_are_checked(servers):
    _, encoder, _ = servers
    stub = encoder.stub
    use = encoder_pb2.ModelUse(model=images_pb2.ModelRef(name="tiny", version=1), collections=["a"])
    missing = stub.ReportModelUse(encoder_pb2.ReportModelUseRequest(user="other", uses=[use, encoder_pb2.ModelUse(model=images_pb2.ModelRef(name="gone", version=3))], ttl_seconds=1))
    assert [(m.name, m.version) for m in missing.not_served] == [("gone", 3)]
    assert "other/a" in encoder.get_model("tiny", 1).used_by
    until(lambda: "other/a" not in encoder.get_model("tiny", 1).used_by, seconds=5)
    for bad, field in [
        (encoder_pb2.ReportModelUseRequest(user="", uses=[use]), "user"),
        (encoder_pb2.ReportModelUseRequest(user="u", uses=[encoder_pb2.ModelUse(model=images_pb2.ModelRef(name="tiny"))]), "uses[0].model.version"),
        (encoder_pb2.ReportModelUseRequest(user="u", ttl_seconds=-1), "ttl_seconds"),
    ]:
        with pytest.raises(grpc.RpcError) as refused:
            stub.ReportModelUse(bad, timeout=10)
        invalid = from_rpc_error(refused.value)
        assert isinstance(invalid, InvalidArgument) and invalid.field_violations[0].field == field
