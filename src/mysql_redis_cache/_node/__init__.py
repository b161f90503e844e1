"""The pure mirror of what Node does: no I/O, no event loop, nothing from Redis or MySQL.

What mysql2 and `@actvalue/mysql-redis-cache` compute, byte for byte: the SQL text a
query and params format to (`sql`), the cache key (`keys`), JavaScript's `String()`,
numbers and dates (`jsvalue`), `JSON.stringify` / `JSON.parse` (`json`), and mysql2's
casting of result rows plus the Node library's row normalizer (`rows`). Every interop
promise rests on this layer.

May import: `.._errors` and the standard library (plus pymysql's protocol constants).
"""
