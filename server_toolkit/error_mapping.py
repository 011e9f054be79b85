"""The one place where domain errors become gRPC statuses.

Servicers raise `lookalike.errors` exceptions; `ErrorMappingInterceptor` sends each as its
status code with google.rpc details (`lookalike.errors.to_status`: ErrorInfo with the reason,
BadRequest with the fields at fault). Anything else is a bug: it is logged with its traceback
and the client gets INTERNAL without the internals (no path, no exception text).

A refusal travels in the reply's trailers, which clients bound: gRPC's C core (Python, C++, Ruby...)
drops a reply whose metadata passes 8 KiB (at random up to 16 KiB, then always, tearing down the
connection), and its caller sees RESOURCE_EXHAUSTED "Stream removed", a code errors.proto calls
safe to retry, without any details. The status is in the trailers twice (`grpc-message`,
percent-encoded; `grpc-status-details-bin`, base64), and its texts echo the request's strings (a
5,000-character collection name) and name every bad item of a batch (256 wrong-sized vectors: 26
KB). So each text is cut to MAX_TEXT_BYTES and the field violations to what fits in
MAX_DETAILS_BYTES, the first ones first; the message then says how many are not listed. The log
line keeps the whole message. (Found by tests/reliability/test_fuzz_rpcs.py.)
"""

import contextlib
import logging
from collections.abc import Iterator

import grpc

from lookalike import errors
from server_toolkit import rpc_handlers

log = logging.getLogger(__name__)

MAX_TEXT_BYTES = 256  # of UTF-8, for the message, each field path and description, each metadata value
MAX_DETAILS_BYTES = 2048  # the field violations' share of the google.rpc.Status, serialized
_BUGS = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)


class ErrorMappingInterceptor(grpc.ServerInterceptor):
    """Wraps every unary and streaming handler so domain errors map to their status and details.
    A stream that fails ends with the error after the responses it sent before."""

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        kind = rpc_handlers.shape(handler)
        if kind is None:
            return handler
        method = handler_call_details.method
        behaviour = rpc_handlers.behaviour(handler)

        def mapped(request, context: grpc.ServicerContext):
            with _statuses(method, context):
                return behaviour(request, context)

        def mapped_stream(requests, context: grpc.ServicerContext):
            with _statuses(method, context):
                yield from behaviour(requests, context)

        return rpc_handlers.rebuilt(handler, mapped if kind == rpc_handlers.UNARY else mapped_stream)


@contextlib.contextmanager
def _statuses(method: str, context: grpc.ServicerContext) -> Iterator[None]:
    try:
        yield
    except errors.LookalikeError as error:
        # An Internal error (a malformed answer from the encoder...) is a bug, as errors.proto
        # tells clients: it goes to the log at ERROR, where the unexpected exceptions go.
        log.log(
            logging.ERROR if error.code in _BUGS else logging.INFO,
            "request refused",
            extra={"fields": {"method": method, "code": error.code.name, "reason": error.reason, "detail": error.message}},
        )
        context.abort_with_status(errors.to_status(_bounded(error)))
    except Exception:
        if context.code() is not None:  # the handler aborted on its own: keep its status
            raise
        log.exception("unexpected error", extra={"fields": {"method": method}})
        context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}; see the server log")


def _bounded(error: errors.LookalikeError) -> errors.LookalikeError:
    """`error` with its texts and field violations cut to fit any client's trailers (see the
    module docstring). Changed in place: the error goes no further than this answer."""
    violations = [errors.FieldViolation(_cut(v.field), _cut(v.description), v.reason) for v in error.field_violations]
    kept, size = 0, 0
    for violation in violations:
        size += sum(len(text.encode()) + 3 for text in (violation.field, violation.description, violation.reason)) + 3
        if size > MAX_DETAILS_BYTES:
            break
        kept += 1
    error.message = _cut(error.message)
    if kept < len(violations):
        error.message += f" ({len(violations) - kept} more fields at fault are not listed)"
    error.metadata = {_cut(key): _cut(value) for key, value in error.metadata.items()}
    error.field_violations = tuple(violations[:kept])
    return error


def _cut(text: str) -> str:
    data = text.encode()
    return text if len(data) <= MAX_TEXT_BYTES else data[: MAX_TEXT_BYTES - 3].decode(errors="ignore") + "\u2026"
