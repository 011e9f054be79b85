"""The lookalike.v1.Encoder servicer: requests in, numpy through ONNX Runtime, responses out.

An Embed goes: model resolved and request checked; room in the model's queue (QUEUE_FULL past
max_queue_images) and in the decode budget reserved; images decoded by the decode pool in parts,
each part queued for a model run as soon as it is ready (encoder_service/decoding.py), where the
model's batching thread merges it with other requests' parts (encoder_service/batching.py); the
rows come back in request order. EmbedStream does the same for each message of a stream, a few
messages ahead of the response being sent (encoder_service/streaming.py).

Decoding is what costs memory: pixels, not bytes on the wire (a 130 KB PNG of 40 megapixels
decodes to 160 MB, as Pillow keeps RGB at 4 bytes a pixel). So before any image of an Embed is
decoded, every image's size is read from its header (`Image.open` is lazy) and checked: their
sum against max_request_pixels (INVALID_ARGUMENT: the request breaks it alone), and what they
need at once against the server's max_inflight_pixels budget (RESOURCE_EXHAUSTED: the server is
full now, retry). A request decodes up to decode_threads images at once, and one more for its
fingerprints: their largest are reserved for the request's run and released after. The
reservation is the header's size even for a JPEG, which decodes at a reduced scale: an
overestimate, on the safe side. Between images the decoders stop once the call is cancelled.

Fingerprints for finding copies (copy_detection), when asked, are taken from a second decode
of each file at the features' working size, in the handler's thread while the pool decodes for
the model, within the same reservation.
"""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np

from copy_detection.features import fingerprint_file
from encoder_service import inputs
from encoder_service.batching import ModelQueue
from encoder_service.decoding import DecodePool, Decoding
from encoder_service.model_repository import ModelRepository
from encoder_service.model_use import DEFAULT_TTL_SECONDS, requested_uses
from encoder_service.onnx_model import OnnxModel
from encoder_service.settings import EncoderSettings
from encoder_service.streaming import in_order
from lookalike import model_format, preprocessing
from lookalike.errors import FailedPrecondition, InvalidArgument, LookalikeError, Reason
from lookalike.model_format import METRIC_ENUM
from lookalike.v1 import encoder_pb2, encoder_pb2_grpc, images_pb2
from server_toolkit.grpc_server import stop_if_cancelled
from server_toolkit.load_limits import Budget

# Messages of an EmbedStream worked on ahead of the response being sent: enough to keep the
# decode pool and the model busy between two messages, few enough to bound what a stream holds.
STREAM_DEPTH = 4


@dataclasses.dataclass
class _Started:
    """An Embed request under way: its room held until `finish` (or `abandon`) releases it."""

    request: encoder_pb2.EmbedRequest
    queue: ModelQueue | None = None
    decoding: Decoding | None = None
    room: contextlib.ExitStack = dataclasses.field(default_factory=contextlib.ExitStack)
    index: int = 0  # in a stream
    error: LookalikeError | None = None  # a stream's refused message, raised in its turn


class EncoderServicer(encoder_pb2_grpc.EncoderServicer):
    def __init__(self, repository: ModelRepository, settings: EncoderSettings, decoders: DecodePool) -> None:
        self.repository = repository
        self.settings = settings
        self.decoders = decoders
        self.decoding = Budget(
            settings.max_inflight_pixels, unit="pixels", setting="max_inflight_pixels", reason=Reason.DECODE_BUDGET_EXHAUSTED
        )

    def Embed(self, request: encoder_pb2.EmbedRequest, context) -> encoder_pb2.EmbedResponse:
        return self._finish(self._start(request, context), context)

    def EmbedStream(self, requests, context):
        def start(index: int, message: encoder_pb2.EmbedStreamRequest) -> _Started:
            try:
                started = self._start(message.request, context)
            except LookalikeError as error:  # sent in its turn, after the responses before it
                started = _Started(message.request, error=error)
            started.index = index
            return started

        def finish(started: _Started) -> encoder_pb2.EmbedStreamResponse:
            try:
                return encoder_pb2.EmbedStreamResponse(response=self._finish(started, context))
            except LookalikeError as error:
                error.metadata["request"] = str(started.index)  # which message of the stream
                raise

        return in_order(requests, start, finish, _abandon, depth=STREAM_DEPTH)

    def Reconstruct(self, request: encoder_pb2.ReconstructRequest, context) -> encoder_pb2.ReconstructResponse:
        model = self._resolve(request.model).model
        self._check_batch("embeddings", len(request.embeddings))
        ref = _ref(model)
        for index, embedding in enumerate(request.embeddings):
            if embedding.HasField("model") and (embedding.model.name, embedding.model.version) != (ref.name, ref.version):
                raise FailedPrecondition(
                    f"embeddings[{index}] was made by {embedding.model.name} v{embedding.model.version}, "
                    f"not by {ref.name} v{ref.version}, whose decoder was asked",
                    reason=Reason.MODEL_MISMATCH,
                    field=f"embeddings[{index}].model",
                )
        rows = inputs.each("embeddings", request.embeddings, lambda embedding: inputs.vector(embedding, model.card.embedding_dim))
        images = model.reconstruct(np.stack(rows))  # (B, C, H, W)
        spec = model.card.preprocessing
        return encoder_pb2.ReconstructResponse(
            png_images=[preprocessing.encode_png(preprocessing.to_image(image, spec)) for image in images],
            model=ref,
        )

    def GetModel(self, request: encoder_pb2.GetModelRequest, context) -> encoder_pb2.ModelInfo:
        return model_info(self._resolve(request.model).model, self.repository.model_use.in_use())

    def ListModels(self, request, context) -> encoder_pb2.ListModelsResponse:
        failed = [
            encoder_pb2.ModelInfo(
                model=images_pb2.ModelRef(name=name, version=version), state=encoder_pb2.MODEL_STATE_FAILED, state_message=why
            )
            for (name, version), why in self.repository.failures().items()
        ]
        in_use = self.repository.model_use.in_use()
        served = [model_info(model, in_use) for model in self.repository.all()]
        for info in failed:
            info.used_by.extend(in_use.get((info.model.name, info.model.version), []))
        models = sorted([*served, *failed], key=lambda info: (info.model.name, info.model.version))
        return encoder_pb2.ListModelsResponse(models=models)

    def LoadModel(self, request: encoder_pb2.LoadModelRequest, context) -> encoder_pb2.LoadModelResponse:
        name = _required_name(request.model)
        loaded = self.repository.load(name, request.model.version).model
        return encoder_pb2.LoadModelResponse(model=model_info(loaded, self.repository.model_use.in_use()))

    def UnloadModel(self, request: encoder_pb2.UnloadModelRequest, context) -> encoder_pb2.UnloadModelResponse:
        gone = self.repository.unload(_required_name(request.model), request.model.version)
        return encoder_pb2.UnloadModelResponse(unloaded=[images_pb2.ModelRef(name=name, version=version) for name, version in gone])

    def ReportModelUse(self, request: encoder_pb2.ReportModelUseRequest, context) -> encoder_pb2.ReportModelUseResponse:
        uses = requested_uses(request)
        self.repository.model_use.report(request.user, uses, request.ttl_seconds or DEFAULT_TTL_SECONDS)
        if uses.keys() - {_key(model) for model in self.repository.all()}:
            self.repository.refresh()  # a version in use that is not served: load it now, not at the next scan
        served = {_key(model) for model in self.repository.all()}
        return encoder_pb2.ReportModelUseResponse(
            not_served=[images_pb2.ModelRef(name=name, version=version) for name, version in sorted(uses.keys() - served)]
        )

    def _start(self, request: encoder_pb2.EmbedRequest, context) -> _Started:
        """Checks the request, reserves its room and starts its decoding; returns at once."""
        queue = self._resolve(request.model)
        self._check_batch("images", len(request.images))
        if request.fingerprints not in _FINGERPRINT_KINDS:
            raise InvalidArgument(f"unknown fingerprint kind {request.fingerprints}", reason=Reason.VALUE_OUT_OF_RANGE, field="fingerprints")
        if request.embedding_encoding not in _ENCODINGS:
            raise InvalidArgument(
                f"unknown embedding encoding {request.embedding_encoding}", reason=Reason.VALUE_OUT_OF_RANGE, field="embedding_encoding"
            )
        started = _Started(request, queue)
        with started.room as room:
            room.enter_context(queue.admitted(len(request.images)))
            room.enter_context(self._decode_reservation(request.images, bool(request.fingerprints)))
            started.decoding = self.decoders.start(request.images, queue, context)
            started.room = room.pop_all()
        return started

    def _finish(self, started: _Started, context) -> encoder_pb2.EmbedResponse:
        """Waits for the request's embeddings (and computes its fingerprints); releases its room."""
        if started.error is not None:
            raise started.error
        request, model = started.request, started.queue.model
        with started.room:
            embeddings = started.decoding.embeddings()  # (B, D); first, so every bad image is named by its decode
            kind = request.fingerprints
            prints = inputs.each("images", request.images, lambda image: self._fingerprint(image, kind, context)) if kind else []
        ref = _ref(model)
        if request.embedding_encoding == encoder_pb2.EMBEDDING_ENCODING_PACKED_FLOAT32:
            return encoder_pb2.EmbedResponse(
                packed_embeddings=inputs.packed(embeddings), embedding_dim=embeddings.shape[1], model=ref, fingerprints=prints
            )
        return encoder_pb2.EmbedResponse(
            embeddings=[images_pb2.Embedding(values=row, model=ref) for row in embeddings.tolist()],
            embedding_dim=embeddings.shape[1],
            model=ref,
            fingerprints=prints,
        )

    def _resolve(self, ref: images_pb2.ModelRef) -> ModelQueue:
        return self.repository.resolve(ref.name, ref.version)

    def _check_batch(self, what: str, size: int) -> None:
        if size == 0:
            raise InvalidArgument(f"no {what} in the request", reason=Reason.BATCH_EMPTY, field=what)
        limit = self.settings.max_batch_size
        if size > limit:
            raise InvalidArgument(
                f"{size} {what} in one request, the limit is {limit}",
                reason=Reason.BATCH_TOO_LARGE,
                field=what,
                metadata={"limit": limit},
            )

    def _decode_reservation(self, images, fingerprints: bool) -> contextlib.AbstractContextManager[None]:
        """The request's pixels checked against max_request_pixels, and what it decodes at once
        reserved in the decode budget (a context manager), before any image is decoded."""
        sizes = [inputs.header_pixels(image.encoded) for image in images if image.WhichOneof("source") == "encoded"]
        sizes = [size for size in sizes if size <= self.settings.max_image_pixels]  # larger: refused by name, IMAGE_TOO_LARGE
        total, limit = sum(sizes), self.settings.max_request_pixels
        if total > limit:
            raise InvalidArgument(
                f"the images hold {total:,} pixels in all, over the limit of {limit:,} for one request; send fewer at a time",
                reason=Reason.BATCH_TOO_MANY_PIXELS,
                field="images",
                metadata={"limit": limit, "pixels": total},
            )
        at_once = self.decoders.threads + int(fingerprints)
        return self.decoding.reserved(sum(sorted(sizes, reverse=True)[:at_once]))

    def _fingerprint(self, image: images_pb2.Image, kind: int, context) -> bytes:
        """copy_detection's bytes for an encoded image; b"" for a tensor, which has no picture."""
        stop_if_cancelled(context)
        if image.WhichOneof("source") != "encoded":
            return b""
        mirrored = kind == encoder_pb2.FINGERPRINT_KIND_QUERY
        try:
            return fingerprint_file(image.encoded, max_pixels=self.settings.max_image_pixels, mirrored=mirrored).to_bytes()
        except LookalikeError as error:
            raise error.at("encoded") from None


_FINGERPRINT_KINDS = (
    encoder_pb2.FINGERPRINT_KIND_UNSPECIFIED,
    encoder_pb2.FINGERPRINT_KIND_STORED,
    encoder_pb2.FINGERPRINT_KIND_QUERY,
)
_ENCODINGS = (encoder_pb2.EMBEDDING_ENCODING_UNSPECIFIED, encoder_pb2.EMBEDDING_ENCODING_PACKED_FLOAT32)


def _required_name(ref: images_pb2.ModelRef) -> str:
    """A valid model name (LoadModel and UnloadModel have no default model); the version is checked too."""
    if not ref.name:
        raise InvalidArgument("name the model", reason=Reason.REQUIRED_FIELD_MISSING, field="model.name")
    if not model_format.is_model_name(ref.name):
        raise InvalidArgument(f"{ref.name[:128]!r} is not a model name", reason=Reason.NAME_INVALID, field="model.name")
    if ref.version < 0:
        raise InvalidArgument(f"model version must be positive, got {ref.version}", reason=Reason.VALUE_OUT_OF_RANGE, field="model.version")
    return ref.name


def _abandon(started: _Started) -> None:
    if started.decoding is not None:
        started.decoding.abandon()
    started.room.close()


def _ref(model: OnnxModel) -> images_pb2.ModelRef:
    return images_pb2.ModelRef(name=model.card.name, version=model.card.version)


def _key(model: OnnxModel) -> tuple[str, int]:
    return model.card.name, model.card.version


def model_info(model: OnnxModel, in_use: dict[tuple[str, int], list[str]]) -> encoder_pb2.ModelInfo:
    card = model.card
    channels, height, width = card.preprocessing.shape
    return encoder_pb2.ModelInfo(
        model=_ref(model),
        channels=channels,
        height=height,
        width=width,
        embedding_dim=card.embedding_dim,
        metric=METRIC_ENUM[card.metric],
        architecture=card.architecture,
        execution_provider=model.execution_provider,
        requested_execution_provider=model.requested_provider,
        has_decoder=model.decoder is not None,
        preprocessing_json=card.preprocessing.to_json(),
        state=encoder_pb2.MODEL_STATE_SERVING,
        used_by=in_use.get(_key(model), []),
    )
