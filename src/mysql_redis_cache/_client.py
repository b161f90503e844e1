"""MRCClient: the read-through query cache, the public API over the layers."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Self

from ._errors import CacheError, InvalidArgumentError, InvalidParamError
from ._fills.batch import read_or_fill_many
from ._fills.flights import Flights
from ._fills.lookups import MISSING, Fn, Lookups, awaited, compute
from ._fills.refresh import RefreshAhead
from ._mysql.statements import DEFAULT_CLOSE_GRACE, Statements
from ._node.json import encode
from ._node.keys import build_checked_key, build_checked_keys, build_key
from ._node.paramstyle import query_text
from ._node.sql import format_query
from ._node.ttl import DEFAULT_TTL, check_ttl, ttl_with_jitter
from ._options import DEFAULT_MAX_ENTRY_BYTES, Options
from ._redis.breaker import Breaker, Guard
from ._redis.holder import RedisConfig, RedisHolder
from ._stats import CacheStats
from ._support.loopbound import LoopBound, run_in
from ._telemetry.setup import telemetry

logger = logging.getLogger("mysql_redis_cache")

# Fills admitted at once, per MySQL connection: two keep every connection busy (one
# fill's query runs while the next sets its marker), more would only queue for the pool
# while holding fill markers and starving the event loop of time to hear Redis.
FILLS_PER_CONNECTION = 2

# What the 0.x port exposed, and what to use instead.
_REMOVED_IN_1_0 = {
    "mysql_pool": "call get_mysql_pool()",
    "redis_client": "pass your redis.asyncio.Redis as redis_config instead",
    "mysql_config": "keep your own copy of the config",
    "redis_config": "keep your own copy of the config",
    "_connect_mysql": "connections open on first use; call get_mysql_pool()",
    "_connect_redis": "connections open on first use",
    "_normalize_row": "rows come back in Node's JSON shape from query_to_promise()",
    "_parse_connection_string": "pass the mysql:// URL as mysql_config",
}


def _removed(name: str) -> property:
    """A property that says what replaced a 0.x attribute, on read and on assignment
    (a property, not __getattr__: that would slow every attribute read of the client)."""

    def fail(*_: object) -> Any:
        raise AttributeError(
            f"MRCClient.{name} was removed in 1.0: {_REMOVED_IN_1_0[name]} "
            "(see docs/migrating-from-0.x.md)"
        )

    return property(fail, fail)


class MRCClient:
    """Cache MySQL query results (or any async function's) in Redis, shared with Node.

    Args:
        mysql_config: aiomysql keywords (plus mysql2's `database`, `connectionLimit`,
            `timezone`, `dateStrings`, `multipleStatements`), a `mysql://` URL, or an
            aiomysql / asyncmy pool you own (used as is, never closed).
        redis_config: redis-py keywords (with `cluster=True` for Redis Cluster, or
            `sentinel={...}` for Sentinel), a node-redis style `{"url": ...}` dict, a
            `redis://` / `rediss://` URL, or a `redis.asyncio.Redis` / `RedisCluster` you
            own (used as is, never closed). None means localhost:6379.

    The keyword options (`normalize_numbers`, `fail_open`, `redis_timeout`,
    `breaker_cooldown`, `lock_timeout`, `mysql_driver`, `local_cache`, `local_cache_ttl`,
    `paramstyle`, `max_entry_bytes`, `max_fills`, `scripts`, `local_cache_heartbeat`,
    `refresh_ahead`, `name`, `meter_provider`, `tracer_provider`, `trace_keys`) are each
    described in `mysql_redis_cache.Options`.

    Connections open on first use, one set per running event loop; `async with` (or
    `close()`) closes them. Safe from any number of threads and event loops at once.

    Raises:
        ConfigError: a bad MySQL or Redis config or option, naming it.
    """

    def __init__(
        self,
        mysql_config: Mapping[str, Any] | str | Any | None = None,
        redis_config: RedisConfig = None,
        *,
        normalize_numbers: bool = True,
        fail_open: bool = True,
        redis_timeout: float = 0.25,
        breaker_cooldown: float = 1.0,
        lock_timeout: float | None = None,
        mysql_driver: str = "auto",
        local_cache: int | None = None,
        local_cache_ttl: float = 60.0,
        paramstyle: str = "qmark",
        max_entry_bytes: int | None = DEFAULT_MAX_ENTRY_BYTES,
        max_fills: int | None = None,
        scripts: bool = True,
        local_cache_heartbeat: float = 1.0,
        refresh_ahead: bool | float = False,
        name: str | None = None,
        meter_provider: Any = None,
        tracer_provider: Any = None,
        trace_keys: bool = False,
    ) -> None:
        """Check the configuration; nothing connects until first use (see the class docs)."""
        options = Options(
            normalize_numbers=normalize_numbers, fail_open=fail_open,
            redis_timeout=redis_timeout, breaker_cooldown=breaker_cooldown,
            lock_timeout=lock_timeout, mysql_driver=mysql_driver, local_cache=local_cache,
            local_cache_ttl=local_cache_ttl, paramstyle=paramstyle,
            max_entry_bytes=max_entry_bytes, max_fills=max_fills, scripts=scripts,
            local_cache_heartbeat=local_cache_heartbeat, refresh_ahead=refresh_ahead,
            name=name, meter_provider=meter_provider, tracer_provider=tracer_provider,
            trace_keys=trace_keys,
        )  # fmt: skip
        self._options = options
        # _text(query, params, runs_sql): the checked query text (a partial: no frame)
        self._text = functools.partial(query_text, paramstyle=paramstyle)
        beta = options.beta
        self._refresh = None if beta is None else RefreshAhead(beta)
        self._sql_side = Statements(mysql_config, mysql_driver, normalize_numbers)
        self.stats = CacheStats()
        timeouts = {"socket_timeout": redis_timeout, "socket_connect_timeout": redis_timeout}
        self._redis = RedisHolder(redis_config, timeouts, self.stats, options.local, scripts)
        self._breaker = Breaker(breaker_cooldown, fail_open)
        # forked for each event loop: one breaker and write gate, per-loop bookkeeping
        self._guard = Guard(
            self._breaker, self.stats, fail_open, self._redis.drop_connections, self._redis.where
        )
        self._telemetry = telemetry(
            name=name,
            meter_provider=meter_provider,
            tracer_provider=tracer_provider,
            trace_keys=trace_keys,
            redis=self._redis.address,
            mysql=self._sql_side.address,
        )
        if self._telemetry is not None:
            self._telemetry.observe(self.stats, lambda: self._breaker.is_open)
            self._sql_side.timer = self._telemetry.mysql_operation
        self._max_fills = max_fills or FILLS_PER_CONNECTION * self._sql_side.pool_size()
        self._lookups = LoopBound(self._make_lookups, _nothing_to_close)

    # the 0.x port's attributes: reading or assigning one says what replaced it
    mysql_pool = _removed("mysql_pool")
    redis_client = _removed("redis_client")
    mysql_config = _removed("mysql_config")
    redis_config = _removed("redis_config")
    _connect_mysql = _removed("_connect_mysql")
    _connect_redis = _removed("_connect_redis")
    _normalize_row = _removed("_normalize_row")
    _parse_connection_string = _removed("_parse_connection_string")

    def __dir__(self) -> list[str]:
        """The attributes, less the 0.x port's (not offered to tab completion)."""
        return [name for name in super().__dir__() if name not in _REMOVED_IN_1_0]

    def _make_lookups(self) -> Lookups:
        """An event loop's share of the client: fills, decodes and a guard of its own."""
        guard, options = self._guard.fork(), self._options
        flights = Flights(
            self._redis, guard, self.stats,
            max_fills=self._max_fills, lock_timeout=options.lock_timeout,
            max_entry_bytes=options.max_entry_bytes, refresh_ahead=self._refresh,
            on_fill=None if self._telemetry is None else self._telemetry.fill,
        )  # fmt: skip
        local = options.local_cache is not None
        return Lookups(self._redis, guard, flights, self.stats, local, self._refresh)

    def get_mysql_pool(self) -> Any:
        """The MySQL connection pool, for queries outside the cache.

        Created on first call (one per event loop; see "Serverless" in the README), or
        the pool passed as `mysql_config`.
        """
        return self._sql_side.pool.get()

    def format_query(self, query: str, params: Sequence[object] | None = None) -> str:
        """The SQL text sent for `query` and `params`, formatted as mysql2 does.

        Raises:
            InvalidParamError: a param cannot be formatted, params that are not a list,
                or fewer params than `?` placeholders.
            InvalidArgumentError: `%s` placeholders (see `paramstyle`).
        """
        timezone = self._sql_side.cast.timezone
        return format_query(self._text(query, params, True), params, timezone, strict=True)

    async def query_to_promise(self, query: str, params: Sequence[object] | None = None) -> Any:
        """Run a query without the cache and return what the cache would store for it.

        Rows are dicts in their JSON shape: dates as ISO strings, binary as
        `{"type": "Buffer", "data": [...]}`, DECIMAL and numeric strings as numbers.

        Raises:
            QueryError: MySQL failed (the driver error is the cause).
            InvalidParamError: a param cannot be formatted.
        """
        return await self._sql_side.run(self.format_query(query, params))

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
        return build_key(self._text(query, params, False), params, param_names)

    async def read_from_cache(
        self,
        query: str,
        params: Sequence[object] | None = None,
        param_names: Sequence[str] = (),
    ) -> Any:
        """The cached value for the query, or None on a miss (or, failing open, an outage)."""
        key = self.get_key_from_query(query, params, param_names)
        value = await self._lookups.get().read(key)
        return None if value is MISSING else value

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
            CacheError: Redis failed, with `fail_open=False` (else it is logged).
        """
        key = self.get_key_from_query(query, params, param_names)
        await self._lookups.get().write(key, encode(value), ttl_with_jitter(ttl))

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
        the hit after it give equal values (a `JSONValue`: dates become ISO strings,
        tuples lists).

        Raises:
            InvalidArgumentError: unnamed params, a bad ttl, a query that is not a str, or
                an `fn` that is not an async function.
            EncodeError: `fn()`'s result has no JSON form (nothing is cached).
            CacheError: Redis failed, with `fail_open=False`.
            ClientClosedError: `close()` cut the call short.
            Exception: whatever `fn()` raises, unchanged.
        """
        if not callable(fn):
            if inspect.iscoroutine(fn):  # never awaited: say so, without Python's warning
                fn.close()
            raise InvalidArgumentError(f"fn must be an async function, got {type(fn).__name__}")
        text = self._text(query, params, False)
        telemetry = self._telemetry
        if telemetry is not None and telemetry.tracing:
            call = self._with_cache(fn, text, params, param_names, ttl, traced=True)
            return await telemetry.traced("with_cache", call)
        return await self._with_cache(fn, text, params, param_names, ttl)

    async def query_with_cache(
        self,
        query: str,
        params: Sequence[object] | None = None,
        param_names: Sequence[str] = (),
        ttl: int = DEFAULT_TTL,
    ) -> Any:
        """Return the query's rows from the cache, or from MySQL (and cache them).

        Args:
            query: SQL with `?` placeholders for values and `??` for identifiers.
            params: the values, a list (or tuple), formatted as mysql2 does.
            param_names: a name for every param: `Name=value` pairs build the key, and
                invalidation finds entries by them.
            ttl: seconds the entry lives (±10 % jitter, as in Node).

        Returns:
            The rows in their cached (JSON) shape, equal on a miss and on a hit: a
            `list[Row]` for a SELECT (what mysql2 returns otherwise, e.g. an INSERT's
            header dict, for other statements). Typed `Any` because the shape depends on
            the SQL; annotate the variable: `rows: list[Row] = await ...`.

        Raises:
            InvalidArgumentError: unnamed params, a bad ttl, `%s` placeholders.
            InvalidParamError: params that are not a list, a value with no SQL form, or
                fewer params than placeholders.
            QueryError: MySQL failed (nothing is cached).
            CacheError: Redis failed, with `fail_open=False`.
            ClientClosedError: `close()` cut the call short.
        """
        text = self._text(query, params, True)
        telemetry = self._telemetry
        if telemetry is not None and telemetry.tracing:
            call = self._with_cache(None, text, params, param_names, ttl, traced=True)
            return await telemetry.traced("query_with_cache", call)
        return await self._with_cache(None, text, params, param_names, ttl)

    def _sql(self, text: str, params: Sequence[object] | None) -> Fn:
        """The fill function of a query: format `text` with `params` and run it."""
        return functools.partial(self._run_sql, text, params)

    async def _run_sql(self, text: str, params: Sequence[object] | None) -> Any:
        sql_side = self._sql_side
        return await sql_side.run(format_query(text, params, sql_side.cast.timezone, strict=True))

    async def _with_cache(
        self,
        fn: Callable[[], Awaitable[Any]] | None,
        query: str,
        params: Sequence[object] | None,
        param_names: Sequence[str],
        ttl: int,
        traced: bool = False,
    ) -> Any:
        """The cached value, or `fn()`'s (None: the query `query` with `params`); `traced`:
        a read that goes out alone gets a span of its own.

        The hit path is inline here, not in `Lookups.read`: one coroutine frame fewer on
        every hit (measured in `make bench`).
        """
        key, unambiguous = build_checked_key(query, params, param_names)
        check_ttl(ttl)
        here = self._lookups.get()
        flights = here.flights
        if unambiguous and (not flights or flights.running(key) is None):
            ttl_read = self._refresh is not None and self._refresh.wants_ttl(key)
            if here.local_cache or self._breaker.is_open:
                cached = await here.read(key, ttl_read)
            else:
                try:
                    if traced and self._redis.reads_alone():
                        assert self._telemetry is not None
                        with self._telemetry.redis_span("GET", key):
                            raw = await self._redis.request(key, ttl_read)
                    else:
                        raw = await self._redis.request(key, ttl_read)
                except CacheError as exc:
                    raw = await here.read_failed(exc)
                cached = here.take(key, raw)
            if cached is not MISSING:
                if ttl_read:
                    refill = self._sql(query, params) if fn is None else awaited(fn)
                    here.refresh_due([key], lambda _: refill, fn is None, ttl)
                return cached
        fill = self._sql(query, params) if fn is None else awaited(fn)
        if not unambiguous:
            here.bypass(key)
            return await compute(fill, fn is None)
        return await flights.miss(key, fill, ttl_with_jitter(ttl), fn is None)

    async def query_many_with_cache(
        self,
        query: str,
        params_list: Sequence[Sequence[object]],
        param_names: Sequence[str] = (),
        ttl: int = DEFAULT_TTL,
    ) -> list[Any]:
        """`query_with_cache` for each params of `params_list`, results in the same order.

        The entries are read in one MGET (split per slot on Cluster) and each distinct
        one is decoded once; misses are filled concurrently, each exactly as
        `query_with_cache` fills it (single-flight, fill markers, the lock). Each item
        counts as a lookup in `stats`, as in a gather of single calls.

        Raises:
            InvalidArgumentError: as `query_with_cache`, for any item, before anything runs.
            QueryError: a miss's query failed (the first such error).
            CacheError: with `fail_open=False`, Redis failed.
        """
        if isinstance(params_list, str | bytes | Mapping) or not isinstance(params_list, Sequence):
            raise InvalidParamError(
                f"params_list must be a list of params lists, got {type(params_list).__name__}"
            )
        check_ttl(ttl)
        items = build_checked_keys(
            lambda params: self._text(query, params, True), params_list, param_names
        )
        call = read_or_fill_many(
            self._lookups.get(),
            items,
            lambda index: self._sql(items[index][0], params_list[index]),
            ttl,
        )
        telemetry = self._telemetry
        if telemetry is not None and telemetry.tracing:
            return await telemetry.traced("query_many_with_cache", call)
        return await call

    # -- lifecycle -----------------------------------------------------------------------

    async def close_redis_connection(self) -> None:
        """Close the Redis connection; the next cache call reopens it."""
        await self._redis.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        await self.close()

    async def close(self, *, grace: float = DEFAULT_CLOSE_GRACE) -> None:
        """Close the MySQL pool and the Redis connection, within about `grace` seconds.

        Calls waiting for a pool connection get ClientClosedError at once, as do calls made
        while closing. Queries and fills in flight get `grace` seconds to finish; then
        fills are cancelled (their callers get ClientClosedError, nothing is written
        after close returns) and statements still running are killed on the server.
        Every event loop's connections are closed, each inside its loop. The client
        stays usable: a later call opens new connections.
        """
        sql_side = self._sql_side
        sql_side.closing = True
        sql_side.closes += 1
        try:
            sql_side.deadline = time.monotonic() + grace
            loops = {*self._lookups.loops(), *sql_side.pool.loops(), *self._redis.loops()}
            await asyncio.gather(*(run_in(loop, self._close_here, grace + 1) for loop in loops))
            await sql_side.pool.close()  # any opened meanwhile
            await self._redis.close()
        finally:
            sql_side.closing = False
            sql_side.deadline = None

    async def _close_here(self) -> None:
        """close()'s work in one event loop: turn away calls waiting for a connection,
        give the fills the grace left, then close the pool and the Redis connections."""
        sql_side = self._sql_side
        sql_side.turn_away()
        lookups = self._lookups.current
        if lookups is not None:
            await lookups.flights.close(sql_side.grace_left())
            lookups.decodes.clear()
        await sql_side.pool.close_current()
        await self._redis.close_current()


async def _nothing_to_close(_: object) -> None:
    """A loop's Lookups hold no connections: the pool and Redis close their own."""
