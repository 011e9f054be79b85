"""The lookalike.v1.Search servicer: translates requests to the collection store and back.

What the protocol adds on top of the store lives here: images are embedded through the
encoder gateway (with what remains of the caller's deadline), vectors must name the model of
a collection that pins one, and creates and deletes can be retried safely. A collection with
find_copies gets a fingerprint with every image it embeds; FindCopies is copy_search.py's.
"""

from __future__ import annotations

import numpy as np

from copy_detection.features import Fingerprint
from copy_detection.verdict import Evidence, ThresholdError, Thresholds, Verdict
from lookalike.errors import AlreadyExists, FailedPrecondition, Internal, InvalidArgument, NotFound, Reason
from lookalike.model_format import METRIC_ENUM, METRIC_NAME
from lookalike.v1 import encoder_pb2, images_pb2, search_pb2, search_pb2_grpc
from search_service.collection import DAMAGED, READY, Collection, CollectionInfo, CollectionSpec, Hit, TagFilter
from search_service.collection_store import CollectionStore
from search_service.copy_search import CopyOptions, CopyQuery, FoundCopy, find_copies
from search_service.encoder_gateway import EncoderGateway
from search_service.settings import SearchSettings


class SearchServicer(search_pb2_grpc.SearchServicer):
    def __init__(self, store: CollectionStore, encoder: EncoderGateway, settings: SearchSettings) -> None:
        self.store = store
        self.encoder = encoder
        self.settings = settings

    def CreateCollection(self, request: search_pb2.CreateCollectionRequest, context) -> search_pb2.Collection:
        spec = self._spec(request, context.time_remaining())
        try:
            return _collection(self.store.create(spec))
        except AlreadyExists:
            if not request.allow_existing:
                raise
            existing = self.store.get(spec.name).info()
            if not _satisfies(existing.spec, spec, request):
                raise AlreadyExists(
                    f"collection {spec.name!r} exists with other settings: {_describe(existing.spec)}",
                    reason=Reason.COLLECTION_EXISTS,
                    field="name",
                    metadata={"collection": spec.name},
                ) from None
            return _collection(existing)

    def GetCollection(self, request, context) -> search_pb2.Collection:
        return _collection(self.store.describe(request.name))

    def ListCollections(self, request, context) -> search_pb2.ListCollectionsResponse:
        return search_pb2.ListCollectionsResponse(collections=[_collection(info) for info in self.store.list()])

    def DeleteCollection(self, request, context) -> search_pb2.DeleteCollectionResponse:
        try:
            self.store.delete(request.name)
        except NotFound:
            if not request.allow_missing:
                raise
        return search_pb2.DeleteCollectionResponse()

    def Upsert(self, request: search_pb2.UpsertRequest, context) -> search_pb2.UpsertResponse:
        collection = self.store.get(request.collection)
        items = request.items
        self._check_batch(len(items))
        rows: list = [None] * len(items)
        fingerprints = [b""] * len(items)
        with_images = []
        for i, item in enumerate(items):
            content = item.WhichOneof("content")
            if content == "vector":
                _check_model(collection.spec, item.vector, f"items[{i}].vector")
                rows[i] = item.vector.values
            elif content == "image":
                with_images.append(i)
            else:
                raise InvalidArgument(
                    f"items[{i}] has neither a vector nor an image", reason=Reason.REQUIRED_FIELD_MISSING, field=f"items[{i}]"
                )
        if with_images:
            images = [items[i].image for i in with_images]
            kind = encoder_pb2.FINGERPRINT_KIND_STORED if collection.spec.find_copies else encoder_pb2.FINGERPRINT_KIND_UNSPECIFIED
            embedded, prints = self._embed(collection, images, [f"items[{i}].image" for i in with_images], context, kind)
            for position, (i, row) in enumerate(zip(with_images, embedded)):
                rows[i] = row
                if prints and prints[position]:  # b"": a tensor, which has no picture to fingerprint
                    fingerprints[i] = _checked(prints[position])
        written = collection.upsert(
            [item.id for item in items],
            rows,
            [list(item.tags) for item in items],
            [item.uri for item in items],
            [item.timestamp for item in items],
            fingerprints,
        )
        return search_pb2.UpsertResponse(upserted=written)

    def Delete(self, request, context) -> search_pb2.DeleteResponse:
        return search_pb2.DeleteResponse(deleted=self.store.get(request.collection).delete(list(request.ids)))

    def Get(self, request, context) -> search_pb2.GetResponse:
        collection = self.store.get(request.collection)
        limit = self.settings.max_get_ids
        if len(request.ids) > limit:  # before any reply is built: its size grows with the ids
            raise InvalidArgument(
                f"{len(request.ids)} ids in one get, the limit is {limit}",
                reason=Reason.BATCH_TOO_LARGE,
                field="ids",
                metadata={"limit": limit},
            )
        found, missing = collection.get(list(request.ids))
        model = _model_of(collection.spec)
        return search_pb2.GetResponse(
            items=[
                search_pb2.StoredItem(
                    id=item.id,
                    vector=images_pb2.Embedding(values=item.vector.tolist(), model=model),
                    tags=item.tags,
                    uri=item.uri,
                    timestamp=item.timestamp,
                    has_fingerprint=item.has_fingerprint,
                )
                for item in found
            ],
            missing_ids=missing,
        )

    def Search(self, request: search_pb2.SearchRequest, context) -> search_pb2.SearchResponse:
        collection = self.store.get(request.collection)
        if not 1 <= request.k <= self.settings.max_k:
            raise InvalidArgument(
                f"k must be between 1 and {self.settings.max_k}, got {request.k}",
                reason=Reason.K_OUT_OF_RANGE,
                field="k",
                metadata={"limit": self.settings.max_k},
            )
        exclude: frozenset[str] = frozenset()
        query = request.WhichOneof("query")
        if query == "vector":
            _check_model(collection.spec, request.vector, "vector")
            vector = np.asarray(request.vector.values, dtype=np.float32)
        elif query == "image":
            (vector,), _ = self._embed(collection, [request.image], ["image"], context)
        elif query == "item_id":
            vector = collection.vector_of(request.item_id)
            exclude = frozenset([request.item_id])
        else:
            raise InvalidArgument(
                "the query needs a vector, an image or an item_id", reason=Reason.REQUIRED_FIELD_MISSING, field="query"
            )
        hits = collection.search(vector, int(request.k), _tag_filter(request.filter), exclude)
        return search_pb2.SearchResponse(
            neighbors=[_neighbor(h) for h in hits],
            model=_model_of(collection.spec),
            metric=METRIC_ENUM[collection.spec.metric],
        )

    def FindCopies(self, request: search_pb2.FindCopiesRequest, context) -> search_pb2.FindCopiesResponse:
        collection = self.store.get(request.collection)
        spec = collection.spec
        if not spec.find_copies:
            raise FailedPrecondition(
                f"collection {spec.name!r} keeps no fingerprints: create it with find_copies to find copies",
                reason=Reason.COPIES_NOT_ENABLED,
                metadata={"collection": spec.name},
            )
        k = request.k or 10
        if not 1 <= k <= self.settings.max_k:
            raise InvalidArgument(
                f"k must be between 1 and {self.settings.max_k}, got {k}",
                reason=Reason.K_OUT_OF_RANGE,
                field="k",
                metadata={"limit": self.settings.max_k},
            )
        candidates = request.candidates or self.settings.copy_candidates
        if not 1 <= candidates <= self.settings.max_copy_candidates:
            raise InvalidArgument(
                f"candidates must be between 0 and {self.settings.max_copy_candidates}, got {candidates}",
                reason=Reason.VALUE_OUT_OF_RANGE,
                field="candidates",
                metadata={"limit": self.settings.max_copy_candidates},
            )
        query = request.WhichOneof("query")
        if query == "image":
            if request.image.WhichOneof("source") != "encoded":
                raise InvalidArgument(
                    "FindCopies needs the picture's file (image.encoded): a tensor has no picture to take local features from",
                    reason=Reason.REQUIRED_FIELD_MISSING,
                    field="image.encoded",
                )
            (vector,), (fingerprint,) = self._embed(
                collection, [request.image], ["image"], context, encoder_pb2.FINGERPRINT_KIND_QUERY
            )
            copy_query = CopyQuery(vector, Fingerprint.from_bytes(_checked(fingerprint)))
        elif query == "item_id":
            vector, fingerprint = collection.vector_of(request.item_id), collection.fingerprint_of(request.item_id)
            stored = Fingerprint.from_bytes(fingerprint) if fingerprint else None
            copy_query = CopyQuery(vector, stored, frozenset([request.item_id]))
        else:
            raise InvalidArgument("the query needs an image or an item_id", reason=Reason.REQUIRED_FIELD_MISSING, field="query")
        options = CopyOptions(
            k=k,
            candidates=candidates,
            tag_filter=_tag_filter(request.filter),
            include_similar=request.include_similar,
            edit_pictures=request.edit_pictures,
            earliest_first=request.order == search_pb2.COPY_ORDER_EARLIEST_FIRST,
        )
        result = find_copies(collection, copy_query, options)
        return search_pb2.FindCopiesResponse(
            copies=[_copy(found) for found in result.copies],
            model=_model_of(spec),
            query_featureless=result.query_featureless,
            candidates_verified=result.verified,
        )

    def _check_batch(self, size: int) -> None:
        if size == 0:
            raise InvalidArgument("no items in the request", reason=Reason.BATCH_EMPTY, field="items")
        limit = self.settings.max_batch_size
        if size > limit:
            raise InvalidArgument(
                f"{size} items in one upsert, the limit is {limit}",
                reason=Reason.BATCH_TOO_LARGE,
                field="items",
                metadata={"limit": limit},
            )

    def _spec(self, request: search_pb2.CreateCollectionRequest, time_left: float) -> CollectionSpec:
        """The spec to create: the model's size, metric and exact version filled in from the encoder."""
        dimension, metric, ref = request.dimension, request.metric, request.model
        if metric != images_pb2.METRIC_UNSPECIFIED and metric not in METRIC_NAME:
            raise InvalidArgument(f"unknown metric {metric}", reason=Reason.METRIC_INVALID, field="metric")
        if ref.name or (not ref.version and dimension <= 0):
            model = self.encoder.model_info(ref, time_left)
            if dimension and dimension != model.embedding_dim:
                raise InvalidArgument(
                    f"dimension {dimension} does not match model {model.model.name} v{model.model.version}, "
                    f"which makes {model.embedding_dim}-d embeddings",
                    reason=Reason.DIMENSION_MISMATCH,
                    field="dimension",
                )
            dimension = model.embedding_dim
            metric = metric or model.metric
            ref = model.model  # pinned: version 0 becomes the exact version now served
        elif ref.version:
            raise InvalidArgument(
                "model.version is set but model.name is empty", reason=Reason.REQUIRED_FIELD_MISSING, field="model.name"
            )
        elif dimension < 0:
            raise InvalidArgument(f"dimension must be positive, got {dimension}", reason=Reason.DIMENSION_INVALID, field="dimension")
        return CollectionSpec(
            name=request.name,
            dimension=int(dimension),
            metric=METRIC_NAME[metric or images_pb2.METRIC_COSINE],
            model_name=ref.name,
            model_version=int(ref.version),
            copy_thresholds=_requested_thresholds(request),
        )

    def _embed(
        self,
        collection: Collection,
        images: list[images_pb2.Image],
        fields: list[str],
        context,
        fingerprints: int = encoder_pb2.FINGERPRINT_KIND_UNSPECIFIED,
    ) -> tuple[np.ndarray, list[bytes]]:
        spec = collection.spec
        if not spec.model_name:
            raise FailedPrecondition(
                f"collection {spec.name!r} has no encoder model; send vectors, not images",
                reason=Reason.COLLECTION_HAS_NO_MODEL,
                field=fields[0],
                metadata={"collection": spec.name},
            )
        ref = images_pb2.ModelRef(name=spec.model_name, version=spec.model_version)
        return self.encoder.embed(ref, images, fields, context.time_remaining(), fingerprints)


def _check_model(spec: CollectionSpec, vector: images_pb2.Embedding, field: str) -> None:
    """A collection that pins a model takes only vectors that name it: same length is not enough."""
    if not spec.model_name:
        return
    pinned = f"{spec.model_name} v{spec.model_version}"
    if not vector.model.name:
        raise InvalidArgument(
            f"{field}.model is required: collection {spec.name!r} holds vectors of model {pinned}",
            reason=Reason.REQUIRED_FIELD_MISSING,
            field=f"{field}.model",
            metadata={"model": spec.model_name, "version": spec.model_version},
        )
    if (vector.model.name, vector.model.version) != (spec.model_name, spec.model_version):
        raise FailedPrecondition(
            f"{field} was made by model {vector.model.name} v{vector.model.version}, but collection {spec.name!r} "
            f"holds vectors of model {pinned}; vectors of different models are not comparable",
            reason=Reason.MODEL_MISMATCH,
            field=f"{field}.model",
            metadata={"model": spec.model_name, "version": spec.model_version},
        )


def _satisfies(existing: CollectionSpec, wanted: CollectionSpec, request: search_pb2.CreateCollectionRequest) -> bool:
    """Whether an existing collection is what a (retried) create asked for; version 0 asked for any."""
    return (
        existing.dimension == wanted.dimension
        and existing.metric == wanted.metric
        and existing.model_name == wanted.model_name
        and (request.model.version == 0 or existing.model_version == wanted.model_version)
        and existing.find_copies == wanted.find_copies
        and (not request.HasField("copy_thresholds") or existing.copy_thresholds == wanted.copy_thresholds)
    )


def _describe(spec: CollectionSpec) -> str:
    model = f", model {spec.model_name} v{spec.model_version}" if spec.model_name else ""
    copies = ", find_copies" if spec.find_copies else ""
    return f"dimension {spec.dimension}, {spec.metric}{model}{copies}"


def _model_of(spec: CollectionSpec) -> images_pb2.ModelRef | None:
    return images_pb2.ModelRef(name=spec.model_name, version=spec.model_version) if spec.model_name else None


_STATE = {READY: search_pb2.Collection.STATE_READY, DAMAGED: search_pb2.Collection.STATE_DAMAGED}


def _collection(info: CollectionInfo) -> search_pb2.Collection:
    spec = info.spec
    return search_pb2.Collection(
        name=spec.name,
        dimension=spec.dimension,
        metric=METRIC_ENUM.get(spec.metric, images_pb2.METRIC_UNSPECIFIED),  # "" when its spec is unreadable
        model=_model_of(spec),
        size=info.size,
        state=_STATE[info.state],
        state_reason=info.state_reason,
        find_copies=spec.find_copies,
        copy_thresholds=_thresholds(spec.copy_thresholds),
    )


def _requested_thresholds(request: search_pb2.CreateCollectionRequest) -> Thresholds | None:
    """The create's copy thresholds: None without find_copies, the defaults when none are sent."""
    if not request.HasField("copy_thresholds"):
        return Thresholds() if request.find_copies else None
    if not request.find_copies:
        raise InvalidArgument(
            "copy_thresholds are for a collection with find_copies",
            reason=Reason.REQUIRED_FIELD_MISSING,
            field="find_copies",
        )
    sent = request.copy_thresholds
    try:  # float32 on the wire: 0.95 arrives as 0.949999988, and six digits are what a caller meant
        return Thresholds(
            exact_hash_distance=sent.exact_hash_distance,
            edited_inliers=sent.edited_inliers,
            embedding_copy=round(sent.embedding_copy, 6),
            embedding_similar=round(sent.embedding_similar, 6),
        )
    except ThresholdError as error:
        raise InvalidArgument(
            f"copy_thresholds.{error}", reason=Reason.VALUE_OUT_OF_RANGE, field=f"copy_thresholds.{error.field}"
        ) from None


def _thresholds(thresholds: Thresholds | None) -> search_pb2.CopyThresholds | None:
    if thresholds is None:
        return None
    return search_pb2.CopyThresholds(
        exact_hash_distance=thresholds.exact_hash_distance,
        edited_inliers=thresholds.edited_inliers,
        embedding_copy=thresholds.embedding_copy,
        embedding_similar=thresholds.embedding_similar,
    )


def _tag_filter(request_filter: search_pb2.Filter) -> TagFilter:
    return TagFilter(
        all_of=tuple(request_filter.all_of), any_of=tuple(request_filter.any_of), none_of=tuple(request_filter.none_of)
    )


def _neighbor(hit: Hit) -> search_pb2.Neighbor:
    return search_pb2.Neighbor(id=hit.id, score=hit.score, tags=hit.tags, uri=hit.uri, timestamp=hit.timestamp)


def _checked(fingerprint: bytes) -> bytes:
    """A fingerprint from the encoder, refused before it can reach a log it would make unreadable."""
    try:
        Fingerprint.from_bytes(fingerprint)
    except ValueError:
        raise Internal("the encoder service sent a malformed fingerprint", reason=Reason.ENCODER_FAILED) from None
    return fingerprint


_VERDICT = {
    Verdict.EXACT_COPY: search_pb2.VERDICT_EXACT_COPY,
    Verdict.EDITED_COPY: search_pb2.VERDICT_EDITED_COPY,
    Verdict.SIMILAR: search_pb2.VERDICT_SIMILAR,
    Verdict.UNRELATED: search_pb2.VERDICT_UNRELATED,
}
_EVIDENCE = {
    Evidence.HASH: search_pb2.EVIDENCE_HASH,
    Evidence.LOCAL_FEATURES: search_pb2.EVIDENCE_LOCAL_FEATURES,
    Evidence.EMBEDDING: search_pb2.EVIDENCE_EMBEDDING,
}


def _copy(found: FoundCopy) -> search_pb2.Copy:
    hit, match, edits = found.candidate.hit, found.match, found.edits
    copy = search_pb2.Copy(
        id=hit.id,
        tags=hit.tags,
        uri=hit.uri,
        timestamp=hit.timestamp,
        verdict=_VERDICT[found.decision.verdict],
        evidence=_EVIDENCE[found.decision.evidence],
        hash_distance=-1 if found.candidate.hash_distance is None else found.candidate.hash_distance,
        inliers=0 if match is None else match.inliers,
        embedding_score=hit.score,
        edit_picture_png=found.edit_picture_png,
    )
    if match is not None:
        copy.region_in_original.extend(search_pb2.Point(x=x, y=y) for x, y in match.region_in_original.tolist())
        copy.original_in_query.extend(search_pb2.Point(x=x, y=y) for x, y in match.original_in_query.tolist())
    if edits is not None:
        copy.edits.CopyFrom(
            search_pb2.EditSummary(
                kept_fraction=edits.cropped_to,
                mirrored=edits.mirrored,
                rotation_degrees=edits.rotation_degrees,
                scale=edits.scale,
                added_fraction=edits.added_fraction,
                changed_fraction=edits.changed_fraction,
                recoloured_fraction=edits.recoloured_fraction,
            )
        )
    return copy
