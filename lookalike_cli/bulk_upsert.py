"""Sending `lookalike bulk-embed`'s vectors to a collection, one complete part at a time.

A part goes out as `lookalike index` sends files: over UpsertStream, through the same sender
(`lookalike_cli.indexing`), so retries, deadlines and per-item failures behave the same; here the
items carry vectors instead of files, named by the model that made them. With the default part
size, one part is one stream and one write of the search service's log. A part is recorded in
the output folder once the service has answered for all of it; a run that stops before then
sends it again next time, which is harmless: an upsert of the same id and vector is idempotent.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from lookalike.client import ItemToUpsert, SearchClient
from lookalike.errors import NotFound
from lookalike.v1 import search_pb2
from lookalike_cli.bulk_parts import Job, Output
from lookalike_cli.indexing import IndexReport, Batch, Sender
from training.progress import Phase

# Vectors travel as repeated floats: keep each message far below gRPC's 4 MB default, so the
# sender seldom has to halve a message too large.
MESSAGE_BYTES = 1 << 20


def collection_for(client: SearchClient, name: str, job: Job, dimension: int) -> search_pb2.Collection:
    """The collection, made pinned to the job's model when missing; exits when it holds another model's vectors."""
    try:
        collection = client.get_collection(name)
    except NotFound:
        collection = client.create_collection(name, dimension=dimension, model=job.model, version=job.version, allow_existing=True)
    if collection.state == search_pb2.Collection.STATE_DAMAGED:
        sys.exit(f"lookalike bulk-embed: collection {name!r} is damaged ({collection.state_reason}); nothing was sent")
    pinned = (collection.model.name, collection.model.version)
    if pinned[0] and pinned != (job.model, job.version):
        sys.exit(f"lookalike bulk-embed: collection {name!r} holds vectors of {pinned[0]} v{pinned[1]}, not {job.model} v{job.version}")
    return collection


@dataclasses.dataclass
class PartSender:
    client: SearchClient
    collection: str
    destination: str  # bulk_parts.destination of the client's address and the collection
    output: Output
    batch_size: int  # items per message
    retry_delays: Sequence[float]
    tags: tuple[str, ...] = ()
    folder_tags: bool = True

    def __post_init__(self) -> None:
        self.report = IndexReport()
        self.phase = Phase(f"upserting into {self.collection}", total=0, unit="item", progress=False)  # Ray's bars, or one line a part
        self._sender = Sender(self.client, self.collection, self.report, self.phase, self.retry_delays, batch_bytes=MESSAGE_BYTES)
        self.parts = 0

    def send(self, part: int, vectors: pa.Table) -> bool:
        """Sends one part's vectors; False, with why in `report.stopped`, when the run must stop sending."""
        if self.report.stopped:
            return False
        items = self._items(vectors)
        dimension = vectors.schema.field("vector").type.list_size
        per_message = max(1, min(self.batch_size, MESSAGE_BYTES // (16 * dimension)))  # a float costs up to ~5 bytes on the wire; room for the rest
        batches = [Batch.of(items[i : i + per_message]) for i in range(0, len(items), per_message)]
        if not self._sender.send(batches):
            return False
        self.output.record_upserted(self.destination, part)
        self.parts += 1
        return True

    def _items(self, vectors: pa.Table) -> list[tuple[Path, ItemToUpsert]]:
        columns = vectors.drop_columns(["vector"]).to_pydict()  # the vectors stay one numpy array
        matrix = vectors.column("vector").combine_chunks().values.to_numpy().reshape(len(vectors), -1) if len(vectors) else np.zeros((0, 0))
        items = []
        for i, item_id in enumerate(columns["id"]):
            label = columns["label"][i]
            tags = [*self.tags, f"folder:{label}"] if self.folder_tags and label else list(self.tags)
            item = ItemToUpsert(
                id=item_id,
                vector=matrix[i],
                tags=tags,
                uri=columns["path"][i],
                model=(columns["model"][i], columns["model_version"][i]),
                timestamp=columns["timestamp"][i],
            )
            items.append((Path(columns["path"][i]), item))
        return items

    def finish(self) -> None:
        self.phase.finish(f"upserting into {self.collection}: {self.parts} parts, {self.report.indexed} items, {len(self.report.failed)} failed")
