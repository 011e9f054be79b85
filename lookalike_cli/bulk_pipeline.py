"""The Ray Data pipeline of `lookalike bulk-embed`, and the driver loop that turns its rows into parts.

    parts to do --from_items--> decode (tasks, one CPU each) --> embed (actor pool) --> driver

With GPUs, decode tasks run on the CPUs and feed the GPU actors; on CPUs alone, Ray fuses decode
into the actors, which then decode and embed their own chunks (see `default_actors`).

Decode and embed run where Ray puts them; the driver gathers each part's rows as they stream in,
and when it has them all (it knows each part's size from the plan), yields the part's vectors and
errors as two tables, for the caller to write and send. Parts are written by the driver rather
than by Ray Data's `write_parquet`, whose files are named by blocks: a part must be named by its
number, and complete in one rename, for a rerun to know exactly what is left. The driver handles
only vectors (256 bytes a 64-d row), so it keeps up with a cluster; a part's rows wait in its
memory until the part's last chunk arrives.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import ray
import ray.data

from lookalike.preprocessing import Preprocessing
from lookalike_cli.bulk_parts import ERRORS_SCHEMA, Job, vectors_schema
from lookalike_cli.bulk_stages import Embedder, decode_parts

# Parts per input block: each block is one decode task's worth, so Ray spreads parts over tasks
# without one block (and its bookkeeping) per part for 10^5 parts.
MAX_INPUT_BLOCKS = 10_000


def connect(address: str) -> None:
    """Joins the Ray cluster at `address`: 'local' starts one in this process, 'auto' finds the one
    `ray start` runs here, 'ray://host:10001' is a remote head. A process already connected keeps its own."""
    if ray.is_initialized():
        return
    if address == "local":
        ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING)
    else:
        ray.init(address=address, logging_level=logging.WARNING)


def default_actors(gpus_per_actor: float, threads_per_actor: int) -> int:
    """One actor per GPU share, or per `threads_per_actor` of the cluster's cores: on CPUs, Ray
    fuses decoding into the actors (both stages ask for the same resources), so each core decodes
    and embeds its own chunks and pixels never cross the object store."""
    resources = ray.cluster_resources()
    if gpus_per_actor:
        return max(1, int(resources.get("GPU", 0) // gpus_per_actor))
    return max(1, int(resources.get("CPU", 1)) // threads_per_actor)


def embed_parts(
    job: Job,
    listing: Path,
    version_dir: Path,
    spec: Preprocessing,
    dimension: int,
    parts: list[int],
    *,
    actors: int,
    gpus_per_actor: float = 0,
    threads_per_actor: int = 1,
    batch_size: int = 256,
    bars: bool = False,
) -> Iterator[tuple[int, pa.Table, pa.Table]]:
    """(part, vectors, errors) of each part of `parts`, in the order they complete."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = bars
    dataset = ray.data.from_items([{"part": part} for part in parts], override_num_blocks=min(len(parts), MAX_INPUT_BLOCKS))
    dataset = dataset.map_batches(
        decode_parts,
        batch_size=1,
        batch_format="numpy",
        fn_kwargs={"listing": str(listing), "spec": spec, "chunk": batch_size},
        # On CPUs, the actors' own request, so Ray fuses the stages (actors holding every core
        # would starve separate decode tasks); with GPUs, one core per decode task.
        num_cpus=1 if gpus_per_actor else threads_per_actor,
    )
    # Whole blocks, not batches of `batch_size` rows: Ray would bundle blocks (parts) up to that many
    # rows into one task, so one actor would run every part; the actor runs the model in batches itself.
    dataset = dataset.map_batches(
        Embedder,
        batch_size=None,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        fn_constructor_kwargs={"version_dir": str(version_dir), "gpu": bool(gpus_per_actor), "threads": threads_per_actor, "batch_size": batch_size},
        num_cpus=threads_per_actor,
        num_gpus=gpus_per_actor or None,
    )
    parts_in_flight = _Parts(job, dimension)
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        yield from parts_in_flight.add(batch)


class _Parts:
    """Rows of the parts not complete yet, by part."""

    def __init__(self, job: Job, dimension: int) -> None:
        self.job, self.dimension = job, dimension
        self.schema = vectors_schema(dimension)
        self.rows: dict[int, list[dict[str, np.ndarray]]] = {}
        self.counts: dict[int, int] = {}

    def add(self, batch: dict[str, np.ndarray]) -> Iterator[tuple[int, pa.Table, pa.Table]]:
        for part in np.unique(batch["part"]):
            rows = batch["part"] == part
            part = int(part)
            self.rows.setdefault(part, []).append({name: column[rows] for name, column in batch.items()})
            self.counts[part] = self.counts.get(part, 0) + int(rows.sum())
            if self.counts[part] == self.job.part_files(part):
                del self.counts[part]
                chunks = self.rows.pop(part)
                yield (part, *self._tables({name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}))

    def _tables(self, rows: dict[str, np.ndarray]) -> tuple[pa.Table, pa.Table]:
        good = rows["reason"] == ""
        order = np.argsort(rows["id"][good], kind="stable")  # chunks arrive in any order; a part's file is in id order
        kept = {name: column[good][order] for name, column in rows.items()}
        count = len(order)
        vectors = pa.Table.from_arrays(
            [
                pa.array(kept["id"], pa.string()),
                pa.FixedSizeListArray.from_arrays(pa.array(kept["vector"].reshape(-1), pa.float32()), self.dimension),
                pa.array([self.job.model] * count, pa.string()),
                pa.array(np.full(count, self.job.version, np.int32)),
                pa.array(kept["path"], pa.string()),
                pa.array(kept["label"], pa.string()),
                pa.array(kept["timestamp"], pa.int64()),
            ],
            schema=self.schema,
        )
        bad = ~good
        errors = pa.Table.from_arrays(
            [pa.array(rows[name][bad], pa.string()) for name in ("id", "path", "reason", "message")], schema=ERRORS_SCHEMA
        )
        return vectors, errors
