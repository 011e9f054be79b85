"""`lookalike bulk-embed SOURCE`: a catalogue's vectors made on Ray Data, written as Parquet parts,
and optionally sent to a collection; resumable. docs/bulk-embedding.md says how to run it on a cluster.

Nothing heavy is imported here at module level: Ray, pyarrow (the `bulk` extra) and ONNX Runtime
load when the command runs, so the rest of the command line does not pay for them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

DEFAULT_PART_SIZE = 4096  # the search service's default max_stream_record_items: one part, one stream, one write


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        type=Path,
        help="a folder (walked recursively), or a listing: a text file of one path a line, or a Parquet file with a 'path' column",
    )
    parser.add_argument("--model-repository", type=Path, default=Path("models"), help="the model repository (default %(default)s)")
    parser.add_argument("--model", required=True, help="the model to embed with")
    parser.add_argument("--version", type=int, default=0, help="its version (default: the newest published, or the one OUT was started with)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="where the parts go; a rerun with the same DIR resumes")
    parser.add_argument(
        "--ray",
        default=os.environ.get("RAY_ADDRESS", "local"),
        metavar="ADDRESS",
        help="'local' (a Ray started in this process), 'auto' (the cluster `ray start` runs on this machine) or "
        "ray://HOST:10001 (env RAY_ADDRESS; default %(default)s)",
    )
    parser.add_argument(
        "--actors", type=int, default=0, help="model actors (default: one per GPU share, or per --threads-per-actor cores of the cluster)"
    )
    parser.add_argument("--gpus-per-actor", type=float, default=0.0, help="GPUs each actor holds, e.g. 1 or 0.5 (default 0: CPU)")
    parser.add_argument("--threads-per-actor", type=int, default=1, help="CPU cores (ONNX Runtime threads) per actor (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per model run, and vectors per upsert message (default %(default)s)")
    parser.add_argument(
        "--part-size",
        type=int,
        default=None,
        help=f"files per part, the unit of resuming (default {DEFAULT_PART_SIZE}, or the one OUT was started with)",
    )
    parser.add_argument("--tag", action="append", default=[], help="with --search: tag every item with this (repeatable)")
    parser.add_argument("--no-folder-tags", action="store_true", help="with --search: do not tag items with folder:<label>")
    parser.add_argument("--retries", type=int, default=3, help="retries of an upsert that failed for a passing reason (default %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars, one line per part")


def run(args: argparse.Namespace, connection: dict) -> int:
    from lookalike_cli.bulk_parts import Output
    from training.progress import Phase

    output = Output(args.out)
    output.remove_temporary_files()
    job = output.job()
    version = args.version or (job.version if job else _newest(args.model_repository, args.model))
    part_size = args.part_size or (job.part_size if job else DEFAULT_PART_SIZE)
    if job is None and not args.source.exists():
        sys.exit(f"lookalike bulk-embed: {args.source} does not exist")
    if job is not None:
        asked = (str(args.source.resolve()), part_size, args.model, version)
        if asked != (job.source, job.part_size, job.model, job.version):
            sys.exit(
                f"lookalike bulk-embed: {args.out} holds the job of {job.source} (part size {job.part_size}, {job.model} "
                f"v{job.version}); give the same, or another --out"
            )
    version_dir, card = _model(args.model_repository, args.model, version)
    bars = not args.no_progress and sys.stdout.isatty()
    if job is None:
        with Phase(f"listing {args.source}", total=0, unit="file", progress=False) as phase:
            job = output.plan(args.source, part_size, args.model, version)
            phase.finish(f"listed {job.files} files of {args.source} in {job.parts} parts of {part_size}")
    with contextlib.ExitStack() as resources:
        sender = _sender(args, connection, output, job, card.embedding_dim, resources) if args.search else None
        embedded = _embed(args, output, job, version_dir, card, sender, bars)
        complete = output.embedded_parts()
        if sender is not None:  # parts embedded by an earlier run that did not send them
            for part in sorted(complete - output.upserted_parts(sender.destination)):
                if not sender.send(part, output.read_vectors(part)):
                    break
            sender.finish()
    errors = output.gather_errors()
    print(f"{len(complete)} of {job.parts} parts complete ({embedded} this run); {errors} files not embedded, listed in {args.out / 'errors.jsonl'}")
    left = job.parts - len(complete)
    if sender is not None:
        print(sender.report.summary())
        left += job.parts - len(output.upserted_parts(sender.destination))
    if left:
        sys.exit("lookalike bulk-embed: not every part is done; run the same command again to resume")
    return 0


def _embed(args, output, job, version_dir: Path, card, sender, bars: bool) -> int:
    """Embeds the parts not complete yet; each is written, then sent when `sender`. Returns how many."""
    from lookalike_cli import bulk_pipeline
    from training.progress import Phase

    todo = sorted(set(range(job.parts)) - output.embedded_parts())
    if not todo:
        return 0
    bulk_pipeline.connect(args.ray)
    actors = min(len(todo), args.actors or bulk_pipeline.default_actors(args.gpus_per_actor, args.threads_per_actor))  # an actor without a part idles
    files = sum(job.part_files(part) for part in todo)
    with Phase(f"embedding {len(todo)} parts", total=files, unit="img", progress=False) as phase:
        vectors_made = errors = 0
        parts = bulk_pipeline.embed_parts(
            job,
            output.listing,
            version_dir,
            card.preprocessing,
            card.embedding_dim,
            todo,
            actors=actors,
            gpus_per_actor=args.gpus_per_actor,
            threads_per_actor=args.threads_per_actor,
            batch_size=args.batch_size,
            bars=bars,
        )
        for done, (part, vectors, part_errors) in enumerate(parts, start=1):
            output.write_part(part, vectors, part_errors)
            vectors_made, errors = vectors_made + len(vectors), errors + len(part_errors)
            if not bars:
                print(f"part {part}: {len(vectors)} vectors, {len(part_errors)} errors ({done} of {len(todo)} parts)", flush=True)
            if sender is not None:
                sender.send(part, vectors)
        phase.finish(f"embedded {len(todo)} parts with {actors} actors: {vectors_made} vectors, {errors} errors, {files / phase.seconds:.0f} img/s")
    return len(todo)


def _sender(args, connection: dict, output, job, dimension: int, resources: contextlib.ExitStack):
    from lookalike.client import SearchClient
    from lookalike_cli.bulk_parts import destination
    from lookalike_cli.bulk_upsert import PartSender, collection_for
    from lookalike_cli.indexing import backoff

    client = resources.enter_context(SearchClient(args.search, timeout=args.timeout, **connection))
    collection_for(client, args.collection, job, dimension)
    return PartSender(
        client,
        args.collection,
        destination(args.search, args.collection),
        output,
        args.batch_size,
        backoff(args.retries),
        tags=tuple(args.tag),
        folder_tags=not args.no_folder_tags,
    )


def _newest(repository: Path, model: str) -> int:
    from lookalike import model_format

    versions = model_format.published_versions(repository / model)  # a bad name has none: _model says why
    if not versions:
        sys.exit(f"lookalike bulk-embed: {repository} has no published version of model {model!r}")
    return versions[-1]


def _model(repository: Path, name: str, version: int):
    """(version folder, card) of the model, loaded as the encoder service loads it, so a model the
    actors could not load stops the job here; exits saying why."""
    from encoder_service.execution_providers import CPU
    from encoder_service.onnx_model import OnnxModel
    from lookalike import model_format

    try:
        version_dir = model_format.version_dir(repository, name, version)
        return version_dir, OnnxModel(version_dir, [CPU], 1).card
    except Exception as error:  # a bad name, a missing file, bad metadata, ONNX Runtime's own exceptions (not OSError)
        sys.exit(f"lookalike bulk-embed: cannot load model {name} v{version} from {repository}: {error}")
