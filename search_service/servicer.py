"""The lookalike.v1.Search servicer: translates requests to the collection store and back.

What the protocol adds on top of the store lives here: images are embedded through the
encoder gateway (with what remains of the caller's deadline), vectors must name the model of
a collection that pins one, and creates and deletes can be retried safely. A collection with
find_copies gets a fingerprint with every image it embeds; FindCopies is copy_search.py's,
Search and SearchBatch search_requests.py's, UpsertStream bulk_ingest.py's.
"""

from __future__ import annotations

import numpy as np

from copy_detection.features import Fingerprint
from copy_detection.verdict import Evidence, ThresholdError, Thresholds, Verdict
from lookalike.errors import AlreadyExists, FailedPrecondition, Internal, InvalidArgument, NotFound, Reason
from lookalike.model_format import METRIC_ENUM, METRIC_NAME
from lookalike.v1 import encoder_pb2, images_pb2, search_pb2, search_pb2_grpc
from search_service import backup_requests, bulk_ingest, reindex_requests, search_requests
from search_service.collection import DAMAGED, READY, UPDATABLE_FIELDS, Collection, CollectionInfo, CollectionSpec, IndexInfo, StoredItem
from search_service.aliases import Alias
from search_service.backups import receive_backup
from search_service.collection_store import CollectionStore
from search_service.copy_search import CopyOptions, CopyQuery, FoundCopy, find_copies
from search_service.encoder_gateway import EncoderGateway
from search_service.item_writes import ItemWrites, picture_of
from search_service.reindex import Reindexer
from search_service.search_requests import check_model, model_of, ranges, tag_filter
from search_service.settings import SearchSettings


class SearchServicer(search_pb2_grpc.SearchServicer):
    def __init__(self, store: CollectionStore, writes: ItemWrites, reindexer: Reindexer, encoder: EncoderGateway, settings: SearchSettings) -> None:
        self.store = store
        self.writes = writes
        self.reindexer = reindexer
        self.encoder = encoder
        self.settings = settings

    def CreateCollection(self, request: search_pb2.CreateCollectionRequest, context) -> search_pb2.Collection:
        spec = self._spec(request, context.time_remaining())
        try:
            return _collection(self.store.create(spec))
        except AlreadyExists as taken:
            if not request.allow_existing or taken.reason == Reason.ALIAS_EXISTS:
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

    def CreateAlias(self, request: search_pb2.CreateAliasRequest, context) -> search_pb2.Alias:
        return _alias(self.store.create_alias(request.name, request.collection))

    def SwitchAlias(self, request: search_pb2.SwitchAliasRequest, context) -> search_pb2.Alias:
        return _alias(self.store.switch_alias(request.name, request.collection, request.expected_collection))

    def DeleteAlias(self, request: search_pb2.DeleteAliasRequest, context) -> search_pb2.DeleteAliasResponse:
        try:
            self.store.delete_alias(request.name)
        except NotFound:
            if not request.allow_missing:
                raise
        return search_pb2.DeleteAliasResponse()

    def ListAliases(self, request, context) -> search_pb2.ListAliasesResponse:
        return search_pb2.ListAliasesResponse(aliases=[_alias(alias) for alias in self.store.aliases()])

    def StartReindex(self, request: search_pb2.StartReindexRequest, context) -> search_pb2.Operation:
        record = reindex_requests.record_of(request, self.store, self.settings)
        info = self.encoder.model_info(images_pb2.ModelRef(name=record.model_name, version=record.model_version), context.time_remaining())
        record.model_version = info.model.version  # pinned: 0 meant the newest loaded now
        if not request.target_collection:
            record.target = f"{record.source}.{record.model_name}-v{record.model_version}"
        return self._operation(self.reindexer.start(record, info.embedding_dim))

    def GetOperation(self, request: search_pb2.GetOperationRequest, context) -> search_pb2.Operation:
        return self._operation(self.reindexer.get(request.name))

    def ListOperations(self, request, context) -> search_pb2.ListOperationsResponse:
        return search_pb2.ListOperationsResponse(operations=[self._operation(r, with_picture=False) for r in self.reindexer.all()])

    def CancelOperation(self, request: search_pb2.CancelOperationRequest, context) -> search_pb2.Operation:
        return self._operation(self.reindexer.cancel(request.name))

    def ExportCollection(self, request_iterator, context):
        name = backup_requests.only_request(request_iterator).collection
        collection = _collection(self.store.describe(name))
        return backup_requests.export_stream(collection, self.store.backup(name))

    def ImportCollection(self, request_iterator, context):
        messages = iter(request_iterator)
        header = backup_requests.first_header(messages)
        spec = _restored_spec(header)
        facts = backup_requests.facts_of(header.backup)
        data = backup_requests.data_of(messages)
        fsync = self.settings.fsync
        info = self.store.restore(spec, lambda staging: receive_backup(staging, facts, data, dimension=spec.dimension, fsync=fsync))
        yield search_pb2.ImportCollectionResponse(collection=_collection(info))

    def _operation(self, record, *, with_picture: bool = True) -> search_pb2.Operation:
        return reindex_requests.operation(record, self.reindexer.picture(record) if with_picture else b"")

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
                check_model(collection.spec, item.vector, f"items[{i}].vector")
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
        written = self.writes.upsert(
            collection,
            [item.id for item in items],
            rows,
            [list(item.tags) for item in items],
            [item.uri for item in items],
            [item.timestamp for item in items],
            fingerprints,
            [dict(item.attributes) for item in items],
            [picture_of(item) for item in items],
        )
        return search_pb2.UpsertResponse(upserted=written)

    def UpsertStream(self, request_iterator, context) -> search_pb2.UpsertStreamResponse:
        def embed(collection: Collection, images, fields, kind):
            vectors, prints = self._embed(collection, images, fields, context, kind)
            return vectors, [_checked(p) if p else p for p in prints]

        return bulk_ingest.ingest(request_iterator, self.store, self.writes, self.settings, embed)

    def UpdateItems(self, request: search_pb2.UpdateItemsRequest, context) -> search_pb2.UpdateItemsResponse:
        collection = self.store.get(request.collection)
        items = request.items
        self._check_batch(len(items))
        paths = list(request.update_mask.paths)
        if not paths:
            raise InvalidArgument(
                "update_mask names no field to change", reason=Reason.REQUIRED_FIELD_MISSING, field="update_mask.paths"
            )
        for position, path in enumerate(paths):
            if path not in UPDATABLE_FIELDS:
                raise InvalidArgument(
                    f"update_mask.paths[{position}] is {path!r}; an update may change {', '.join(UPDATABLE_FIELDS)}",
                    reason=Reason.VALUE_OUT_OF_RANGE,
                    field=f"update_mask.paths[{position}]",
                )
        for i, item in enumerate(items):
            if item.WhichOneof("content"):
                raise InvalidArgument(
                    f"items[{i}] carries a {item.WhichOneof('content')}: an update keeps the vector (use Upsert to replace it)",
                    reason=Reason.REQUEST_MALFORMED,
                    field=f"items[{i}].{item.WhichOneof('content')}",
                )
        updated = self.writes.update(
            collection,
            [item.id for item in items],
            paths,
            [list(item.tags) for item in items],
            [item.uri for item in items],
            [item.timestamp for item in items],
            [dict(item.attributes) for item in items],
        )
        return search_pb2.UpdateItemsResponse(updated=updated)

    def Delete(self, request, context) -> search_pb2.DeleteResponse:
        return search_pb2.DeleteResponse(deleted=self.writes.delete(self.store.get(request.collection), list(request.ids)))

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
        model = model_of(collection.spec)
        return search_pb2.GetResponse(items=[_stored_item(item, model) for item in found], missing_ids=missing)

    def ListItems(self, request: search_pb2.ListItemsRequest, context) -> search_pb2.ListItemsResponse:
        collection = self.store.get(request.collection)
        size = request.page_size or 100
        if not 1 <= size <= self.settings.max_get_ids:
            raise InvalidArgument(
                f"page_size must be between 0 and {self.settings.max_get_ids}, got {request.page_size}",
                reason=Reason.VALUE_OUT_OF_RANGE,
                field="page_size",
                metadata={"limit": self.settings.max_get_ids},
            )
        items, token = collection.list_items(
            tag_filter(request.filter), ranges(request.filter, "filter"), size, request.page_token
        )
        model = model_of(collection.spec)
        return search_pb2.ListItemsResponse(
            items=[_stored_item(item, model, request.with_vectors) for item in items], next_page_token=token
        )

    def Search(self, request: search_pb2.SearchRequest, context) -> search_pb2.SearchResponse:
        plan = search_requests.plan(self.store, self.settings, request)
        self._embed_queries([plan], context)
        search_requests.finish(plan)
        return search_requests.answer([plan])[0]

    def SearchBatch(self, request: search_pb2.SearchBatchRequest, context) -> search_pb2.SearchBatchResponse:
        searches = request.searches
        if not searches:
            raise InvalidArgument("no searches in the request", reason=Reason.BATCH_EMPTY, field="searches")
        if len(searches) > self.settings.max_batch_size:
            raise InvalidArgument(
                f"{len(searches)} searches in one call, the limit is {self.settings.max_batch_size}",
                reason=Reason.BATCH_TOO_LARGE,
                field="searches",
                metadata={"limit": self.settings.max_batch_size},
            )
        plans = [search_requests.plan(self.store, self.settings, s, f"searches[{i}].") for i, s in enumerate(searches)]
        self._embed_queries(plans, context)
        for plan in plans:
            search_requests.finish(plan)
        return search_pb2.SearchBatchResponse(results=search_requests.answer(plans))

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
            tag_filter=tag_filter(request.filter),
            ranges=ranges(request.filter, "filter"),
            include_similar=request.include_similar,
            edit_pictures=request.edit_pictures,
            earliest_first=request.order == search_pb2.COPY_ORDER_EARLIEST_FIRST,
        )
        result = find_copies(collection, copy_query, options)
        return search_pb2.FindCopiesResponse(
            copies=[_copy(found) for found in result.copies],
            model=model_of(spec),
            query_featureless=result.query_featureless,
            candidates_verified=result.verified,
        )

    def _embed_queries(self, plans: list[search_requests.Plan], context) -> None:
        """Embeds the query images of `plans`, one encoder call per collection."""
        by_collection: dict[int, list[search_requests.Plan]] = {}
        for plan in plans:
            if plan.image is not None:
                by_collection.setdefault(id(plan.collection), []).append(plan)
        for group in by_collection.values():
            fields = [f"{plan.field}image" for plan in group]
            vectors, _ = self._embed(group[0].collection, [plan.image for plan in group], fields, context)
            for plan, vector in zip(group, vectors):
                plan.vector = vector

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
            keep_sources=request.keep_sources,
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


def _restored_spec(header: search_pb2.ImportCollectionHeader) -> CollectionSpec:
    """The backed-up collection's settings under the new name. Kept sources are not in a backup,
    so the restored collection keeps none (docs/operations.md)."""
    backed_up = header.backup.collection
    if backed_up.metric not in METRIC_NAME:
        raise InvalidArgument(f"unknown metric {backed_up.metric}", reason=Reason.METRIC_INVALID, field="header.backup.collection.metric")
    thresholds = search_pb2.CreateCollectionRequest(find_copies=backed_up.find_copies)
    if backed_up.find_copies:
        thresholds.copy_thresholds.CopyFrom(backed_up.copy_thresholds)
    return CollectionSpec(
        name=header.name,
        dimension=backed_up.dimension,
        metric=METRIC_NAME[backed_up.metric],
        model_name=backed_up.model.name,
        model_version=backed_up.model.version,
        copy_thresholds=_requested_thresholds(thresholds),
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
        and existing.keep_sources == wanted.keep_sources
    )


def _describe(spec: CollectionSpec) -> str:
    model = f", model {spec.model_name} v{spec.model_version}" if spec.model_name else ""
    copies = ", find_copies" if spec.find_copies else ""
    return f"dimension {spec.dimension}, {spec.metric}{model}{copies}"


_STATE = {READY: search_pb2.Collection.STATE_READY, DAMAGED: search_pb2.Collection.STATE_DAMAGED}


def _alias(alias: Alias) -> search_pb2.Alias:
    return search_pb2.Alias(
        name=alias.name,
        collection=alias.collection,
        previous_collection=alias.previous_collection,
        changed_at_unix_ms=alias.changed_at_unix_ms,
    )


def _collection(info: CollectionInfo) -> search_pb2.Collection:
    spec = info.spec
    return search_pb2.Collection(
        name=spec.name,
        dimension=spec.dimension,
        metric=METRIC_ENUM.get(spec.metric, images_pb2.METRIC_UNSPECIFIED),  # "" when its spec is unreadable
        model=model_of(spec),
        size=info.size,
        state=_STATE[info.state],
        state_reason=info.state_reason,
        find_copies=spec.find_copies,
        copy_thresholds=_thresholds(spec.copy_thresholds),
        index=_index(info.index),
        keep_sources=spec.keep_sources,
    )


_KIND = {
    "exact": search_pb2.IndexInfo.KIND_EXACT,
    "brute_force": search_pb2.IndexInfo.KIND_BRUTE_FORCE,
    "tree_ah": search_pb2.IndexInfo.KIND_TREE_AH,
}


def _index(index: IndexInfo | None) -> search_pb2.IndexInfo | None:
    if index is None:
        return None
    return search_pb2.IndexInfo(
        kind=_KIND[index.kind],
        indexed=index.indexed,
        pending=index.pending,
        rebuilding=index.rebuilding,
        estimated_recall=index.estimated_recall,
        recall_k=index.recall_k,
        num_leaves=index.num_leaves,
        leaves_to_search=index.leaves_to_search,
        reorder=index.reorder,
    )


def _stored_item(item: StoredItem, model: images_pb2.ModelRef | None, with_vector: bool = True) -> search_pb2.StoredItem:
    return search_pb2.StoredItem(
        id=item.id,
        vector=images_pb2.Embedding(values=item.vector.tolist(), model=model) if with_vector else None,
        tags=item.tags,
        uri=item.uri,
        timestamp=item.timestamp,
        has_fingerprint=item.has_fingerprint,
        attributes=item.attributes,
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
