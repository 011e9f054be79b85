"""What a collection is and returns: its spec, its info and its index's, stored items, search
hits, copy candidates. Plain values, shared by the collection, the store and the servicer."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from copy_detection.verdict import Thresholds
from search_service.item_table import ItemMeta

UPDATABLE_FIELDS = ("tags", "uri", "timestamp", "attributes")  # what `update` may change


@dataclasses.dataclass(frozen=True)
class CollectionSpec:
    name: str
    dimension: int
    metric: str  # "cosine" | "dot_product" | "squared_l2"
    model_name: str = ""  # encoder model pinned by the collection ("" = vectors only)
    model_version: int = 0
    copy_thresholds: Thresholds | None = None  # set: the collection keeps fingerprints (find_copies)
    keep_sources: bool = False  # keeps each item's image, to re-embed it (search_service/source_store.py)

    @property
    def find_copies(self) -> bool:
        return self.copy_thresholds is not None


READY = "ready"  # loaded and served
DAMAGED = "damaged"  # refused at load, or its log refuses writes until a restart


@dataclasses.dataclass(frozen=True)
class IndexInfo:
    kind: str  # brute_force, tree_ah, or exact (no searcher yet)
    indexed: int  # items the searcher was built over
    pending: int  # items written since, scanned exactly until the next rebuild
    rebuilding: bool
    estimated_recall: float  # recall@recall_k measured on a held-out sample at the last build
    recall_k: int
    num_leaves: int  # 0 unless a tree
    leaves_to_search: int
    reorder: int


@dataclasses.dataclass(frozen=True)
class CollectionInfo:
    spec: CollectionSpec  # for a collection whose spec is unreadable: its name, dimension 0, metric ""
    size: int  # 0 when the collection could not be loaded
    state: str = READY
    state_reason: str = ""  # why it is DAMAGED, for clients: names files, never a server path
    index: IndexInfo | None = None  # None when the collection could not be loaded


@dataclasses.dataclass(frozen=True)
class StoredItem:
    id: str
    vector: np.ndarray  # (dimension,) float32, as upserted
    tags: tuple[str, ...]
    uri: str
    timestamp: int  # 0: none
    has_fingerprint: bool
    attributes: dict[str, float] = dataclasses.field(default_factory=dict)


class Hit(NamedTuple):
    """A tuple made for every result, so cheap to make: it points at the item's metadata
    rather than copying it (each copied field was one more cache miss per result)."""

    id: str
    score: float  # cosine similarity, dot product (higher is better) or squared L2 distance (lower is better)
    meta: ItemMeta

    @property
    def tags(self) -> tuple[str, ...]:
        return self.meta.tags

    @property
    def uri(self) -> str:
        return self.meta.uri

    @property
    def timestamp(self) -> int:  # 0: none
        return self.meta.timestamp

    @property
    def attributes(self) -> Mapping[str, float]:
        return self.meta.attributes


@dataclasses.dataclass(frozen=True)
class CopyCandidate:
    """A stored item that may be a copy of a query: found by its hash, its embedding, or both."""

    hit: Hit  # score: the embedding's, by the collection's metric
    hash_distance: int | None  # bits of 64; None when the item has no fingerprint
    fingerprint: bytes  # b"" when none
