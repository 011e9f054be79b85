"""The encoder service's process: `create_server` for tests, `serve` for production."""

from __future__ import annotations

import dataclasses
import logging
import threading

import grpc

from encoder_service.batching import ModelQueue
from encoder_service.decoding import DecodePool
from encoder_service.execution_providers import CPU, providers_for
from encoder_service.model_repository import ModelRepository
from encoder_service.onnx_model import OnnxModel
from encoder_service.servicer import EncoderServicer
from encoder_service.settings import EncoderSettings
from encoder_service.thread_plan import ThreadPlan
from server_toolkit import auth, grpc_server, load_limits
from lookalike.v1 import encoder_pb2, encoder_pb2_grpc

log = logging.getLogger(__name__)

SERVICE = encoder_pb2.DESCRIPTOR.services_by_name["Encoder"]
SERVICE_NAMES = [SERVICE.full_name]
# What a token must grant for each method (docs/security.md): reading, or changing what is served.
PERMISSIONS = auth.method_permissions(
    SERVICE,
    # ReportModelUse is read: the search service calls the encoder with a read token, and a report
    # can only keep versions served, for its ttl (at most an hour).
    read=["Embed", "EmbedStream", "Reconstruct", "GetModel", "ListModels", "ReportModelUse"],
    admin=["LoadModel", "UnloadModel"],
)


class _RepositoryWatcher(threading.Thread):
    """Rescans the repository so a new version is served without a restart; health follows the models."""

    def __init__(self, repository: ModelRepository, health, every_seconds: float) -> None:
        super().__init__(name="model-repository-watcher", daemon=True)
        self.repository, self.health, self.every_seconds = repository, health, every_seconds
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every_seconds):
            try:
                self.repository.refresh()
            except Exception:
                log.exception("model repository scan failed")
            grpc_server.set_serving(self.health, SERVICE_NAMES, bool(self.repository.all()))


def create_server(settings: EncoderSettings) -> tuple[grpc.Server, int]:
    """Loads the models and builds the server (not started); returns it with its bound port."""
    server, port, *_ = _build(settings)
    return server, port


def serve(settings: EncoderSettings) -> None:
    # Decoded pictures are tens of MB each: freed, they must go back to the system, or the decode
    # budget bounds what is in use but not the process (server_toolkit/load_limits.py).
    if not load_limits.map_large_allocations():
        log.warning("not glibc: freed picture buffers may stay in the process's heaps")
    server, port, health, in_flight, repository, decoders = _build(settings)
    grpc_server.serve_metrics(settings, settings.metrics_port)
    probes = grpc_server.serve_health_port(settings, health)
    server.start()
    log.info("encoder service listening", extra={"fields": {"port": port}})
    grpc_server.run_until_signalled(server, health, in_flight, settings.grace_seconds)
    if probes is not None:
        probes.stop(None)
    repository.close()
    decoders.shutdown()


def load_models(settings: EncoderSettings) -> tuple[ModelRepository, DecodePool]:
    """What serves Embed whatever gRPC server carries it: the models loaded behind their queues,
    and the decode pool, with threads that fit the cores (benchmarks/encoder_asyncio.py runs them
    under grpc.aio too)."""
    providers = providers_for(settings.device)
    threads = ThreadPlan.choose(settings.intra_op_threads, settings.decode_threads, gpu=providers[0] != CPU)
    log.info("threads", extra={"fields": dataclasses.asdict(threads)})

    def queue_for(model: OnnxModel) -> ModelQueue:
        return ModelQueue(
            model,
            enabled=settings.dynamic_batching,
            max_batch=settings.max_model_batch,
            max_delay_seconds=settings.max_queue_delay_ms / 1000,
            max_images=settings.max_queue_images,
        )

    repository = ModelRepository(
        settings.model_repository,
        providers,
        queue_for,
        intra_op_threads=threads.intra_op_threads,
        default_model=settings.default_model,
        keep_versions=settings.keep_versions,
        serve_versions=settings.serve_versions,
        warm_up_batch=settings.max_model_batch,
        engine_cache=settings.tensorrt_engine_cache,
    )
    repository.refresh()
    return repository, DecodePool(threads.decode_threads, settings.max_image_pixels)


def _build(settings: EncoderSettings):
    # First, so settings that would expose the server are refused before any model loads.
    server, in_flight = grpc_server.new_server(
        settings,
        PERMISSIONS,
        max_workers=settings.max_workers,
        max_message_bytes=settings.max_message_bytes,
        max_concurrent_rpcs=settings.max_concurrent_rpcs,
        max_inflight_bytes=settings.max_inflight_bytes,
    )
    repository, decoders = load_models(settings)
    encoder_pb2_grpc.add_EncoderServicer_to_server(EncoderServicer(repository, settings, decoders), server)
    health = grpc_server.add_health_and_reflection(server, SERVICE_NAMES, reflection_on=settings.reflection)
    grpc_server.set_serving(health, SERVICE_NAMES, bool(repository.all()))
    if not repository.all():
        log.warning("no model loaded yet", extra={"fields": {"repository": str(settings.model_repository)}})
    if settings.refresh_seconds > 0:
        watcher = _RepositoryWatcher(repository, health, settings.refresh_seconds)
        watcher.start()
    port = grpc_server.bind(server, settings, settings.port)
    return server, port, health, in_flight, repository, decoders
