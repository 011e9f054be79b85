"""The search service's calls to the encoder service, with their errors in this service's terms.

The encoder's errors arrive as google.rpc details (`lookalike.errors.from_rpc_error`); a bad
image is relocated from the encoder's request to the caller's (`images[2].encoded` becomes
`items[7].image.encoded`), so the caller learns which of its own fields to fix. Every call
gets what remains of the caller's deadline, never more than the configured cap.
"""

from __future__ import annotations

import grpc
import numpy as np

from lookalike import errors
from lookalike.client import new_channel
from lookalike.errors import DeadlineExceeded, FailedPrecondition, Internal, InvalidArgument, Reason, Unavailable
from lookalike.v1 import encoder_pb2, encoder_pb2_grpc, images_pb2


class EncoderGateway:
    def __init__(
        self,
        address: str,
        max_timeout_seconds: float,
        max_message_bytes: int,
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
    ) -> None:
        """`credentials`: TLS to the encoder (None: plaintext); `token`: this service's bearer token there."""
        self.address = address
        self.max_timeout = max_timeout_seconds
        self._channel = new_channel(address, credentials, max_message_bytes, token)
        self._stub = encoder_pb2_grpc.EncoderStub(self._channel)

    def model_info(self, ref: images_pb2.ModelRef, time_left: float) -> encoder_pb2.ModelInfo:
        """The encoder's description of `ref`; `time_left` is the caller's remaining deadline, seconds."""
        try:
            return self._stub.GetModel(encoder_pb2.GetModelRequest(model=ref), timeout=self._timeout(time_left))
        except grpc.RpcError as error:
            raise self._translate(errors.from_rpc_error(error), ref, "model") from None

    def embed(
        self,
        ref: images_pb2.ModelRef,
        images: list[images_pb2.Image],
        fields: list[str],
        time_left: float,
        fingerprints: int = encoder_pb2.FINGERPRINT_KIND_UNSPECIFIED,
    ) -> tuple[np.ndarray, list[bytes]]:
        """(N, D) embeddings of `images` by exactly `ref`, and their fingerprints of the kind asked
        (an empty list for none); a bad image is reported at `fields[i]`."""
        request = encoder_pb2.EmbedRequest(model=ref, images=images, fingerprints=fingerprints)
        try:
            response = self._stub.Embed(request, timeout=self._timeout(time_left))
        except grpc.RpcError as error:
            raise self._translate(errors.from_rpc_error(error), ref, fields[0], fields) from None
        vectors = np.array([list(e.values) for e in response.embeddings], dtype=np.float32)
        if fingerprints and len(response.fingerprints) != len(images):
            raise Internal(
                f"the encoder service sent {len(response.fingerprints)} fingerprints for {len(images)} images",
                reason=Reason.ENCODER_FAILED,
                metadata={"model": ref.name, "version": ref.version},
            )
        return vectors, list(response.fingerprints)

    def close(self) -> None:
        self._channel.close()

    def _timeout(self, time_left: float) -> float:
        if time_left <= 0:
            raise DeadlineExceeded("the deadline ran out before the encoder service was called", reason=Reason.DEADLINE_TOO_SHORT)
        return min(self.max_timeout, time_left)

    def _translate(self, error: errors.LookalikeError, ref, field: str, fields: list[str] | None = None) -> errors.LookalikeError:
        model = {"model": ref.name, "version": ref.version}
        if isinstance(error, InvalidArgument) and error.field_violations and fields:
            return InvalidArgument.from_violations([_relocate(v, fields) for v in error.field_violations], error.metadata)
        if isinstance(error, InvalidArgument | DeadlineExceeded):
            return error
        if isinstance(error, errors.NotFound):
            return FailedPrecondition(
                f"the encoder service has no model {ref.name or '(default)'} v{ref.version}: {error.message}",
                reason=Reason.MODEL_NOT_FOUND,
                field=field if field == "model" else None,
                metadata=model,
            )
        if isinstance(error, FailedPrecondition):
            return error
        if isinstance(error, Unavailable | errors.ResourceExhausted) or error.code == grpc.StatusCode.UNAVAILABLE:
            return Unavailable(f"the encoder service is unavailable: {error.message}", reason=Reason.ENCODER_UNAVAILABLE)
        return Internal(f"the encoder service failed: {error.code.name}", reason=Reason.ENCODER_FAILED, metadata=model)


def _relocate(violation: errors.FieldViolation, fields: list[str]) -> errors.FieldViolation:
    """images[i]<rest> of the encoder's request -> fields[i]<rest> of the caller's."""
    found = errors.field_index(violation.field, "images")
    if found is None or found[0] >= len(fields):
        return violation
    index, rest = found
    return errors.FieldViolation(fields[index] + rest, violation.description, violation.reason)
