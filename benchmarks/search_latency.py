"""Search speed and recall of a collection, in process (no gRPC): the ScaNN index under the store.

    python -m benchmarks.search_latency --items 200000 --dimension 64

Clustered random vectors (like embeddings, unlike uniform noise); recall@10 is measured
against an exact numpy scan. Prints a markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from training.machine import describe
from search_service.collection import CollectionSpec, TagFilter
from search_service.collection_store import CollectionStore


def clustered(n: int, dimension: int, rng: np.random.Generator, clusters: int = 100) -> np.ndarray:
    centres = rng.normal(size=(clusters, dimension)).astype(np.float32)
    return centres[rng.integers(0, clusters, n)] + 0.3 * rng.normal(size=(n, dimension)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--dimension", type=int, default=64)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("-k", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    vectors = clustered(args.items, args.dimension, rng)
    queries = clustered(args.queries, args.dimension, rng)
    ids = [f"item-{i}" for i in range(args.items)]
    tags = [[f"shard:{i % 10}"] for i in range(args.items)]

    with tempfile.TemporaryDirectory() as data_dir:
        store = CollectionStore(Path(data_dir), fsync=True)
        store.create(CollectionSpec(name="bench", dimension=args.dimension, metric="cosine"))
        collection = store.get("bench")
        began = time.perf_counter()
        for start in range(0, args.items, 256):
            collection.upsert(ids[start : start + 256], vectors[start : start + 256], tags[start : start + 256])
        upsert_rate = args.items / (time.perf_counter() - began)  # index (re)builds included: they run inside writes

        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        rows = []
        for label, tag_filter in (("no filter", None), ("filter: 1 tag of 10", TagFilter(all_of=("shard:3",)))):
            latencies, recalls = [], []
            for query in queries:
                began = time.perf_counter()
                hits = collection.search(query, args.k, tag_filter)
                latencies.append((time.perf_counter() - began) * 1000)
                scores = unit @ (query / np.linalg.norm(query))
                if tag_filter is not None:
                    scores[np.arange(args.items) % 10 != 3] = -np.inf
                exact = {ids[i] for i in np.argpartition(-scores, args.k)[: args.k]}
                recalls.append(len(exact & {h.id for h in hits}) / args.k)
            rows.append((label, 1000 / np.mean(latencies), np.percentile(latencies, 50), np.percentile(latencies, 99), np.mean(recalls)))
        store.close()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.items:,} x {args.dimension} cosine, k={args.k}; {describe()}")
    print(f"upsert (batches of 256, fsynced log, index rebuilds included): {upsert_rate:,.0f} items/s; "
          f"index {collection.index_kind}; peak RSS {peak_mib:,.0f} MiB")
    print("| search | queries/s (1 thread) | p50 ms | p99 ms | recall@10 |\n| --- | ---: | ---: | ---: | ---: |")
    for label, rate, p50, p99, recall in rows:
        print(f"| {label} | {rate:,.0f} | {p50:.2f} | {p99:.2f} | {recall:.3f} |")


if __name__ == "__main__":
    main()
