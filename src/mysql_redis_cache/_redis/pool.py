"""The connections of a Redis client the library owns, fit for bursts and busy loops.

- Timeouts measure Redis's silence (`silence.py`): redis-py times each read, write and
  connect with a plain timeout, which counts the time our event loop spends busy. Ours
  bound the same steps by silence instead, on pooled, Sentinel and Cluster connections.
- The pool waits for a free connection: redis-py's (8.x) refuses a command once 100
  connections are in use ("Too many connections"), so 200 concurrent commands would
  fail as if Redis were down. Waiting is our own queue, never Redis failing: every
  command holding a connection is bounded by silence, so one always comes back.
- TLS connections share one SSL context: redis-py builds one per connection, loading
  the system's CA bundle each time, ~50 ms of CPU on the event loop per connection,
  enough for a burst of new connections to stall every read around them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.connection import RedisSSLContext, SSLConnection

from .._errors import ClientClosedError
from .silence import Silence

logger = logging.getLogger("mysql_redis_cache")

# max_connections unless the config sets it. Commands take well under a millisecond: 32
# connections carry tens of thousands a second, and a burst opens no more than 32 at once
# (each TLS handshake costs the event loop CPU).
DEFAULT_MAX_CONNECTIONS = 32


def waiting_pool(client: aioredis.Redis) -> aioredis.Redis:
    """A client like the new, unused `client`, whose pool waits for a free connection
    when its max_connections are in use, and whose connections are `fitted`."""
    pool = client.connection_pool
    waiting = ClosingPool(
        max_connections=pool.max_connections,
        timeout=None,
        connection_class=fitted(pool.connection_class),
        **pool.connection_kwargs,
    )
    return aioredis.Redis.from_pool(waiting)


class ClosingPool(aioredis.BlockingConnectionPool):
    """redis-py's waiting pool, that stays closed once its client is: a command in flight
    when it closed may have reconnected its connection (redis-py retries on a new one),
    and would otherwise leave it open."""

    closed = False

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self.closed:
            raise ClientClosedError("the client was closed while this call ran")
        return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]

    async def release(self, connection: Any) -> None:
        await super().release(connection)
        if self.closed:
            await connection.disconnect()


def fit_pool(pool: Any) -> None:
    """Make the connections `pool` opens from now on `fitted`."""
    pool.connection_class = fitted(pool.connection_class)


def fit_cluster(client: aioredis.RedisCluster) -> None:
    """Make the connections the new, unused cluster `client` opens to any node `fitted`."""
    manager = client.nodes_manager
    manager.connection_kwargs["connection_class"] = fitted(
        manager.connection_kwargs.get("connection_class", aioredis.Connection)
    )
    for node in manager.startup_nodes.values():
        node.connection_class = fitted(node.connection_class)


def fitted(connection_class: type[Any]) -> type[Any]:
    """A subclass of redis-py's `connection_class` whose timeouts bound Redis's silence,
    and whose TLS connections share one SSL context per set of TLS settings."""
    if hasattr(connection_class, "_fitted"):
        return connection_class
    fit = _FITTED.get(connection_class)
    if fit is None:
        namespace: dict[str, Any] = {"_fitted": True, "__module__": __name__}
        bases: tuple[type[Any], ...] = (_Bounded, connection_class)
        if issubclass(connection_class, SSLConnection):
            bases = (_SharedContext, *bases)
        fit = _FITTED[connection_class] = type(connection_class.__name__, bases, namespace)
    return fit


_FITTED: dict[type[Any], type[Any]] = {}


class _Bounded:
    """Mixed into a redis-py connection: reads, writes and connects bounded by silence.

    redis-py gets no timeouts of its own (they count our loop's backlog); an explicit
    per-call timeout (pub/sub polling) is left to redis-py.
    """

    _silence: Silence
    _connect_silence: Silence

    def __init__(self, **kwargs: Any) -> None:
        read = kwargs.get("socket_timeout")
        connect = kwargs.get("socket_connect_timeout") or read
        kwargs["socket_timeout"] = kwargs["socket_connect_timeout"] = None
        super().__init__(**kwargs)
        self._silence = Silence(read)
        self._connect_silence = Silence(connect)

    async def _connect(self) -> None:
        # a TimeoutError here is what redis-py's connect path turns into its own
        await self._connect_silence.bound(super()._connect(), steps=True)  # type: ignore[misc]
        reader = getattr(self, "_reader", None)
        if self._silence.timeout is not None and type(reader) is asyncio.StreamReader:
            feed_data, heard = reader.feed_data, self._silence.heard
            loop = asyncio.get_running_loop()

            def on_data(data: bytes) -> None:
                heard(loop.time())
                feed_data(data)

            reader.feed_data = on_data  # type: ignore[method-assign,assignment]

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        explicit = kwargs.get("timeout", args[1] if len(args) > 1 else None)
        if explicit is not None or self._silence.timeout is None:
            return await super().read_response(*args, **kwargs)  # type: ignore[misc]
        try:
            return await self._silence.bound(super().read_response(*args, **kwargs))  # type: ignore[misc]
        except TimeoutError:
            await abandon(self)
            raise redis.exceptions.TimeoutError(
                f"Timeout reading from {self._host_error()}"  # type: ignore[attr-defined]
            ) from None

    async def send_packed_command(self, *args: Any, **kwargs: Any) -> None:
        if self._silence.timeout is None:
            return await super().send_packed_command(*args, **kwargs)  # type: ignore[misc,no-any-return]
        try:
            await self._silence.bound(
                super().send_packed_command(*args, **kwargs),  # type: ignore[misc]
                self._unsent,
            )
        except TimeoutError:
            await abandon(self)
            raise redis.exceptions.TimeoutError("Timeout writing to socket") from None

    def _unsent(self) -> int:
        return unsent(self)


def unsent(conn: Any) -> int:
    """Bytes written to redis-py connection `conn` that have yet to leave for Redis."""
    writer = getattr(conn, "_writer", None)
    return writer.transport.get_write_buffer_size() if writer is not None else 0


async def abandon(conn: Any) -> None:
    """Close `conn` at once, dropping what it had yet to send: a connection given up on
    may face a server that reads nothing, and waiting to flush to it would hang."""
    writer = getattr(conn, "_writer", None)
    if writer is not None:
        writer.transport.abort()
    try:
        await conn.disconnect(nowait=True)
    except Exception as exc:  # its failure to close changes nothing: it is not used again
        logger.debug("closing an abandoned Redis connection failed: %s", exc)


class _SharedContext:
    """Mixed into a redis-py TLS connection: the SSL context of its settings is shared."""

    ssl_context: RedisSSLContext

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ssl_context = _shared(self.ssl_context)


_CONTEXTS: dict[tuple[Any, ...], RedisSSLContext] = {}


def _shared(context: RedisSSLContext) -> RedisSSLContext:
    """The first context made with the same settings as `context` (which it then is)."""
    settings = tuple(
        tuple(value) if isinstance(value, list) else value
        for name in RedisSSLContext.__slots__
        if name != "context"
        for value in (getattr(context, name),)
    )
    return _CONTEXTS.setdefault(settings, context)
