"""The misses: what happens between a cache miss and its entry being stored.

Single-flight (one fill per key per event loop), admission (a bound on the fills that
hold Redis and MySQL work at once), the fill marker that keeps a fill overtaken by an
invalidation from storing, and the waits on another process's lock. The fill's own work
(a query, a function) is handed in; this layer never touches MySQL. It may import
`_redis`, `_node`, `_support`, `_errors` and `_stats`.
"""
