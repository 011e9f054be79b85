"""Prometheus metrics of every Lookalike server's calls, and the endpoint that serves a process's metrics.

`MetricsInterceptor` counts each call by method and final status code and times it, under the
names of the grpc-ecosystem interceptors (go-grpc-prometheus, py-grpc-prometheus), so the usual
dashboards and alerts work unchanged:

- `grpc_server_started_total{grpc_service, grpc_method, grpc_type}`
- `grpc_server_handled_total{grpc_service, grpc_method, grpc_type, grpc_code}`: failures are the
  codes other than OK, e.g. `sum by (grpc_code) (rate(grpc_server_handled_total{grpc_code!="OK"}[5m]))`
- `grpc_server_handling_seconds{grpc_service, grpc_method, grpc_type}`: a histogram, from the
  handler's start to its return (a stream: to its last response)

It is the outermost interceptor, so it sees the status the error mapping gave a call; calls gRPC
refuses before any interceptor (`max_concurrent_rpcs`, a message over the size limit) are not
counted here. Health checks are. The metrics live in prometheus_client's process-wide registry,
which is also what a process exports: `serve_endpoint` serves it over HTTP for Prometheus to
scrape, so a process that runs a server calls it once, from its `serve()`.
"""

from __future__ import annotations

import logging
import threading
import time

import grpc
import prometheus_client

from server_toolkit import rpc_handlers

log = logging.getLogger(__name__)

_LABELS = ("grpc_service", "grpc_method", "grpc_type")
STARTED = prometheus_client.Counter("grpc_server_started", "RPCs started on the server.", _LABELS)
HANDLED = prometheus_client.Counter("grpc_server_handled", "RPCs completed on the server, by status code.", (*_LABELS, "grpc_code"))
HANDLING_SECONDS = prometheus_client.Histogram(
    "grpc_server_handling_seconds",
    "Time from the start of an RPC's handler to its end.",
    _LABELS,
    # From a health check (~0.1 ms) to a batch of large photos (seconds).
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
_GRPC_TYPES = {rpc_handlers.UNARY: "unary", rpc_handlers.STREAM: "bidi_stream"}


class _MethodMetrics:
    """One method's series, resolved once: label lookups cost more than the observations."""

    def __init__(self, method: str, kind: str) -> None:
        service, _, name = method.lstrip("/").rpartition("/")
        self.labels = (service, name, _GRPC_TYPES[kind])
        self.started = STARTED.labels(*self.labels)
        self.seconds = HANDLING_SECONDS.labels(*self.labels)
        self._handled: dict[str, prometheus_client.Counter] = {}

    def handled(self, code: str) -> prometheus_client.Counter:
        counter = self._handled.get(code)
        if counter is None:
            counter = self._handled[code] = HANDLED.labels(*self.labels, code)
        return counter


class MetricsInterceptor(grpc.ServerInterceptor):
    """Counts and times every unary and bidirectional call (see the module docstring)."""

    def __init__(self) -> None:
        self._methods: dict[str, _MethodMetrics] = {}
        self._lock = threading.Lock()

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        kind = rpc_handlers.shape(handler)
        if kind is None:
            return handler
        metrics = self._metrics(handler_call_details.method, kind)
        behaviour = rpc_handlers.behaviour(handler)

        def measured(request, context: grpc.ServicerContext):
            began, code = _started(metrics), "OK"
            try:
                response = behaviour(request, context)
                code = _code(context, "OK")
                return response
            except BaseException:
                code = _code(context, "UNKNOWN")
                raise
            finally:
                _ended(metrics, began, code)

        def measured_stream(requests, context: grpc.ServicerContext):
            began, code = _started(metrics), "OK"
            try:
                yield from behaviour(requests, context)
                code = _code(context, "OK")
            except GeneratorExit:  # the client went away mid-stream
                code = "CANCELLED"
                raise
            except BaseException:
                code = _code(context, "UNKNOWN")
                raise
            finally:
                _ended(metrics, began, code)

        return rpc_handlers.rebuilt(handler, measured if kind == rpc_handlers.UNARY else measured_stream)

    def _metrics(self, method: str, kind: str) -> _MethodMetrics:
        metrics = self._methods.get(method)
        if metrics is None:
            with self._lock:
                metrics = self._methods.setdefault(method, _MethodMetrics(method, kind))
        return metrics


def _started(metrics: _MethodMetrics) -> float:
    metrics.started.inc()
    return time.perf_counter()


def _ended(metrics: _MethodMetrics, began: float, code: str) -> None:
    metrics.seconds.observe(time.perf_counter() - began)
    metrics.handled(code).inc()


def _code(context: grpc.ServicerContext, otherwise: str) -> str:
    """The status the call ends with: what the handler or the error mapping set, else `otherwise`."""
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else otherwise


def serve_endpoint(host: str, port: int, *, cert_file=None, key_file=None) -> int:
    """Serves the process's metrics at http(s)://host:port/metrics (HTTPS with the server's own
    certificate when it has one) from a daemon thread, until the process ends; returns the port
    (0 picks a free one)."""
    certificate = {} if cert_file is None else {"certfile": str(cert_file), "keyfile": str(key_file)}
    # gRPC's hosts are bracketed ("[::]"), the HTTP server's are not.
    httpd, _ = prometheus_client.start_http_server(port, addr=host.strip("[]"), **certificate)
    log.info("metrics endpoint listening", extra={"fields": {"host": host, "port": httpd.server_port, "tls": bool(certificate)}})
    return httpd.server_port
