"""A small typed client for the Lookalike services: `from lookalike import EncoderClient, SearchClient`.

Thin over the generated stubs: numpy in and out where vectors are concerned,
the raised 4 MB message limit, a deadline on every call, and `wait_until_serving`
through the standard health service. gRPC errors surface as `grpc.RpcError`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lookalike.grpc_server import message_options
from lookalike.v1 import encoder_pb2, encoder_pb2_grpc, images_pb2, search_pb2, search_pb2_grpc

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

ImageInput = bytes | np.ndarray  # encoded file bytes, or a preprocessed (C, H, W) float32 tensor


@dataclasses.dataclass(frozen=True)
class Neighbor:
    id: str
    score: float
    tags: tuple[str, ...]
    uri: str


@dataclasses.dataclass(frozen=True)
class ItemToUpsert:
    id: str
    image: ImageInput | None = None
    vector: np.ndarray | Sequence[float] | None = None
    tags: Sequence[str] = ()
    uri: str = ""


def to_image_message(image: ImageInput) -> images_pb2.Image:
    if isinstance(image, (bytes, bytearray)):
        return images_pb2.Image(encoded=bytes(image))
    array = np.asarray(image, dtype=np.float32)
    return images_pb2.Image(tensor=images_pb2.Tensor(shape=array.shape, values=array.ravel().tolist()))


class _Client:
    service = ""

    def __init__(self, address: str, *, timeout: float = 30.0, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES):
        self.address = address
        self.timeout = timeout
        self.channel = grpc.insecure_channel(address, options=message_options(max_message_bytes))
        self._health = health_pb2_grpc.HealthStub(self.channel)

    def wait_until_serving(self, timeout: float = 30.0) -> None:
        """Blocks until the standard health service answers SERVING; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                status = self._health.Check(health_pb2.HealthCheckRequest(service=self.service), timeout=1.0).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
            except grpc.RpcError as error:
                last = error.code().name
            time.sleep(0.1)
        raise TimeoutError(f"{self.address} not SERVING after {timeout}s (last: {last})")

    def close(self) -> None:
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class EncoderClient(_Client):
    service = "lookalike.v1.Encoder"

    def __init__(self, address: str = "localhost:50051", **kwargs) -> None:
        super().__init__(address, **kwargs)
        self.stub = encoder_pb2_grpc.EncoderStub(self.channel)

    def embed(self, images: Sequence[ImageInput], model: str = "", version: int = 0) -> tuple[np.ndarray, images_pb2.ModelRef]:
        """(N, D) float32 embeddings of `images`, and the exact model that made them."""
        request = encoder_pb2.EmbedRequest(
            model=images_pb2.ModelRef(name=model, version=version), images=[to_image_message(i) for i in images]
        )
        response = self.stub.Embed(request, timeout=self.timeout)
        return np.array([list(e.values) for e in response.embeddings], dtype=np.float32), response.model

    def reconstruct(self, embeddings: np.ndarray, model: str = "", version: int = 0) -> list[bytes]:
        """PNG bytes rebuilt by the model's decoder, one per embedding row."""
        request = encoder_pb2.ReconstructRequest(
            model=images_pb2.ModelRef(name=model, version=version),
            embeddings=[images_pb2.Embedding(values=row) for row in np.asarray(embeddings, np.float32).tolist()],
        )
        return list(self.stub.Reconstruct(request, timeout=self.timeout).png_images)

    def get_model(self, model: str = "", version: int = 0) -> encoder_pb2.ModelInfo:
        request = encoder_pb2.GetModelRequest(model=images_pb2.ModelRef(name=model, version=version))
        return self.stub.GetModel(request, timeout=self.timeout)

    def list_models(self) -> list[encoder_pb2.ModelInfo]:
        return list(self.stub.ListModels(encoder_pb2.ListModelsRequest(), timeout=self.timeout).models)


class SearchClient(_Client):
    service = "lookalike.v1.Search"

    def __init__(self, address: str = "localhost:50052", **kwargs) -> None:
        super().__init__(address, **kwargs)
        self.stub = search_pb2_grpc.SearchStub(self.channel)

    def create_collection(
        self, name: str, *, dimension: int = 0, metric: int = images_pb2.METRIC_UNSPECIFIED, model: str = "", version: int = 0
    ) -> search_pb2.Collection:
        request = search_pb2.CreateCollectionRequest(
            name=name, dimension=dimension, metric=metric, model=images_pb2.ModelRef(name=model, version=version)
        )
        return self.stub.CreateCollection(request, timeout=self.timeout)

    def get_collection(self, name: str) -> search_pb2.Collection:
        return self.stub.GetCollection(search_pb2.GetCollectionRequest(name=name), timeout=self.timeout)

    def list_collections(self) -> list[search_pb2.Collection]:
        return list(self.stub.ListCollections(search_pb2.ListCollectionsRequest(), timeout=self.timeout).collections)

    def delete_collection(self, name: str) -> None:
        self.stub.DeleteCollection(search_pb2.DeleteCollectionRequest(name=name), timeout=self.timeout)

    def upsert(self, collection: str, items: Sequence[ItemToUpsert]) -> int:
        messages = []
        for item in items:
            message = search_pb2.Item(id=item.id, tags=list(item.tags), uri=item.uri)
            if item.vector is not None:
                message.vector.values.extend(np.asarray(item.vector, np.float32).tolist())
            elif item.image is not None:
                message.image.CopyFrom(to_image_message(item.image))
            messages.append(message)
        request = search_pb2.UpsertRequest(collection=collection, items=messages)
        return self.stub.Upsert(request, timeout=self.timeout).upserted

    def delete(self, collection: str, ids: Sequence[str]) -> int:
        return self.stub.Delete(search_pb2.DeleteRequest(collection=collection, ids=list(ids)), timeout=self.timeout).deleted

    def get(self, collection: str, ids: Sequence[str]) -> search_pb2.GetResponse:
        return self.stub.Get(search_pb2.GetRequest(collection=collection, ids=list(ids)), timeout=self.timeout)

    def search(
        self,
        collection: str,
        *,
        vector: np.ndarray | Sequence[float] | None = None,
        image: ImageInput | None = None,
        item_id: str | None = None,
        k: int = 10,
        all_of: Sequence[str] = (),
        any_of: Sequence[str] = (),
        none_of: Sequence[str] = (),
    ) -> list[Neighbor]:
        """The k nearest items to exactly one of `vector`, `image` or `item_id`, best first."""
        if sum(q is not None for q in (vector, image, item_id)) != 1:
            raise ValueError("give exactly one of vector, image or item_id")
        request = search_pb2.SearchRequest(
            collection=collection,
            k=k,
            filter=search_pb2.Filter(all_of=list(all_of), any_of=list(any_of), none_of=list(none_of)),
        )
        if vector is not None:
            request.vector.values.extend(np.asarray(vector, np.float32).tolist())
        elif image is not None:
            request.image.CopyFrom(to_image_message(image))
        else:
            request.item_id = item_id
        response = self.stub.Search(request, timeout=self.timeout)
        return [Neighbor(n.id, n.score, tuple(n.tags), n.uri) for n in response.neighbors]
