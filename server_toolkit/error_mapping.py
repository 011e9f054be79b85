"""The one place where domain errors become gRPC statuses.

Servicers raise `lookalike.errors` exceptions; `ErrorMappingInterceptor` sends each as its
status code with google.rpc details (`lookalike.errors.to_status`: ErrorInfo with the reason,
BadRequest with the fields at fault). Anything else is a bug: it is logged with its traceback
and the client gets INTERNAL without the internals (no path, no exception text).
"""

import logging

import grpc

from lookalike import errors

log = logging.getLogger(__name__)


class ErrorMappingInterceptor(grpc.ServerInterceptor):
    """Wraps every unary-unary handler so domain errors map to their status and details."""

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
                log.info(
                    "request refused",
                    extra={"fields": {"method": method, "code": error.code.name, "reason": error.reason, "detail": error.message}},
                )
                context.abort_with_status(errors.to_status(error))
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
