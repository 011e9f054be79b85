"""Node's @grpc/grpc-js, a real foreign client, against both services (`make test` installs it)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).parent / "node"


def test_node_grpc_js_client_embeds_searches_and_sees_status_codes(encoder_address, search_address, digit_pngs, tmp_path):
    if shutil.which("node") is None or not (NODE_DIR / "node_modules/@grpc/grpc-js").is_dir():
        pytest.fail("node and tests/node/node_modules are needed: `make test` installs them with npm ci")
    image = tmp_path / "digit.png"
    image.write_bytes(digit_pngs[0])
    run = subprocess.run(
        ["node", str(NODE_DIR / "client.mjs"), encoder_address, search_address, str(image)],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {
        "health": "SERVING",
        "embedding_dim": 16,
        "embedding_length": 16,
        "upserted": 1,
        "first_id": "node-1",
        "empty_image": "INVALID_ARGUMENT",
        "missing_collection": "NOT_FOUND",
    }
