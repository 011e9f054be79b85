"""The router's reads: searches fanned out to one replica of every shard and merged; Get and
ListItems routed by id. Every shard call gets what is left of the caller's deadline."""

from __future__ import annotations

import time

from lookalike.errors import InvalidArgument, Reason, Unimplemented
from lookalike.v1 import search_pb2
from search_service.router import merging, placement
from search_service.router.queries import QueryResolver
from search_service.router.shard_pool import ShardPool
from search_service.settings import SearchSettings

# FindCopies' order of verdicts and evidence, strongest first (as copy_search.py sorts one collection's).
_VERDICT_RANK = {search_pb2.VERDICT_EXACT_COPY: 3, search_pb2.VERDICT_EDITED_COPY: 2, search_pb2.VERDICT_SIMILAR: 1}
_EVIDENCE_RANK = {search_pb2.EVIDENCE_HASH: 2, search_pb2.EVIDENCE_LOCAL_FEATURES: 1, search_pb2.EVIDENCE_EMBEDDING: 0}


class Reads:
    def __init__(self, pool: ShardPool, resolver: QueryResolver, settings: SearchSettings) -> None:
        self.pool = pool
        self.resolver = resolver
        self.settings = settings

    def search(self, request: search_pb2.SearchRequest, time_left: float | None) -> search_pb2.SearchResponse:
        [shard_request] = self.resolver.resolve([request], [""], time_left)
        answers, down = self.pool.fan_out("Search", self._all(shard_request), time_left, allow_partial=request.allow_partial)
        return merging.merge_search(answers, request, down)

    def search_batch(self, request: search_pb2.SearchBatchRequest, time_left: float | None) -> search_pb2.SearchBatchResponse:
        searches = list(request.searches)
        if len(searches) > self.settings.max_batch_size:  # before any image is embedded
            raise InvalidArgument(
                f"{len(searches)} searches in one call, the limit is {self.settings.max_batch_size}",
                reason=Reason.BATCH_TOO_LARGE,
                field="searches",
                metadata={"limit": self.settings.max_batch_size},
            )
        resolved = self.resolver.resolve(searches, [f"searches[{i}]." for i in range(len(searches))], time_left)
        shard_request = search_pb2.SearchBatchRequest(searches=resolved)
        answers, down = self.pool.fan_out("SearchBatch", self._all(shard_request), time_left, allow_partial=request.allow_partial)
        results = [
            merging.merge_search({shard: answer.results[i] for shard, answer in answers.items()}, search, down)
            for i, search in enumerate(searches)
        ]
        return search_pb2.SearchBatchResponse(results=results, partial=bool(down), unavailable_shards=down)

    def find_copies(self, request: search_pb2.FindCopiesRequest, time_left: float | None) -> search_pb2.FindCopiesResponse:
        """Every shard verifies its own candidates for the picture; their copies are merged in the
        order one collection gives (verdict, evidence, then inliers and embedding score)."""
        if request.WhichOneof("query") == "item_id":
            # The stored fingerprint lives on one shard and no call hands it out, so the other shards
            # could only be searched by embedding: refused rather than answered with fewer copies.
            raise Unimplemented(
                "a sharded deployment finds the copies of a picture, not of a stored item: send the picture (image.encoded)",
                reason=Reason.ROUTER_UNSUPPORTED,
                field="item_id",
                metadata={"option": "item_id"},
            )
        shard_request = search_pb2.FindCopiesRequest()
        shard_request.CopyFrom(request)
        shard_request.allow_partial = False
        answers, down = self.pool.fan_out("FindCopies", self._all(shard_request), time_left, allow_partial=request.allow_partial)
        shards = [answers[s] for s in sorted(answers)]
        copies = [c for answer in shards for c in answer.copies]
        copies.sort(key=lambda c: (_VERDICT_RANK.get(c.verdict, 0), _EVIDENCE_RANK.get(c.evidence, 0), c.inliers, c.embedding_score), reverse=True)
        if request.order == search_pb2.COPY_ORDER_EARLIEST_FIRST:
            copies.sort(key=lambda c: (c.timestamp == 0, c.timestamp))
        return search_pb2.FindCopiesResponse(
            copies=copies[: request.k or 10],
            model=shards[0].model if shards[0].HasField("model") else None,
            query_featureless=shards[0].query_featureless,
            candidates_verified=sum(a.candidates_verified for a in shards),
            partial=bool(down),
            unavailable_shards=down,
        )

    def get(self, request: search_pb2.GetRequest, time_left: float | None) -> search_pb2.GetResponse:
        ids = list(request.ids)
        limit = self.settings.max_get_ids
        if len(ids) > limit:
            raise InvalidArgument(
                f"{len(ids)} ids in one get, the limit is {limit}", reason=Reason.BATCH_TOO_LARGE, field="ids", metadata={"limit": limit}
            )
        owners = placement.split(ids, self.pool.count) or {0: []}  # no ids: shard 0 still says whether the collection exists
        requests = {s: search_pb2.GetRequest(collection=request.collection, ids=[ids[p] for p in positions]) for s, positions in owners.items()}
        answers, _ = self.pool.fan_out("Get", requests, time_left)
        found = {item.id: item for answer in answers.values() for item in answer.items}
        return search_pb2.GetResponse(items=[found[i] for i in ids if i in found], missing_ids=[i for i in ids if i not in found])

    def list_items(self, request: search_pb2.ListItemsRequest, time_left: float | None) -> search_pb2.ListItemsResponse:
        size = request.page_size or 100
        cursors = merging.decode_page_token(request.page_token, self.pool.count)
        deadline = self.pool.deadline(time_left)

        def fetch(shard: int):
            def page(token: str) -> search_pb2.ListItemsResponse:
                shard_request = search_pb2.ListItemsRequest(
                    collection=request.collection, filter=request.filter, page_size=request.page_size, page_token=token, with_vectors=request.with_vectors
                )
                return self.pool.call("ListItems", shard, shard_request, _left(deadline))

            return page

        # One shard after another: a page is at most two calls per shard, and a listing is for
        # audits and re-embedding, not for latency.
        listings = [None if cursor is None else merging.read_shard(fetch(shard), cursor, size) for shard, cursor in enumerate(cursors)]
        items, after = merging.merge_pages(listings, size)
        return search_pb2.ListItemsResponse(items=items, next_page_token=merging.encode_page_token(after))

    def _all(self, request) -> dict[int, object]:
        return dict.fromkeys(range(self.pool.count), request)


def _left(deadline: float) -> float:
    return deadline - time.monotonic()
