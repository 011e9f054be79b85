"""Model management over real sockets: LoadModel and UnloadModel, the version policy, and a version
that fails to load leaving the previous one serving."""

from __future__ import annotations

import time

import pytest

from encoder_service.server import create_server
from encoder_service.settings import EncoderSettings
from lookalike.client import EncoderClient
from lookalike.errors import FailedPrecondition, InvalidArgument, NotFound
from lookalike.v1 import encoder_pb2
from tests.onnx_factory import write_linear_model


@pytest.fixture
def repository(tmp_path):
    root = tmp_path / "models"
    write_linear_model(root, name="managed", version=1)
    write_linear_model(root, name="managed", version=2, seed=1)
    return root


@pytest.fixture
def start(repository):
    servers = []

    def start(**settings) -> EncoderClient:
        server, port = create_server(EncoderSettings(host="127.0.0.1", port=0, model_repository=repository, **settings))
        server.start()
        servers.append(server)
        client = EncoderClient(f"127.0.0.1:{port}", timeout=30)
        client.wait_until_serving(10)
        return client

    yield start
    for server in servers:
        server.stop(None)


def served(client: EncoderClient) -> list[tuple[int, int]]:
    return [(m.model.version, m.state) for m in client.list_models()]


SERVING, FAILED = encoder_pb2.MODEL_STATE_SERVING, encoder_pb2.MODEL_STATE_FAILED


def test_unload_and_load_through_the_rpcs(start, digit_pngs):
    client = start(refresh_seconds=0.05)
    assert served(client) == [(1, SERVING), (2, SERVING)]
    assert [(r.name, r.version) for r in client.unload_model("managed", 2)] == [("managed", 2)]
    assert client.embed(digit_pngs[:1]).model.version == 1  # the newest served now
    time.sleep(0.3)  # several repository scans: an unloaded version stays unloaded
    assert served(client) == [(1, SERVING)]
    with pytest.raises(NotFound):
        client.embed(digit_pngs[:1], version=2)

    info = client.load_model("managed", 2)
    assert (info.model.version, info.state, info.execution_provider) == (2, SERVING, "CPUExecutionProvider")
    assert client.embed(digit_pngs[:1]).model.version == 2
    assert client.load_model("managed", 2).model.version == 2  # loading again changes nothing

    assert [r.version for r in client.unload_model("managed")] == [1, 2]
    with pytest.raises(NotFound) as gone:
        client.unload_model("managed")
    assert gone.value.reason == "MODEL_NOT_FOUND"
    assert client.load_model("managed").model.version == 2  # version 0: the newest in the repository
    with pytest.raises(NotFound):
        client.load_model("managed", 7)
    with pytest.raises(InvalidArgument) as nameless:
        client.load_model("")
    assert nameless.value.field_violations[0].field == "model.name"


def test_the_version_policy_serves_the_newest_n(start, digit_pngs):
    client = start(refresh_seconds=0, keep_versions=1)
    assert served(client) == [(2, SERVING)]
    client.load_model("managed", 1)  # by hand, whatever the policy
    assert served(client) == [(1, SERVING), (2, SERVING)]


def test_a_version_that_fails_to_load_leaves_the_previous_one_serving(start, repository, digit_pngs):
    client = start(refresh_seconds=0.05)
    broken = repository / "managed/3"
    broken.mkdir()
    (broken / "encoder.onnx").write_bytes(b"not an ONNX file")
    deadline = time.monotonic() + 10
    while (3, FAILED) not in served(client):
        assert time.monotonic() < deadline, served(client)
        time.sleep(0.05)
    assert served(client) == [(1, SERVING), (2, SERVING), (3, FAILED)]
    failure = client.list_models()[-1]
    assert failure.state_message and str(repository) not in failure.state_message
    assert client.embed(digit_pngs[:1]).model.version == 2  # the previous version goes on

    with pytest.raises(FailedPrecondition) as refused:
        client.load_model("managed", 3)
    assert refused.value.reason == "MODEL_LOAD_FAILED" and str(repository) not in refused.value.message
    assert client.embed(digit_pngs[:1]).model.version == 2

    broken.rename(repository / "managed/.broken")  # fixed by publishing a good version 3
    write_linear_model(repository, name="managed", version=3, seed=3)
    assert client.load_model("managed", 3).state == SERVING
    assert served(client) == [(1, SERVING), (2, SERVING), (3, SERVING)]
    assert client.embed(digit_pngs[:1]).model.version == 3
