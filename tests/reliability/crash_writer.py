"""The process test_kill.py kills: writes to a collection until killed, printing each acknowledgement.

    python -m tests.reliability.crash_writer <data dir> <run number>

Upserts batches of 4 items; every third batch also deletes the batch two before it. A line is
printed (and flushed) only after the call returned: `U <batch>` or `D <batch>`. Snapshots every
5 writes, so kills also land in snapshots and log rotations.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from search_service.collection import CollectionSpec
from search_service.collection_store import CollectionStore

SPEC = CollectionSpec("things", 4, "squared_l2")
PER_BATCH = 4


def batch_ids(run: int, batch: int) -> list[str]:
    return [f"r{run}-b{batch}-{i}" for i in range(PER_BATCH)]


def main() -> None:
    data_dir, run = Path(sys.argv[1]), int(sys.argv[2])
    store = CollectionStore(data_dir, fsync=True, snapshot_every=5)
    if SPEC.name not in {info.spec.name for info in store.list()}:
        store.create(SPEC)
    collection = store.get(SPEC.name)
    rng = np.random.default_rng(run)
    batch = 0
    while True:
        collection.upsert(batch_ids(run, batch), rng.standard_normal((PER_BATCH, 4)).astype(np.float32))
        print(f"U {batch}", flush=True)
        if batch % 3 == 2:
            collection.delete(batch_ids(run, batch - 2))
            print(f"D {batch - 2}", flush=True)
        batch += 1


if __name__ == "__main__":
    main()
