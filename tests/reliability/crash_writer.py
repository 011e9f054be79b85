"""The process test_kill.py kills: writes to a collection until killed, printing each acknowledgement.

    python -m tests.reliability.crash_writer <data dir> <run number>

Upserts batches of 4 items, each with a timestamp and a fingerprint (the collection keeps them
for finding copies); every third batch also deletes the batch two before it. A line is printed
(and flushed) only after the call returned: `U <batch>` or `D <batch>`. Snapshots every 5 writes,
so kills also land in snapshots and log rotations.
"""

from __future__ import annotations

import sys
from pathlib import Path

import functools

import numpy as np
from PIL import Image

from copy_detection.features import fingerprint
from copy_detection.verdict import Thresholds
from search_service.collection import CollectionSpec
from search_service.collection_store import CollectionStore

SPEC = CollectionSpec("things", 4, "squared_l2", model_name="m", model_version=1, copy_thresholds=Thresholds())
PER_BATCH = 4


@functools.cache
def fingerprints() -> tuple[bytes, ...]:
    """One fingerprint per position in a batch: noise pictures, so each has many local features."""
    rng = np.random.default_rng(7)
    pictures = [Image.fromarray(rng.integers(0, 255, (96, 128, 3), np.uint8)).resize((256, 192)) for _ in range(PER_BATCH)]
    return tuple(fingerprint(p).to_bytes() for p in pictures)


def timestamp(batch: int, position: int) -> int:
    return 1_000_000 * batch + position + 1


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
        collection.upsert(
            batch_ids(run, batch),
            rng.standard_normal((PER_BATCH, 4)).astype(np.float32),
            timestamps=[timestamp(batch, i) for i in range(PER_BATCH)],
            fingerprints=fingerprints(),
        )
        print(f"U {batch}", flush=True)
        if batch % 3 == 2:
            collection.delete(batch_ids(run, batch - 2))
            print(f"D {batch - 2}", flush=True)
        batch += 1


if __name__ == "__main__":
    main()
