"""The search service's process: `create_server` for tests, `serve` for production."""

from __future__ import annotations

import logging
import socket

import grpc

from lookalike.client import tls_credentials
from server_toolkit import auth, grpc_server
from lookalike.v1 import search_pb2, search_pb2_grpc
from search_service.collection_store import CollectionStore
from search_service.encoder_gateway import EncoderGateway
from search_service.item_writes import ItemWrites
from search_service.model_use import ModelUseReporter
from search_service.reindex import Reindexer
from search_service.router.servicer import RouterServicer
from search_service.router.shard_pool import ShardPool
from search_service.servicer import SearchServicer
from search_service.settings import SearchSettings
from search_service.vector_index import IndexPolicy

log = logging.getLogger(__name__)

SERVICE = search_pb2.DESCRIPTOR.services_by_name["Search"]
SERVICE_NAMES = [SERVICE.full_name]
# What a token must grant for each method (docs/security.md): reads, item writes, and the
# collection-level changes that can lose a catalogue.
PERMISSIONS = auth.method_permissions(
    SERVICE,
    read=["Search", "SearchBatch", "FindCopies", "Get", "ListItems", "ListCollections", "GetCollection", "ListAliases", "GetOperation", "ListOperations"],
    write=["Upsert", "UpsertStream", "UpdateItems", "Delete"],
    admin=[
        "CreateCollection", "DeleteCollection", "CreateAlias", "SwitchAlias", "DeleteAlias", "StartReindex", "CancelOperation",
        "ExportCollection", "ImportCollection",  # a backup holds the whole catalogue; a restore creates one
    ],
)


def create_server(settings: SearchSettings) -> tuple[grpc.Server, int]:
    """Opens the collections (replaying their logs), or in router mode the channels to the
    shards, and builds the server (not started)."""
    server, port, *_ = _build(settings)
    return server, port


def serve(settings: SearchSettings) -> None:
    server, port, health, in_flight, stop = _build(settings)
    grpc_server.serve_metrics(settings, settings.metrics_port)
    probes = grpc_server.serve_health_port(settings, health)
    server.start()
    where = {"shards": settings.shards} if settings.mode == "router" else {"data_dir": str(settings.data_dir)}
    log.info("search service listening", extra={"fields": {"port": port, "mode": settings.mode, **where}})
    try:
        grpc_server.run_until_signalled(server, health, in_flight, settings.grace_seconds)
    finally:
        if probes is not None:
            probes.stop(None)
        stop()


def _build(settings: SearchSettings):
    server, in_flight = grpc_server.new_server(
        settings,
        PERMISSIONS,
        max_workers=settings.max_workers,
        max_message_bytes=settings.max_message_bytes,
        max_concurrent_rpcs=settings.max_concurrent_rpcs,
        max_inflight_bytes=settings.max_inflight_bytes,
    )
    health = grpc_server.add_health_and_reflection(server, SERVICE_NAMES, reflection_on=settings.reflection)
    encoder = EncoderGateway(
        settings.encoder_address,
        settings.encoder_timeout_seconds,
        settings.max_message_bytes,
        credentials=tls_credentials(settings.encoder_tls_ca_file, settings.encoder_tls_cert_file, settings.encoder_tls_key_file),
        token=settings.encoder_token(),
    )
    add = _add_router if settings.mode == "router" else _add_collections
    port, stop = add(server, health, encoder, settings)
    return server, port, health, in_flight, stop


def _add_router(server: grpc.Server, health, encoder: EncoderGateway, settings: SearchSettings):
    """Router mode (docs/sharding.md): no data of its own, the same API answered by the shards."""
    shards = settings.shard_addresses()
    pool = ShardPool(
        shards,
        settings.shard_timeout_seconds,
        settings.max_message_bytes,
        credentials=tls_credentials(settings.shard_tls_ca_file, settings.shard_tls_cert_file, settings.shard_tls_key_file),
        token=settings.shard_token(),
    )
    search_pb2_grpc.add_SearchServicer_to_server(RouterServicer(pool, encoder, settings), server)
    port = grpc_server.bind(server, settings, settings.port)
    # SERVING at once, shards up or not: a router with a shard down still answers partial
    # searches, and every other call names the shard that is down (SHARD_UNAVAILABLE).
    grpc_server.set_serving(health, SERVICE_NAMES, True)
    log.info("routing to shards", extra={"fields": {"shards": len(shards), "replicas": [len(s) for s in shards]}})
    return port, pool.close


def _add_collections(server: grpc.Server, health, encoder: EncoderGateway, settings: SearchSettings):
    """Single mode: the collections of data_dir."""
    policy = IndexPolicy(
        recall_target=settings.recall_target, brute_force_below=settings.brute_force_below, rebuild_threads=settings.rebuild_threads
    )
    store = CollectionStore(
        settings.data_dir,
        fsync=settings.fsync,
        snapshot_every=settings.snapshot_every,
        index_policy=policy,
        max_source_bytes=settings.max_kept_source_bytes,
    )
    writes = ItemWrites(store)
    reindexer = Reindexer(store, writes, encoder, settings)
    search_pb2_grpc.add_SearchServicer_to_server(SearchServicer(store, writes, reindexer, encoder, settings), server)
    port = grpc_server.bind(server, settings, settings.port)
    model_use = ModelUseReporter(store, encoder, settings.instance_name or f"search@{socket.gethostname()}:{port}", settings.model_use_report_seconds)
    store.watch(model_use.poke)
    model_use.start()
    # SERVING even when a collection was refused: health speaks for the whole service, and one
    # damaged collection must not take the healthy ones out of rotation. The damaged one is
    # visible to clients instead, as STATE_DAMAGED with its reason in GetCollection/ListCollections.
    grpc_server.set_serving(health, SERVICE_NAMES, True)
    failed = store.failed()
    loaded = len(store.list()) - len(failed)
    log.info("collections loaded", extra={"fields": {"collections": loaded, "damaged": len(failed)}})
    for name, reason in failed.items():
        log.error("collection refused at load", extra={"fields": {"collection": name, "reason": reason}})
    reindexer.resume()

    def stop() -> None:
        model_use.stop()
        reindexer.stop()  # running reindexes stay running on disk and resume at the next start
        store.close()  # a snapshot on the way out makes the next start replay no log

    return port, stop
