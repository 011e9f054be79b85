"""Which shard owns an item: the 8-byte BLAKE2b digest (`hashlib.blake2b(digest_size=8)`) of its id's UTF-8 bytes,
read as a big-endian unsigned integer, modulo the number of shards.

Stable across processes, machines and Python versions (unlike `hash()`, salted per process), so
every router, and any tool that splits a catalogue offline, agrees on the owner. Changing the
number of shards moves most items: resharding is a copy into a new deployment (docs/sharding.md).
"""

from __future__ import annotations

import hashlib


def shard_of(item_id: str, shards: int) -> int:
    """The index, from 0, of the shard that owns `item_id` among `shards`."""
    digest = hashlib.blake2b(item_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def split(ids: list[str], shards: int) -> dict[int, list[int]]:
    """Positions in `ids` grouped by owning shard, each group in the order of `ids`."""
    groups: dict[int, list[int]] = {}
    for position, item_id in enumerate(ids):
        groups.setdefault(shard_of(item_id, shards), []).append(position)
    return groups
