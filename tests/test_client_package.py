"""The client package is thin: it loads no server, ONNX Runtime, ScaNN or torch, and a virtual
environment with `pip install lookalike` alone (no extras) searches a running server."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from lookalike.client import ItemToUpsert

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = ("encoder_service", "search_service", "server_toolkit", "training", "lookalike_cli", "scann", "onnxruntime", "onnx", "torch")


def test_importing_every_client_module_loads_no_server_and_no_engine():
    script = """
import importlib, json, pkgutil, sys
import lookalike
for module in pkgutil.walk_packages(lookalike.__path__, "lookalike."):
    importlib.import_module(module.name)
print(json.dumps(sorted(sys.modules)))
"""
    loaded = json.loads(subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True, cwd=ROOT).stdout)
    assert "lookalike.client" in loaded and "lookalike.v1.search_pb2_grpc" in loaded  # the walk did import them
    offenders = [m for m in loaded if m.split(".")[0] in FORBIDDEN]
    assert offenders == []


CLIENT_SCRIPT = """
import importlib.util, json, sys
from lookalike import ItemToUpsert, SearchClient
from lookalike.errors import NotFound
address, image_path = sys.argv[1:]
with SearchClient(address, timeout=20) as client:
    client.create_collection("thin", allow_existing=True)
    client.upsert("thin", [ItemToUpsert(id="x", image=open(image_path, "rb").read())])
    hits = client.search("thin", image=open(image_path, "rb").read(), k=1)
    try:
        client.get_collection("nope")
        missing = None
    except NotFound as error:
        missing = error.reason
print(json.dumps({
    "first": hits[0].id,
    "model": hits.model.name,
    "missing": missing,
    "engines": [m for m in ("onnxruntime", "scann", "torch", "grpc_reflection") if importlib.util.find_spec(m)],
}))
"""


@pytest.mark.timeout(600)
def test_a_client_only_virtual_environment_searches_a_running_server(tmp_path, search_address, digit_pngs):
    environment = tmp_path / "client-venv"
    venv.EnvBuilder(with_pip=True).create(environment)
    python = environment / "bin" / "python"
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(ROOT)], capture_output=True, text=True
    )
    assert install.returncode == 0, install.stderr[-3000:]
    image = tmp_path / "digit.png"
    image.write_bytes(digit_pngs[0])
    # cwd: not the checkout, whose lookalike/ would shadow the installed package.
    run = subprocess.run([python, "-c", CLIENT_SCRIPT, search_address, str(image)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout) == {"first": "x", "model": "tiny", "missing": "COLLECTION_NOT_FOUND", "engines": []}
    # The client commands work there too: `lookalike query` prints its table.
    query = subprocess.run(
        [environment / "bin" / "lookalike", "query", str(image), "--search", search_address, "--collection", "thin", "-k", "1"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert query.returncode == 0, query.stderr[-3000:]
    assert query.stdout.splitlines()[1].split()[2] == "x"


def test_clients_accept_a_channel_the_caller_owns(search_address):
    import grpc

    from lookalike.client import SearchClient

    with grpc.insecure_channel(search_address) as channel:
        client = SearchClient(channel, timeout=10)
        client.create_collection("own-channel", dimension=2)
        assert client.upsert("own-channel", [ItemToUpsert(id="a", vector=[1, 0])]) == 1
        client.close()  # a channel the caller owns stays open
        assert [c.name for c in client.list_collections()] == ["own-channel"]


def test_clients_speak_tls_when_given_credentials(tmp_path):
    """The servers get TLS with the security work; the client side is ready: a TLS health server here."""
    import shutil
    from concurrent import futures

    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    from lookalike.client import SearchClient

    assert shutil.which("openssl"), "openssl makes the test certificate"
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost", "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set(SearchClient.service, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_secure_port("localhost:0", grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())]))
    server.start()
    try:
        with SearchClient(f"localhost:{port}", credentials=grpc.ssl_channel_credentials(cert.read_bytes())) as client:
            client.wait_until_serving(10)
        with SearchClient(f"localhost:{port}") as plaintext, pytest.raises(TimeoutError):
            plaintext.wait_until_serving(1)  # the same port refuses a plaintext client
    finally:
        server.stop(None)


def test_the_distribution_ships_every_package_of_the_tree():
    """A package missing from pyproject's list works in the editable install of the tests and is
    absent from a real install (the service images): search_service/router once was."""
    import tomllib

    from setuptools import find_packages

    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    shipped = set(find_packages(str(ROOT), include=include))
    tops = {pattern.split(".")[0] for pattern in include}
    in_tree = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in tops
        for init in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert in_tree - shipped == set()


def test_a_client_with_round_robin_spreads_its_calls_over_every_address(tmp_path, search_address):
    """As over a Kubernetes headless Service: one target, several servers; pick_first keeps to one."""
    from lookalike.client import SearchClient
    from search_service.server import create_server
    from search_service.settings import SearchSettings

    other, port = create_server(SearchSettings(host="127.0.0.1", port=0, data_dir=tmp_path / "other"))
    other.start()
    try:
        with SearchClient(search_address, timeout=10) as first:
            first.create_collection("only-on-the-first", dimension=2)
        target = f"ipv4:{search_address},127.0.0.1:{port}"
        with SearchClient(target, timeout=10, load_balancing="round_robin") as spread, SearchClient(target, timeout=10) as sticky:
            spread.wait_until_serving(10)
            seen = {tuple(c.name for c in spread.list_collections()) for _ in range(6)}
            assert seen == {("only-on-the-first",), ()}, "round_robin answered from one server only"
            assert len({tuple(c.name for c in sticky.list_collections()) for _ in range(6)}) == 1
    finally:
        other.stop(None)
