"""The Redis side: connections, coalesced reads, the local cache, the breaker, invalidation.

`holder` owns a redis-py client per event loop and translates redis-py's errors in one
place; `reader` coalesces concurrent reads into MGETs over one connection; `local` is
the opt-in in-process cache kept coherent by CLIENT TRACKING; `breaker` skips Redis
through an outage; `invalidate` decides which keys an invalidation may delete;
`copies` hands out copies of one decoded entry; `config` parses the Redis config.

May import: `.._node`, `.._support`, `.._errors`, `.._stats`; never `.._mysql`.
"""
