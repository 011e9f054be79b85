"""kill -9 of the search service during a reindex and during its alias switch (issue 13): after a
restart the operation resumes and ends, the alias points at exactly one complete collection, and
nothing acknowledged is lost."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lookalike.client import ItemToUpsert, SearchClient
from lookalike.v1 import search_pb2
from tests.test_reindex import pictures
from tests.onnx_factory import write_linear_model

ROOT = Path(__file__).resolve().parents[2]
ITEMS = 1500
TARGET = "shop-v1.tiny-v2"

# The search service, with its alias switch to the reindex's collection killing the process just
# before the alias file is written, or just after: the two sides of the one durable step.
KILLING_AT_SWITCH = """
import os, signal, sys
from search_service import aliases
when, real = os.environ["KILL_AT_SWITCH"], aliases.AliasTable.put
def put(self, name, collection):
    if collection == "%s":
        if when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        real(self, name, collection)
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, name, collection)
aliases.AliasTable.put = put
from lookalike_cli.main import main
sys.exit(main(sys.argv[1:]))
""" % TARGET


@pytest.fixture
def encoder_with_two_versions(model_repository, encoder_address):
    write_linear_model(model_repository, version=2, dim=12, seed=1)
    return encoder_address


@contextlib.contextmanager
def search_process(data_dir: Path, encoder_address: str, kill_at_switch: str = "") -> Iterator[tuple[subprocess.Popen, SearchClient]]:
    """`lookalike serve-search` in a child process (killed with SIGKILL at the end, if alive) and a client."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    flags = ["serve-search", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir), "--encoder-address", encoder_address, "--log-level", "WARNING"]
    command = [sys.executable, "-c", KILLING_AT_SWITCH, *flags] if kill_at_switch else [sys.executable, "-m", "lookalike_cli.main", *flags]
    child = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "KILL_AT_SWITCH": kill_at_switch}, stdout=subprocess.DEVNULL)
    client = SearchClient(f"127.0.0.1:{port}", timeout=30)
    try:
        client.wait_until_serving(60)
        yield child, client
    finally:
        client.close()
        if child.poll() is None:
            kill(child)


def kill(child: subprocess.Popen) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(30)


def catalogue(client: SearchClient) -> dict[str, bytes]:
    """ITEMS acknowledged pictures in "shop-v1", behind the alias "shop"."""
    client.create_collection("shop-v1", model="tiny", version=1, keep_sources=True)
    items = {f"item-{n:05d}": p for n, p in enumerate(pictures(ITEMS))}
    ids = list(items)
    for start in range(0, ITEMS, 64):
        client.upsert("shop-v1", [ItemToUpsert(id=i, image=items[i]) for i in ids[start : start + 64]])
    client.create_alias("shop", "shop-v1")
    return items


def assert_complete(client: SearchClient, operation: str, acknowledged: set[str]) -> None:
    done = client.wait_for_operation(operation, timeout=300)
    assert done.state == search_pb2.Operation.STATE_SUCCEEDED, done.error_message
    assert done.switched
    [alias] = client.list_aliases()
    assert alias.collection == TARGET, "the alias points at the new collection, whole"
    for collection in ("shop-v1", TARGET):
        assert {item.id for item in client.iter_items(collection, page_size=1000)} == acknowledged, collection


def test_kill_9_during_the_copy_resumes_after_a_restart(tmp_path, encoder_with_two_versions):
    data = tmp_path / "data"
    with search_process(data, encoder_with_two_versions) as (child, client):
        acknowledged = set(catalogue(client))
        operation = client.start_reindex("shop", "tiny", 2, switch_alias="shop", max_images_per_second=400).name
        deadline = time.monotonic() + 60
        while client.get_operation(operation).items_copied < 300:
            assert time.monotonic() < deadline, "the copy did not start"
            time.sleep(0.05)
        late = {f"late-{n}": p for n, p in enumerate(pictures(16, seed=5))}
        client.upsert("shop", [ItemToUpsert(id=i, image=p) for i, p in late.items()])  # acknowledged mid-copy
        acknowledged |= set(late)
        kill(child)
    with search_process(data, encoder_with_two_versions) as (child, client):
        assert client.get_operation(operation).state in (search_pb2.Operation.STATE_RUNNING, search_pb2.Operation.STATE_SUCCEEDED)
        assert_complete(client, operation, acknowledged)
    with search_process(data, encoder_with_two_versions) as (child, client):  # the finished reindex's mirrors come back
        client.upsert("shop", [ItemToUpsert(id="after-restart", image=pictures(1, seed=9)[0])])
        for collection in ("shop-v1", TARGET):
            assert [item.id for item in client.get(collection, ["after-restart"]).items] == ["after-restart"], collection


@pytest.mark.parametrize("when", ["before", "after"])
def test_kill_9_at_the_alias_switch_leaves_one_complete_collection(tmp_path, encoder_with_two_versions, when):
    data = tmp_path / "data"
    with search_process(data, encoder_with_two_versions, kill_at_switch=when) as (child, client):
        acknowledged = set(catalogue(client))
        operation = client.start_reindex("shop", "tiny", 2, switch_alias="shop", max_images_per_second=20_000, report_sample=50).name
        assert child.wait(120) == -signal.SIGKILL, "the server was to die at the switch"
    with search_process(data, encoder_with_two_versions) as (child, client):
        assert_complete(client, operation, acknowledged)
