"""The lookalike.v1.Encoder servicer: requests in, numpy through ONNX Runtime, responses out."""

from __future__ import annotations

import numpy as np

from encoder_service.model_repository import ModelRepository
from encoder_service.onnx_model import OnnxModel
from encoder_service.settings import EncoderSettings
from lookalike import preprocessing
from lookalike.errors import FailedPrecondition, InvalidArgument, LookalikeError, Reason
from lookalike.model_format import METRIC_ENUM
from lookalike.v1 import encoder_pb2, encoder_pb2_grpc, images_pb2


class EncoderServicer(encoder_pb2_grpc.EncoderServicer):
    def __init__(self, repository: ModelRepository, settings: EncoderSettings) -> None:
        self.repository = repository
        self.settings = settings

    def Embed(self, request: encoder_pb2.EmbedRequest, context) -> encoder_pb2.EmbedResponse:
        model = self._resolve(request.model)
        self._check_batch("images", len(request.images))
        batch = np.stack(_each("images", request.images, lambda image: self._model_input(image, model)))
        embeddings = model.embed(batch)  # (B, D)
        ref = _ref(model)
        return encoder_pb2.EmbedResponse(
            embeddings=[images_pb2.Embedding(values=row, model=ref) for row in embeddings.tolist()],
            model=ref,
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

    def _model_input(self, image: images_pb2.Image, model: OnnxModel) -> np.ndarray:
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
