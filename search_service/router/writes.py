"""The router's item writes: each item goes to the shard that owns its id (placement.py), to every
replica of that shard, and the call is acknowledged only when all of them acknowledged.

A batch is split by shard and the parts are written at once. Each part is all or nothing on its
shard, but the batch is not across shards: when one shard refuses its part (an invalid item) the
others may have written theirs. The refusal names the caller's own fields ("items[7].vector", not
the shard's "items[2].vector"), so the caller fixes the item and resends the batch, and the
resent batch converges: an upsert replaces by id, a delete ignores missing ids.
"""

from __future__ import annotations

import re

from lookalike.errors import FieldViolation, InvalidArgument, LookalikeError, Reason
from lookalike.v1 import search_pb2
from search_service.router import placement
from search_service.router.shard_pool import ShardPool
from search_service.settings import SearchSettings

_ITEM = re.compile(r"items\[(\d+)\]")


class Writes:
    def __init__(self, pool: ShardPool, settings: SearchSettings) -> None:
        self.pool = pool
        self.settings = settings

    def upsert(self, request: search_pb2.UpsertRequest, time_left: float | None) -> search_pb2.UpsertResponse:
        answers = self._split_write("Upsert", request, time_left)
        return search_pb2.UpsertResponse(upserted=sum(replicas[0].upserted for replicas in answers.values()))

    def update_items(self, request: search_pb2.UpdateItemsRequest, time_left: float | None) -> search_pb2.UpdateItemsResponse:
        answers = self._split_write("UpdateItems", request, time_left)
        return search_pb2.UpdateItemsResponse(updated=sum(replicas[0].updated for replicas in answers.values()))

    def delete(self, request: search_pb2.DeleteRequest, time_left: float | None) -> search_pb2.DeleteResponse:
        ids = list(request.ids)
        owners = placement.split(ids, self.pool.count) or {0: []}  # no ids: shard 0 still says whether the collection exists
        requests = {s: search_pb2.DeleteRequest(collection=request.collection, ids=[ids[p] for p in positions]) for s, positions in owners.items()}
        answers = self.pool.write_all("Delete", requests, time_left)
        # A replica that missed an earlier, failed attempt of this delete counts ids its peers no
        # longer have: the most any replica deleted is what this call deleted.
        return search_pb2.DeleteResponse(deleted=sum(max(a.deleted for a in replicas) for replicas in answers.values()))

    def _split_write(self, method: str, request, time_left: float | None) -> dict[int, list]:
        """`request`'s items split by owning shard, each part written to every replica of its shard."""
        items = request.items
        if len(items) > self.settings.max_batch_size:  # the parts would each pass a shard's limit
            raise InvalidArgument(
                f"{len(items)} items in one {method.lower()}, the limit is {self.settings.max_batch_size}",
                reason=Reason.BATCH_TOO_LARGE,
                field="items",
                metadata={"limit": self.settings.max_batch_size},
            )
        owners = placement.split([item.id for item in items], self.pool.count) or {0: []}  # no items: shard 0 refuses as a single service does
        parts = {}
        for shard, positions in owners.items():
            part = type(request)()
            part.CopyFrom(request)
            del part.items[:]
            part.items.extend(items[p] for p in positions)
            parts[shard] = part
        try:
            return self.pool.write_all(method, parts, time_left)
        except LookalikeError as error:
            raise _relocated(error, owners) from None


def relocate_text(text: str, positions: list[int]) -> str:
    """"items[j]" of a shard's part renamed "items[positions[j]]", the caller's item."""
    return _ITEM.sub(lambda m: f"items[{positions[int(m.group(1))]}]" if int(m.group(1)) < len(positions) else m.group(0), text)


def _relocated(error: LookalikeError, owners: dict[int, list[int]]) -> LookalikeError:
    """A shard's refusal of its part, with the part's item paths renamed to the caller's."""
    shard = getattr(error, "shard", None)
    if shard not in owners:
        return error
    positions = owners[shard]
    moved = type(error)(relocate_text(error.message, positions), reason=error.reason, metadata=error.metadata)
    moved.code = error.code  # the base class's, for a code without a class of its own
    moved.field_violations = tuple(
        FieldViolation(relocate_text(v.field, positions), relocate_text(v.description, positions), v.reason) for v in error.field_violations
    )
    return moved
