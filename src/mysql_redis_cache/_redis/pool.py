"""The connection pool of a Redis client the library owns, fit for bursts of cache misses.

redis-py's pool (8.x) refuses a command once 100 connections are in use ("Too many
connections"), so 200 concurrent misses would fail as if Redis were down. Ours waits for
a free connection instead. And redis-py builds an SSL context for every TLS connection,
loading the system's CA bundle each time: ~50 ms of CPU on the event loop per connection,
enough for a burst of new connections to time out the reads around them. Ours share one.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import RedisSSLContext, SSLConnection

# max_connections unless the config sets it. Commands take well under a millisecond: 32
# connections carry tens of thousands a second, and a burst opens no more than 32 at once
# (each TLS handshake costs the event loop CPU).
DEFAULT_MAX_CONNECTIONS = 32
# The longest a command waits for a free connection, in units of the read timeout: past
# that, the connections in use are not coming back soon, which is an outage.
POOL_WAIT_TIMEOUTS = 4
MIN_POOL_WAIT = 1.0  # seconds


def waiting_pool(client: aioredis.Redis) -> aioredis.Redis:
    """A client like the new, unused `client`, whose pool waits for a free connection
    when its max_connections are in use."""
    pool = client.connection_pool
    kwargs = dict(pool.connection_kwargs)
    read_timeout = kwargs.get("socket_timeout") or 0.0
    waiting = aioredis.BlockingConnectionPool(
        max_connections=pool.max_connections,
        timeout=max(MIN_POOL_WAIT, POOL_WAIT_TIMEOUTS * read_timeout),
        connection_class=sharing_tls_context(pool.connection_class),
        **kwargs,
    )
    return aioredis.Redis.from_pool(waiting)


def share_tls_context(pool: Any) -> None:
    """Make the TLS connections `pool` opens from now on share one SSL context."""
    pool.connection_class = sharing_tls_context(pool.connection_class)


def sharing_tls_context(connection_class: type[Any]) -> type[Any]:
    """`connection_class`, or, if it is a TLS connection, a subclass of it whose instances
    share one SSL context per set of TLS settings."""
    if not issubclass(connection_class, SSLConnection) or hasattr(connection_class, "_shared"):
        return connection_class
    sharing = _SHARING.get(connection_class)
    if sharing is None:

        def __init__(self: Any, **kwargs: Any) -> None:
            connection_class.__init__(self, **kwargs)
            self.ssl_context = _shared(self.ssl_context)

        namespace = {"__init__": __init__, "_shared": True, "__module__": __name__}
        sharing = _SHARING[connection_class] = type(
            connection_class.__name__, (connection_class,), namespace
        )
    return sharing


_SHARING: dict[type[Any], type[Any]] = {}


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
