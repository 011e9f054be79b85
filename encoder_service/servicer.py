"""The lookalike.v1.Encoder servicer: requests in, numpy through ONNX Runtime, responses out.

Decoding is what costs memory: pixels, not bytes on the wire (a 130 KB PNG of 40 megapixels
decodes to 160 MB, as Pillow keeps RGB at 4 bytes a pixel). So before any image of an Embed is
decoded, every image's size is read from its header (`Image.open` is lazy) and checked: their
sum against max_request_pixels (INVALID_ARGUMENT: the request breaks it alone), and what they
need at once against the server's max_inflight_pixels budget (RESOURCE_EXHAUSTED: the server is
full now, retry). A request decodes its images one after another, so what it needs at once is
its largest image: that is reserved for the request's run and released after. The reservation
is the header's size even for a JPEG, which decodes at a reduced scale: an overestimate, on the
safe side. Between images the handler stops once its call is cancelled (server_toolkit).

Fingerprints for finding copies (copy_detection), when asked, are taken from a second decode
of each file at the features' working size, within the same reservation: one image at a time.
"""

from __future__ import annotations

import io
import struct
from contextlib import AbstractContextManager

import numpy as np
from PIL import Image

from copy_detection.features import fingerprint_file
from encoder_service.model_repository import ModelRepository
from encoder_service.onnx_model import OnnxModel
from encoder_service.settings import EncoderSettings
from lookalike import preprocessing
from lookalike.errors import FailedPrecondition, InvalidArgument, LookalikeError, Reason
from lookalike.model_format import METRIC_ENUM
from lookalike.v1 import encoder_pb2, encoder_pb2_grpc, images_pb2
from server_toolkit.grpc_server import stop_if_cancelled
from server_toolkit.load_limits import Budget

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHUNK = struct.Struct(">I4s")  # length, type
_PNG_SIZE = struct.Struct(">II")  # IHDR: width, height


class EncoderServicer(encoder_pb2_grpc.EncoderServicer):
    def __init__(self, repository: ModelRepository, settings: EncoderSettings) -> None:
        self.repository = repository
        self.settings = settings
        self.decoding = Budget(
            settings.max_inflight_pixels, unit="pixels", setting="max_inflight_pixels", reason=Reason.DECODE_BUDGET_EXHAUSTED
        )

    def Embed(self, request: encoder_pb2.EmbedRequest, context) -> encoder_pb2.EmbedResponse:
        model = self._resolve(request.model)
        self._check_batch("images", len(request.images))
        kind = request.fingerprints
        if kind not in _FINGERPRINT_KINDS:
            raise InvalidArgument(f"unknown fingerprint kind {kind}", reason=Reason.VALUE_OUT_OF_RANGE, field="fingerprints")
        with self._decode_reservation(request.images):
            inputs = _each("images", request.images, lambda image: self._model_input(image, model, context))
            prints = _each("images", request.images, lambda image: self._fingerprint(image, kind, context)) if kind else []
        batch = np.stack(inputs)
        embeddings = model.embed(batch)  # (B, D)
        ref = _ref(model)
        return encoder_pb2.EmbedResponse(
            embeddings=[images_pb2.Embedding(values=row, model=ref) for row in embeddings.tolist()],
            model=ref,
            fingerprints=prints,
        )

    def Reconstruct(self, request: encoder_pb2.ReconstructRequest, context) -> encoder_pb2.ReconstructResponse:
        model = self._resolve(request.model)
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
        rows = _each("embeddings", request.embeddings, lambda embedding: _vector(embedding, model.card.embedding_dim))
        images = model.reconstruct(np.stack(rows))  # (B, C, H, W)
        spec = model.card.preprocessing
        return encoder_pb2.ReconstructResponse(
            png_images=[preprocessing.encode_png(preprocessing.to_image(image, spec)) for image in images],
            model=ref,
        )

    def GetModel(self, request: encoder_pb2.GetModelRequest, context) -> encoder_pb2.ModelInfo:
        return model_info(self._resolve(request.model))

    def ListModels(self, request, context) -> encoder_pb2.ListModelsResponse:
        return encoder_pb2.ListModelsResponse(models=[model_info(m) for m in self.repository.all()])

    def _resolve(self, ref: images_pb2.ModelRef) -> OnnxModel:
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

    def _decode_reservation(self, images) -> AbstractContextManager[None]:
        """The request's pixels checked against max_request_pixels, and its largest image reserved
        in the decode budget (a context manager), before any image is decoded."""
        sizes = [_header_pixels(image.encoded) for image in images if image.WhichOneof("source") == "encoded"]
        sizes = [size for size in sizes if size <= self.settings.max_image_pixels]  # larger: refused by name, IMAGE_TOO_LARGE
        total, limit = sum(sizes), self.settings.max_request_pixels
        if total > limit:
            raise InvalidArgument(
                f"the images hold {total:,} pixels in all, over the limit of {limit:,} for one request; send fewer at a time",
                reason=Reason.BATCH_TOO_MANY_PIXELS,
                field="images",
                metadata={"limit": limit, "pixels": total},
            )
        return self.decoding.reserved(max(sizes, default=0))

    def _model_input(self, image: images_pb2.Image, model: OnnxModel, context) -> np.ndarray:
        stop_if_cancelled(context)  # a batch of big pictures takes seconds: not for a caller that is gone
        spec = model.card.preprocessing
        source = image.WhichOneof("source")
        if source == "encoded":
            try:
                return preprocessing.preprocess(image.encoded, spec, self.settings.max_image_pixels)
            except LookalikeError as error:
                raise error.at("encoded") from None
        if source == "tensor":
            return _tensor(image.tensor, spec.shape)
        raise InvalidArgument("neither encoded bytes nor a tensor", reason=Reason.REQUIRED_FIELD_MISSING, field="")


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


def _each(field: str, entries, convert) -> list:
    """convert(entry) for every entry; when some are invalid, ONE InvalidArgument naming each bad
    entry as field[i], so a client can drop them all and resend the rest in one more call."""
    results, failures = [], []
    for index, entry in enumerate(entries):
        try:
            results.append(convert(entry))
        except InvalidArgument as error:
            failures.append(error.at(f"{field}[{index}]"))
    if failures:
        raise InvalidArgument.from_violations([v for f in failures for v in f.field_violations], failures[0].metadata)
    return results


def _header_pixels(data: bytes) -> int:
    """Width x height, from an image file's header only; 0 for bytes that are no image we can read,
    which the decode then refuses with its reason."""
    size = _png_size(data)  # most small pictures are PNGs: 0.5 µs instead of Image.open's 10
    if size is None:
        try:
            with Image.open(io.BytesIO(data)) as image:
                size = image.size
        except Exception:  # anything from anywhere: a bomb's DecompressionBombError is no OSError
            return 0
    return size[0] * size[1]


def _png_size(data: bytes) -> tuple[int, int] | None:
    """A PNG's (width, height) as Pillow reads it, from the last IHDR chunk before the image data
    (IDAT); None for anything else, or a PNG whose chunks stop before IDAT: Image.open decides."""
    if not data.startswith(_PNG_SIGNATURE):
        return None
    size, at = None, len(_PNG_SIGNATURE)
    while at + 8 <= len(data):
        length, kind = _PNG_CHUNK.unpack_from(data, at)
        if kind in (b"IDAT", b"fdAT", b"IEND"):
            return size
        if kind == b"IHDR":
            if length < 13 or at + 16 > len(data):
                return None
            size = _PNG_SIZE.unpack_from(data, at + 8)
        at += 12 + length  # length, type, data, CRC
    return None


def _tensor(tensor: images_pb2.Tensor, shape: tuple[int, int, int]) -> np.ndarray:
    if tuple(tensor.shape) != shape:
        raise InvalidArgument(
            f"tensor shape {list(tensor.shape)} does not match the model's input {list(shape)}",
            reason=Reason.TENSOR_SHAPE_MISMATCH,
            field="tensor.shape",
        )
    if len(tensor.values) != int(np.prod(shape)):
        raise InvalidArgument(
            f"tensor has {len(tensor.values)} values, its shape needs {int(np.prod(shape))}",
            reason=Reason.TENSOR_SHAPE_MISMATCH,
            field="tensor.values",
        )
    array = np.asarray(tensor.values, dtype=np.float32).reshape(shape)
    if not np.isfinite(array).all():
        raise InvalidArgument("tensor holds NaN or infinite values", reason=Reason.VALUES_NOT_FINITE, field="tensor.values")
    return array


def _vector(embedding: images_pb2.Embedding, width: int) -> np.ndarray:
    if len(embedding.values) != width:
        raise InvalidArgument(
            f"the embedding has {len(embedding.values)} values, the model takes {width}",
            reason=Reason.DIMENSION_MISMATCH,
            field="values",
        )
    vector = np.asarray(embedding.values, dtype=np.float32)
    if not np.isfinite(vector).all():
        raise InvalidArgument("the embedding holds NaN or infinite values", reason=Reason.VALUES_NOT_FINITE, field="values")
    return vector


def _ref(model: OnnxModel) -> images_pb2.ModelRef:
    return images_pb2.ModelRef(name=model.card.name, version=model.card.version)


def model_info(model: OnnxModel) -> encoder_pb2.ModelInfo:
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
        has_decoder=model.decoder is not None,
        preprocessing_json=card.preprocessing.to_json(),
    )
