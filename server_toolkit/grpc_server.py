"""What every Lookalike gRPC server shares: limits, interceptors, TLS, health, reflection, graceful stop.

Each service keeps its own `create_server(settings) -> (server, port)` and calls
these helpers, so tests can bind port 0 and production runs `serve()`.

Stopping is bounded, because an orchestrator kills what overruns its grace (SIGKILL), mid-write
and without a word. On SIGTERM or SIGINT (`run_until_signalled`): health says NOT_SERVING and
gRPC refuses new calls; the calls in flight get `grace_seconds` to finish; then gRPC cancels
them, and long handlers stop at their next `stop_if_cancelled` (the encoder checks between
images), because a cancelled call's thread otherwise works on for nobody (issue 12: SIGTERM with
a 10 s grace ended the process after 34 s). A handler still running EXIT_MARGIN_SECONDS after
the grace is not waited for: the process ends at once, with a log line naming how many.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from concurrent import futures
from collections.abc import Iterable, Mapping

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from lookalike.client import message_options
from lookalike.errors import Cancelled, Reason
from server_toolkit import security
from server_toolkit.auth import AuthInterceptor, Permission, TokenTable
from server_toolkit.error_mapping import ErrorMappingInterceptor
from server_toolkit.load_limits import InFlight
from server_toolkit.metrics import MetricsInterceptor, serve_endpoint

log = logging.getLogger(__name__)

# After the grace, how long cancelled handlers get to reach their next check (one image, one
# model run) before the process ends without them.
EXIT_MARGIN_SECONDS = 2.0


def new_server(
    settings: security.SecuritySettings,
    permissions: Mapping[str, Permission],
    *,
    max_workers: int,
    max_message_bytes: int,
    max_concurrent_rpcs: int,
    max_inflight_bytes: int,
) -> tuple[grpc.Server, InFlight]:
    """A server whose calls go through the error mapping, with a tokens file the token check, and
    the load limits (server_toolkit/load_limits.py); returns it with its `InFlight`, which
    `run_until_signalled` drains. Refuses first (security.InsecureSettings) settings that would
    expose it without TLS or tokens."""
    security.check_exposure(settings)
    # The metrics come first, to count the status each call ends with; then the mapping: it wraps
    # what the token check and the limits return, so their refusals get its statuses too. The
    # limits come last: a call without a valid token costs nothing.
    interceptors: list[grpc.ServerInterceptor] = [MetricsInterceptor(), ErrorMappingInterceptor()]
    if settings.tokens_file is not None:
        tokens = TokenTable.load(settings.tokens_file)
        if not len(tokens):
            log.warning("the tokens file lists no token: every call but health is refused", extra={"fields": {"tokens_file": str(settings.tokens_file)}})
        interceptors.append(AuthInterceptor(tokens, permissions))
    in_flight = InFlight(max_inflight_bytes)
    interceptors.append(in_flight)
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
    log.info(
        "load limits",
        extra={
            "fields": {
                "max_workers": max_workers,
                "max_concurrent_rpcs": max_concurrent_rpcs,
                "max_inflight_bytes": max_inflight_bytes,
                "max_message_bytes": max_message_bytes,
            }
        },
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        interceptors=interceptors,
        options=message_options(max_message_bytes),
        maximum_concurrent_rpcs=max_concurrent_rpcs,
    )
    return server, in_flight


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


def serve_metrics(settings: security.SecuritySettings, port: int | None) -> None:
    """For `serve()`: the process's Prometheus metrics on the settings' host at `port` (None: not
    served), over HTTPS with the gRPC server's certificate when it has one (server_toolkit/metrics.py)."""
    if port is not None:
        serve_endpoint(settings.host, port, cert_file=settings.tls_cert_file, key_file=settings.tls_key_file)


def serve_health_port(settings: security.SecuritySettings, health_servicer: health.HealthServicer) -> grpc.Server | None:
    """For `serve()`: grpc.health.v1 alone, in plaintext, on the settings' host at `health_port`
    (None: not served), answering with the main server's statuses (NOT_SERVING from the start of
    a drain). Kubernetes' gRPC probes speak no TLS (`mode: TLS` is alpha in 1.37), so a server
    with TLS needs this port for them; it carries no other service and no data. Returns the
    started server: hold it (a collected grpc.Server stops) and stop it after the main one."""
    if settings.health_port is None:
        return None
    probes = grpc.server(futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="health"), maximum_concurrent_rpcs=16)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, probes)
    address = f"{settings.host}:{settings.health_port}"
    if probes.add_insecure_port(address) == 0:
        raise OSError(f"cannot listen on {address} for health probes")
    probes.start()
    log.info("health probes served in plaintext", extra={"fields": {"port": settings.health_port}})
    return probes


def run_until_signalled(server: grpc.Server, health_servicer: health.HealthServicer, in_flight: InFlight, grace_seconds: float) -> None:
    """Serves until SIGTERM/SIGINT, then drains within `grace_seconds` + EXIT_MARGIN_SECONDS (see
    the module's docstring) and returns; a second signal, or a handler that outlives the margin,
    ends the process at once (exit status 1)."""
    stop = threading.Event()

    def on_signal(signum, frame) -> None:
        if stop.is_set():
            log.warning("second signal while draining: exiting now", extra={"fields": {"running": in_flight.running}})
            os._exit(1)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    stop.wait()
    deadline = time.monotonic() + grace_seconds + EXIT_MARGIN_SECONDS
    log.info("shutting down", extra={"fields": {"grace_seconds": grace_seconds, "running": in_flight.running}})
    health_servicer.enter_graceful_shutdown()
    stopped = server.stop(grace_seconds)  # refuses new calls now, cancels the rest after the grace
    if not (stopped.wait(_left(deadline)) and in_flight.wait_until_idle(_left(deadline))):
        log.error(
            "handlers still running past the grace and its margin: exiting without them",
            extra={"fields": {"running": in_flight.running, "grace_seconds": grace_seconds, "margin_seconds": EXIT_MARGIN_SECONDS}},
        )
        os._exit(1)
    log.info("stopped")


def stop_if_cancelled(context: grpc.ServicerContext) -> None:
    """For long handlers, between units of work (images): raises Cancelled once nobody waits for
    the call any more (its caller cancelled, its deadline passed, or the server's grace ran out)."""
    if not context.is_active():
        raise Cancelled("the call was cancelled; its work stopped", reason=Reason.CALL_CANCELLED)


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())
