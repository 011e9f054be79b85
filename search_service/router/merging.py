"""How the router turns its shards' answers into one: top-k by score, crowding, listing pages.

Each shard answers a search with its own top k, filtered, thresholded and crowded, so the global
top k is among their union: the merge sorts it by score (for squared L2, a distance, lowest
first) and applies crowding again. Crowding twice gives the single-process answer: an item among
the first `per_group` of its group overall is among the first of its group on its shard, and its
shard keeps at most as many items ahead of it as the merge does (docs/sharding.md has the
argument).

Listing merges the shards' pages in id order (UTF-8 bytes, as a single service lists). The router
keeps no state between pages, so its page token holds, for each shard, where to go on: the token
of the shard's page that holds its next item and how many of that page's items were listed
already ("skip"), or that the shard is done. Shards' tokens stay opaque to the router.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import heapq
import json
from collections.abc import Callable, Sequence

import numpy as np

from lookalike.errors import InvalidArgument, Reason
from lookalike.v1 import images_pb2, search_pb2
from search_service.catalogue_query import Crowding, crowd


def merge_neighbors(
    answers: Sequence[search_pb2.SearchResponse], k: int, crowding: search_pb2.Crowding | None
) -> list[search_pb2.Neighbor]:
    """The best k of the shards' neighbors, crowded like a single service crowds."""
    if not answers:
        return []
    found = [n for answer in answers for n in answer.neighbors]
    distance = answers[0].metric == images_pb2.METRIC_SQUARED_L2
    found.sort(key=(lambda n: n.score) if distance else (lambda n: -n.score))
    if crowding is None:
        return found[:k]
    kept = crowd(found, np.arange(len(found)), Crowding(crowding.tag_prefix, crowding.per_group), k)
    return [found[i] for i in kept]


def merge_search(answers: dict[int, search_pb2.SearchResponse], request: search_pb2.SearchRequest, down: list[int]) -> search_pb2.SearchResponse:
    shards = [answers[s] for s in sorted(answers)]
    first = shards[0]
    return search_pb2.SearchResponse(
        neighbors=merge_neighbors(shards, request.k, request.crowding if request.HasField("crowding") else None),
        model=first.model if first.HasField("model") else None,
        metric=first.metric,
        partial=bool(down),
        unavailable_shards=down,
    )


@dataclasses.dataclass
class Cursor:
    """Where a shard's listing goes on: its page `token`, less the first `skip` items; None: done."""

    token: str
    skip: int


def decode_page_token(token: str, shards: int) -> list[Cursor | None]:
    if not token:
        return [Cursor("", 0) for _ in range(shards)]
    try:
        cursors = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        if not isinstance(cursors, list) or len(cursors) != shards:
            raise ValueError("not this deployment's token")
        return [None if c is None else Cursor(str(c[0]), int(c[1])) for c in cursors]
    except (ValueError, TypeError, IndexError, binascii.Error, UnicodeError):
        raise InvalidArgument("page_token is not one this service returned", reason=Reason.REQUEST_MALFORMED, field="page_token") from None


def encode_page_token(cursors: list[Cursor | None]) -> str:
    if all(c is None for c in cursors):
        return ""
    document = [None if c is None else [c.token, c.skip] for c in cursors]
    return base64.urlsafe_b64encode(json.dumps(document, separators=(",", ":")).encode()).decode("ascii")


@dataclasses.dataclass
class ShardListing:
    """Up to a page of one shard's items from its cursor, each with where it sits in the shard's
    pages, so the cursor after any number of them can be told."""

    items: list[search_pb2.StoredItem]
    places: list[Cursor]  # of each item: its page's token and its index in that page
    after: Cursor | None  # the cursor once every item here is listed; None: the shard has no more


def read_shard(fetch: Callable[[str], search_pb2.ListItemsResponse], cursor: Cursor, size: int) -> ShardListing:
    """`size` items of a shard from `cursor` (fewer at its end); `fetch(token)` gets one shard page
    of `size`. At most two pages: the skipped items of the first are made up by the second."""
    items: list[search_pb2.StoredItem] = []
    places: list[Cursor] = []
    token, skip = cursor.token, cursor.skip
    while True:
        page = fetch(token)
        for index in range(skip, len(page.items)):
            items.append(page.items[index])
            places.append(Cursor(token, index))
        if not page.next_page_token:
            return ShardListing(items, places, None)
        if len(items) >= size:
            return ShardListing(items, places, Cursor(page.next_page_token, 0))
        token, skip = page.next_page_token, 0


def merge_pages(listings: list[ShardListing | None], size: int) -> tuple[list[search_pb2.StoredItem], list[Cursor | None]]:
    """The first `size` items of the shards' listings in id order, and each shard's cursor after them."""
    streams = [
        [(item.id.encode("utf-8"), shard, position) for position, item in enumerate(listing.items)]
        for shard, listing in enumerate(listings)
        if listing is not None
    ]
    taken = [0] * len(listings)
    page = []
    for _, shard, position in heapq.merge(*streams):
        if len(page) == size:
            break
        page.append(listings[shard].items[position])
        taken[shard] += 1
    cursors: list[Cursor | None] = []
    for shard, listing in enumerate(listings):
        if listing is None:
            cursors.append(None)
        elif taken[shard] < len(listing.items):
            cursors.append(listing.places[taken[shard]])
        else:
            cursors.append(listing.after)
    return page, cursors
