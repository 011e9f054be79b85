"""Node's @grpc/grpc-js, a real foreign client, against both services (`make test` installs it).

It reads int64 fields with `longs: String` and decodes the google.rpc error details of the
`grpc-status-details-bin` trailer, as a Node team following our docs would; over plaintext
loopback, and over TLS with a bearer token as call credentials."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from unittest.mock import ANY

import pytest

from tests.test_security import certs, secure_encoder_address, secure_search_address, tokens  # noqa: F401 (fixtures)

NODE_DIR = Path(__file__).parent / "node"


@pytest.mark.parametrize("transport", ["plaintext", "tls"])
def test_node_grpc_js_client_embeds_searches_and_decodes_error_details(transport, request, digit_pngs, tmp_path):
    if shutil.which("node") is None or not (NODE_DIR / "node_modules/@grpc/grpc-js").is_dir():
        pytest.fail("node and tests/node/node_modules are needed: `make test` installs them with npm ci")
    image = tmp_path / "digit.png"
    image.write_bytes(digit_pngs[0])
    env = {key: value for key, value in os.environ.items() if key not in ("LOOKALIKE_TLS_CA", "LOOKALIKE_TOKEN")}
    if transport == "tls":
        encoder_address, search_address = request.getfixturevalue("secure_encoder_address"), request.getfixturevalue("secure_search_address")
        # An admin token: the client creates a collection.
        env.update(LOOKALIKE_TLS_CA=str(request.getfixturevalue("certs") / "ca.pem"), LOOKALIKE_TOKEN=request.getfixturevalue("tokens").admin)
    else:
        encoder_address, search_address = request.getfixturevalue("encoder_address"), request.getfixturevalue("search_address")
    run = subprocess.run(
        ["node", str(NODE_DIR / "client.mjs"), encoder_address, search_address, str(image)],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    if transport == "tls":  # the same call without the token's call credentials
        no_token = {"code": "UNAUTHENTICATED", "reason": "TOKEN_MISSING", "domain": "lookalike.v1", "metadata": ANY, "field_violations": []}
        assert result.pop("no_token") == no_token, run.stdout
    # The client loads with `longs: String`: int32 fields arrive as JS numbers, the int64
    # Collection.size as a decimal string, as its proto comment documents. JSON keeps the difference.
    assert result == {
        "health": "SERVING",
        "embedding_dim": 16,
        "embedding_length": 16,
        "model_version": 1,
        "dimension": 16,
        "upserted": 1,
        "size": "1",
        "first_id": "node-1",
        "empty_image": {
            "code": "INVALID_ARGUMENT",
            "reason": "IMAGE_EMPTY",
            "domain": "lookalike.v1",
            "metadata": ANY,
            "field_violations": ["images[0].encoded"],
        },
        "missing_collection": {
            "code": "NOT_FOUND",
            "reason": "COLLECTION_NOT_FOUND",
            "domain": "lookalike.v1",
            "metadata": ANY,
            "field_violations": [],
        },
    }, run.stdout
    assert result["missing_collection"]["metadata"].get("collection") == "nope", run.stdout
