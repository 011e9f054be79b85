"""The output folder of `lookalike bulk-embed`: the plan, the parts and what makes a part complete.

    OUT/job.json                    the plan: source, part size, model; written last, so its presence
                                    means every listing part below exists
    OUT/listing/part-000000.parquet the files of part 0 (path, id, label), in the source's order
    OUT/vectors/part-000000.parquet part 0's vectors: complete when it exists (renamed into place)
    OUT/errors/part-000000.parquet  part 0's files that could not be embedded, with why (written first)
    OUT/errors.jsonl                every part's errors, gathered at the end of each run
    OUT/upserted-COLLECTION-HASH.txt the parts sent to that collection of that service (HASH: of its
                                    address), one number a line

A part is `part_size` consecutive files of the listing, numbered from 0. The first run copies the
listing into `listing/` once, so a part's files never change afterwards, even when the source folder
does: a rerun embeds exactly the parts whose vectors file is missing, and sends exactly the complete
parts its destination's record lacks. A rerun with another source, part size or model is refused
rather than mixing two catalogues or two models in one folder.

Ids, labels and paths follow `lookalike index`: for a folder, the id is the path relative to it and
the label its sub-folder ("" at the top), hidden files left out; for a listing (a text file of one
path a line, or a Parquet file with a `path` column and optional `id` and `label` columns), the id
is the path as written and the label its parent folder as written, unless the columns give them.
Relative paths in a listing are relative to the listing's folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lookalike_cli.indexing import list_files
from server_toolkit.durable_files import create_directories, numbered_files, remove_temporary_files, write_atomically

JOB_FILE = "job.json"
LISTING, VECTORS, ERRORS = "listing", "vectors", "errors"
PART = re.compile(r"part-([0-9]{6,})\.parquet")

LISTING_SCHEMA = pa.schema([("path", pa.string()), ("id", pa.string()), ("label", pa.string())])
ERRORS_SCHEMA = pa.schema([("id", pa.string()), ("path", pa.string()), ("reason", pa.string()), ("message", pa.string())])


def vectors_schema(dimension: int) -> pa.Schema:
    """What a vectors part holds: one row per embedded file."""
    return pa.schema(
        [
            ("id", pa.string()),
            ("vector", pa.list_(pa.float32(), dimension)),  # fixed size: readers get an (N, D) array without copying
            ("model", pa.string()),
            ("model_version", pa.int32()),
            ("path", pa.string()),  # absolute: the item's uri
            ("label", pa.string()),
            ("timestamp", pa.int64()),  # the file's mtime, Unix seconds: the item's "first seen", as `lookalike index` sends
        ]
    )


def part_name(part: int) -> str:
    return f"part-{part:06d}.parquet"


@dataclasses.dataclass(frozen=True)
class Job:
    """What job.json records: a rerun must match it."""

    source: str  # absolute
    part_size: int
    files: int  # in the listing
    parts: int
    model: str
    version: int

    def part_files(self, part: int) -> int:
        """How many files part `part` holds: part_size, but the last one may hold fewer."""
        return min(self.part_size, self.files - part * self.part_size)


class Output:
    """OUT, for the driver: the plan, which parts are done, the part files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.listing, self.vectors, self.errors = root / LISTING, root / VECTORS, root / ERRORS

    def job(self) -> Job | None:
        """The recorded plan, or None before the first run has finished planning."""
        try:
            return Job(**json.loads((self.root / JOB_FILE).read_text()))
        except FileNotFoundError:
            return None

    def plan(self, source: Path, part_size: int, model: str, version: int) -> Job:
        """Copies the listing of `source` into listing parts, then records the plan. A run killed
        while planning plans again: nothing else was written yet."""
        for folder in (self.listing, self.vectors, self.errors):
            create_directories(folder)
        files = 0
        for part, rows in enumerate(_chunks(_entries(source), part_size)):
            table = pa.Table.from_pydict(dict(zip(LISTING_SCHEMA.names, zip(*rows))), schema=LISTING_SCHEMA)
            write_atomically(self.listing / part_name(part), lambda f, table=table: pq.write_table(table, f))
            files += len(rows)
        job = Job(str(source.resolve()), part_size, files, -(-files // part_size), model, version)
        write_atomically(self.root / JOB_FILE, lambda f: f.write(json.dumps(dataclasses.asdict(job), indent=2).encode()))
        return job

    def remove_temporary_files(self) -> None:
        """What writes killed with the last run left behind."""
        for folder in (self.listing, self.vectors, self.errors):
            if folder.is_dir():
                remove_temporary_files(folder)

    def embedded_parts(self) -> set[int]:
        return {part for part, _ in numbered_files(self.vectors, PART)}

    def upserted_parts(self, destination: str) -> set[int]:
        """The parts sent to `destination` (`destination(address, collection)`)."""
        try:
            return {int(line) for line in self._upserted(destination).read_text().split()}
        except FileNotFoundError:
            return set()

    def record_upserted(self, destination: str, part: int) -> None:
        """Appends `part` to the destination's record; a torn last line from a crash is re-sent, harmless."""
        with open(self._upserted(destination), "a") as record:
            record.write(f"{part}\n")
            record.flush()
            os.fsync(record.fileno())

    def write_part(self, part: int, vectors: pa.Table, errors: pa.Table) -> None:
        """The errors first, then the vectors, whose rename makes the part complete."""
        write_atomically(self.errors / part_name(part), lambda f: pq.write_table(errors, f))
        write_atomically(self.vectors / part_name(part), lambda f: pq.write_table(vectors, f))

    def read_vectors(self, part: int) -> pa.Table:
        return pq.read_table(self.vectors / part_name(part))

    def gather_errors(self) -> int:
        """Writes every complete part's errors to errors.jsonl, one JSON object a line; returns how many."""
        count = 0

        def write(f) -> None:
            nonlocal count
            for part, path in numbered_files(self.errors, PART):
                if (self.vectors / part_name(part)).exists():
                    for row in pq.read_table(path).to_pylist():
                        f.write((json.dumps(row) + "\n").encode())
                        count += 1

        write_atomically(self.root / "errors.jsonl", write)
        return count

    def _upserted(self, destination: str) -> Path:
        return self.root / f"upserted-{destination}.txt"


def destination(address: str, collection: str) -> str:
    """What a record of sent parts is kept per: a collection of one service. By name alone, one
    output sent to "shop" on a staging service and then on production would skip every part the
    first run sent."""
    return f"{collection}-{hashlib.blake2b(address.encode(), digest_size=4).hexdigest()}"


def _entries(source: Path) -> Iterator[tuple[str, str, str]]:
    """(path to read, id, label) of every file of the source, in a stable order."""
    if source.is_dir():
        files, _hidden = list_files(source)
        for path in files:
            relative = path.relative_to(source)
            label = relative.parent.as_posix()
            yield str(path.resolve()), relative.as_posix(), "" if label == "." else label
        return
    base = os.path.abspath(source.parent)
    if source.suffix == ".parquet":
        listing = pq.ParquetFile(source)
        columns = [name for name in ("path", "id", "label") if name in listing.schema_arrow.names]
        if "path" not in columns:
            raise ValueError(f"{source} has no 'path' column; its columns: {listing.schema_arrow.names}")
        for batch in listing.iter_batches(columns=columns):
            rows = batch.to_pydict()
            for i, written in enumerate(rows["path"]):
                yield _listed(base, written, rows["id"][i] if "id" in rows else None, rows["label"][i] if "label" in rows else None)
        return
    with open(source, encoding="utf-8") as lines:
        for line in lines:
            written = line.rstrip("\n")
            if written.strip():
                yield _listed(base, written, None, None)


def _listed(base: str, written: str, item_id: str | None, label: str | None) -> tuple[str, str, str]:
    # os.path, not pathlib: a listing of 10^8 lines is planned at a few microseconds a line
    return os.path.join(base, written), item_id or written, os.path.dirname(written) if label is None else label


def _chunks(entries: Iterator[tuple[str, str, str]], size: int) -> Iterator[list[tuple[str, str, str]]]:
    chunk = []
    for entry in entries:
        chunk.append(entry)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
