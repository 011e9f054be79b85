"""Backups of a running collection (ExportCollection) and restores from them (ImportCollection),
on real servers: writes going on during the backup, damaged and cut backups refused with nothing
created, a restored collection that takes writes and survives a restart, and admin tokens."""

from __future__ import annotations

import io
import threading

import grpc
import numpy as np
import pytest

from lookalike import errors
from lookalike.client import BACKUP_MAGIC, ItemToUpsert, SearchClient, read_backup_header
from lookalike.v1 import search_pb2
from search_service.server import create_server
from tests.test_security import certs, connect, secure_encoder_address, secure_search_address, tokens  # noqa: F401 (fixtures)

DIMENSION = 8


def _items(start: int, count: int, rng) -> list[ItemToUpsert]:
    vectors = rng.standard_normal((count, DIMENSION)).astype(np.float32)
    return [
        ItemToUpsert(id=f"item-{i}", vector=vectors[i - start], tags=[f"t{i % 3}"], uri=f"s3://c/{i}.jpg", attributes={"price": float(i)})
        for i in range(start, start + count)
    ]


def _everything(client: SearchClient, name: str) -> dict[str, tuple]:
    return {
        item.id: (tuple(np.float32(v) for v in item.vector.values), tuple(item.tags), item.uri, dict(item.attributes))
        for item in client.iter_items(name, with_vectors=True)
    }


def _backup(client: SearchClient, name: str) -> bytes:
    out = io.BytesIO()
    client.export_collection(name, out)
    return out.getvalue()


def test_a_backup_taken_during_writes_holds_every_acknowledged_one_and_restores_equal(search):
    rng = np.random.default_rng(0)
    search.create_collection("shop", dimension=DIMENSION)
    for start in range(0, 500, 250):
        search.upsert("shop", _items(start, 250, rng))
    acknowledged: list[str] = []
    stop = threading.Event()

    def write():
        start = 500
        while not stop.is_set():
            search.upsert("shop", _items(start, 20, rng))
            acknowledged.extend(f"item-{i}" for i in range(start, start + 20))
            start += 20

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while len(acknowledged) < 200:
            threading.Event().wait(0.01)
        before = set(acknowledged)
        backup = _backup(search, "shop")
    finally:
        stop.set()
        writer.join()

    header = read_backup_header(io.BytesIO(backup))
    assert header.collection.name == "shop" and header.collection.dimension == DIMENSION
    restored = search.import_collection(io.BytesIO(backup), "shop-restored")
    assert restored.size == header.items and restored.dimension == DIMENSION
    copy = _everything(search, "shop-restored")
    assert before | {f"item-{i}" for i in range(500)} <= set(copy), "a write acknowledged before the backup is missing"
    live = _everything(search, "shop")
    assert all(live[id_] == value for id_, value in copy.items()), "a restored item differs from the live one"

    query = copy["item-3"][0]
    assert search.search("shop-restored", vector=np.array(query), k=1, exact=True)[0].id == "item-3"


def test_a_restored_collection_takes_writes_and_survives_a_restart(search_settings):
    rng = np.random.default_rng(1)
    server, port = create_server(search_settings)
    server.start()
    with SearchClient(f"127.0.0.1:{port}", timeout=10) as client:
        client.create_collection("a", dimension=DIMENSION)
        client.upsert("a", _items(0, 50, rng))
        backup = _backup(client, "a")
        client.import_collection(io.BytesIO(backup), "b")
        client.upsert("b", _items(50, 10, rng))
        client.delete("b", ["item-0"])
        expected = _everything(client, "b")
    server.stop(None).wait()

    server, port = create_server(search_settings)
    server.start()
    try:
        with SearchClient(f"127.0.0.1:{port}", timeout=10) as client:
            assert _everything(client, "b") == expected and len(expected) == 59
    finally:
        server.stop(None)


def test_an_empty_collection_backs_up_and_restores(search):
    search.create_collection("empty", dimension=DIMENSION)
    backup = _backup(search, "empty")
    assert read_backup_header(io.BytesIO(backup)).items == 0
    assert search.import_collection(io.BytesIO(backup), "empty-too").size == 0
    search.upsert("empty-too", _items(0, 3, np.random.default_rng(2)))
    assert search.get_collection("empty-too").size == 3


def _refused(search, backup: bytes, name: str = "copy") -> errors.LookalikeError:
    with pytest.raises(errors.LookalikeError) as raised:
        search.import_collection(io.BytesIO(backup), name)
    return raised.value


@pytest.mark.parametrize("damage", ["flip", "cut", "extra"])
def test_a_damaged_backup_is_refused_and_creates_nothing(search, damage):
    search.create_collection("src", dimension=DIMENSION)
    search.upsert("src", _items(0, 100, np.random.default_rng(3)))
    backup = bytearray(_backup(search, "src"))
    if damage == "flip":
        backup[len(backup) // 2] ^= 0x40
    elif damage == "cut":
        backup = backup[: len(backup) - 100]
    else:
        backup += b"more"
    refusal = _refused(search, bytes(backup))
    assert refusal.code == grpc.StatusCode.INVALID_ARGUMENT and refusal.reason == "BACKUP_DAMAGED"
    assert refusal.field_violations and refusal.field_violations[0].field in ("data", "backup.sha256")
    assert [c.name for c in search.list_collections()] == ["src"], "a refused restore left a collection"


def test_a_backup_whose_header_lies_about_its_snapshot_is_refused(search):
    """The header and bytes agree on size and hash but not on the item count: the snapshot is read."""
    search.create_collection("src", dimension=DIMENSION)
    search.upsert("src", _items(0, 10, np.random.default_rng(4)))
    source = io.BytesIO(_backup(search, "src"))
    header = read_backup_header(source)
    header.items = 11
    encoded = header.SerializeToString()
    lying = BACKUP_MAGIC + len(encoded).to_bytes(4, "little") + encoded + source.read()
    refusal = _refused(search, lying)
    assert refusal.reason == "BACKUP_DAMAGED" and refusal.field_violations[0].field == "backup.items"


def test_restoring_under_a_taken_name_or_a_bad_one_is_refused(search):
    search.create_collection("src", dimension=DIMENSION)
    backup = _backup(search, "src")
    taken = _refused(search, backup, "src")
    assert taken.code == grpc.StatusCode.ALREADY_EXISTS and taken.reason == "COLLECTION_EXISTS"
    bad = _refused(search, backup, "no/slashes")
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT and bad.reason == "NAME_INVALID"
    with pytest.raises(ValueError):
        search.import_collection(io.BytesIO(b"not a backup at all"), "x")
    missing = pytest.raises(errors.NotFound, _backup, search, "nothing-here").value
    assert missing.reason == "COLLECTION_NOT_FOUND"


def test_a_stream_without_its_header_is_refused(search_address):
    from lookalike.v1 import search_pb2_grpc

    with grpc.insecure_channel(search_address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            list(stub.ImportCollection(iter([search_pb2.ImportCollectionRequest(data=b"xx")]), timeout=10))
    refusal = errors.from_rpc_error(raised.value)
    assert refusal.code == grpc.StatusCode.INVALID_ARGUMENT and refusal.field_violations[0].field == "header"


def test_backups_need_an_admin_token(connect, secure_search_address, tokens):
    admin = connect(SearchClient, secure_search_address, tokens.admin)
    admin.create_collection("guarded", dimension=DIMENSION)
    backup = _backup(admin, "guarded")
    reader = connect(SearchClient, secure_search_address, tokens.read)
    assert pytest.raises(errors.PermissionDenied, _backup, reader, "guarded").value.reason == "PERMISSION_DENIED"
    refusal = pytest.raises(errors.PermissionDenied, reader.import_collection, io.BytesIO(backup), "stolen").value
    assert refusal.reason == "PERMISSION_DENIED"
    assert admin.import_collection(io.BytesIO(backup), "guarded-copy").name == "guarded-copy"


def test_the_command_line_backs_up_to_a_file_and_restores_it(search, search_address, tmp_path, capsys):
    from lookalike_cli.main import main

    search.create_collection("cli", dimension=DIMENSION)
    search.upsert("cli", _items(0, 30, np.random.default_rng(5)))
    out = tmp_path / "cli.backup"
    assert main(["backup", "--search", search_address, "--collection", "cli", str(out), "--no-progress"]) == 0
    assert "backed up 'cli': 30 items" in capsys.readouterr().out
    assert not list(tmp_path.glob(".*partial")), "the partial file was not renamed"
    assert main(["restore", "--search", search_address, "--collection", "cli-again", str(out), "--no-progress"]) == 0
    assert "restored 'cli' as 'cli-again': 30 items, served" in capsys.readouterr().out
    assert _everything(search, "cli-again") == _everything(search, "cli")


def test_a_restored_collection_finds_copies_with_its_backed_up_fingerprints(search):
    from tests.test_find_copies import crop_caption_mirror, encoded, photo

    search.create_collection("news", model="tiny", find_copies=True)
    pictures = {name: photo(name) for name in ("astronaut", "chelsea", "coffee")}
    search.upsert("news", [ItemToUpsert(id=name, image=encoded(p)) for name, p in pictures.items()])
    search.import_collection(io.BytesIO(_backup(search, "news")), "news-restored")
    assert search.get_collection("news-restored").find_copies
    copy, _ = crop_caption_mirror(pictures["chelsea"])
    query = encoded(copy, "JPEG", quality=70)
    live, restored = (search.find_copies(name, image=query).copies for name in ("news", "news-restored"))
    assert [(c.id, c.verdict, c.inliers) for c in restored] == [(c.id, c.verdict, c.inliers) for c in live]
    assert restored[0].id == "chelsea" and restored[0].verdict == search_pb2.VERDICT_EDITED_COPY
