"""A search as the router sends it to every shard: always a vector, with the query's own items left out.

A shard can only resolve what it stores, so the router resolves the rest first: an image is
embedded once (through the router's encoder gateway) instead of once per shard; an item_id and
the positive and negative examples are fetched from the shards that own them and turned into the
query vector exactly as a single service does (catalogue_query.example_query); the items that a
single service leaves out of the results (the query item, the examples) travel as exclude_ids.
"""

from __future__ import annotations

import numpy as np

from lookalike.errors import FailedPrecondition, NotFound, Reason
from lookalike.v1 import images_pb2, search_pb2
from search_service.catalogue_query import example_query
from search_service.encoder_gateway import EncoderGateway
from search_service.router import placement
from search_service.router.shard_pool import ShardPool, is_down
from search_service.validation import describe_id


class QueryResolver:
    def __init__(self, pool: ShardPool, encoder: EncoderGateway) -> None:
        self.pool = pool
        self.encoder = encoder

    def resolve(self, requests: list[search_pb2.SearchRequest], fields: list[str], time_left: float | None) -> list[search_pb2.SearchRequest]:
        """Each request as the shards get it; `fields[i]` is its path in the call ("" or "searches[3].")."""
        resolved = []
        specs: dict[str, search_pb2.Collection] = {}
        images = [i for i, r in enumerate(requests) if r.WhichOneof("query") == "image"]
        vectors = self._embed(requests, images, fields, specs, time_left) if images else {}
        for i, request in enumerate(requests):
            shard_request = search_pb2.SearchRequest()
            shard_request.CopyFrom(request)
            shard_request.allow_partial = False
            if i in vectors:
                shard_request.vector.CopyFrom(vectors[i])
            elif request.WhichOneof("query") == "item_id":
                stored = self._stored(request.collection, [request.item_id], [f"{fields[i]}item_id"], time_left)
                shard_request.vector.CopyFrom(stored[0].vector)
                shard_request.exclude_ids.append(request.item_id)
            if request.positive_ids or (request.negative_ids and request.WhichOneof("query")):
                self._examples(shard_request, fields[i], specs, time_left)
            resolved.append(shard_request)
        return resolved

    def describe(self, name: str, time_left: float | None) -> search_pb2.Collection:
        """The collection (or alias) as the first shard that answers describes it."""
        for shard in range(self.pool.count):
            outcome = self.pool.read_each("GetCollection", {shard: search_pb2.GetCollectionRequest(name=name)}, time_left)[shard]
            if not is_down(outcome):
                break
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _spec(self, name: str, specs: dict[str, search_pb2.Collection], time_left) -> search_pb2.Collection:
        """`describe`, once per collection of a call."""
        if name not in specs:
            specs[name] = self.describe(name, time_left)
        return specs[name]

    def _embed(self, requests, positions: list[int], fields: list[str], specs: dict, time_left) -> dict[int, images_pb2.Embedding]:
        """The query images embedded, one encoder call per collection."""
        by_collection: dict[str, list[int]] = {}
        for i in positions:
            by_collection.setdefault(requests[i].collection, []).append(i)
        vectors = {}
        for name, group in by_collection.items():
            spec = self._spec(name, specs, time_left)
            if not spec.model.name:
                raise FailedPrecondition(
                    f"collection {spec.name!r} has no encoder model; send vectors, not images",
                    reason=Reason.COLLECTION_HAS_NO_MODEL,
                    field=f"{fields[group[0]]}image",
                    metadata={"collection": spec.name},
                )
            embedded, _ = self.encoder.embed(spec.model, [requests[i].image for i in group], [f"{fields[i]}image" for i in group], time_left)
            for i, row in zip(group, embedded):
                vectors[i] = images_pb2.Embedding(values=row.tolist(), model=spec.model)
        return vectors

    def _examples(self, request: search_pb2.SearchRequest, field: str, specs: dict, time_left) -> None:
        """Positive and negative examples turned into the query vector (the query, if any, is one
        more positive) and left out of the results."""
        spec = self._spec(request.collection, specs, time_left)
        ids = [*request.positive_ids, *request.negative_ids]
        paths = [f"{field}positive_ids[{n}]" for n in range(len(request.positive_ids))]
        paths += [f"{field}negative_ids[{n}]" for n in range(len(request.negative_ids))]
        stored = self._stored(request.collection, ids, paths, time_left)
        rows = [np.asarray(item.vector.values, np.float32) for item in stored]
        given = [np.asarray(request.vector.values, np.float32)] if request.HasField("vector") else []
        positives = np.array(given + rows[: len(request.positive_ids)], np.float32)
        negatives = np.array(rows[len(request.positive_ids) :], np.float32).reshape(-1, spec.dimension)
        query = example_query(positives, negatives, spec.metric == images_pb2.METRIC_COSINE)
        request.vector.CopyFrom(images_pb2.Embedding(values=query.tolist(), model=spec.model if spec.model.name else None))
        request.exclude_ids.extend(ids)
        del request.positive_ids[:]
        del request.negative_ids[:]

    def _stored(self, collection: str, ids: list[str], fields: list[str], time_left) -> list[search_pb2.StoredItem]:
        """The stored items of `ids`, in order, each from its shard; NotFound at the missing one's field."""
        owners = placement.split(ids, self.pool.count)
        requests = {shard: search_pb2.GetRequest(collection=collection, ids=[ids[p] for p in positions]) for shard, positions in owners.items()}
        answers, _ = self.pool.fan_out("Get", requests, time_left)
        found = {item.id: item for answer in answers.values() for item in answer.items}
        for item_id, field in zip(ids, fields):
            if item_id not in found:
                raise NotFound(
                    f"item {describe_id(item_id)} not found in collection '{collection}'",
                    reason=Reason.ITEM_NOT_FOUND,
                    field=field,
                    metadata={"item_id": item_id, "collection": collection},
                )
        return [found[i] for i in ids]
