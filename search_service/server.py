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
    """Opens the collections (replaying their logs) and builds the server (not started)."""
    server, port, *_ = _build(settings)
    return server, port


def serve(settings: SearchSettings) -> None:
    server, port, health, store, in_flight, reindexer, model_use = _build(settings)
    grpc_server.serve_metrics(settings, settings.metrics_port)
    server.start()
    log.info("search service listening", extra={"fields": {"port": port, "data_dir": str(settings.data_dir)}})
    try:
        grpc_server.run_until_signalled(server, health, in_flight, settings.grace_seconds)
    finally:
        model_use.stop()
        reindexer.stop()  # running reindexes stay running on disk and resume at the next start
        store.close()  # a snapshot on the way out makes the next start replay no log


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
    encoder = EncoderGateway(
        settings.encoder_address,
        settings.encoder_timeout_seconds,
        settings.max_message_bytes,
        credentials=tls_credentials(settings.encoder_tls_ca_file, settings.encoder_tls_cert_file, settings.encoder_tls_key_file),
        token=settings.encoder_token(),
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
    return server, port, health, store, in_flight, reindexer, model_use
