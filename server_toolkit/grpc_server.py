"""What every Lookalike gRPC server shares: limits, interceptors, TLS, health, reflection, graceful stop.

Each service keeps its own `create_server(settings) -> (server, port)` and calls
these helpers, so tests can bind port 0 and production runs `serve()`.
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from collections.abc import Iterable, Mapping

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from lookalike.client import message_options
from server_toolkit import security
from server_toolkit.auth import AuthInterceptor, Permission, TokenTable
from server_toolkit.error_mapping import ErrorMappingInterceptor

log = logging.getLogger(__name__)


def new_server(
    settings: security.SecuritySettings, permissions: Mapping[str, Permission], *, max_workers: int, max_message_bytes: int
) -> grpc.Server:
    """A server whose calls go through the error mapping and, with a tokens file, the token check.
    Refuses first (security.InsecureSettings) settings that would expose it without TLS or tokens."""
    security.check_exposure(settings)
    # The mapping comes first: it wraps what the token check returns, so refusals get its statuses too.
    interceptors: list[grpc.ServerInterceptor] = [ErrorMappingInterceptor()]
    if settings.tokens_file is not None:
        tokens = TokenTable.load(settings.tokens_file)
        if not len(tokens):
            log.warning("the tokens file lists no token: every call but health is refused", extra={"fields": {"tokens_file": str(settings.tokens_file)}})
        interceptors.append(AuthInterceptor(tokens, permissions))
    log.info(
        "access control",
        extra={
            "fields": {
                "host": settings.host,
                "tls": settings.tls_cert_file is not None,
                "mutual_tls": settings.tls_client_ca_file is not None,
                "tokens": settings.tokens_file is not None,
                "reflection": settings.reflection,
            }
        },
    )
    return grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        interceptors=interceptors,
        options=message_options(max_message_bytes),
    )


def add_health_and_reflection(server: grpc.Server, service_names: Iterable[str], *, reflection_on: bool) -> health.HealthServicer:
    """Registers grpc.health.v1 (every service NOT_SERVING until the caller says so) and, when on, reflection."""
    names = list(service_names)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ["", *names]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    if reflection_on:
        reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    return health_servicer


def set_serving(health_servicer: health.HealthServicer, service_names: Iterable[str], serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ["", *service_names]:
        health_servicer.set(name, status)


def bind(server: grpc.Server, settings: security.SecuritySettings, port: int) -> int:
    """Listens on the settings' host and `port`, over TLS when they name a certificate; returns the bound port."""
    address = f"{settings.host}:{port}"
    credentials = security.server_credentials(settings)
    bound = server.add_insecure_port(address) if credentials is None else server.add_secure_port(address, credentials)
    if bound == 0:
        raise OSError(f"cannot listen on {address}")
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
