"""`lookalike backup` and `lookalike restore`: one collection to a file and back (docs/operations.md).

The file is written under a temporary name and renamed once whole, so a backup that failed
half-way never passes for a finished one; the server checks a restore whole before the
collection appears.
"""

from __future__ import annotations

import os
from pathlib import Path

from lookalike.client import SearchClient, read_backup_header
from training.progress import Phase


def backup(client: SearchClient, collection: str, out: Path, *, progress: bool) -> int:
    partial = out.with_name(f".{out.name}.partial")
    with Phase(f"backing up {collection}", total=None, unit="B", progress=progress) as phase:
        phase.bar.unit_scale = True
        with open(partial, "wb") as file:
            header = client.export_collection(collection, file, on_bytes=phase.update)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, out)
        phase.finish(
            f"backed up {header.collection.name!r}: {header.items} items to record {header.sequence}, "
            f"{header.size_bytes / 2**20:.1f} MiB in {out}"
        )
    return 0


def restore(client: SearchClient, source: Path, name: str, *, progress: bool) -> int:
    with open(source, "rb") as file:
        header = read_backup_header(file)
        file.seek(0)
        with Phase(f"restoring {name}", total=header.size_bytes, unit="B", progress=progress) as phase:
            phase.bar.unit_scale = True
            collection = client.import_collection(file, name, on_bytes=phase.update)
            phase.finish(f"restored {header.collection.name!r} as {collection.name!r}: {collection.size} items, served")
    return 0
