"""The Redis connection, opened lazily, with redis-py errors translated in one place."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
import redis.exceptions

from ._config import parse_redis_config
from ._errors import CacheError, CacheUnavailableError
from ._jsvalue import utf8
from ._loopbound import LoopBound
from ._reader import CoalescingReader

logger = logging.getLogger("mysql_redis_cache")


# Compare-and-delete: release a lock only while it still holds our token.
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@contextmanager
def redis_errors(action: str) -> Iterator[None]:
    """Re-raise redis-py's errors (and socket errors) as CacheError or, when Redis cannot
    be reached at all, CacheUnavailableError."""
    try:
        yield
    except (
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        TimeoutError,
        OSError,
    ) as exc:
        raise CacheUnavailableError(f"Redis {action} failed: {exc}") from exc
    except redis.exceptions.RedisError as exc:
        raise CacheError(f"Redis {action} failed: {exc}") from exc


class RedisHolder:
    """Owns a redis-py asyncio client per event loop, created on first use."""

    def __init__(
        self, config: Mapping[str, Any] | str | None, defaults: Mapping[str, Any] | None = None
    ) -> None:
        self._url, self._options = parse_redis_config(config)
        for name, value in (defaults or {}).items():
            self._options.setdefault(name, value)  # the user's settings (and URL) win
        self._bound = LoopBound(self._make, _close_handle)

    def _make(self) -> _Handle:
        if self._url is not None:
            client = aioredis.Redis.from_url(self._url, **self._options)
        else:
            client = aioredis.Redis(**self._options)
        return _Handle(client, CoalescingReader(client))

    def client(self) -> aioredis.Redis:
        return self._bound.get().client

    @property
    def reader(self) -> CoalescingReader:
        """The reader of the running loop (GETs, coalesced into MGET when concurrent)."""
        return self._bound.get().reader

    async def get(self, key: str) -> bytes | None:
        try:  # not `with redis_errors()`: a generator context manager per hit costs too much
            return await self._bound.get().reader.get(utf8(key))
        except (redis.exceptions.RedisError, OSError) as exc:
            with redis_errors("GET"):
                raise exc

    async def set(self, key: str, payload: bytes, expiry: int) -> None:
        with redis_errors("SET"):
            await self.client().set(utf8(key), payload, ex=expiry)

    async def drop_connections(self) -> None:
        """Disconnect every pooled connection (after an outage they may all be dead)."""
        try:
            await self._bound.get().client.connection_pool.disconnect()
        except (redis.exceptions.RedisError, OSError) as exc:
            logger.debug("dropping Redis connections failed: %s", exc)

    async def try_lock(self, key: str, token: bytes, ttl_ms: int) -> bool:
        """SET key token NX PX ttl: whether this caller now holds the lock."""
        with redis_errors("SET NX"):
            return bool(await self.client().set(utf8(key), token, nx=True, px=ttl_ms))

    async def release_lock(self, key: str, token: bytes) -> None:
        with redis_errors("lock release"):
            await cast(Awaitable[object], self.client().eval(_RELEASE_LOCK, 1, utf8(key), token))

    async def dbsize(self) -> int:
        with redis_errors("DBSIZE"):
            size: int = await self.client().dbsize()
        return size

    async def sweep(
        self,
        match: bytes | None,
        count: int,
        doomed: Callable[[list[bytes]], list[bytes]],
        dry_run: bool,
    ) -> AsyncIterator[tuple[int, int]]:
        """SCAN for `match` (None: every key) and UNLINK what `doomed` picks of each page.

        Each page's UNLINK rides in one pipeline with the next SCAN. Yields
        (keys picked, keys deleted) per page; memory stays one page.
        """
        client = self.client()
        cursor, pending = 0, list[bytes]()
        while True:
            with redis_errors("SCAN/UNLINK"):
                async with client.pipeline(transaction=False) as pipe:
                    if pending:
                        pipe.unlink(*pending)
                    pipe.scan(cursor, match=match, count=count)
                    replies = await pipe.execute()
            deleted = replies[0] if pending else 0
            cursor, keys = replies[-1]
            picked = doomed(cast(list[bytes], keys)) if keys else []
            pending = [] if dry_run else picked
            yield len(picked), deleted
            if cursor == 0:
                break
        if pending:
            with redis_errors("UNLINK"):
                yield 0, await client.unlink(*pending)

    async def close(self) -> None:
        await self._bound.close()


@dataclass(slots=True)
class _Handle:
    client: aioredis.Redis
    reader: CoalescingReader


async def _close_handle(handle: _Handle) -> None:
    try:
        await handle.reader.close()
        await handle.client.aclose()
    except (redis.exceptions.RedisError, OSError) as exc:
        logger.debug("closing the Redis client failed: %s", exc)
