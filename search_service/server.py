"""The search service's process: `create_server` for tests, `serve` for production."""

from __future__ import annotations

import logging

import grpc

from server_toolkit import grpc_server
from lookalike.v1 import search_pb2, search_pb2_grpc
from search_service.collection_store import CollectionStore
from search_service.encoder_gateway import EncoderGateway
from search_service.servicer import SearchServicer
from search_service.settings import SearchSettings

log = logging.getLogger(__name__)

SERVICE_NAMES = [search_pb2.DESCRIPTOR.services_by_name["Search"].full_name]


def create_server(settings: SearchSettings) -> tuple[grpc.Server, int]:
    """Opens the collections (replaying their logs) and builds the server (not started)."""
    server, port, _, _ = _build(settings)
    return server, port


def serve(settings: SearchSettings) -> None:
    server, port, health, store = _build(settings)
    server.start()
    log.info("search service listening", extra={"fields": {"port": port, "data_dir": str(settings.data_dir)}})
    try:
        grpc_server.run_until_signalled(server, health, settings.grace_seconds)
    finally:
        store.close()  # a snapshot on the way out makes the next start replay no log


def _build(settings: SearchSettings):
    server = grpc_server.new_server(max_workers=settings.max_workers, max_message_bytes=settings.max_message_bytes)
    health = grpc_server.add_health_and_reflection(server, SERVICE_NAMES)
    store = CollectionStore(settings.data_dir, fsync=settings.fsync, snapshot_every=settings.snapshot_every)
    encoder = EncoderGateway(settings.encoder_address, settings.encoder_timeout_seconds, settings.max_message_bytes)
    search_pb2_grpc.add_SearchServicer_to_server(SearchServicer(store, encoder, settings), server)
    port = grpc_server.bind(server, settings.host, settings.port)
    grpc_server.set_serving(health, SERVICE_NAMES, True)
    log.info("collections loaded", extra={"fields": {"collections": len(store.list())}})
    for name, reason in store.failed().items():
        log.error("collection refused at load", extra={"fields": {"collection": name, "reason": reason}})
    return server, port, health, store
