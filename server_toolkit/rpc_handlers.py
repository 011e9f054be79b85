"""A gRPC method handler rebuilt around new behaviour: what every interceptor here does.

Lookalike's methods come in two shapes: unary (one request, one response) and, for large jobs,
streaming both ways (EmbedStream: batches in, embeddings out, in order). An interceptor wraps
either with a function of the same shape, `(request, context)` or `(request_iterator, context)`,
and `rebuilt` puts it back into a handler with the method's own (de)serializers. Other shapes
(Health/Watch streams its answers) are passed through untouched: `shape` is None for them.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

UNARY = "unary"
STREAM = "stream"


def shape(handler: grpc.RpcMethodHandler | None) -> str | None:
    """UNARY, STREAM (streaming both ways), or None for anything an interceptor leaves alone."""
    if handler is None:
        return None
    if not handler.request_streaming and not handler.response_streaming:
        return UNARY
    if handler.request_streaming and handler.response_streaming:
        return STREAM
    return None


def behaviour(handler: grpc.RpcMethodHandler) -> Callable:
    """The function a handler of `shape` UNARY or STREAM runs."""
    return handler.unary_unary if shape(handler) == UNARY else handler.stream_stream


def rebuilt(handler: grpc.RpcMethodHandler, function: Callable, *, parse: bool | Callable = True) -> grpc.RpcMethodHandler:
    """`handler` running `function` instead, of the same shape. `parse`: True keeps the method's
    request deserializer, False hands `function` the raw bytes (a refusal never parses what it
    refuses), a callable replaces it."""
    if parse is True:
        deserializer = handler.request_deserializer
    else:
        deserializer = parse or None
    make = grpc.unary_unary_rpc_method_handler if shape(handler) == UNARY else grpc.stream_stream_rpc_method_handler
    return make(function, request_deserializer=deserializer, response_serializer=handler.response_serializer)
