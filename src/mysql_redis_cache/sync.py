"""Blocking clients for code that is not async: Django, Flask, Celery, scripts.

`MRCClient` and `MRCServer` here take the same arguments and options, have the same
methods and raise the same errors as the async classes, as plain calls. One client may
be used from any number of threads at once: all of them share one set of connections,
run by a private event loop in a daemon thread that starts on the first call, and
concurrent hits from different threads share round trips to Redis. Keys and stored
bytes are the async client's, so entries are shared with it and with Node.

Calling one from a thread that runs an event loop raises `EventLoopError`: use the async
classes there.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self, Unpack

from . import _client, _server
from ._errors import InvalidArgumentError
from ._mysql.statements import DEFAULT_CLOSE_GRACE
from ._node.ttl import DEFAULT_TTL
from ._options import ClientOptions
from ._redis.holder import RedisConfig
from ._server import DropProgress
from ._stats import CacheStats
from ._support.portal import Portal

__all__ = ["MRCClient", "MRCServer"]

_numbers = itertools.count(1)


def _portal(kind: str) -> Portal:
    return Portal(
        f"mysql-redis-cache-{kind.lower()}-{next(_numbers)}",
        f"mysql_redis_cache.sync.{kind} blocks: in a thread that runs an event loop, "
        f"await mysql_redis_cache.{kind} instead",
    )


class MRCClient:
    """The blocking `mysql_redis_cache.MRCClient`, safe from any number of threads.

    Args:
        mysql_config: as for the async client (a pool passed in must be an async one,
            made for no event loop yet: it is used in the client's own loop).
        redis_config: as for the async client.
        **options: the async client's keyword options, with the same meanings.

    Raises:
        ConfigError: a bad MySQL or Redis config or option, naming it.
    """

    def __init__(
        self,
        mysql_config: Mapping[str, Any] | str | Any | None = None,
        redis_config: RedisConfig = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        """Check the configuration; nothing connects, and no thread starts, until the
        first call."""
        self._async = _client.MRCClient(mysql_config, redis_config, **options)
        self._portal = _portal("MRCClient")

    @property
    def stats(self) -> CacheStats:
        """What the client has done, counted across every thread (see `CacheStats`)."""
        return self._async.stats

    def query_with_cache(
        self,
        query: str,
        params: Sequence[object] | None = None,
        param_names: Sequence[str] = (),
        ttl: int = DEFAULT_TTL,
    ) -> Any:
        """The query's rows from the cache, or from MySQL (and cached); see the async
        `MRCClient.query_with_cache`."""
        client = self._async
        return self._portal.call(lambda: client.query_with_cache(query, params, param_names, ttl))

    def query_many_with_cache(
        self,
        query: str,
        params_list: Sequence[Sequence[object]],
        param_names: Sequence[str] = (),
        ttl: int = DEFAULT_TTL,
    ) -> list[Any]:
        """`query_with_cache` for each params of `params_list`, in one round trip; see
        the async `MRCClient.query_many_with_cache`."""
        client = self._async
        result: list[Any] = self._portal.call(
            lambda: client.query_many_with_cache(query, params_list, param_names, ttl)
        )
        return result

    def with_cache(
        self,
        fn: Callable[[], Any],
        query: str,
        params: Sequence[object] | None = None,
        param_names: Sequence[str] = (),
        ttl: int = DEFAULT_TTL,
    ) -> Any:
        """The cached value for `query`, or `fn()`'s result, cached.

        `fn` is a plain function; on a miss it runs in the calling thread (so
        thread-bound resources such as Django's database connections work), and other
        threads missing the same key at the same time wait for its result.

        Raises:
            InvalidArgumentError: `fn` is not callable, or is an async function (use the
                async client for those).
            MRCError: as the async `MRCClient.with_cache`.
            Exception: whatever `fn()` raises, unchanged.
        """
        if not callable(fn):
            raise InvalidArgumentError(f"fn must be a function, got {type(fn).__name__}")
        client = self._async
        return self._portal.call_with(
            lambda here: client.with_cache(here(_plain(fn)), query, params, param_names, ttl)
        )

    def read_from_cache(
        self,
        query: str,
        params: Sequence[object] | None = None,
        param_names: Sequence[str] = (),
    ) -> Any:
        """The cached value for the query, or None; see the async method."""
        client = self._async
        return self._portal.call(lambda: client.read_from_cache(query, params, param_names))

    def write_to_cache(
        self,
        query: str,
        value: Any,
        params: Sequence[object] | None = None,
        param_names: Sequence[str] = (),
        ttl: int = DEFAULT_TTL,
    ) -> None:
        """Store `value` under the query's key; see the async method."""
        client = self._async
        self._portal.call(lambda: client.write_to_cache(query, value, params, param_names, ttl))

    def query_to_promise(self, query: str, params: Sequence[object] | None = None) -> Any:
        """Run a query without the cache; see the async method."""
        client = self._async
        return self._portal.call(lambda: client.query_to_promise(query, params))

    def get_key_from_query(
        self,
        query: str,
        params: Sequence[object] | None = None,
        param_names: Sequence[str] = (),
    ) -> str:
        """The Redis key Node uses for this query and params (no I/O: runs right here)."""
        return self._async.get_key_from_query(query, params, param_names)

    def format_query(self, query: str, params: Sequence[object] | None = None) -> str:
        """The SQL text sent for `query` and `params` (no I/O: runs right here)."""
        return self._async.format_query(query, params)

    def close_redis_connection(self) -> None:
        """Close the Redis connections; the next call reopens them."""
        client = self._async
        self._portal.call(client.close_redis_connection)

    def close(self, *, grace: float = DEFAULT_CLOSE_GRACE) -> None:
        """Close the connections and stop the client's thread, within about `grace`
        seconds; calls in flight end with their result or ClientClosedError. A later
        call starts again."""
        client = self._async
        self._portal.check()
        self._portal.run_and_stop(lambda: client.close(grace=grace), grace + 5)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class MRCServer:
    """The blocking `mysql_redis_cache.MRCServer`, safe from any number of threads.

    Args:
        redis_config: as for the async class.
        name: as for the async class.
        meter_provider: as for the async class.
        tracer_provider: as for the async class.
        use_index: as for the async class.
        index_wait: as for the async class.

    Raises:
        ConfigError: a bad Redis config or option, naming the bad part.
    """

    def __init__(
        self,
        redis_config: RedisConfig = None,
        *,
        name: str | None = None,
        meter_provider: Any = None,
        tracer_provider: Any = None,
        use_index: bool = True,
        index_wait: float = 0.5,
    ) -> None:
        """Check the configuration; nothing connects until the first call."""
        self._async = _server.MRCServer(
            redis_config,
            name=name,
            meter_provider=meter_provider,
            tracer_provider=tracer_provider,
            use_index=use_index,
            index_wait=index_wait,
        )
        self._portal = _portal("MRCServer")

    def drop_outdated_cache(
        self,
        key_names: Sequence[str],
        key_values: Sequence[object],
        require_all_match: bool = False,
        *,
        dry_run: bool = False,
        progress: Callable[[DropProgress], object] | None = None,
    ) -> int:
        """Delete the cache entries for these param values; see the async method.

        `progress` is called in the client's own thread.
        """
        server = self._async
        result: int = self._portal.call(
            lambda: server.drop_outdated_cache(
                key_names, key_values, require_all_match, dry_run=dry_run, progress=progress
            )
        )
        return result

    @property
    def paths(self) -> collections.Counter[str]:
        """How many invalidations took each path: "index" or "scan"."""
        return self._async.paths

    @property
    def last_path(self) -> str:
        """The path the last invalidation took: "index" or "scan" ("" before any)."""
        return self._async.last_path

    def close_redis_connection(self) -> None:
        """Close the Redis connections; the next call reopens them."""
        self._portal.call(self._async.close_redis_connection)

    def close(self) -> None:
        """Close the Redis connections and stop the server's thread."""
        self._portal.check()
        self._portal.run_and_stop(self._async.close, DEFAULT_CLOSE_GRACE)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _plain(fn: Callable[[], Any]) -> Callable[[], Any]:
    """`fn`, refusing an async function's coroutine (it would never run)."""

    def call() -> Any:
        result = fn()
        if hasattr(result, "__await__"):
            close = getattr(result, "close", None)
            if close is not None:
                close()  # never awaited: say so, without Python's RuntimeWarning
            raise InvalidArgumentError(
                "fn returned an awaitable: pass a plain function to the sync client, or "
                "use the async mysql_redis_cache.MRCClient (nothing was cached)"
            )
        return result

    return call
