"""How long a backup and a restore of one collection take, through a real search service.

    python -m benchmarks.backup_restore --items 200000 --dimension 64

A search service on loopback (fsync on) is filled over UpsertStream with random vectors, each
with a tag and an attribute; then `SearchClient.export_collection` writes the backup to a file
and `import_collection` restores it under another name, until the restored collection is served
(its index built). Prints one markdown row for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from lookalike.client import ItemToUpsert, SearchClient
from search_service.server import create_server
from search_service.settings import SearchSettings
from training.machine import describe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--dimension", type=int, default=64)
    args = parser.parse_args()
    n, d = args.items, args.dimension
    with tempfile.TemporaryDirectory() as scratch:
        server, port = create_server(SearchSettings(host="127.0.0.1", port=0, data_dir=Path(scratch) / "data"))
        server.start()
        try:
            with SearchClient(f"127.0.0.1:{port}", timeout=3600) as client:
                client.create_collection("source", dimension=d)
                vectors = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
                batches = (
                    [ItemToUpsert(id=f"item-{i}", vector=vectors[i], tags=["t"], attributes={"price": float(i)}) for i in range(s, min(n, s + 256))]
                    for s in range(0, n, 256)
                )
                for _ in client.upsert_stream("source", batches):
                    pass
                backup = Path(scratch) / "source.backup"
                started = time.perf_counter()
                with open(backup, "wb") as file:
                    header = client.export_collection("source", file)
                backed_up = time.perf_counter() - started
                started = time.perf_counter()
                with open(backup, "rb") as file:
                    restored = client.import_collection(file, "restored")
                restore_seconds = time.perf_counter() - started
        finally:
            server.stop(None)
    assert restored.size == n, f"restored {restored.size} of {n} items"
    print(describe())
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print("| items × dimension | backup file | bytes per item | backup s | restore s (until served) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(f"| {n:,} × {d} | {header.size_bytes / 2**20:.1f} MiB | {header.size_bytes / n:.0f} | {backed_up:.2f} | {restore_seconds:.2f} |")


if __name__ == "__main__":
    main()
