"""`lookalike demo`: the whole product end to end, on the bundled MNIST digits or on your own folder.

Trains the default autoencoder, exports it into a model repository, starts the encoder and search
services as real processes, indexes the training pictures as files (4,000 digits written as PNGs, or
your folder's own files), queries with the held-out pictures by image, and compares the precision@10
(same digit, or same sub-folder, = relevant) with raw pixels searched the same way, then sends edited
copies of indexed pictures to FindCopies and counts how many find their original first. Leaves
contact sheets to look at, and stops its processes whatever happens.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
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
from lookalike.client import EncoderClient, ItemToUpsert, SearchClient
from lookalike.model_format import is_model_name
from lookalike_cli.indexing import index_folder
from lookalike_cli.querying import open_uri

K = 10
SHEET_QUERIES = 8
DIGITS = "digits"  # training.data.DIGITS, repeated so `--help` needs no torch


COPIES = 100  # edited copies sent to FindCopies
SHEET_COPIES = 3  # of which drawn


def run_demo(workdir: Path, *, data: str = DIGITS, epochs: int | None = None, queries: int = 1000) -> int:
    from training.pipeline import train_and_export  # torch: imported only by commands that train

    workdir.mkdir(parents=True, exist_ok=True)
    repository = workdir / "models"
    name = DIGITS if data == DIGITS else _model_name(Path(data))
    started = time.monotonic()
    print(f"[1/6] training and exporting the default model for {data} into {repository}")
    published = train_and_export(workdir, repository, data, name, epochs=epochs)
    version_dir, split, dataset = published.version_dir, published.split, published.dataset
    version = int(version_dir.name)
    print(f"      exported {version_dir}; test MSE {published.metrics.get('test_mse', float('nan')):.4f}")

    database, query_rows = split.train_val, split.test[:queries]
    index_dir = workdir / name / "index"
    if data == DIGITS:
        print("[2/6] writing the digits as PNG files")
        _write_pngs(index_dir, dataset, database)
        query_files = _write_pngs(workdir / name / "queries", dataset, query_rows)
    else:
        print(f"[2/6] linking the {len(database)} training pictures into {index_dir} (the held-out ones are the queries)")
        _link_files(index_dir, Path(data), dataset, database)
        query_files = [Path(dataset.paths[row]) for row in query_rows]
    labels = [_label(dataset, row) for row in query_rows]

    with _services(workdir, repository) as (encoder_address, search_address):
        with SearchClient(search_address, timeout=60) as search, EncoderClient(encoder_address, timeout=60) as encoder:
            print(f"[3/6] indexing {len(database)} pictures through the services")
            pixels = f"{name}-pixels"
            for collection in (name, pixels):
                search.delete_collection(collection, allow_missing=True)
            search.create_collection(name, model=name, version=version, find_copies=True)
            report = index_folder(search, name, index_dir)
            print("      " + report.summary().replace("\n", "\n      "))
            search.create_collection(pixels, dimension=int(np.prod(dataset.spec.shape)))
            _index_pixels(search, pixels, dataset, database)

            print(f"[4/6] querying with {len(query_rows)} held-out pictures, k={K}")
            model_p10, latencies, sheet_rows = _query_by_image(search, name, query_files, labels)
            pixel_p10 = _query_pixels(search, pixels, dataset, query_rows, labels)
            print(f"      precision@{K}, autoencoder embeddings : {_figure(model_p10)}")
            print(f"      precision@{K}, raw pixels (baseline)  : {_figure(pixel_p10)}")
            print(f"      search by image latency: p50 {np.percentile(latencies, 50):.1f} ms, p99 {np.percentile(latencies, 99):.1f} ms")

            print(f"[5/6] finding the originals of {COPIES} edited copies (crop, caption, mirror, ...)")
            _find_copies(search, name, index_dir, workdir / "copies.png")

            print("[6/6] drawing contact sheets")
            results_png = workdir / "results.png"
            contact_sheet.render(sheet_rows).save(results_png)
            reconstructions_png = workdir / "reconstructions.png"
            _reconstructions(encoder, query_files[:12], name, version).save(reconstructions_png)
            print(f"      {results_png} (query, then its top {K}; red = another label)")
            print(f"      {reconstructions_png} (originals above, the decoder's rebuild below)")
    took = f"done in {time.monotonic() - started:.0f} s"
    if model_p10 is None:
        print(f"{took}; the folder has no sub-folders, so there are no labels to score precision with")
    else:
        verdict = "beats" if model_p10 > pixel_p10 else "does NOT beat"
        print(f"{took}: the autoencoder {verdict} raw pixels ({model_p10:.3f} vs {pixel_p10:.3f})")
    return 0


def _find_copies(search: SearchClient, collection: str, index_dir: Path, out: Path) -> None:
    """Edited copies of indexed pictures (the eval's held-out edits, mixed three at a time) sent to
    FindCopies: how many come back first with a copy verdict, and a sheet of the first few."""
    from lookalike_cli import copies
    from copy_detection import copy_edits

    files = sorted(p for p in index_dir.rglob("*") if p.is_file())
    picks = np.random.default_rng(0).choice(len(files), min(COPIES, len(files)), replace=False)
    found, verdicts, sheets = 0, {}, []
    for n, pick in enumerate(picks):
        with Image.open(files[pick]) as original:
            copy = copy_edits.mixed(original, np.random.default_rng([7, n]))
        buffer = io.BytesIO()
        copy.save(buffer, format="JPEG", quality=75)
        response = search.find_copies(collection, image=buffer.getvalue(), edit_pictures=n < SHEET_COPIES)
        first = response.copies[0] if response.copies else None
        found += first is not None and first.id == files[pick].relative_to(index_dir).as_posix()
        verdict = copies.VERDICT.get(first.verdict, "?") if first else "no copy"
        verdicts[verdict] = verdicts.get(verdict, 0) + 1
        if n < SHEET_COPIES:
            sheets.append(copies.sheet(buffer.getvalue(), response))
    print(f"      the original came back first for {found} of {len(picks)}; verdicts: {verdicts}")
    copies.stacked(sheets).save(out)
    print(f"      {out} (each copy, the original with the matched region, and what the copy edited)")


def _model_name(folder: Path) -> str:
    """A model name (lookalike.model_format's rule) from the folder's name: "My Shop!" -> "my-shop"."""
    name = re.sub(r"[^a-z0-9_.-]+", "-", folder.resolve().name.lower()).strip("-._")[:128]
    return name if is_model_name(name) and name != DIGITS else "catalogue"


def _label(dataset, row: int) -> str | None:
    """The relevance label of a picture: its digit, or its sub-folder; None for a flat folder."""
    if dataset.labels is None:
        return None
    label = dataset.labels[row]
    return str(int(label)) if isinstance(label, (int, np.integer)) else str(label)


def _write_pngs(root: Path, digits, rows: np.ndarray) -> list[Path]:
    shutil.rmtree(root, ignore_errors=True)
    paths = []
    for row in rows:
        path = root / str(int(digits.labels[row])) / f"{int(row):04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        preprocessing.to_image(digits.batch([row])[0], digits.spec).save(path)
        paths.append(path)
    return paths


def _link_files(root: Path, source: Path, dataset, rows: np.ndarray) -> None:
    """Symbolic links to the training pictures, under their paths relative to `source`, so the index
    keeps their sub-folders as tags and their own files as uris, and the held-out ones stay out."""
    shutil.rmtree(root, ignore_errors=True)
    for row in rows:
        original = Path(dataset.paths[row]).resolve()
        link = root / Path(dataset.paths[row]).resolve().relative_to(source.resolve())
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(original)


def _index_pixels(search: SearchClient, collection: str, dataset, rows: np.ndarray) -> None:
    for start in range(0, len(rows), 256):
        chunk = rows[start : start + 256]
        vectors = dataset.batch(chunk).reshape(len(chunk), -1)  # (B, C*H*W)
        items = [
            ItemToUpsert(id=f"row-{int(row)}", vector=vector, tags=[f"folder:{_label(dataset, row)}"])
            for row, vector in zip(chunk, vectors)
        ]
        search.upsert(collection, items)


def _precision(neighbors, label: str | None) -> float:
    return sum(f"folder:{label}" in n.tags for n in neighbors) / K


def _query_by_image(search: SearchClient, collection: str, files: list[Path], labels: list[str | None]):
    precisions, latencies, sheet_rows = [], [], []
    for path, label in zip(tqdm(files, desc="queries by image", unit="q"), labels):
        began = time.perf_counter()
        neighbors = search.search(collection, image=path.read_bytes(), k=K)
        latencies.append((time.perf_counter() - began) * 1000)
        precisions.append(_precision(neighbors, label))
        if len(sheet_rows) < SHEET_QUERIES:
            tiles = [contact_sheet.Tile(open_uri(str(path)), f"query: {label or path.name}")]
            tiles += [
                contact_sheet.Tile(open_uri(n.uri), f"#{i} {n.score:.3f}", highlight=label is not None and f"folder:{label}" not in n.tags)
                for i, n in enumerate(neighbors, 1)
            ]
            sheet_rows.append(tiles)
    return (None if labels[0] is None else float(np.mean(precisions))), latencies, sheet_rows


def _query_pixels(search: SearchClient, collection: str, dataset, rows, labels) -> float | None:
    if not labels or labels[0] is None:
        return None
    vectors = dataset.batch(rows).reshape(len(rows), -1)
    return float(np.mean([_precision(search.search(collection, vector=v, k=K), label) for v, label in zip(vectors, labels)]))


def _figure(value: float | None) -> str:
    return "n/a (no labels)" if value is None else f"{value:.3f}"


def _reconstructions(encoder: EncoderClient, files: list[Path], name: str, version: int) -> Image.Image:
    embeddings, _ = encoder.embed([p.read_bytes() for p in files], model=name, version=version)
    rebuilt = [Image.open(io.BytesIO(png)) for png in encoder.reconstruct(embeddings, model=name, version=version)]
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
