"""The search service's calls to the encoder service, with their errors in this service's terms.

The encoder's errors arrive as google.rpc details (`lookalike.errors.from_rpc_error`); a bad
image is relocated from the encoder's request to the caller's (`images[2].encoded` becomes
`items[7].image.encoded`), so the caller learns which of its own fields to fix. Every call
gets what remains of the caller's deadline, never more than the configured cap.

The path is on every search by image, so it is kept cheap: one channel for the service's life
(HTTP/2 multiplexes the concurrent calls of all worker threads over it), and embeddings asked for
as packed float32 (one bytes field instead of a message of repeated floats per image: less to
build on the encoder, less to parse here). Merging the concurrent one-image calls of several
searches into one Embed call was tried (benchmarks/RESULTS.md, "search by image through both
services"): it cut the encoder's CPU per query by about a third, but queries/s stayed within the
noise of a shared 2-core machine and p99 got worse in some runs (a queued call waits for one in
flight), so each call goes out on its own; the encoder merges concurrent calls into one model run.
"""

from __future__ import annotations

import grpc
import numpy as np

from lookalike import errors
from lookalike.client import embeddings_of, new_channel
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
        # round_robin: with a `dns:///` address that names several encoder replicas (a headless
        # Kubernetes Service), calls are spread over all of them; gRPC's default, pick_first,
        # would send every call of this long-lived channel to the first. One address: no change.
        # Reconnect within a second: the encoder may start after this service (or restart), and a
        # call made while the channel waits out gRPC's growing backoff fails at once.
        self._channel = new_channel(address, credentials, max_message_bytes, token, load_balancing="round_robin", reconnect_seconds=1.0)
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
        request = encoder_pb2.EmbedRequest(
            model=ref, images=images, fingerprints=fingerprints, embedding_encoding=encoder_pb2.EMBEDDING_ENCODING_PACKED_FLOAT32
        )
        try:
            response = self._stub.Embed(request, timeout=self._timeout(time_left))
        except grpc.RpcError as error:
            raise self._translate(errors.from_rpc_error(error), ref, fields[0], fields) from None
        vectors = embeddings_of(response)
        counts = {"embeddings": len(vectors), **({"fingerprints": len(response.fingerprints)} if fingerprints else {})}
        for what, count in counts.items():
            if count != len(images):
                raise Internal(
                    f"the encoder service sent {count} {what} for {len(images)} images",
                    reason=Reason.ENCODER_FAILED,
                    metadata={"model": ref.name, "version": ref.version},
                )
        return vectors, list(response.fingerprints)

    def report_model_use(self, user: str, uses: dict[tuple[str, int], list[str]], ttl_seconds: int) -> list[images_pb2.ModelRef]:
        """Tells the encoder which versions this service's collections use (ReportModelUse); the
        versions in use that it does not serve. grpc.RpcError is the caller's to log."""
        request = encoder_pb2.ReportModelUseRequest(
            user=user,
            uses=[encoder_pb2.ModelUse(model=images_pb2.ModelRef(name=n, version=v), collections=c) for (n, v), c in sorted(uses.items())],
            ttl_seconds=ttl_seconds,
        )
        return list(self._stub.ReportModelUse(request, timeout=self.max_timeout).not_served)

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
