"""The lookalike.v1.Encoder servicer: requests in, numpy through ONNX Runtime, responses out."""

from __future__ import annotations

import numpy as np

from encoder_service.model_repository import ModelRepository
from encoder_service.onnx_model import OnnxModel
from encoder_service.settings import EncoderSettings
from lookalike import preprocessing
from lookalike.errors import InvalidArgument, LookalikeError, ResourceExhausted
from lookalike.v1 import encoder_pb2, encoder_pb2_grpc, images_pb2

METRIC_ENUM = {
    "cosine": images_pb2.METRIC_COSINE,
    "dot_product": images_pb2.METRIC_DOT_PRODUCT,
    "squared_l2": images_pb2.METRIC_SQUARED_L2,
}


class EncoderServicer(encoder_pb2_grpc.EncoderServicer):
    def __init__(self, repository: ModelRepository, settings: EncoderSettings) -> None:
        self.repository = repository
        self.settings = settings

    def Embed(self, request: encoder_pb2.EmbedRequest, context) -> encoder_pb2.EmbedResponse:
        model = self._resolve(request.model)
        self._check_batch("images", len(request.images))
        batch = np.stack([self._model_input(image, i, model) for i, image in enumerate(request.images)])
        embeddings = model.embed(batch)  # (B, D)
        return encoder_pb2.EmbedResponse(
            embeddings=[images_pb2.Embedding(values=row) for row in embeddings.tolist()],
            model=_ref(model),
        )

    def Reconstruct(self, request: encoder_pb2.ReconstructRequest, context) -> encoder_pb2.ReconstructResponse:
        model = self._resolve(request.model)
        self._check_batch("embeddings", len(request.embeddings))
        width = model.card.embedding_dim
        for i, embedding in enumerate(request.embeddings):
            if len(embedding.values) != width:
                raise InvalidArgument(f"embeddings[{i}] has {len(embedding.values)} values, the model takes {width}")
        vectors = np.array([list(e.values) for e in request.embeddings], dtype=np.float32).reshape(-1, width)
        if not np.isfinite(vectors).all():
            raise InvalidArgument("embeddings hold NaN or infinite values")
        images = model.reconstruct(vectors)  # (B, C, H, W)
        spec = model.card.preprocessing
        return encoder_pb2.ReconstructResponse(
            png_images=[preprocessing.encode_png(preprocessing.to_image(image, spec)) for image in images],
            model=_ref(model),
        )

    def GetModel(self, request: encoder_pb2.GetModelRequest, context) -> encoder_pb2.ModelInfo:
        return model_info(self._resolve(request.model))

    def ListModels(self, request, context) -> encoder_pb2.ListModelsResponse:
        return encoder_pb2.ListModelsResponse(models=[model_info(m) for m in self.repository.all()])

    def _resolve(self, ref: images_pb2.ModelRef) -> OnnxModel:
        return self.repository.resolve(ref.name, ref.version)

    def _check_batch(self, what: str, size: int) -> None:
        if size == 0:
            raise InvalidArgument(f"no {what} in the request")
        if size > self.settings.max_batch_size:
            raise ResourceExhausted(f"{size} {what} in one request, the limit is {self.settings.max_batch_size}")

    def _model_input(self, image: images_pb2.Image, index: int, model: OnnxModel) -> np.ndarray:
        spec = model.card.preprocessing
        try:
            source = image.WhichOneof("source")
            if source == "encoded":
                return preprocessing.preprocess(image.encoded, spec, self.settings.max_image_pixels)
            if source == "tensor":
                return _tensor(image.tensor, spec.shape)
            raise InvalidArgument("neither encoded bytes nor a tensor")
        except LookalikeError as error:
            raise type(error)(f"images[{index}]: {error}") from None


def _tensor(tensor: images_pb2.Tensor, shape: tuple[int, int, int]) -> np.ndarray:
    if tuple(tensor.shape) != shape:
        raise InvalidArgument(f"tensor shape {list(tensor.shape)} does not match the model's input {list(shape)}")
    if len(tensor.values) != int(np.prod(shape)):
        raise InvalidArgument(f"tensor has {len(tensor.values)} values, its shape needs {int(np.prod(shape))}")
    array = np.asarray(tensor.values, dtype=np.float32).reshape(shape)
    if not np.isfinite(array).all():
        raise InvalidArgument("tensor holds NaN or infinite values")
    return array


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
