"""The invalidation index: cache keys by their `Name=value` segments, kept by an indexer
that follows Redis keyspace notifications, and trusted only when it proves it is current.

`names` says which index keys a cache key belongs to; `scripts` holds the Lua that adds
and prunes members; `follower` follows one Redis node's notifications; `indexer` is the
public `MRCIndexer`; `proof` is the invalidation's side: the barrier an indexer must
acknowledge, and the reading of the index.

May import: `.._redis`, `.._node`, `.._support`, `.._errors`; never `.._mysql` or `.._fills`.
"""
