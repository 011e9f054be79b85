"""The lookalike.v1.Search servicer: translates requests to the collection store and back."""

from __future__ import annotations

import numpy as np

from lookalike.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from lookalike.v1 import images_pb2, search_pb2, search_pb2_grpc
from search_service.collection import Collection, CollectionInfo, CollectionSpec, TagFilter
from search_service.collection_store import CollectionStore
from search_service.encoder_gateway import EncoderGateway
from search_service.settings import SearchSettings

METRIC_NAMES = {
    images_pb2.METRIC_COSINE: "cosine",
    images_pb2.METRIC_DOT_PRODUCT: "dot_product",
    images_pb2.METRIC_SQUARED_L2: "squared_l2",
}
METRIC_ENUMS = {name: enum for enum, name in METRIC_NAMES.items()}


class SearchServicer(search_pb2_grpc.SearchServicer):
    def __init__(self, store: CollectionStore, encoder: EncoderGateway, settings: SearchSettings) -> None:
        self.store = store
        self.encoder = encoder
        self.settings = settings

    def CreateCollection(self, request: search_pb2.CreateCollectionRequest, context) -> search_pb2.Collection:
        dimension, metric, ref = request.dimension, request.metric, request.model
        if metric != images_pb2.METRIC_UNSPECIFIED and metric not in METRIC_NAMES:
            raise InvalidArgument(f"unknown metric {metric}")
        if ref.name or (not ref.version and dimension <= 0):
            model = self.encoder.model_info(ref)
            if dimension and dimension != model.embedding_dim:
                raise InvalidArgument(
                    f"dimension {dimension} does not match model {model.model.name} v{model.model.version}, "
                    f"which makes {model.embedding_dim}-d embeddings"
                )
            dimension = model.embedding_dim
            metric = metric or model.metric
            ref = model.model  # pinned: version 0 becomes the exact version now served
        elif ref.version:
            raise InvalidArgument("model.version is set but model.name is empty")
        elif dimension < 0:
            raise InvalidArgument(f"dimension must be positive, got {dimension}")
        spec = CollectionSpec(
            name=request.name,
            dimension=int(dimension),
            metric=METRIC_NAMES[metric or images_pb2.METRIC_COSINE],
            model_name=ref.name,
            model_version=int(ref.version),
        )
        return _collection(self.store.create(spec))

    def GetCollection(self, request, context) -> search_pb2.Collection:
        return _collection(self.store.get(request.name).info())

    def ListCollections(self, request, context) -> search_pb2.ListCollectionsResponse:
        return search_pb2.ListCollectionsResponse(collections=[_collection(info) for info in self.store.list()])

    def DeleteCollection(self, request, context) -> search_pb2.DeleteCollectionResponse:
        self.store.delete(request.name)
        return search_pb2.DeleteCollectionResponse()

    def Upsert(self, request: search_pb2.UpsertRequest, context) -> search_pb2.UpsertResponse:
        collection = self.store.get(request.collection)
        items = request.items
        if not items:
            raise InvalidArgument("no items in the request")
        if len(items) > self.settings.max_batch_size:
            raise ResourceExhausted(f"{len(items)} items in one upsert, the limit is {self.settings.max_batch_size}")
        vectors = np.zeros((len(items), collection.spec.dimension), np.float32)
        with_images = []
        for i, item in enumerate(items):
            content = item.WhichOneof("content")
            if content == "vector":
                if len(item.vector.values) != collection.spec.dimension:
                    raise InvalidArgument(
                        f"items[{i}].vector has dimension {len(item.vector.values)}, "
                        f"collection {collection.spec.name!r} has {collection.spec.dimension}"
                    )
                vectors[i] = item.vector.values
            elif content == "image":
                with_images.append(i)
            else:
                raise InvalidArgument(f"items[{i}] has neither a vector nor an image")
        if with_images:
            embedded = self._embed(collection, [items[i].image for i in with_images], [f"items[{i}].image" for i in with_images])
            vectors[with_images] = embedded
        written = collection.upsert(
            [item.id for item in items], vectors, [list(item.tags) for item in items], [item.uri for item in items]
        )
        return search_pb2.UpsertResponse(upserted=written)

    def Delete(self, request, context) -> search_pb2.DeleteResponse:
        return search_pb2.DeleteResponse(deleted=self.store.get(request.collection).delete(list(request.ids)))

    def Get(self, request, context) -> search_pb2.GetResponse:
        found, missing = self.store.get(request.collection).get(list(request.ids))
        return search_pb2.GetResponse(
            items=[
                search_pb2.StoredItem(
                    id=item.id, vector=images_pb2.Embedding(values=item.vector.tolist()), tags=item.tags, uri=item.uri
                )
                for item in found
            ],
            missing_ids=missing,
        )

    def Search(self, request: search_pb2.SearchRequest, context) -> search_pb2.SearchResponse:
        collection = self.store.get(request.collection)
        if not 1 <= request.k <= self.settings.max_k:
            raise InvalidArgument(f"k must be between 1 and {self.settings.max_k}, got {request.k}")
        exclude: frozenset[str] = frozenset()
        query = request.WhichOneof("query")
        if query == "vector":
            vector = np.asarray(request.vector.values, dtype=np.float32)
        elif query == "image":
            (vector,) = self._embed(collection, [request.image], ["image"])
        elif query == "item_id":
            vector = collection.vector_of(request.item_id)
            exclude = frozenset([request.item_id])
        else:
            raise InvalidArgument("the query needs a vector, an image or an item_id")
        tag_filter = TagFilter(
            all_of=tuple(request.filter.all_of), any_of=tuple(request.filter.any_of), none_of=tuple(request.filter.none_of)
        )
        hits = collection.search(vector, int(request.k), tag_filter, exclude)
        return search_pb2.SearchResponse(
            neighbors=[search_pb2.Neighbor(id=h.id, score=h.score, tags=h.tags, uri=h.uri) for h in hits]
        )

    def _embed(self, collection: Collection, images: list[images_pb2.Image], labels: list[str]) -> np.ndarray:
        spec = collection.spec
        if not spec.model_name:
            raise FailedPrecondition(f"collection {spec.name!r} has no encoder model; send vectors, not images")
        ref = images_pb2.ModelRef(name=spec.model_name, version=spec.model_version)
        return self.encoder.embed(ref, images, labels)


def _collection(info: CollectionInfo) -> search_pb2.Collection:
    spec = info.spec
    return search_pb2.Collection(
        name=spec.name,
        dimension=spec.dimension,
        metric=METRIC_ENUMS[spec.metric],
        model=images_pb2.ModelRef(name=spec.model_name, version=spec.model_version),
        size=info.size,
    )
