"""What every Lookalike gRPC server shares: limits, health, reflection, graceful stop.

Each service keeps its own `create_server(settings) -> (server, port)` and calls
these helpers, so tests can bind port 0 and production runs `serve()`.
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from collections.abc import Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from lookalike.client import message_options
from server_toolkit.error_mapping import ErrorMappingInterceptor

log = logging.getLogger(__name__)


def new_server(*, max_workers: int, max_message_bytes: int) -> grpc.Server:
    return grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        interceptors=[ErrorMappingInterceptor()],
        options=message_options(max_message_bytes),
    )


def add_health_and_reflection(server: grpc.Server, service_names: Iterable[str]) -> health.HealthServicer:
    """Registers grpc.health.v1 (every service NOT_SERVING until the caller says so) and reflection."""
    names = list(service_names)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ["", *names]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    return health_servicer


def set_serving(health_servicer: health.HealthServicer, service_names: Iterable[str], serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ["", *service_names]:
        health_servicer.set(name, status)


def bind(server: grpc.Server, host: str, port: int) -> int:
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    return bound


def run_until_signalled(server: grpc.Server, health_servicer: health.HealthServicer, grace_seconds: float) -> None:
    """Serves until SIGTERM/SIGINT, then drains: health says NOT_SERVING, in-flight calls get `grace_seconds`."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    log.info("shutting down", extra={"fields": {"grace_seconds": grace_seconds}})
    health_servicer.enter_graceful_shutdown()
    server.stop(grace_seconds).wait()
