"""The search service's calls to the encoder service, with their errors in domain terms."""

from __future__ import annotations

import re

import grpc
import numpy as np

from server_toolkit import grpc_server
from lookalike.errors import FailedPrecondition, InvalidArgument, ResourceExhausted, Unavailable
from lookalike.v1 import encoder_pb2, encoder_pb2_grpc, images_pb2

_IMAGE_INDEX = re.compile(r"^images\[(\d+)\]: (.*)$", re.DOTALL)


class EncoderGateway:
    def __init__(self, address: str, timeout_seconds: float, max_message_bytes: int) -> None:
        self.address = address
        self.timeout = timeout_seconds
        self._channel = grpc.insecure_channel(address, options=grpc_server.message_options(max_message_bytes))
        self._stub = encoder_pb2_grpc.EncoderStub(self._channel)

    def model_info(self, ref: images_pb2.ModelRef) -> encoder_pb2.ModelInfo:
        try:
            return self._stub.GetModel(encoder_pb2.GetModelRequest(model=ref), timeout=self.timeout)
        except grpc.RpcError as error:
            raise self._translate(error, ref) from None

    def embed(self, ref: images_pb2.ModelRef, images: list[images_pb2.Image], labels: list[str]) -> np.ndarray:
        """Embeds images with exactly `ref`; an image's error names it by `labels[i]` (e.g. "items[3].image")."""
        try:
            response = self._stub.Embed(encoder_pb2.EmbedRequest(model=ref, images=images), timeout=self.timeout)
        except grpc.RpcError as error:
            raise self._translate(error, ref, labels) from None
        return np.array([list(e.values) for e in response.embeddings], dtype=np.float32)

    def close(self) -> None:
        self._channel.close()

    def _translate(self, error: grpc.RpcError, ref: images_pb2.ModelRef, labels: list[str] | None = None):
        code, detail = error.code(), error.details() or ""
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            match = _IMAGE_INDEX.match(detail)
            if match and labels:
                return InvalidArgument(f"{labels[int(match.group(1))]}: {match.group(2)}")
            return InvalidArgument(detail)
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return ResourceExhausted(f"encoder service: {detail}")
        if code == grpc.StatusCode.NOT_FOUND:
            return FailedPrecondition(f"the encoder service has no model {ref.name!r} v{ref.version}: {detail}")
        return Unavailable(f"encoder service at {self.address}: {code.name}: {detail}")
