"""kill -9 at random moments of a writing process, then a reload: every acknowledged write is
there with its timestamp and fingerprint (and every acknowledged delete gone), and the collection is never refused: a real crash
must not look like damage to the high-water mark check.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from search_service.collection import READY
from search_service.collection_store import CollectionStore
from tests.reliability.crash_writer import SPEC, batch_ids, fingerprints, timestamp

ROOT = Path(__file__).resolve().parents[2]
RUNS = int(os.environ.get("LOOKALIKE_CHAOS_RUNS", "6"))  # `make chaos` runs more
# Acknowledgements each run waits for before its random delay: on a loaded machine a writer may
# manage only a few writes in 0.4 s, and a run that kills before any snapshot tests little.
WARM_UP_WRITES = 20


def run_and_kill(data_dir: Path, run: int, after_seconds: float) -> list[str]:
    """Starts a writer, kills it with SIGKILL `after_seconds` after its WARM_UP_WRITES-th
    acknowledgement; returns every acknowledgement it printed."""
    writer = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.crash_writer", str(data_dir), str(run)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    warm = threading.Event()

    def read() -> None:
        for line in writer.stdout:
            lines.append(line.split("\n")[0])
            if len(lines) >= WARM_UP_WRITES:
                warm.set()

    reader = threading.Thread(target=read)
    reader.start()
    try:
        assert warm.wait(60), f"the writer acknowledged {len(lines)} writes in 60 s"
        time.sleep(after_seconds)
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        reader.join()
    assert writer.returncode == -signal.SIGKILL
    return lines


def test_kill_9_mid_write_loses_no_acknowledged_write(tmp_path):
    rng = random.Random(0)
    present: set[str] = set()  # acknowledged and not deleted since
    deleted: set[str] = set()  # acknowledged deletes
    acknowledged = 0
    for run in range(RUNS):
        lines = run_and_kill(tmp_path, run, after_seconds=rng.uniform(0.05, 0.4))
        for line in lines:
            kind, batch = line.split()
            ids = set(batch_ids(run, int(batch)))
            if kind == "U":
                present |= ids
            else:
                present -= ids
                deleted |= ids
            acknowledged += 1
        kind, batch = lines[-1].split()
        # A delete follows every third upsert: killed before its acknowledgement, it may or may not have happened.
        in_flight = set(batch_ids(run, int(batch) - 2)) if kind == "U" and int(batch) % 3 == 2 else set()

        store = CollectionStore(tmp_path, fsync=True, snapshot_every=5)
        info = store.describe(SPEC.name)
        assert info.state == READY, f"a kill -9 made the collection look damaged: {info.state_reason}"
        collection = store.get(SPEC.name)
        held = set(collection._index.ids())
        for item in collection.get(sorted(present & held))[0]:  # what travels beside the vector survives with it
            position = int(item.id.rsplit("-", 1)[1])
            assert item.timestamp == timestamp(int(item.id.split("-")[1][1:]), position), item.id
            assert collection.fingerprint_of(item.id) == fingerprints()[position], f"{item.id}: fingerprint changed"
        if run % 2:
            store.close()  # every other time a clean shutdown too
        assert not (present - in_flight) - held, f"run {run}: {len((present - in_flight) - held)} acknowledged items lost"
        assert not deleted & held, f"run {run}: {len(deleted & held)} acknowledged deletes undone"
        if not in_flight & held:  # the delete happened: from now on these must stay gone
            present -= in_flight
            deleted |= in_flight
    assert acknowledged > 100
    print(f"\nkill -9: {RUNS} runs, {acknowledged} acknowledged writes, {len(present)} items present, {len(deleted)} deleted; none lost")
