"""Node's @grpc/grpc-js, a real foreign client, against both services (`make test` installs it).

It reads int64 fields with `longs: String` and decodes the google.rpc error details of the
`grpc-status-details-bin` trailer, as a Node team following our docs would."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from unittest.mock import ANY

import pytest

NODE_DIR = Path(__file__).parent / "node"


def test_node_grpc_js_client_embeds_searches_and_decodes_error_details(encoder_address, search_address, digit_pngs, tmp_path):
    if shutil.which("node") is None or not (NODE_DIR / "node_modules/@grpc/grpc-js").is_dir():
        pytest.fail("node and tests/node/node_modules are needed: `make test` installs them with npm ci")
    image = tmp_path / "digit.png"
    image.write_bytes(digit_pngs[0])
    run = subprocess.run(
        ["node", str(NODE_DIR / "client.mjs"), encoder_address, search_address, str(image)],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
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
