"""MRCClient: the read-through query cache."""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import pymysql

from ._config import parse_mysql_config
from ._errors import InvalidArgumentError, QueryError
from ._json import decode, encode
from ._keys import build_key, is_unambiguous
from ._loopbound import LoopBound
from ._mysql import Pool, run_raw
from ._redis import RedisHolder
from ._rows import CastOptions, shape
from ._sql import format_query

logger = logging.getLogger("mysql_redis_cache")

DEFAULT_TTL = 86400
_MISSING = object()


def _ttl_with_jitter(ttl: object) -> int:
    """The Node library's expiry: ttl ± 10 %, rounded as JS Math.round does."""
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
        raise InvalidArgumentError(f"ttl must be a positive int of seconds, got {ttl!r}")
    return max(1, ttl + math.floor(ttl * (random.random() * 0.2 - 0.1) + 0.5))


class MRCClient:
    """Cache MySQL query results (or any async function's) in Redis, shared with Node.

    Args:
        mysql_config: aiomysql keywords (plus mysql2's `database`, `connectionLimit`,
            `timezone`, `dateStrings`, `multipleStatements`) or a `mysql://` URL.
        redis_config: redis-py keywords, a node-redis style `{"url": ...}` dict, or a
            `redis://` / `rediss://` URL. None means localhost:6379.
        normalize_numbers: turn numeric-looking strings into numbers, as the Node library
            does before caching. Off keeps them strings, and the entries then differ from
            the ones Node writes for the same query.

    Connections open on first use; `async with` (or `close()`) closes both.
    """

    def __init__(
        self,
        mysql_config: Mapping[str, Any] | str | None = None,
        redis_config: Mapping[str, Any] | str | None = None,
        *,
        normalize_numbers: bool = True,
    ) -> None:
        settings = parse_mysql_config(mysql_config or {})
        self._mysql_settings = settings
        self._cast = CastOptions(
            timezone=settings.cast.timezone,
            date_strings=settings.cast.date_strings,
            normalize_numbers=normalize_numbers,
        )
        self._pool = LoopBound(self._make_pool, _close_pool)
        self._redis = RedisHolder(redis_config)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- MySQL ---------------------------------------------------------------------------

    def get_mysql_pool(self) -> Pool:
        """The MySQL connection pool, for queries outside the cache.

        Created on first call (one per event loop; see "Serverless" in the README).
        """
        return self._pool.get()

    def _make_pool(self) -> Pool:
        settings = self._mysql_settings
        return Pool(
            {**settings.connect_kwargs, "multiple_statements": settings.multiple_statements},
            maxsize=settings.pool_size,
        )

    def format_query(self, query: str, params: Sequence[object] | None = None) -> str:
        """The SQL text sent for `query` and `params`, formatted as mysql2 does."""
        return format_query(query, params, self._cast.timezone)

    async def query_to_promise(self, query: str, params: Sequence[object] | None = None) -> Any:
        """Run a query without the cache and return what the cache would store for it.

        Rows are dicts in their JSON shape: dates as ISO strings, binary as
        `{"type": "Buffer", "data": [...]}`, DECIMAL and numeric strings as numbers.

        Raises:
            QueryError: MySQL failed (the driver error is the cause).
            InvalidParamError: a param cannot be formatted.
        """
        sql = self.format_query(query, params)
        try:
            async with self.get_mysql_pool().acquire() as conn:
                results = await run_raw(conn, sql)
        except pymysql.err.Error as exc:
            raise QueryError(f"MySQL query failed: {exc}") from exc
        except OSError as exc:
            raise QueryError(f"cannot reach MySQL: {exc}") from exc
        return shape(results, self._cast)

    # -- Redis ---------------------------------------------------------------------------

    def get_key_from_query(
        self,
        query: str,
        params: Sequence[object] | None = None,
        param_names: Sequence[str] = (),
    ) -> str:
        """The Redis key Node uses for this query and params.

        Raises:
            InvalidArgumentError: more params than names (unnamed params would share keys).
        """
        return build_key(query, params, param_names)

    async def read_from_cache(
        self,
        query: str,
        params: Sequence[object] | None = None,
        param_names: Sequence[str] = (),
    ) -> Any:
        """The cached value for the query, or None on a miss."""
        value = await self._read(self.get_key_from_query(query, params, param_names))
        return None if value is _MISSING else value

    async def write_to_cache(
        self,
        query: str,
        value: Any,
        params: Sequence[object] | None = None,
        param_names: Sequence[str] = (),
        ttl: int = DEFAULT_TTL,
    ) -> None:
        """Store `value` under the query's key for `ttl` seconds (±10 %).

        Raises:
            EncodeError: `value` has no JSON form; nothing is written.
        """
        key = self.get_key_from_query(query, params, param_names)
        await self._redis.set(key, encode(value), _ttl_with_jitter(ttl))

    async def with_cache(
        self,
        fn: Callable[[], Awaitable[Any]],
        query: str,
        params: Sequence[object] | None = None,
        param_names: Sequence[str] = (),
        ttl: int = DEFAULT_TTL,
    ) -> Any:
        """Return the cached value for `query`, or await `fn()`, cache and return its result.

        The result is returned in its cached (JSON) shape on a miss too, so a miss and
        the hit after it give equal values.
        """
        return await self._with_cache(fn, query, params, param_names, ttl, json_shaped=False)

    async def query_with_cache(
        self,
        query: str,
        params: Sequence[object] | None = None,
        param_names: Sequence[str] = (),
        ttl: int = DEFAULT_TTL,
    ) -> Any:
        """Return the query's rows from the cache, or from MySQL (and cache them)."""

        async def run() -> Any:
            return await self.query_to_promise(query, params)

        return await self._with_cache(run, query, params, param_names, ttl, json_shaped=True)

    async def _with_cache(
        self,
        fn: Callable[[], Awaitable[Any]],
        query: str,
        params: Sequence[object] | None,
        param_names: Sequence[str],
        ttl: int,
        *,
        json_shaped: bool,
    ) -> Any:
        key = self.get_key_from_query(query, params, param_names)
        expiry = _ttl_with_jitter(ttl)
        if not is_unambiguous(params, param_names):
            logger.debug("bypassing the cache: params could build another call's key %s", key)
            result = await fn()
            return result if json_shaped else decode(encode(result))
        cached = await self._read(key)
        if cached is not _MISSING:
            return cached
        result = await fn()
        payload = encode(result)
        await self._redis.set(key, payload, expiry)
        return result if json_shaped else decode(payload)

    async def _read(self, key: str) -> Any:
        raw = await self._redis.get(key)
        if not raw:  # Node treats an empty string as a miss too
            return _MISSING
        try:
            return decode(raw)
        except ValueError:
            logger.warning("cache entry %s is not JSON; treating it as a miss", key)
            return _MISSING

    # -- lifecycle -----------------------------------------------------------------------

    async def close_redis_connection(self) -> None:
        """Close the Redis connection; the next cache call reopens it."""
        await self._redis.close()

    async def close(self) -> None:
        """Close the Redis connection and the MySQL pool."""
        await self._redis.close()
        await self._pool.close()


async def _close_pool(pool: Pool) -> None:
    pool.close()
    await pool.wait_closed()
