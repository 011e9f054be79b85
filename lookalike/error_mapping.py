"""The one place where domain errors become gRPC status codes.

Servicers raise `lookalike.errors` exceptions; `ErrorMappingInterceptor` turns
them into `context.abort(code, message)`. Anything else is a bug: it is logged
with its traceback and the client gets INTERNAL without the internals.
"""

import logging

import grpc

from lookalike import errors

log = logging.getLogger(__name__)

STATUS_OF = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
}


def status_of(error: errors.LookalikeError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return grpc.StatusCode.UNKNOWN


class ErrorMappingInterceptor(grpc.ServerInterceptor):
    """Wraps every unary-unary handler so domain errors map to their status code."""

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method
        behaviour = handler.unary_unary

        def mapped(request, context: grpc.ServicerContext):
            try:
                return behaviour(request, context)
            except errors.LookalikeError as error:
                code = status_of(error)
                log.info("request refused", extra={"fields": {"method": method, "code": code.name, "detail": str(error)}})
                context.abort(code, str(error))
            except Exception:
                if context.code() is not None:  # the handler aborted on its own: keep its status
                    raise
                log.exception("unexpected error", extra={"fields": {"method": method}})
                context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}; see the server log")

        return grpc.unary_unary_rpc_method_handler(
            mapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
