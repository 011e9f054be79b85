"""Images per second per core of `lookalike bulk-embed` on a local Ray, against the same work in a plain loop.

    python -m benchmarks.bulk_embed --source demo-output/digits --model-repository demo-output/models --model digits
    python -m benchmarks.bulk_embed --source data/colour-set --model-repository reports/colour-set/models --model conv_fc

The plain loop is one process on one core: read the file, `preprocess` it as the encoder does, and
run the same ONNX Runtime session (one intra-op thread, no spinning) `--batch-size` images at a
time; it runs twice and the second is reported, as the Ray runs find the files in the page cache.
The Ray runs use the command's own pipeline (`lookalike_cli.bulk_pipeline`) with 1, then every
core's worth of actors, one thread each, writing Parquet parts as the command does, over the
source's files listed over and over: `--images`, and a quarter of that. Ray's own start is not
counted; its actors' start is, in "whole run". "Marginal" is the difference of the two runs, what
each further image costs once the actors run: (N - N/4) / (time(N) - time(N/4)). On a shared
machine wall time depends on the neighbours, so the per-core figure is images per CPU second: the
CPU time of the plain loop's process, and of this process and every process under it for Ray (GCS,
raylet, workers, actors; read from /proc), so Ray's overhead shows whatever else runs. Note the
load average beside the figures.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from encoder_service.execution_providers import CPU
from encoder_service.onnx_model import OnnxModel
from lookalike import model_format
from lookalike.preprocessing import preprocess
from lookalike_cli.bulk_parts import Output
from lookalike_cli.indexing import list_files
from training.machine import describe


def tree_cpu_seconds() -> dict[int, float]:
    """CPU seconds used so far by this process and each process under it (a local Ray's GCS, raylet
    and workers), reaped children included, by pid: what the work costs, whatever else the machine runs."""
    processes = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        fields = text[text.rfind(")") + 2 :].split()  # after "pid (command)": state, ppid, ... utime is the 12th
        processes[int(stat.parent.name)] = (int(fields[1]), sum(int(ticks) for ticks in fields[11:15]))
    tree, grew = {os.getpid()}, True
    while grew:
        found = {pid for pid, (parent, _) in processes.items() if parent in tree} - tree
        tree |= found
        grew = bool(found)
    return {pid: processes[pid][1] / os.sysconf("SC_CLK_TCK") for pid in tree if pid in processes}


def cpu_seconds_between(before: dict[int, float], after: dict[int, float]) -> float:
    """By the processes alive at the end: one gone meanwhile (the last run's actors, stopping) would
    take its seconds out of a plain difference of totals."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def plain_loop(files: list[Path], model: OnnxModel, batch_size: int) -> tuple[float, float]:
    """(images/s, images per CPU second) of read + preprocess + embed in this process, on one thread."""
    spec = model.card.preprocessing
    began, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(files), batch_size):
        model.embed(np.stack([preprocess(path.read_bytes(), spec) for path in files[start : start + batch_size]]))
    return len(files) / (time.perf_counter() - began), len(files) / (time.process_time() - cpu)


def ray_run(listing: Path, out: Path, version_dir: Path, card, actors: int, batch_size: int, part_size: int) -> tuple[int, float, float]:
    """(images, wall seconds, CPU seconds of every process) of one run over `listing`, actors starting included."""
    from lookalike_cli import bulk_pipeline

    output = Output(out)
    job = output.plan(listing, part_size, version_dir.parent.name, int(version_dir.name))
    began, before = time.perf_counter(), tree_cpu_seconds()
    parts = bulk_pipeline.embed_parts(
        job, output.listing, version_dir, card.preprocessing, card.embedding_dim, list(range(job.parts)), actors=actors, batch_size=batch_size
    )
    for done, (part, vectors, errors) in enumerate(parts, start=1):
        output.write_part(part, vectors, errors)
        if done == job.parts:  # now, before the pool shuts down: a stopped actor's CPU time leaves with it
            ended, cpu = time.perf_counter(), cpu_seconds_between(before, tree_cpu_seconds())
    return job.files, ended - began, cpu


def write_listing(path: Path, files: list[Path], images: int) -> Path:
    path.write_text("".join(f"{files[i % len(files)].resolve()}\n" for i in range(images)))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True, help="a folder of images")
    parser.add_argument("--model-repository", type=Path, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--images", type=int, default=40_000, help="images per Ray run (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--part-size", type=int, default=1024, help="files per part (default %(default)s, smaller than the command's 4096: more parts to spread over the actors)")
    args = parser.parse_args()

    import ray

    from lookalike_cli import bulk_pipeline

    files, _ = list_files(args.source)
    versions = model_format.published_versions(model_format.model_dir(args.model_repository, args.model))
    version_dir = model_format.version_dir(args.model_repository, args.model, versions[-1])
    model = OnnxModel(version_dir, [CPU], 1, spinning=False)
    cores = len(os.sched_getaffinity(0))
    print(f"{describe()}; load average before: {open('/proc/loadavg').read().split()[:3]}")
    print(f"model {args.model} v{versions[-1]}: {model.card.preprocessing.shape} -> {model.card.embedding_dim}; {len(files)} files in {args.source}")
    plain_loop(files, model, args.batch_size)  # a first pass brings the files into the page cache, as the Ray runs find them
    loop, loop_per_cpu = plain_loop(files, model, args.batch_size)
    print("| what | actors | images/s (whole run) | images/s (marginal) | images per CPU second (marginal) | load average after |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    print(f"| plain loop, one process | – | {loop:,.0f} | {loop:,.0f} | {loop_per_cpu:,.0f} | {open('/proc/loadavg').read().split()[0]} |")
    bulk_pipeline.connect("local")
    with tempfile.TemporaryDirectory() as work:
        small = write_listing(Path(work) / "small.txt", files, args.images // 4)
        large = write_listing(Path(work) / "large.txt", files, args.images)
        for actors in sorted({1, cores}):
            (images_1, wall_1, cpu_1), (images_2, wall_2, cpu_2) = (
                ray_run(listing, Path(work) / f"out-{actors}-{listing.stem}", version_dir, model.card, actors, args.batch_size, args.part_size)
                for listing in (small, large)
            )
            load = open("/proc/loadavg").read().split()[0]
            marginal, per_cpu = (images_2 - images_1) / (wall_2 - wall_1), (images_2 - images_1) / (cpu_2 - cpu_1)
            print(f"| Ray Data, `lookalike bulk-embed` | {actors} | {images_2 / wall_2:,.0f} | {marginal:,.0f} | {per_cpu:,.0f} | {load} |")
    ray.shutdown()


if __name__ == "__main__":
    main()
