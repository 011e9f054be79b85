"""TLS, mutual TLS, bearer tokens with per-method permissions, and the defaults that refuse to expose a
server: real servers on real sockets, certificates made by tools/make_certs.sh (`make certs`).

The fixtures here (certs, tokens, secure_encoder_address, secure_search_address) also serve the
foreign-client tests (grpcurl, Node), which import them.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from pydantic import ValidationError

from encoder_service.server import create_server as create_encoder_server
from encoder_service.settings import EncoderSettings
from lookalike import errors
from lookalike.client import EncoderClient, ItemToUpsert, SearchClient, tls_credentials
from lookalike.v1 import encoder_pb2, encoder_pb2_grpc, search_pb2, search_pb2_grpc
from search_service.server import create_server as create_search_server
from search_service.settings import SearchSettings
from server_toolkit import logs
from server_toolkit.auth import Permission, TokenTable, add_token, hash_token
from server_toolkit.security import InsecureSettings, is_loopback
from tests.onnx_factory import write_linear_model

ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Tokens:
    file: Path  # the servers' tokens file: hashes only
    read: str
    write: str
    admin: str


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> Path:
    """ca.pem, server.pem (localhost, 127.0.0.1), client.pem and their keys, as `make certs` writes them."""
    assert shutil.which("openssl"), "openssl makes the test certificates (tools/make_certs.sh)"
    directory = tmp_path_factory.mktemp("tls") / "certs"
    subprocess.run([str(ROOT / "tools/make_certs.sh"), str(directory)], check=True, capture_output=True, timeout=60)
    return directory


@pytest.fixture(scope="session")
def tokens(tmp_path_factory) -> Tokens:
    file = tmp_path_factory.mktemp("tokens") / "tokens"
    return Tokens(file, **{name: add_token(file, Permission[name.upper()]) for name in ("read", "write", "admin")})


def tls(certs: Path, **settings) -> dict:
    """Server settings for TLS with the test certificate, plus `settings`."""
    return {"tls_cert_file": certs / "server.pem", "tls_key_file": certs / "server-key.pem", **settings}


@pytest.fixture(scope="module")
def secure_encoder_address(tmp_path_factory, certs, tokens):
    repository = tmp_path_factory.mktemp("models")
    write_linear_model(repository)
    settings = EncoderSettings(
        host="127.0.0.1", port=0, model_repository=repository, refresh_seconds=0, **tls(certs, tokens_file=tokens.file)
    )
    server, port = create_encoder_server(settings)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


def search_settings(directory: Path, certs: Path, tokens: Tokens, encoder_address: str, encoder_token: str | None) -> SearchSettings:
    """The search service over TLS with tokens, reaching the encoder over TLS with `encoder_token`."""
    token_file = None
    if encoder_token is not None:
        token_file = directory / "encoder-token"
        token_file.write_text(encoder_token + "\n")
    return SearchSettings(
        host="127.0.0.1",
        port=0,
        data_dir=directory / "data",
        encoder_address=encoder_address,
        encoder_tls_ca_file=certs / "ca.pem",
        encoder_token_file=token_file,
        **tls(certs, tokens_file=tokens.file),
    )


@pytest.fixture(scope="module")
def secure_search_address(tmp_path_factory, certs, tokens, secure_encoder_address):
    settings = search_settings(tmp_path_factory.mktemp("search"), certs, tokens, secure_encoder_address, tokens.read)
    server, port = create_search_server(settings)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


@pytest.fixture
def connect(certs):
    """connect(SearchClient, address, token): a typed client over TLS, closed after the test."""
    opened = []

    def open_client(cls, address: str, token: str | None = None, **credentials):
        client = cls(address, credentials=tls_credentials(certs / "ca.pem", **credentials), token=token, timeout=10)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.close()


def refusal(call) -> errors.LookalikeError:
    with pytest.raises(errors.LookalikeError) as raised:
        call()
    return raised.value


def test_a_call_without_a_known_token_is_refused_unauthenticated(connect, secure_search_address, tokens):
    connect(SearchClient, secure_search_address, tokens.admin).create_collection("kept", dimension=2)

    missing = refusal(lambda: connect(SearchClient, secure_search_address).delete_collection("kept"))
    assert isinstance(missing, errors.Unauthenticated) and missing.code == grpc.StatusCode.UNAUTHENTICATED
    assert missing.reason == "TOKEN_MISSING"
    unknown = refusal(lambda: connect(SearchClient, secure_search_address, "not-a-token").delete_collection("kept"))
    assert isinstance(unknown, errors.Unauthenticated) and unknown.reason == "TOKEN_INVALID"

    # Another scheme than Bearer is no bearer token, even when it carries a valid one.
    stub = search_pb2_grpc.SearchStub(connect(SearchClient, secure_search_address).channel)
    with pytest.raises(grpc.RpcError) as basic:
        stub.DeleteCollection(search_pb2.DeleteCollectionRequest(name="kept"), metadata=[("authorization", f"Basic {tokens.admin}")], timeout=10)
    assert errors.from_rpc_error(basic.value).reason == "TOKEN_MISSING"
    assert [c.name for c in connect(SearchClient, secure_search_address, tokens.read).list_collections()].count("kept") == 1


def test_a_read_token_searches_but_cannot_write_or_delete_a_collection(connect, secure_search_address, tokens):
    connect(SearchClient, secure_search_address, tokens.admin).create_collection("read-only", dimension=2)
    connect(SearchClient, secure_search_address, tokens.write).upsert("read-only", [ItemToUpsert(id="a", vector=[1, 0])])
    reader = connect(SearchClient, secure_search_address, tokens.read)

    assert [hit.id for hit in reader.search("read-only", vector=[1, 0], k=1)] == ["a"]
    upsert = refusal(lambda: reader.upsert("read-only", [ItemToUpsert(id="b", vector=[0, 1])]))
    assert isinstance(upsert, errors.PermissionDenied) and upsert.code == grpc.StatusCode.PERMISSION_DENIED
    assert upsert.reason == "PERMISSION_DENIED"
    assert upsert.metadata == {"method": "/lookalike.v1.Search/Upsert", "required": "write", "granted": "read"}
    delete = refusal(lambda: reader.delete_collection("read-only"))
    assert isinstance(delete, errors.PermissionDenied) and delete.metadata["required"] == "admin"
    assert reader.get_collection("read-only").size == 1


def test_a_write_token_upserts_and_deletes_items_but_not_collections(connect, secure_search_address, tokens):
    connect(SearchClient, secure_search_address, tokens.admin).create_collection("written", dimension=2)
    writer = connect(SearchClient, secure_search_address, tokens.write)

    assert writer.upsert("written", [ItemToUpsert(id="a", vector=[1, 0]), ItemToUpsert(id="b", vector=[0, 1])]) == 2
    assert writer.delete("written", ["b"]) == 1
    assert [hit.id for hit in writer.search("written", vector=[0, 1], k=5)] == ["a"]  # write includes read
    assert isinstance(refusal(lambda: writer.delete_collection("written")), errors.PermissionDenied)
    assert isinstance(refusal(lambda: writer.create_collection("another", dimension=2)), errors.PermissionDenied)


def test_an_admin_token_does_everything(connect, secure_search_address, tokens):
    admin = connect(SearchClient, secure_search_address, tokens.admin)
    admin.create_collection("administered", dimension=2)
    admin.upsert("administered", [ItemToUpsert(id="a", vector=[1, 0])])
    assert [hit.id for hit in admin.search("administered", vector=[1, 0], k=1)] == ["a"]
    assert [item.id for item in admin.get("administered", ["a"]).items] == ["a"]
    assert admin.delete("administered", ["a"]) == 1
    admin.delete_collection("administered")
    assert "administered" not in {c.name for c in admin.list_collections()}


def test_health_answers_without_a_token_or_with_a_wrong_one(connect, secure_encoder_address, secure_search_address):
    connect(EncoderClient, secure_encoder_address).wait_until_serving(10)
    connect(SearchClient, secure_search_address).wait_until_serving(10)
    connect(SearchClient, secure_search_address, "not-a-token").wait_until_serving(10)


def test_a_tls_server_refuses_a_plaintext_client(secure_search_address, tokens):
    with SearchClient(secure_search_address, token=tokens.admin, timeout=5) as plaintext:
        assert refusal(plaintext.list_collections).code == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_refuses_a_client_without_a_certificate(tmp_path, certs, connect):
    write_linear_model(tmp_path / "models")
    settings = EncoderSettings(
        host="127.0.0.1", port=0, model_repository=tmp_path / "models", refresh_seconds=0, **tls(certs, tls_client_ca_file=certs / "ca.pem")
    )
    server, port = create_encoder_server(settings)
    server.start()
    try:
        address = f"127.0.0.1:{port}"
        assert refusal(connect(EncoderClient, address).list_models).code == grpc.StatusCode.UNAVAILABLE
        with_certificate = connect(EncoderClient, address, cert_file=certs / "client.pem", key_file=certs / "client-key.pem")
        assert [m.model.name for m in with_certificate.list_models()] == ["tiny"]
    finally:
        server.stop(None)


def test_the_search_service_reaches_a_tls_and_token_encoder(connect, secure_search_address, tokens, digit_pngs):
    connect(SearchClient, secure_search_address, tokens.admin).create_collection("by-image")  # asks the encoder for its model
    writer = connect(SearchClient, secure_search_address, tokens.write)
    writer.upsert("by-image", [ItemToUpsert(id=f"d{i}", image=png) for i, png in enumerate(digit_pngs[:5])])
    hits = connect(SearchClient, secure_search_address, tokens.read).search("by-image", image=digit_pngs[3], k=1)
    assert hits[0].id == "d3"


def test_a_search_service_without_the_encoders_token_is_refused_by_it(tmp_path, certs, tokens, secure_encoder_address, connect):
    """The encoder's refusal is this service's configuration error (INTERNAL), not the caller's bad token."""
    server, port = create_search_server(search_settings(tmp_path, certs, tokens, secure_encoder_address, encoder_token=None))
    server.start()
    try:
        failed = refusal(lambda: connect(SearchClient, f"127.0.0.1:{port}", tokens.admin).create_collection("needs-encoder"))
        assert failed.code == grpc.StatusCode.INTERNAL and failed.reason == "ENCODER_FAILED"
    finally:
        server.stop(None)


def test_plaintext_loopback_with_tokens_sends_them_as_metadata_and_reflection_can_be_off(tmp_path, tokens):
    write_linear_model(tmp_path / "models")
    settings = EncoderSettings(
        host="127.0.0.1", port=0, model_repository=tmp_path / "models", refresh_seconds=0, tokens_file=tokens.file, reflection=False
    )
    server, port = create_encoder_server(settings)
    server.start()
    try:
        address = f"127.0.0.1:{port}"
        with EncoderClient(address, token=tokens.read, timeout=5) as reader, EncoderClient(address, timeout=5) as anonymous:
            assert reader.get_model().model.name == "tiny"
            assert isinstance(refusal(anonymous.get_model), errors.Unauthenticated)
        with grpc.insecure_channel(address) as channel:  # a caller's own channel gets the token too
            with EncoderClient(channel, token=tokens.read) as on_own_channel:
                assert on_own_channel.get_model().model.name == "tiny"
            from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

            responses = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
            )
            with pytest.raises(grpc.RpcError) as off:
                list(responses)
            assert off.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        server.stop(None)


@pytest.mark.parametrize("host", ["0.0.0.0", "[::]", "search.example.com"])
def test_a_non_loopback_server_without_tls_and_tokens_refuses_to_start(host, tmp_path, certs, tokens):
    with pytest.raises(InsecureSettings, match="refusing to start.*without TLS or a tokens file"):
        create_encoder_server(EncoderSettings(host=host, port=0, model_repository=tmp_path))
    with pytest.raises(InsecureSettings, match="without a tokens file"):
        create_encoder_server(EncoderSettings(host=host, port=0, model_repository=tmp_path, **tls(certs)))
    with pytest.raises(InsecureSettings, match="without TLS"):
        create_search_server(SearchSettings(host=host, port=0, data_dir=tmp_path / "data", tokens_file=tokens.file))


def test_a_non_loopback_server_starts_with_tls_and_tokens_or_with_a_loud_allow_insecure(tmp_path, certs, tokens, caplog):
    write_linear_model(tmp_path / "models")
    secured = EncoderSettings(host="0.0.0.0", port=0, model_repository=tmp_path / "models", refresh_seconds=0, **tls(certs, tokens_file=tokens.file))
    insecure = EncoderSettings(host="0.0.0.0", port=0, model_repository=tmp_path / "models", refresh_seconds=0, allow_insecure=True)
    for settings in (secured, insecure):
        server, _ = create_encoder_server(settings)
        server.stop(None)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.getMessage().startswith("INSECURE")]
    assert len(warnings) == 1 and "without TLS or a tokens file" in warnings[0].getMessage()


def test_tls_settings_that_do_not_fit_together_are_refused(tmp_path, certs):
    with pytest.raises(ValidationError, match="go together"):
        EncoderSettings(model_repository=tmp_path, tls_cert_file=certs / "server.pem")
    with pytest.raises(ValidationError, match="needs TLS"):
        EncoderSettings(model_repository=tmp_path, tls_client_ca_file=certs / "ca.pem")


@pytest.mark.parametrize(
    "host, loopback",
    [("127.0.0.1", True), ("127.0.0.2", True), ("[::1]", True), ("localhost", True), ("0.0.0.0", False), ("[::]", False),
     ("10.1.2.3", False), ("encoder", False)],
)
def test_loopback_is_recognised(host, loopback):
    assert is_loopback(host) is loopback


def test_tokens_never_appear_in_logs(connect, secure_search_address, secure_encoder_address, tokens, digit_pngs, caplog):
    caplog.set_level(logging.DEBUG)
    stranger = "a-token-nobody-issued"
    connect(SearchClient, secure_search_address, tokens.admin).create_collection("logged")
    connect(SearchClient, secure_search_address, tokens.write).upsert("logged", [ItemToUpsert(id="a", image=digit_pngs[0])])
    connect(SearchClient, secure_search_address, tokens.read).search("logged", image=digit_pngs[0], k=1)  # read token to the encoder
    refusal(lambda: connect(SearchClient, secure_search_address, tokens.read).delete_collection("logged"))
    refusal(lambda: connect(EncoderClient, secure_encoder_address, stranger).list_models())

    lines = [logs.JsonFormatter().format(record) for record in caplog.records]
    refusals = [line for line in lines if "request refused" in line]
    assert any("TOKEN_INVALID" in line for line in refusals) and any("PERMISSION_DENIED" in line for line in refusals), lines
    for secret in (tokens.read, tokens.write, tokens.admin, stranger):
        assert not [line for line in lines if secret in line or hash_token(secret) in line]


def test_token_new_prints_the_token_once_and_stores_only_its_hash(tmp_path, capsys):
    from lookalike_cli.main import main

    tokens_file = tmp_path / "tokens"
    tokens_file.write_text("# indexers\n\n")
    assert main(["token", "new", "--permission", "write", "--tokens-file", str(tokens_file)]) == 0
    token = capsys.readouterr().out.strip()
    assert len(token) >= 43 and token not in tokens_file.read_text()  # 32 random bytes, base64url
    assert tokens_file.read_text().splitlines()[-1] == f"{hash_token(token)} write"
    assert TokenTable.load(tokens_file).permission_of(token) == Permission.WRITE


def test_a_malformed_tokens_file_is_refused_without_quoting_it(tmp_path):
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(f"{hash_token('x')} read\nsecret-pasted-here admin\n")
    with pytest.raises(ValueError, match="line 2") as refused:
        TokenTable.load(tokens_file)
    assert "secret-pasted-here" not in str(refused.value)
    with pytest.raises(ValueError, match="line 2"):
        add_token(tokens_file, Permission.READ)  # nothing is appended to a file the servers would refuse
    assert len(tokens_file.read_text().splitlines()) == 2


def test_a_tls_server_answers_kubernetes_probes_on_a_plaintext_health_port(tmp_path, certs, tokens):
    """Kubernetes' gRPC probes speak no TLS: `health_port` serves grpc.health.v1 alone, in plaintext,
    with the main server's statuses; nothing else is reachable there."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from tests.test_metrics import free_port, start

    write_linear_model(tmp_path / "models")
    port, probes = free_port(), free_port()
    child = start(
        [sys.executable, "-m", "lookalike_cli.main", "serve-encoder", "--port", str(port), "--health-port", str(probes),
         "--model-repository", str(tmp_path / "models"), "--refresh-seconds", "0", "--tls-cert-file", str(certs / "server.pem"),
         "--tls-key-file", str(certs / "server-key.pem"), "--tokens-file", str(tokens.file)],
        tmp_path / "encoder.log",
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{probes}") as channel:
            check = health_pb2_grpc.HealthStub(channel).Check
            deadline, status = time.monotonic() + 60, None
            while status != health_pb2.HealthCheckResponse.SERVING and time.monotonic() < deadline:
                try:
                    status = check(health_pb2.HealthCheckRequest(service="lookalike.v1.Encoder"), timeout=1).status
                except grpc.RpcError:
                    time.sleep(0.2)
            assert status == health_pb2.HealthCheckResponse.SERVING, (tmp_path / "encoder.log").read_text()[-2000:]
            with pytest.raises(grpc.RpcError) as other:
                encoder_pb2_grpc.EncoderStub(channel).ListModels(encoder_pb2.ListModelsRequest(), timeout=5)
            assert other.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with grpc.insecure_channel(f"127.0.0.1:{port}") as plaintext:  # the main port stays TLS-only
            with pytest.raises(grpc.RpcError) as refused:
                health_pb2_grpc.HealthStub(plaintext).Check(health_pb2.HealthCheckRequest(), timeout=2)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        child.terminate()
        child.wait(20)
