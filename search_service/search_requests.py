"""Search and SearchBatch: a SearchRequest checked and turned into a collection search.

One path for both RPCs, so a batched search cannot drift from a single one: `plan` checks a
request and resolves what it can without the encoder (fields named under a prefix such as
"searches[3]."), the servicer embeds the images of all plans in one call per collection,
`finish` turns examples into the query vector, and `answer` runs the plans, grouping the
plain ones of a collection and k into one batched index call.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from lookalike.errors import FailedPrecondition, InvalidArgument, Reason
from lookalike.model_format import METRIC_ENUM
from lookalike.v1 import images_pb2, search_pb2
from search_service.catalogue_query import Crowding
from search_service.collection import AttributeRange, Collection, CollectionSpec, Hit, TagFilter
from search_service.collection_store import CollectionStore
from search_service.settings import SearchSettings
from search_service.validation import MAX_TAG_BYTES, validate_query


@dataclasses.dataclass
class Plan:
    collection: Collection
    field: str  # the request's path in the call: "" for Search, "searches[3]." for SearchBatch
    k: int
    vector: np.ndarray | None  # None while an image waits to be embedded, or with examples only
    image: images_pb2.Image | None
    positive_ids: tuple[str, ...]
    negative_ids: tuple[str, ...]
    exclude: frozenset[str]
    tag_filter: TagFilter
    ranges: tuple[AttributeRange, ...]
    score_threshold: float | None
    exact: bool
    crowding: Crowding | None

    @property
    def plain(self) -> bool:
        """No option that a batched index call cannot answer."""
        return (
            self.tag_filter.is_empty
            and not self.ranges
            and not self.exclude
            and self.score_threshold is None
            and not self.exact
            and self.crowding is None
        )


def plan(store: CollectionStore, settings: SearchSettings, request: search_pb2.SearchRequest, field: str = "") -> Plan:
    collection = store.get(request.collection)
    spec = collection.spec
    if not 1 <= request.k <= settings.max_k:
        raise InvalidArgument(
            f"k must be between 1 and {settings.max_k}, got {request.k}",
            reason=Reason.K_OUT_OF_RANGE,
            field=f"{field}k",
            metadata={"limit": settings.max_k},
        )
    vector, image, exclude = None, None, set()
    query = request.WhichOneof("query")
    if query == "vector":
        check_model(spec, request.vector, f"{field}vector")
        vector = validate_query(spec, np.asarray(request.vector.values, dtype=np.float32), f"{field}vector")
    elif query == "image":
        image = request.image
    elif query == "item_id":
        vector = collection.vector_of(request.item_id, f"{field}item_id")
        exclude.add(request.item_id)
    elif not request.positive_ids:
        raise InvalidArgument(
            "the query needs a vector, an image, an item_id or positive_ids",
            reason=Reason.REQUIRED_FIELD_MISSING,
            field=f"{field}query",
        )
    if request.negative_ids and not (query or request.positive_ids):
        raise InvalidArgument("negative_ids need a positive example", reason=Reason.REQUIRED_FIELD_MISSING, field=f"{field}positive_ids")
    exclude.update(request.positive_ids, request.negative_ids, request.exclude_ids)
    return Plan(
        collection=collection,
        field=field,
        k=int(request.k),
        vector=vector,
        image=image,
        positive_ids=tuple(request.positive_ids),
        negative_ids=tuple(request.negative_ids),
        exclude=frozenset(exclude),
        tag_filter=tag_filter(request.filter),
        ranges=ranges(request.filter, f"{field}filter"),
        score_threshold=request.score_threshold if request.HasField("score_threshold") else None,
        exact=request.exact,
        crowding=_crowding(request, f"{field}crowding"),
    )


def finish(plan: Plan) -> None:
    """Turns the examples, if any, into the query vector (the images are embedded by now)."""
    if plan.positive_ids or plan.negative_ids:
        given = [] if plan.vector is None else [plan.vector]
        plan.vector = plan.collection.example_vector(plan.positive_ids, plan.negative_ids, given)
    assert plan.vector is not None, "plan() needs a query or a positive example"


def answer(plans: list[Plan]) -> list[search_pb2.SearchResponse]:
    """The responses, in order; plain plans of one collection and k share one batched call."""
    hits: list[list[Hit] | None] = [None] * len(plans)
    groups: dict[tuple[int, int], list[int]] = {}
    for position, p in enumerate(plans):
        if p.plain:
            groups.setdefault((id(p.collection), p.k), []).append(position)
        else:
            hits[position] = p.collection.search(
                p.vector,
                p.k,
                p.tag_filter,
                p.exclude,
                ranges=p.ranges,
                score_threshold=p.score_threshold,
                exact=p.exact,
                crowding=p.crowding,
            )
    for positions in groups.values():
        first = plans[positions[0]]
        if len(positions) == 1:
            hits[positions[0]] = first.collection.search(first.vector, first.k)
            continue
        batch = first.collection.search_batch([plans[i].vector for i in positions], first.k)
        for position, found in zip(positions, batch):
            hits[position] = found
    return [_response(p.collection.spec, h) for p, h in zip(plans, hits)]


def check_model(spec: CollectionSpec, vector: images_pb2.Embedding, field: str) -> None:
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


def tag_filter(request_filter: search_pb2.Filter) -> TagFilter:
    return TagFilter(
        all_of=tuple(request_filter.all_of), any_of=tuple(request_filter.any_of), none_of=tuple(request_filter.none_of)
    )


def ranges(request_filter: search_pb2.Filter, field: str) -> tuple[AttributeRange, ...]:
    result = []
    for position, r in enumerate(request_filter.ranges):
        minimum = r.min if r.HasField("min") else -math.inf
        maximum = r.max if r.HasField("max") else math.inf
        if not r.attribute or math.isnan(minimum) or math.isnan(maximum):
            raise InvalidArgument(
                f"{field}.ranges[{position}] needs an attribute and bounds that are numbers",
                reason=Reason.REQUIRED_FIELD_MISSING if not r.attribute else Reason.VALUES_NOT_FINITE,
                field=f"{field}.ranges[{position}]",
            )
        result.append(AttributeRange(r.attribute, minimum, maximum))
    return tuple(result)


def _crowding(request: search_pb2.SearchRequest, field: str) -> Crowding | None:
    if not request.HasField("crowding"):
        return None
    crowding = request.crowding
    if not 1 <= len(crowding.tag_prefix.encode("utf-8")) <= MAX_TAG_BYTES:
        raise InvalidArgument(
            f"{field}.tag_prefix must be 1 to {MAX_TAG_BYTES} bytes", reason=Reason.TAG_INVALID, field=f"{field}.tag_prefix"
        )
    if crowding.per_group < 1:
        raise InvalidArgument(
            f"{field}.per_group must be at least 1, got {crowding.per_group}",
            reason=Reason.VALUE_OUT_OF_RANGE,
            field=f"{field}.per_group",
        )
    return Crowding(crowding.tag_prefix, crowding.per_group)


def model_of(spec: CollectionSpec) -> images_pb2.ModelRef | None:
    return images_pb2.ModelRef(name=spec.model_name, version=spec.model_version) if spec.model_name else None


def neighbor(hit: Hit) -> search_pb2.Neighbor:
    return search_pb2.Neighbor(
        id=hit.id, score=hit.score, tags=hit.tags, uri=hit.uri, timestamp=hit.timestamp, attributes=hit.attributes
    )


def _response(spec: CollectionSpec, hits: list[Hit]) -> search_pb2.SearchResponse:
    return search_pb2.SearchResponse(
        neighbors=[neighbor(h) for h in hits], model=model_of(spec), metric=METRIC_ENUM[spec.metric]
    )
