"""The errors of Lookalike, as data: one exception tree for servers and clients alike.

Servers raise these and nothing else for expected failures, each with a stable `reason` (a
value name of `lookalike.v1.ErrorReason`, see protos/lookalike/v1/errors.proto) and, for a
bad request, the fields at fault as paths into the request (`items[3].image`). One
interceptor (`server_toolkit.error_mapping`) sends them as a `google.rpc.Status`: the
exception's status code, an ErrorInfo (reason, domain "lookalike.v1", metadata) and a
BadRequest (field violations). `from_rpc_error` rebuilds the same exception from those
details on the client side, so nobody parses a message.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from typing import ClassVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from lookalike.v1 import errors_pb2

DOMAIN = "lookalike.v1"

# The proto enum is the one list of reasons; this mirrors it as strings (Reason.IMAGE_EMPTY ==
# "IMAGE_EMPTY"), which is what ErrorInfo.reason carries on the wire.
Reason = enum.StrEnum("Reason", {name: name for name in errors_pb2.ErrorReason.keys() if name != "ERROR_REASON_UNSPECIFIED"})


@dataclasses.dataclass(frozen=True)
class FieldViolation:
    field: str  # path into the request, e.g. "items[3].image"; "" for the request as a whole
    description: str  # for people
    reason: str  # a Reason


class LookalikeError(Exception):
    """Base of every expected failure. The message is for people; `reason` and
    `field_violations` are for programs."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        field: str | None = None,
        violations: Sequence[FieldViolation] = (),
        metadata: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = str(reason)
        self.metadata = {key: str(value) for key, value in (metadata or {}).items()}
        self.field_violations: tuple[FieldViolation, ...] = tuple(violations)
        if field is not None:
            self.field_violations += (FieldViolation(field, message, self.reason),)

    @classmethod
    def from_violations(cls, violations: Sequence[FieldViolation], metadata: Mapping[str, object] | None = None):
        """One error for several bad fields; its reason and message lead with the first."""
        assert violations, "an error from violations needs at least one"
        first = violations[0]
        message = f"{first.field}: {first.description}" if first.field else first.description
        if len(violations) > 1:
            message = f"{len(violations)} fields are invalid; the first: {message}"
        return _new(cls, message, first.reason, violations, metadata or {})

    def at(self, field: str) -> LookalikeError:
        """The same error, located under `field`: a violation of "" becomes `field`, one of
        "encoded" becomes `field`.encoded; an error without violations gets one at `field`."""
        violations = [
            FieldViolation(_join(field, v.field), v.description, v.reason) for v in self.field_violations
        ] or [FieldViolation(field, self.message, self.reason)]
        located = type(self).from_violations(violations, self.metadata)
        if type(self) is LookalikeError:
            located.code = self.code
        return located

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, reason={self.reason!r})"


class InvalidArgument(LookalikeError):
    """The request itself is wrong: a bad image, a wrong dimension, a bad name, a broken limit."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(LookalikeError):
    """A named model, collection or item does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(LookalikeError):
    """A collection of that name exists already."""

    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(LookalikeError):
    """The request is valid but the system is not in a state to run it."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(LookalikeError):
    """Load or quota (a full disk, a full queue): retry later. Not for limits a request breaks."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(LookalikeError):
    """A dependency (the encoder service, a model still loading) is not reachable now; retry."""

    code = grpc.StatusCode.UNAVAILABLE


class Unauthenticated(LookalikeError):
    """The call carries no bearer token, or one the server does not know."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(LookalikeError):
    """The token is valid but lacks the permission (read, write, admin) the method needs."""

    code = grpc.StatusCode.PERMISSION_DENIED


class DeadlineExceeded(LookalikeError):
    """The caller's deadline ran out."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(LookalikeError):
    """The call was cancelled: by its caller, its deadline, or a server at the end of its shutdown
    grace. Servers raise it between units of work to stop a long handler nobody waits for."""

    code = grpc.StatusCode.CANCELLED


class Unimplemented(LookalikeError):
    """The server does not do this (a router: an option of a single service it cannot honour)."""

    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(LookalikeError):
    """A failure that is nobody's input: a bug here or in a service this one calls."""

    code = grpc.StatusCode.INTERNAL


_CLASS_OF = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        Unimplemented,
        ResourceExhausted,
        Unavailable,
        Unauthenticated,
        PermissionDenied,
        DeadlineExceeded,
        Cancelled,
        Internal,
    )
}


def to_status(error: LookalikeError) -> grpc.Status:
    """The google.rpc.Status a server sends for `error`, as grpc's abort_with_status takes it."""
    from google.rpc import status_pb2

    status = status_pb2.Status(code=error.code.value[0], message=error.message)
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=error.metadata)
    status.details.add().Pack(info)
    if error.field_violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description, reason=v.reason)
                for v in error.field_violations
            ]
        )
        status.details.add().Pack(bad_request)
    return rpc_status.to_status(status)


def from_rpc_error(error: grpc.RpcError) -> LookalikeError:
    """The Lookalike error a failed call carries, rebuilt from its google.rpc details.

    A status without details (from gRPC itself: UNAVAILABLE when a server is down, a message over
    the size limit, a deadline) gets an empty reason. `rpc_error` keeps the original.
    """
    code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
    message = (error.details() if callable(getattr(error, "details", None)) else None) or code.name
    reason, metadata, violations = "", {}, []
    try:
        status = rpc_status.from_call(error)
    except ValueError:  # details that contradict the call's own code or message: keep what the call says
        status = None
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations = [FieldViolation(v.field, v.description, v.reason) for v in bad_request.field_violations]
    cls = _CLASS_OF.get(code, LookalikeError)
    rebuilt = _new(cls, message, reason, violations, metadata)
    if cls is LookalikeError:
        rebuilt.code = code  # a code without a class of its own (CANCELLED, ABORTED, ...)
    rebuilt.rpc_error = error
    return rebuilt


def field_index(path: str, collection: str) -> tuple[int, str] | None:
    """(3, ".image") for path "items[3].image" and collection "items"; None for other paths.

    Field paths are AIP-161 paths: names joined by '.', list entries as [index].
    """
    prefix = f"{collection}["
    if not path.startswith(prefix):
        return None
    close = path.find("]", len(prefix))
    digits = path[len(prefix) : close]
    if close < 0 or not digits.isdigit():
        return None
    return int(digits), path[close + 1 :]


def _join(prefix: str, path: str) -> str:
    if not path:
        return prefix
    return prefix + path if path.startswith("[") else f"{prefix}.{path}"


def _new(cls: type[LookalikeError], message: str, reason: str, violations, metadata) -> LookalikeError:
    error = cls(message, reason=reason, metadata=metadata)
    error.field_violations = tuple(violations)
    return error
