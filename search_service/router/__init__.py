"""The search service's router mode: one logical set of collections spread over shard services.

docs/sharding.md tells the design. One concern per file: `placement` (which shard owns an id),
`shard_pool` (channels, replicas, fan-out, the shards' errors), `queries` (a search made a vector
query the shards can all answer), `merging` (top-k, crowding, list cursors), `reads`, `writes`,
`stream_ingest` (UpsertStream), `admin` (collections and aliases), `operations` (reindexes), and
`servicer`, which hands each call to one of them.
"""
