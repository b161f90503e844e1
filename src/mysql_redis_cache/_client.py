"""MRCClient: the read-through query cache."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import functools
import inspect
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Self, TypedDict, cast

from ._errors import (
    CacheError,
    ClientClosedError,
    ConfigError,
    InvalidArgumentError,
    InvalidParamError,
    QueryError,
)
from ._fills.flights import Flights
from ._fills.lookups import MISSING, Lookups
from ._fills.refresh import RefreshAhead
from ._mysql.config import NO_BACKSLASH_ESCAPES, parse_mysql_config
from ._mysql.driver import pick_driver
from ._mysql.pool import Pool, driver_of_pool
from ._node.json import decode, encode
from ._node.jsvalue import utf8
from ._node.keys import (
    build_checked_key,
    build_checked_keys,
    build_key,
    check_params,
    refuse_non_finite,
)
from ._node.paramstyle import PARAMSTYLES, format_to_qmark, refuse_percent_placeholders
from ._node.rows import RawResult, shape
from ._node.sql import format_query, refuse_too_few
from ._redis.breaker import Breaker, Guard
from ._redis.holder import RedisConfig, RedisHolder
from ._stats import CacheStats
from ._support.loopbound import Borrowed, LoopBound, run_in
from ._telemetry.calls import note
from ._telemetry.setup import telemetry

logger = logging.getLogger("mysql_redis_cache")

DEFAULT_TTL = 86400
# An entry is read whole by every hit, in Node too: past this size caching costs more than
# it saves, and a single reply that large holds up every read queued behind it.
DEFAULT_MAX_ENTRY_BYTES = 16 * 2**20
DEFAULT_CLOSE_GRACE = 5.0  # seconds close() lets queries and fills in flight finish
# Fills admitted at once, per MySQL connection: two keep every connection busy (one
# fill's query runs while the next sets its marker), more would only queue for the pool
# while holding fill markers and starving the event loop of time to hear Redis.
FILLS_PER_CONNECTION = 2


def _check_ttl(ttl: object) -> None:
    if type(ttl) is not int or ttl <= 0:  # bool is an int subclass: refused too
        raise InvalidArgumentError(f"ttl must be a positive int of seconds, got {ttl!r}")


def _ttl_with_jitter(ttl: int) -> int:
    """The Node library's expiry: ttl ± 10 %, rounded as JS Math.round does."""
    _check_ttl(ttl)
    return max(1, ttl + math.floor(ttl * (random.random() * 0.2 - 0.1) + 0.5))


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
    """A property that says what replaced a 0.x attribute, on read and on assignment."""

    def fail(*_: object) -> Any:
        raise AttributeError(
            f"MRCClient.{name} was removed in 1.0: {_REMOVED_IN_1_0[name]} "
            "(see docs/migrating-from-0.x.md)"
        )

    return property(fail, fail)


class ClientOptions(TypedDict, total=False):
    """MRCClient's keyword options (the class docstring says what each does)."""

    normalize_numbers: bool
    fail_open: bool
    redis_timeout: float
    breaker_cooldown: float
    lock_timeout: float | None
    mysql_driver: str
    local_cache: int | None
    local_cache_ttl: float
    paramstyle: str
    max_entry_bytes: int | None
    max_fills: int | None
    scripts: bool
    local_cache_heartbeat: float
    refresh_ahead: bool | float
    name: str | None
    meter_provider: Any
    tracer_provider: Any
    trace_keys: bool


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
        normalize_numbers: turn numeric-looking strings into numbers, as the Node library
            does before caching. Off keeps them strings, and the entries then differ from
            the ones Node writes for the same query.
        fail_open: when Redis fails or cannot be reached, serve from MySQL (or `fn`)
            and log once per outage. False raises CacheError instead.
        redis_timeout: connect timeout for Redis, and the longest Redis may stay silent
            while answering, in seconds, unless the Redis config sets its own. A command
            whose connection turns out dead (a restart, CLIENT KILL, an idle timeout) is
            sent once more on a new connection; only a second failure, or a timeout,
            opens the circuit breaker.
        breaker_cooldown: after a Redis failure, skip Redis for this many seconds, then
            let one call probe it.
        mysql_driver: 'auto' (asyncmy when installed, else aiomysql), 'aiomysql' or
            'asyncmy'. The environment variable MRC_MYSQL_DRIVER can name one for 'auto'.
        lock_timeout: None (default) for no cross-process lock. Seconds: on a miss, hold
            `<key>:lock` (SET NX PX) while computing; other processes poll the entry for
            up to this long, then compute it themselves.
        local_cache: None (default) for none. Bytes: keep up to this much of the entries
            read in process, and answer hits from there without a round trip. Redis
            reports every change to them (CLIENT TRACKING, Redis 6+), so an entry written
            or deleted elsewhere (by Node, MRCServer, expiry) is dropped as soon as the
            report arrives; if that channel breaks, the local cache is emptied. Not for
            Redis Cluster.
        local_cache_ttl: the longest an entry stays in the local cache, in seconds.
        max_entry_bytes: results whose JSON is larger (16 MiB by default) are returned but
            not cached, counted in `stats.oversized`; None for no limit. Larger entries
            written by Node or `write_to_cache` are still read.
        paramstyle: 'qmark' (default): `?` placeholders, as in Node; a query written with
            `%s` is refused with a hint. 'format': `%s` placeholders (the 0.x port's
            style) are rewritten to `?` before the query is formatted or hashed, so its
            keys are the ones Node builds for the `?` query.
        scripts: True (default): a fill sets its marker and stores its entry with one Lua
            script each (see "A fill overtaken by an invalidation" in the README). False:
            plain commands, for a Redis user whose ACL forbids scripts; a fill that an
            invalidation overtakes within one round trip may then store stale rows, as in
            Node. A refusal of scripts is detected and switches to this by itself.
        local_cache_heartbeat: with the local cache, PING the connection that carries
            Redis's change reports this often, in seconds; when no reply comes within
            as long, the local cache is emptied and unused until Redis answers again. The
            longest a change made elsewhere can go unseen through a silent network
            partition is twice this.
        refresh_ahead: False (default), True, or XFetch's β as a positive float (True is
            1.0; larger refreshes earlier). On, a hit also reads its entry's remaining TTL,
            in the same round trip, and now and then refreshes the entry in the background
            before it expires, so a hot entry's readers never wait for MySQL after its
            first fill. A refresh runs like a fill (single-flight, the fill marker, the
            store script, the jittered TTL), in one process at a time (it takes the key's
            lock), and only once this process has timed a fill of the same query.
        max_fills: how many misses may fill at once (their query or `fn` running, their
            fill marker set); the rest wait their turn in order, and callers of a key
            already filling join that fill. None (default): twice the MySQL pool size
            (20 with mysql2's default `connectionLimit` of 10). Raise it for `with_cache`
            functions that do not use MySQL.

    Connections open on first use; `async with` (or `close()`) closes both.
    """

    # the 0.x port's attributes: reading or assigning one says what replaced it
    mysql_pool = _removed("mysql_pool")
    redis_client = _removed("redis_client")
    mysql_config = _removed("mysql_config")
    redis_config = _removed("redis_config")
    _connect_mysql = _removed("_connect_mysql")
    _connect_redis = _removed("_connect_redis")
    _normalize_row = _removed("_normalize_row")
    _parse_connection_string = _removed("_parse_connection_string")

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
        """Check the configuration; nothing connects until first use (see the class docs).

        Raises:
            ConfigError: a bad MySQL or Redis config or option, naming it.
        """
        if paramstyle not in PARAMSTYLES:
            raise ConfigError(f"paramstyle must be one of {PARAMSTYLES}, got {paramstyle!r}")
        self._paramstyle = paramstyle
        for option, size in (("local_cache", local_cache), ("max_entry_bytes", max_entry_bytes)):
            if size is not None and (type(size) is not int or size <= 0):
                raise ConfigError(f"{option} must be a positive int of bytes, got {size!r}")
        if max_fills is not None and (type(max_fills) is not int or max_fills <= 0):
            raise ConfigError(f"max_fills must be a positive int, got {max_fills!r}")
        if not isinstance(scripts, bool):
            raise ConfigError(f"scripts must be True or False, got {scripts!r}")
        beta = _beta(refresh_ahead)
        self._refresh = None if beta is None else RefreshAhead(beta)
        for option, value in (
            ("redis_timeout", redis_timeout),
            ("breaker_cooldown", breaker_cooldown),
            ("lock_timeout", lock_timeout),
            ("local_cache_ttl", local_cache_ttl),
            ("local_cache_heartbeat", local_cache_heartbeat),
        ):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
            ):
                raise ConfigError(f"{option} must be a positive number of seconds, got {value!r}")
        self._pool: LoopBound[Pool] | Borrowed[Any]
        if _is_pool(mysql_config):
            # a pool the caller owns: its driver's own handshake and settings apply
            settings = parse_mysql_config({})
            self._driver = driver_of_pool(mysql_config)
            self._pool = Borrowed(lambda: mysql_config)
        else:
            settings = parse_mysql_config(mysql_config or {})
            self._driver = pick_driver(mysql_driver)
            self._pool = LoopBound(self._make_pool, self._close_pool)
        self._mysql_settings = settings
        self._cast = dataclasses.replace(settings.cast, normalize_numbers=normalize_numbers)
        self.stats = CacheStats()
        self._redis = RedisHolder(
            redis_config,
            {
                "socket_timeout": redis_timeout,
                "socket_connect_timeout": redis_timeout,
            },
            self.stats,
            None if local_cache is None else (local_cache, local_cache_ttl, local_cache_heartbeat),
            scripts=scripts,
        )
        self._breaker = Breaker(breaker_cooldown, fail_open)
        # forked for each event loop: one breaker and write gate, per-loop bookkeeping
        self._guard = Guard(
            self._breaker, self.stats, fail_open, self._redis.drop_connections, self._redis.where
        )
        self._local_cache = local_cache is not None
        self._telemetry = telemetry(
            name=name,
            meter_provider=meter_provider,
            tracer_provider=tracer_provider,
            trace_keys=trace_keys,
            redis=self._redis.address,
            mysql=_mysql_address(settings.connect_kwargs) if not _is_pool(mysql_config) else None,
        )
        if self._telemetry is not None:
            self._telemetry.observe(self.stats, lambda: self._breaker.is_open)
        self._flight_options: dict[str, Any] = {
            "max_fills": max_fills or FILLS_PER_CONNECTION * self._pool_size(),
            "lock_timeout": lock_timeout,
            "max_entry_bytes": max_entry_bytes,
            "refresh_ahead": self._refresh,
            "on_fill": None if self._telemetry is None else self._telemetry.fill,
        }
        self._lookups = LoopBound(self._make_lookups, _nothing_to_close)
        self._closing = False
        self._close_deadline: float | None = None  # while close() runs
        self._max_packet: int | None = None  # the server's max_allowed_packet, once read

    def _make_lookups(self) -> Lookups:
        """An event loop's share of the client: fills, decodes and a guard of its own."""
        guard = self._guard.fork()
        flights = Flights(self._redis, guard, self.stats, **self._flight_options)
        return Lookups(self._redis, guard, flights, self.stats, self._local_cache)

    # -- MySQL ---------------------------------------------------------------------------

    def _pool_size(self) -> int:
        """The MySQL pool's connection limit (a borrowed pool's own, when it says)."""
        size = (
            getattr(self._pool.current, "maxsize", None)
            if isinstance(self._pool, Borrowed)
            else None
        )
        return size if type(size) is int and size > 0 else self._mysql_settings.pool_size

    def get_mysql_pool(self) -> Any:
        """The MySQL connection pool, for queries outside the cache.

        Created on first call (one per event loop; see "Serverless" in the README), or
        the pool passed as `mysql_config`.
        """
        return self._pool.get()

    def _make_pool(self) -> Pool:
        settings = self._mysql_settings
        return Pool(
            {**settings.connect_kwargs, "multiple_statements": settings.multiple_statements},
            maxsize=settings.pool_size,
            driver=self._driver,
        )

    async def _close_pool(self, pool: Pool) -> None:
        pool.close()
        await pool.wait_closed(self._grace_left())

    def format_query(self, query: str, params: Sequence[object] | None = None) -> str:
        """The SQL text sent for `query` and `params`, formatted as mysql2 does.

        Raises:
            InvalidParamError: a param cannot be formatted, params that are not a list,
                or fewer params than `?` placeholders.
            InvalidArgumentError: `%s` placeholders (see `paramstyle`).
        """
        return format_query(
            self._text(query, params, True), params, self._cast.timezone, strict=True
        )

    def _text(self, query: str, params: object, runs_sql: bool) -> str:
        """The query text to format and hash, after checking it, the params and the
        paramstyle (`runs_sql`: the text will be sent to MySQL with the params)."""
        if type(query) is not str:
            raise InvalidArgumentError(f"query must be a str, got {type(query).__name__}")
        if type(params) is list:
            if runs_sql:
                for value in params:  # most params are ints and strs: skip the walk
                    kind = type(value)
                    if kind is float or kind is list or kind is tuple:
                        refuse_non_finite(params)
                        break
        elif params is not None:
            check_params(params)
            if runs_sql and params:
                refuse_non_finite(cast(Sequence[object], params))
        text = query
        if "%" in query and params is not None:
            if self._paramstyle == "format":
                text = format_to_qmark(query)
            elif runs_sql and params:
                refuse_percent_placeholders(query)
        if runs_sql and params is not None:
            refuse_too_few(text, len(cast(Sequence[object], params)))
        return text

    async def query_to_promise(self, query: str, params: Sequence[object] | None = None) -> Any:
        """Run a query without the cache and return what the cache would store for it.

        Rows are dicts in their JSON shape: dates as ISO strings, binary as
        `{"type": "Buffer", "data": [...]}`, DECIMAL and numeric strings as numbers.

        Raises:
            QueryError: MySQL failed (the driver error is the cause).
            InvalidParamError: a param cannot be formatted.
        """
        return await self._run(self.format_query(query, params))

    async def _run(self, sql: str) -> Any:
        """Run `sql` on a pooled connection and shape its results.

        A connection that a statement broke (lost, packet errors, a cancellation mid-result)
        is closed, never pooled again; a cancelled statement is also killed on the server,
        which would otherwise run it to the end.
        """
        if self._closing:
            raise ClientClosedError("the client is closing")
        pool = self.get_mysql_pool()
        try:
            if isinstance(pool, Pool) and self._max_packet is not None:
                self._refuse_oversized(sql)
                # when it has to wait, the release that frees a connection sends it
                conn, sent = await pool.checkout(sql)
                try:
                    results = await self._execute(pool, conn, sql, sent)
                finally:
                    await pool.release(conn)
            else:
                async with pool.acquire() as conn:
                    results = await self._execute(pool, conn, sql, False)
        except self._driver.errors as exc:
            raise QueryError(f"MySQL query failed: {exc}") from exc
        return shape(results, self._cast)

    async def _execute(self, pool: Any, conn: Any, sql: str, sent: bool) -> list[RawResult]:
        """Run `sql` on `conn` (or read its result, when the pool `sent` it)."""
        if not sent:
            await self._check_packet(conn, sql)  # a refusal here sent nothing: no kill
        try:
            if self._telemetry is None:
                results = await self._driver.run_raw(conn, sql, sent)
            else:
                with self._telemetry.mysql_operation(sql):
                    results = await self._driver.run_raw(conn, sql, sent)
        except self._driver.errors as exc:
            if self._driver.breaks_connection(exc):
                conn.close()
            raise
        except BaseException:
            try:
                if isinstance(pool, Pool):
                    await pool.kill([conn])
            finally:
                conn.close()
            raise
        if self._driver.escapes_unsafe(conn):  # the statement set that sql_mode
            conn.close()
        return results

    async def _check_packet(self, conn: Any, sql: str) -> None:
        """Refuse a statement larger than the server's max_allowed_packet before sending it
        (the server would hang up mid-packet, with an error that does not say why), and
        any statement on a connection whose sql_mode makes backslash escaping unsafe."""
        if self._driver.escapes_unsafe(conn):
            conn.close()
            raise ConfigError(NO_BACKSLASH_ESCAPES + " (the server's sql_mode has it)")
        if self._max_packet is None:
            [result] = await self._driver.run_raw(conn, "SELECT @@max_allowed_packet")
            self._max_packet = int(result.rows[0][0])  # type: ignore[arg-type]
        self._refuse_oversized(sql)

    def _refuse_oversized(self, sql: str) -> None:
        assert self._max_packet is not None
        if len(sql) * 4 >= self._max_packet and len(utf8(sql)) >= self._max_packet:
            raise QueryError(
                f"the query is {len(utf8(sql)):,} bytes, more than the server's "
                f"max_allowed_packet ({self._max_packet:,}): nothing was sent; send large "
                "values another way or raise max_allowed_packet"
            )

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
        await self._lookups.get().write(key, encode(value), _ttl_with_jitter(ttl))

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
            Whatever `fn()` raises, unchanged.
        """
        if not callable(fn):
            raise InvalidArgumentError(f"fn must be an async function, got {type(fn).__name__}")
        text = self._text(query, params, False)
        telemetry = self._telemetry
        if telemetry is not None and telemetry.tracing:
            call = self._with_cache(
                fn, text, params, param_names, ttl, json_shaped=False, traced=True
            )
            return await telemetry.traced("with_cache", call)
        return await self._with_cache(fn, text, params, param_names, ttl, json_shaped=False)

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
            call = self._with_cache(
                None, text, params, param_names, ttl, json_shaped=True, traced=True
            )
            return await telemetry.traced("query_with_cache", call)
        return await self._with_cache(None, text, params, param_names, ttl, json_shaped=True)

    def _sql(self, text: str, params: Sequence[object] | None) -> Callable[[], Awaitable[Any]]:
        """The fill function of a query: format `text` with `params` and run it."""
        return functools.partial(self._run_sql, text, params)

    async def _run_sql(self, text: str, params: Sequence[object] | None) -> Any:
        return await self._run(format_query(text, params, self._cast.timezone, strict=True))

    async def _with_cache(
        self,
        fn: Callable[[], Awaitable[Any]] | None,
        query: str,
        params: Sequence[object] | None,
        param_names: Sequence[str],
        ttl: int,
        *,
        json_shaped: bool,
        traced: bool = False,
    ) -> Any:
        """The cached value, or `fn()`'s (None: the query `query` with `params`); `traced`:
        a read that goes out alone gets a span of its own."""
        key, unambiguous = build_checked_key(query, params, param_names)
        _check_ttl(ttl)
        here = self._lookups.get()
        flights = here.flights
        if unambiguous and (not flights or flights.running(key) is None):
            ttl_read = self._refresh is not None and self._refresh.wants_ttl(key)
            if self._local_cache or self._breaker.is_open:
                cached = await here.read(key, ttl_read)
            else:  # read's last step, inlined: one coroutine frame fewer on every hit
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
                    self._refresh_due(flights, [key], fn, query, [params], ttl)
                return cached
        if fn is None:
            fn = self._sql(query, params)
        elif not json_shaped:
            fn = _awaited(fn)
        if not unambiguous:
            self.stats.bypasses += 1
            note("bypass")
            logger.debug("bypassing the cache: params could build another call's key %s", key)
            return await self._compute(fn, json_shaped)
        return await flights.miss(key, fn, _ttl_with_jitter(ttl), json_shaped)

    def _refresh_due(
        self,
        flights: Flights,
        keys: list[str],
        fn: Callable[[], Awaitable[Any]] | None,
        query: str,
        params_list: Sequence[Sequence[object] | None],
        ttl: int,
    ) -> None:
        """After hits on `keys` (entries of one query), refresh in the background those
        whose time has come (`_fills/refresh.py`); the hits return at once."""
        refresh = self._refresh
        assert refresh is not None
        for key, expiry, params in zip(keys, self._redis.expiries(keys), params_list, strict=True):
            if refresh.due(key, expiry):
                fill = self._sql(query, params) if fn is None else _awaited(fn)
                flights.refresh(key, fill, _ttl_with_jitter(ttl), fn is None)

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
        `query_with_cache` fills it (single-flight, fill markers, the lock).

        Raises:
            InvalidArgumentError: as `query_with_cache`, for any item, before anything runs.
            QueryError: a miss's query failed (the first such error).
            CacheError: with `fail_open=False`, Redis failed.
        """
        telemetry = self._telemetry
        if telemetry is not None and telemetry.tracing:
            call = self._many(query, params_list, param_names, ttl)
            return await telemetry.traced("query_many_with_cache", call)
        return await self._many(query, params_list, param_names, ttl)

    async def _many(
        self,
        query: str,
        params_list: Sequence[Sequence[object]],
        param_names: Sequence[str],
        ttl: int,
    ) -> list[Any]:
        """`query_many_with_cache`'s work."""
        if isinstance(params_list, str | bytes | Mapping) or not isinstance(params_list, Sequence):
            raise InvalidParamError(
                f"params_list must be a list of params lists, got {type(params_list).__name__}"
            )
        _check_ttl(ttl)
        items = build_checked_keys(
            lambda params: self._text(query, params, True), params_list, param_names
        )
        first: dict[str, int] = {}  # each distinct key's first index
        repeats: list[tuple[int, int]] = []  # (index, first index) of repeated keys
        bypassed = []
        for index, (_, key, unambiguous) in enumerate(items):
            if not unambiguous:
                bypassed.append(index)
            elif (at := first.setdefault(key, index)) != index:
                repeats.append((index, at))
        ttl_keys: set[str] = set()
        if self._refresh is not None:
            ttl_keys = self._refresh.wanting_ttl(list(first))
        here = self._lookups.get()
        values, raws = await here.read_many(list(first), ttl_keys)
        if ttl_keys:
            due = [(key, first[key]) for key, value in zip(first, values, strict=False)
                   if value is not MISSING and key in ttl_keys]  # fmt: skip
            if due:
                self._refresh_due(
                    here.flights, [key for key, _ in due], None, items[due[0][1]][0],
                    [params_list[at] for _, at in due], ttl,
                )  # fmt: skip
        if len(values) == len(items) and MISSING not in values:
            return values  # distinct keys, all cached (most batches): in order already
        results: list[Any] = [None] * len(items)
        again: dict[int, list[int]] = {}  # first index: the indexes repeating its key
        for index, at in repeats:
            again.setdefault(at, []).append(index)
        fills: list[tuple[list[int], str | None]] = []  # indexes to fill, and their key
        for (key, index), value in zip(first.items(), values, strict=True):
            if value is MISSING:
                fills.append(([index, *again.get(index, ())], key))
            else:
                results[index] = value
        if repeats:
            read = dict(zip(first.values(), zip(values, raws, strict=True), strict=True))
            for index, at in repeats:
                value, raw = read[at]
                if value is not MISSING:  # a copy each: callers must not share one result
                    key = items[at][1]
                    results[index] = (
                        copy.deepcopy(value) if raw is None else here.decodes.value(key, raw)
                    )
        for index in bypassed:
            self.stats.bypasses += 1
            note("bypass")
            fills.append(([index], None))  # uncached
        if fills:
            await asyncio.gather(
                *(
                    self._fill_into(
                        here.flights,
                        results,
                        at,
                        self._sql(items[at[0]][0], params_list[at[0]]),
                        key,
                        ttl,
                    )
                    for at, key in fills
                )
            )
        return results

    async def _fill_into(
        self,
        flights: Flights,
        results: list[Any],
        at: list[int],
        run: Callable[[], Awaitable[Any]],
        key: str | None,
        ttl: int,
    ) -> None:
        """Run a batch item's query (through the fill of `key`, or uncached if None) and
        put a copy of its rows at each of `at`."""
        if key is None:
            value = await self._compute(run, True)
        else:
            value = await flights.miss(key, run, _ttl_with_jitter(ttl), True)
        results[at[0]] = value
        for index in at[1:]:
            results[index] = copy.deepcopy(value)

    async def _compute(self, fn: Callable[[], Awaitable[Any]], json_shaped: bool) -> Any:
        result = await fn()
        return result if json_shaped else decode(encode(result))

    # -- lifecycle -----------------------------------------------------------------------

    async def close_redis_connection(self) -> None:
        """Close the Redis connection; the next cache call reopens it."""
        await self._redis.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self, *, grace: float = DEFAULT_CLOSE_GRACE) -> None:
        """Close the MySQL pool and the Redis connection, within about `grace` seconds.

        Calls waiting for a pool connection get ClientClosedError at once, as do calls made
        while closing. Queries and fills in flight get `grace` seconds to finish; then
        fills are cancelled (their callers get ClientClosedError, nothing is written
        after close returns) and statements still running are killed on the server.
        The client stays usable: a later call opens new connections.
        """
        self._closing = True
        try:
            self._close_deadline = time.monotonic() + grace
            # each event loop's connections are closed inside that loop, all at once
            loops = {*self._lookups.loops(), *self._pool.loops(), *self._redis.loops()}
            await asyncio.gather(*(run_in(loop, self._close_here, grace + 1) for loop in loops))
            await self._pool.close()  # any opened meanwhile
            await self._redis.close()
        finally:
            self._closing = False
            self._close_deadline = None

    async def _close_here(self) -> None:
        """close()'s work in one event loop: turn away calls waiting for a connection,
        give the fills the grace left, then close the pool and the Redis connections."""
        pool = self._pool.current
        if isinstance(pool, Pool):
            pool.close()
        lookups = self._lookups.current
        if lookups is not None:
            await lookups.flights.close(self._grace_left())
            lookups.decodes.clear()
        await self._pool.close_current()
        await self._redis.close_current()

    def _grace_left(self) -> float:
        """Seconds close() has left; the default grace when a loop's shutdown closes."""
        if self._close_deadline is None:
            return DEFAULT_CLOSE_GRACE
        return max(0.0, self._close_deadline - time.monotonic())


async def _nothing_to_close(_: object) -> None:
    """A loop's Lookups hold no connections: the pool and Redis close their own."""


def _beta(refresh_ahead: object) -> float | None:
    """XFetch's β from the refresh_ahead option: None when off."""
    if refresh_ahead is False:
        return None
    if refresh_ahead is True:
        return 1.0
    if isinstance(refresh_ahead, int | float) and 0 < refresh_ahead < math.inf:
        return float(refresh_ahead)
    raise ConfigError(f"refresh_ahead must be True, False or a positive β, got {refresh_ahead!r}")


def _mysql_address(kwargs: Mapping[str, Any]) -> tuple[str | None, int | None]:
    """The MySQL server's (host, port) from the connect keywords (None on a socket)."""
    if kwargs.get("unix_socket"):
        return None, None
    return kwargs.get("host") or "localhost", int(kwargs.get("port") or 3306)


def _awaited(fn: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
    """`fn`, refusing a result that cannot be awaited (a plain function passed as `fn`)."""

    async def call() -> Any:
        result = fn()
        if not inspect.isawaitable(result):
            raise InvalidArgumentError(
                f"fn must be an async function: it returned a {type(result).__name__}, "
                "not an awaitable (nothing was cached)"
            )
        return await result

    return call


def _is_pool(config: object) -> bool:
    return (
        config is not None and not isinstance(config, Mapping | str) and hasattr(config, "acquire")
    )
