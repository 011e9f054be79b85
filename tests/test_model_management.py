"""Model management over real sockets: LoadModel and UnloadModel, the version policy (latest N, or
a list), and a version that fails to load (damaged, or a foreign encoder whose metadata or graph
cannot be served) leaving the previous one serving."""

from __future__ import annotations

import time

import numpy as np
import pytest
from pydantic import ValidationError

from encoder_service.server import create_server
from encoder_service.settings import EncoderSettings
from lookalike.client import EncoderClient
from lookalike.errors import FailedPrecondition, InvalidArgument, NotFound
from lookalike.v1 import encoder_pb2
from lookalike import model_format
from tests.conftest import png_bytes
from tests.onnx_factory import FOREIGN_METADATA, write_foreign_model, write_linear_model


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


def test_the_version_policy_as_a_list_serves_those_and_reports_the_missing(start, repository, digit_pngs):
    write_linear_model(repository, name="managed", version=3, seed=3)
    write_linear_model(repository, name="other", version=1)
    write_linear_model(repository, name="other", version=2, seed=1)
    client = start(refresh_seconds=0.05, keep_versions=1, serve_versions={"managed": [1, 3, 5]})
    listed = {(m.model.name, m.model.version): m for m in client.list_models()}
    assert {key: m.state for key, m in listed.items()} == {
        ("managed", 1): SERVING,
        ("managed", 3): SERVING,
        ("managed", 5): FAILED,  # listed, not on disk: reported, not a crash
        ("other", 2): SERVING,  # not named in the list: keep_versions
    }
    assert "not in the repository" in listed["managed", 5].state_message
    assert client.embed(digit_pngs[:1], model="managed").model.version == 3  # the newest listed
    with pytest.raises(NotFound):
        client.embed(digit_pngs[:1], model="managed", version=2)  # on disk, not listed

    write_linear_model(repository, name="managed", version=5, seed=5)  # published later: served at the next scan
    deadline = time.monotonic() + 10
    while ("managed", 5) not in {(m.model.name, m.model.version) for m in client.list_models() if m.state == SERVING}:
        assert time.monotonic() < deadline, client.list_models()
        time.sleep(0.05)
    assert client.embed(digit_pngs[:1], model="managed").model.version == 5


def test_the_version_list_is_checked_at_start():
    for policy in ({"../x": [1]}, {"managed": [0]}, {"managed": []}):
        with pytest.raises(ValidationError):
            EncoderSettings(serve_versions=policy)
    assert EncoderSettings(serve_versions={"managed": [3, 1, 3]}).serve_versions == {"managed": [1, 3]}


def test_the_version_list_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("LOOKALIKE_ENCODER_SERVE_VERSIONS", '{"digits": [1, 3]}')
    assert EncoderSettings().serve_versions == {"digits": [1, 3]}


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


@pytest.mark.parametrize(
    "metadata, batch, message",
    [
        ({k: v for k, v in FOREIGN_METADATA.items() if k != model_format.STD_KEY}, "N", "metadata lacks ['lookalike.std']"),
        ({**FOREIGN_METADATA, model_format.MEAN_KEY: "0.5,0.5"}, "N", "'lookalike.mean' must be 1 or 3"),
        ({**FOREIGN_METADATA, model_format.CHANNELS_KEY: "1", model_format.MEAN_KEY: "0.5", model_format.STD_KEY: "0.5"}, "N", "at axis 1"),
        ({**FOREIGN_METADATA, model_format.EMBEDDING_DIM_KEY: "8"}, "N", "'pooled' gives float32[1, 16]"),
        ({**FOREIGN_METADATA, model_format.OUTPUT_KEY: "logits"}, "N", "has no output 'logits'"),
        ({k: v for k, v in FOREIGN_METADATA.items() if k != model_format.OUTPUT_KEY}, "N", "has several outputs"),
        (FOREIGN_METADATA, 1, "fixed batch size"),
    ],
)
def test_a_foreign_encoder_that_cannot_be_served_is_refused_and_the_previous_version_serves(tmp_path, metadata, batch, message):
    root = tmp_path / "models"
    write_foreign_model(root, version=1)
    write_foreign_model(root, version=2, metadata=metadata, batch=batch)
    server, port = create_server(EncoderSettings(host="127.0.0.1", port=0, model_repository=root, refresh_seconds=0))
    server.start()
    try:
        with EncoderClient(f"127.0.0.1:{port}", timeout=10) as client:
            client.wait_until_serving(10)
            assert served(client) == [(1, SERVING), (2, FAILED)]
            failure = client.list_models()[-1].state_message
            assert message in failure and str(root) not in failure, failure
            picture = png_bytes(np.zeros((32, 32, 3), np.uint8))
            assert client.embed([picture]).model.version == 1
            with pytest.raises(FailedPrecondition) as refused:
                client.load_model("foreign", 2)
            assert message in refused.value.message
    finally:
        server.stop(None)
