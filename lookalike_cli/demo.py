"""`lookalike demo`: the whole product on the bundled MNIST digits, end to end.

Trains the default autoencoder, exports it into a model repository, starts the
encoder and search services as real processes, indexes 4,000 digits as PNG
files, queries with the 1,000 held-out digits by image, and compares the
precision@10 (same digit = relevant) with raw pixels searched the same way.
Leaves contact sheets to look at, and stops its processes whatever happens.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from lookalike import contact_sheet, preprocessing
from lookalike_cli.indexing import index_folder
from lookalike_cli.querying import open_uri
from lookalike.client import EncoderClient, ItemToUpsert, SearchClient

K = 10
SHEET_QUERIES = 8


def run_demo(workdir: Path, *, epochs: int | None = None, queries: int = 1000) -> int:
    from training.pipeline import train_and_export_default  # torch: imported only by commands that train

    workdir.mkdir(parents=True, exist_ok=True)
    repository = workdir / "models"
    started = time.monotonic()
    print(f"[1/5] training and exporting the default model into {repository}")
    published = train_and_export_default(workdir, repository, name="digits", epochs=epochs)
    version_dir, split, digits = published.version_dir, published.split, published.dataset
    print(f"      exported {version_dir}; test MSE {published.metrics.get('test_mse', float('nan')):.4f}")

    print("[2/5] writing the digits as PNG files")
    spec = digits.spec
    database = np.concatenate([split.train, split.val])
    query_rows = split.test[:queries]
    index_dir, query_dir = workdir / "digits" / "index", workdir / "digits" / "queries"
    _write_pngs(index_dir, digits, database, spec)
    query_files = _write_pngs(query_dir, digits, query_rows, spec)

    with _services(workdir, repository) as (encoder_address, search_address):
        with SearchClient(search_address, timeout=60) as search, EncoderClient(encoder_address, timeout=60) as encoder:
            print(f"[3/5] indexing {len(database)} digits through the services")
            for name in ("digits", "digits-pixels"):
                search.delete_collection(name, allow_missing=True)
            search.create_collection("digits", model="digits", version=int(version_dir.name))
            report = index_folder(search, "digits", index_dir)
            print("      " + report.summary().replace("\n", "\n      "))
            search.create_collection("digits-pixels", dimension=int(np.prod(spec.shape)))
            _index_pixels(search, digits, database)

            print(f"[4/5] querying with {len(query_rows)} held-out digits, k={K}")
            model_p10, latencies, sheet_rows = _query_by_image(search, digits, query_rows, query_files)
            pixel_p10 = _query_pixels(search, digits, query_rows)
            print(f"      precision@{K}, autoencoder embeddings : {model_p10:.3f}")
            print(f"      precision@{K}, raw pixels (baseline)  : {pixel_p10:.3f}")
            print(f"      search by image latency: p50 {np.percentile(latencies, 50):.1f} ms, p99 {np.percentile(latencies, 99):.1f} ms")

            print("[5/5] drawing contact sheets")
            results_png = workdir / "results.png"
            contact_sheet.render(sheet_rows).save(results_png)
            reconstructions_png = workdir / "reconstructions.png"
            _reconstructions(encoder, query_files[:12], version_dir).save(reconstructions_png)
            print(f"      {results_png} (query, then its top {K}; red = another digit)")
            print(f"      {reconstructions_png} (originals above, the decoder's rebuild below)")
    verdict = "beats" if model_p10 > pixel_p10 else "does NOT beat"
    print(f"done in {time.monotonic() - started:.0f} s: the autoencoder {verdict} raw pixels ({model_p10:.3f} vs {pixel_p10:.3f})")
    return 0


def _write_pngs(root: Path, digits, rows: np.ndarray, spec) -> list[Path]:
    shutil.rmtree(root, ignore_errors=True)
    paths = []
    for row in rows:
        path = root / str(int(digits.labels[row])) / f"{int(row):04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        preprocessing.to_image(digits.images[row], spec).save(path)
        paths.append(path)
    return paths


def _index_pixels(search: SearchClient, digits, rows: np.ndarray) -> None:
    items = [
        ItemToUpsert(id=f"{int(digits.labels[r])}/{int(r):04d}.png", vector=digits.images[r].ravel(), tags=[f"folder:{int(digits.labels[r])}"])
        for r in rows
    ]
    for start in range(0, len(items), 256):
        search.upsert("digits-pixels", items[start : start + 256])


def _precision(neighbors, label: int) -> float:
    return sum(f"folder:{label}" in n.tags for n in neighbors) / K


def _query_by_image(search: SearchClient, digits, rows, files):
    precisions, latencies, sheet_rows = [], [], []
    for row, path in zip(tqdm(rows, desc="queries by image", unit="q"), files):
        label = int(digits.labels[row])
        began = time.perf_counter()
        neighbors = search.search("digits", image=path.read_bytes(), k=K)
        latencies.append((time.perf_counter() - began) * 1000)
        precisions.append(_precision(neighbors, label))
        if len(sheet_rows) < SHEET_QUERIES:
            tiles = [contact_sheet.Tile(open_uri(str(path)), f"query: {label}")]
            tiles += [
                contact_sheet.Tile(open_uri(n.uri), f"#{i} {n.score:.3f}", highlight=f"folder:{label}" not in n.tags)
                for i, n in enumerate(neighbors, 1)
            ]
            sheet_rows.append(tiles)
    return float(np.mean(precisions)), latencies, sheet_rows


def _query_pixels(search: SearchClient, digits, rows) -> float:
    return float(np.mean([_precision(search.search("digits-pixels", vector=digits.images[r].ravel(), k=K), int(digits.labels[r])) for r in rows]))


def _reconstructions(encoder: EncoderClient, files: list[Path], version_dir: Path) -> Image.Image:
    embeddings, _ = encoder.embed([p.read_bytes() for p in files], model="digits", version=int(version_dir.name))
    rebuilt = [Image.open(io.BytesIO(png)) for png in encoder.reconstruct(embeddings, model="digits", version=int(version_dir.name))]
    return contact_sheet.render(
        [
            [contact_sheet.Tile(open_uri(str(p)), "original") for p in files],
            [contact_sheet.Tile(image, "rebuilt") for image in rebuilt],
        ],
        query_first=False,
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def _services(workdir: Path, repository: Path):
    """Starts both services as child processes; stops them (SIGTERM, then SIGKILL) on the way out."""
    logs = workdir / "logs"
    logs.mkdir(exist_ok=True)
    encoder_port, search_port = _free_port(), _free_port()
    command = [sys.executable, "-m", "lookalike_cli.main"]
    children = []
    try:
        children.append(_start(command + ["serve-encoder", "--host", "127.0.0.1", "--port", str(encoder_port),
                                          "--model-repository", str(repository)], logs / "encoder.log"))
        children.append(_start(command + ["serve-search", "--host", "127.0.0.1", "--port", str(search_port),
                                          "--data-dir", str(workdir / "search-data"),
                                          "--encoder-address", f"127.0.0.1:{encoder_port}"], logs / "search.log"))
        encoder_address, search_address = f"127.0.0.1:{encoder_port}", f"127.0.0.1:{search_port}"
        for client in (EncoderClient(encoder_address), SearchClient(search_address)):
            with client:
                client.wait_until_serving(60)
        print(f"      encoder service {encoder_address}, search service {search_address}, logs in {logs}")
        yield encoder_address, search_address
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()


def _start(command: list[str], log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
