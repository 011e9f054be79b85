"""Queries/s of one fixed collection served by 1, 2 and 4 shards behind a router (issue 14).

    python -m benchmarks.sharding --items 200000 --seconds 15

The collection: `--items` clustered 64-d vectors (search_scale.clustered, 1,000 clusters), cosine.
For each shard count, that many `lookalike serve-search` processes and one `lookalike serve-search
--mode router` in front of them, all child processes on loopback; the items are written through
the router's UpsertStream (so each lands on its shard), then every shard's index is built before
timing. `--clients` threads of this process send one vector search (k=10) at a time to the
router; besides queries/s and p50/p99, the CPU per query of the shards together, of the router
and of this process. A first row sends the same queries to the one shard directly, without the
router: the router's own cost. Prints a markdown table for benchmarks/RESULTS.md.
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
import time
from pathlib import Path

import numpy as np

from benchmarks.encoder_throughput import cpu_seconds
from benchmarks.search_by_image import clients
from benchmarks.search_scale import clustered
from lookalike.client import SearchClient
from lookalike.v1 import images_pb2, search_pb2
from training.machine import describe

COLLECTION = "bench"
K = 10
BATCH = 256  # items per UpsertStream message: the service's default max_batch_size


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def services(work: Path, shards: int):
    """`shards` shard processes and a router: (client of the router, client of shard 0, shard pids, router pid)."""
    ports = [free_port() for _ in range(shards + 1)]
    base = [sys.executable, "-m", "lookalike_cli.main", "serve-search", "--host", "127.0.0.1", "--log-level", "WARNING", "--no-fsync"]
    children = [
        subprocess.Popen([*base, "--port", str(port), "--data-dir", str(work / f"{shards}-shards" / f"shard-{n}")], stdout=subprocess.DEVNULL)
        for n, port in enumerate(ports[:-1])
    ]
    addresses = ",".join(f"127.0.0.1:{port}" for port in ports[:-1])
    children.append(subprocess.Popen([*base, "--port", str(ports[-1]), "--mode", "router", "--shards", addresses], stdout=subprocess.DEVNULL))
    try:
        with SearchClient(f"127.0.0.1:{ports[-1]}", timeout=60) as router, SearchClient(f"127.0.0.1:{ports[0]}", timeout=60) as first:
            router.wait_until_serving(120)
            first.wait_until_serving(120)
            yield router, first, [c.pid for c in children[:-1]], children[-1].pid
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            child.wait(60)


def load(router: SearchClient, vectors: np.ndarray) -> float:
    """Writes the collection through the router and waits for every shard's index; seconds taken."""
    began = time.perf_counter()
    router.create_collection(COLLECTION, dimension=vectors.shape[1], metric=images_pb2.METRIC_COSINE)

    def messages():
        for start in range(0, len(vectors), BATCH):
            items = [
                search_pb2.Item(id=f"i{n}", vector=images_pb2.Embedding(values=vectors[n].tolist()))
                for n in range(start, min(start + BATCH, len(vectors)))
            ]
            yield search_pb2.UpsertStreamRequest(collection=COLLECTION, items=items)

    written = sum(answer.upserted for answer in router.stub.UpsertStream(messages(), timeout=600))
    assert written == len(vectors), f"{written} of {len(vectors)} written"
    while True:  # each shard builds its index in the background (a small tail stays pending, scanned exactly)
        index = router.get_collection(COLLECTION).index
        if not index.rebuilding and index.kind != search_pb2.IndexInfo.KIND_EXACT:
            return time.perf_counter() - began
        time.sleep(0.5)


def measure(client: SearchClient, pids: list[int], queries: np.ndarray, args) -> dict:
    assert len(client.search(COLLECTION, vector=queries[0], k=K)) == K
    load_before = os.getloadavg()[0]
    before = [cpu_seconds(pid) for pid in pids]
    rate, latencies = clients(lambda q: client.search(COLLECTION, vector=q, k=K), list(queries), args.clients, args.seconds)
    cpu_ms = [(cpu_seconds(pid) - was) * 1000 / len(latencies) for pid, was in zip(pids, before)]
    return {"rate": rate, "p50": np.percentile(latencies, 50), "p99": np.percentile(latencies, 99), "cpu": cpu_ms, "load": load_before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--dimension", type=int, default=64)
    parser.add_argument("--clusters", type=int, default=1_000)
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15.0, help="per measurement, after a second of warm-up")
    parser.add_argument("--work", type=Path, help="folder for the shards' data (default: a temporary one)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(args.clusters, args.dimension)).astype(np.float32)
    vectors = clustered(centres, args.items, rng)
    queries = clustered(centres, 2_000, np.random.default_rng(1))
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        for shards in args.shards:
            with services(work, shards) as (router, first, shard_pids, router_pid):
                built = load(router, vectors)
                print(f"{shards} shard(s): written and indexed in {built:.0f} s", file=sys.stderr, flush=True)
                if shards == 1:
                    rows.append(("1 shard, no router", measure(first, [*shard_pids, router_pid, os.getpid()], queries, args)))
                rows.append((f"{shards} shard{'s' if shards > 1 else ''} + router", measure(router, [*shard_pids, router_pid, os.getpid()], queries, args)))
                rows[-1][1]["cpu"] = [sum(rows[-1][1]["cpu"][:shards]), *rows[-1][1]["cpu"][shards:]]
                if shards == 1:
                    rows[-2][1]["cpu"] = [sum(rows[-2][1]["cpu"][:shards]), *rows[-2][1]["cpu"][shards:]]

    print(f"{args.items:,} x {args.dimension}-d clustered vectors, cosine, k={K}, {args.clients} client threads, "
          f"{args.seconds:g} s per row; {describe()}")
    print("| served by | queries/s | p50 ms | p99 ms | CPU ms/query: shards (all) | router | clients | load avg before |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, row in rows:
        cpu = " | ".join(f"{ms:.2f}" for ms in row["cpu"])
        print(f"| {label} | {row['rate']:,.0f} | {row['p50']:.2f} | {row['p99']:.2f} | {cpu} | {row['load']:.2f} |")


if __name__ == "__main__":
    main()
