"""The lookalike.v1.Search servicer of router mode: the same API as a single service, answered by
the shards (docs/sharding.md). Each method hands its request, with what is left of the caller's
deadline, to the part that knows how to spread it: reads, writes, the upsert stream, collections
and aliases, operations. Backups are per shard (ExportCollection and ImportCollection are not
served here: back up each shard)."""

from __future__ import annotations

from lookalike.errors import Reason, Unimplemented
from lookalike.v1 import search_pb2_grpc
from search_service.encoder_gateway import EncoderGateway
from search_service.router import stream_ingest
from search_service.router.admin import Admin
from search_service.router.operations import Operations
from search_service.router.queries import QueryResolver
from search_service.router.reads import Reads
from search_service.router.shard_pool import ShardPool
from search_service.router.writes import Writes
from search_service.settings import SearchSettings


class RouterServicer(search_pb2_grpc.SearchServicer):
    def __init__(self, pool: ShardPool, encoder: EncoderGateway, settings: SearchSettings) -> None:
        self.pool = pool
        self.settings = settings
        self.reads = Reads(pool, QueryResolver(pool, encoder), settings)
        self.writes = Writes(pool, settings)
        self.admin = Admin(pool)
        self.operations = Operations(pool)

    def CreateCollection(self, request, context):
        return self.admin.create_collection(request, context.time_remaining())

    def GetCollection(self, request, context):
        return self.admin.get_collection(request, context.time_remaining())

    def ListCollections(self, request, context):
        return self.admin.list_collections(request, context.time_remaining())

    def DeleteCollection(self, request, context):
        return self.admin.delete_collection(request, context.time_remaining())

    def CreateAlias(self, request, context):
        return self.admin.create_alias(request, context.time_remaining())

    def SwitchAlias(self, request, context):
        return self.admin.switch_alias(request, context.time_remaining())

    def DeleteAlias(self, request, context):
        return self.admin.delete_alias(request, context.time_remaining())

    def ListAliases(self, request, context):
        return self.admin.list_aliases(request, context.time_remaining())

    def StartReindex(self, request, context):
        return self.operations.start(request, context.time_remaining())

    def GetOperation(self, request, context):
        return self.operations.get(request, context.time_remaining())

    def ListOperations(self, request, context):
        return self.operations.list(request, context.time_remaining())

    def CancelOperation(self, request, context):
        return self.operations.cancel(request, context.time_remaining())

    def Upsert(self, request, context):
        return self.writes.upsert(request, context.time_remaining())

    def UpsertStream(self, request_iterator, context):
        return stream_ingest.ingest(request_iterator, self.pool, self.settings, context.time_remaining())

    def UpdateItems(self, request, context):
        return self.writes.update_items(request, context.time_remaining())

    def Delete(self, request, context):
        return self.writes.delete(request, context.time_remaining())

    def Get(self, request, context):
        return self.reads.get(request, context.time_remaining())

    def ListItems(self, request, context):
        return self.reads.list_items(request, context.time_remaining())

    def Search(self, request, context):
        return self.reads.search(request, context.time_remaining())

    def SearchBatch(self, request, context):
        return self.reads.search_batch(request, context.time_remaining())

    def FindCopies(self, request, context):
        return self.reads.find_copies(request, context.time_remaining())

    def ExportCollection(self, request_iterator, context):
        raise _per_shard("ExportCollection")

    def ImportCollection(self, request_iterator, context):
        raise _per_shard("ImportCollection")


def _per_shard(method: str) -> Unimplemented:
    return Unimplemented(
        f"{method} is per shard: call each shard's own address, and restore each backup into the shard of the same index "
        "(docs/operations.md, Backups)",
        reason=Reason.ROUTER_UNSUPPORTED,
        metadata={"option": method},
    )
