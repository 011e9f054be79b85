"""Limits that shed load: a server takes on a bounded amount of work and refuses the rest at once.

A server that accepts whatever arrives grows with its callers until the machine gives out (issue
12: 96 callers with 20 MB requests took the encoder to 2.2 GB, 16 callers with 40-megapixel PNGs
to 5.1 GB, and nothing was refused). Here every limit is checked before the work it guards and
refuses at once with RESOURCE_EXHAUSTED and a reason, which callers retry with backoff (or send to
another replica); nothing waits in a queue of its own. What each limit bounds, in memory:

- Calls: `max_concurrent_rpcs` (gRPC's `maximum_concurrent_rpcs`) counts the calls accepted,
  running or waiting for a worker thread, health checks included; gRPC refuses the next one on
  arrival, without reading it and without a reason. A waiting call's request is already whole
  in gRPC's buffers (measured: 24 callers of 20 MB behind 2 busy workers, +480 MB).
- Bytes: `InFlight` counts the requests that handlers hold against `max_inflight_bytes`, by the
  size of the serialized message, and refuses one that would pass it (SERVER_BUSY) before it is
  parsed. Health and reflection are not counted, so a busy server still answers its probes.
- Anything else a call needs (the encoder's decoded pixels): a `Budget`, reserved all-or-nothing
  before the work and released after.

A limit that one request breaks on its own (more pixels than a request may hold) is that
request's fault, INVALID_ARGUMENT; these limits are about the moment, hence retryable.
docs/operations.md adds them up and says how the defaults were chosen.

`InFlight` also counts the handlers running, which the drain on shutdown waits for
(`grpc_server.run_until_signalled`).

A budget bounds what is in use at once; the process's size also depends on what it keeps after
use. glibc keeps freed buffers of up to 32 MB in per-thread heaps once it has seen one that big
(its mmap threshold adapts upwards), so a process whose threads take turns decoding big pictures
grows to a picture per thread, budget or not: with one 40 MP decode at a time the encoder still
reached +540 MB. `map_large_allocations` turns that off.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Callable, Iterator

import grpc

from google.protobuf.message import DecodeError

from lookalike.errors import InvalidArgument, Reason, ResourceExhausted
from server_toolkit import rpc_handlers
from server_toolkit.auth import OPEN_METHOD_PREFIXES


class Budget:
    """An amount in use (bytes, pixels) under a limit. Reservations are all-or-nothing, never wait,
    and are released when their block ends, however it ends."""

    def __init__(self, limit: int, *, unit: str, setting: str, reason: str) -> None:
        self.limit, self.unit, self.setting, self.reason = limit, unit, setting, reason
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        return self._used

    @contextlib.contextmanager
    def reserved(self, amount: int) -> Iterator[None]:
        """Holds `amount` for the block; ResourceExhausted with the budget's reason, at once, when
        it does not fit beside what is in use."""
        with self._lock:
            used = self._used
            fits = used + amount <= self.limit
            if fits:
                self._used += amount
        if not fits:
            raise ResourceExhausted(
                f"the server is busy: {used:,} {self.unit} are in use of its {self.setting} of {self.limit:,}, "
                f"and this call needs {amount:,} more; retry with backoff",
                reason=self.reason,
                metadata={"limit": self.limit, "needed": amount},
            )
        try:
            yield
        finally:
            with self._lock:
                self._used -= amount


class InFlight(grpc.ServerInterceptor):
    """Counts what a server's handlers hold: the bytes of their requests, against
    `max_inflight_bytes`, and how many are running. Comes last among the interceptors, so a call
    the token check refuses costs nothing here."""

    def __init__(self, max_inflight_bytes: int) -> None:
        self.bytes = Budget(max_inflight_bytes, unit="bytes of requests", setting="max_inflight_bytes", reason=Reason.SERVER_BUSY)
        self._running = 0
        self._changed = threading.Condition()

    @property
    def running(self) -> int:
        return self._running

    def wait_until_idle(self, timeout: float) -> bool:
        """True once no handler runs; False when `timeout` seconds pass first."""
        with self._changed:
            return self._changed.wait_for(lambda: self._running == 0, timeout)

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        kind = rpc_handlers.shape(handler)
        if kind is None or handler_call_details.method.startswith(OPEN_METHOD_PREFIXES):
            return handler
        behaviour, parse = rpc_handlers.behaviour(handler), handler.request_deserializer

        def counted(request: _Unparsed, context: grpc.ServicerContext):
            with self._handler_running(), self.bytes.reserved(len(request.raw)):
                return behaviour(request.parsed(), context)

        # A stream's messages are not counted in the bytes: gRPC reads them as the handler asks
        # for them, each within max_message_bytes, and a handler holds a few at a time.
        def counted_stream(requests, context: grpc.ServicerContext):
            with self._handler_running():
                yield from behaviour(requests, context)

        if kind == rpc_handlers.STREAM:
            return rpc_handlers.rebuilt(handler, counted_stream)
        # gRPC hands the deserializer the whole message; keeping it unparsed until the budget has
        # room means a refused request is never parsed (a second copy of it).
        return rpc_handlers.rebuilt(handler, counted, parse=lambda raw: _Unparsed(raw, parse))

    @contextlib.contextmanager
    def _handler_running(self) -> Iterator[None]:
        with self._changed:
            self._running += 1
        try:
            yield
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()


class _Unparsed:
    """A request as gRPC received it, parsed on demand; the raw bytes are dropped once parsed."""

    __slots__ = ("raw", "_parse")

    def __init__(self, raw: bytes, parse: Callable[[bytes], object] | None) -> None:
        self.raw, self._parse = raw, parse

    def parsed(self):
        raw, self.raw = self.raw, b""
        if self._parse is None:
            return raw
        try:
            return self._parse(raw)
        except DecodeError:  # bytes no correct client sends; refused, not a server failure
            raise InvalidArgument(
                f"the request's {len(raw)} bytes are not a valid request message", reason=Reason.REQUEST_MALFORMED
            ) from None


_M_MMAP_THRESHOLD = -3  # mallopt's parameter, from glibc's malloc.h


def map_large_allocations(threshold_bytes: int = 4 * 1024 * 1024) -> bool:
    """Makes glibc give every allocation of `threshold_bytes` or more its own mapping, returned to
    the system when freed, instead of keeping it in a thread's heap (a fixed threshold also stops
    glibc from raising it). Measured on the encoder at 32 callers of 40 MP pictures, one decoded at
    a time: peak +540 MB without, +165 MB (the one picture) with. Small allocations, the ones of
    the normal path, are untouched. False where the C library is not glibc."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold_bytes))
