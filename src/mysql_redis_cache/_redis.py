"""The Redis connection, opened lazily, with redis-py errors translated in one place."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

import redis.asyncio as aioredis
import redis.exceptions

from ._config import parse_redis_config
from ._errors import CacheError
from ._jsvalue import utf8


@contextmanager
def redis_errors(action: str) -> Iterator[None]:
    """Re-raise redis-py's errors (and socket errors) as CacheError."""
    try:
        yield
    except redis.exceptions.RedisError as exc:
        raise CacheError(f"Redis {action} failed: {exc}") from exc
    except OSError as exc:
        raise CacheError(f"Redis {action} failed: {exc}") from exc


class RedisHolder:
    """Owns one redis-py asyncio client, created on first use."""

    def __init__(self, config: Mapping[str, Any] | str | None) -> None:
        self._url, self._options = parse_redis_config(config)
        self._client: aioredis.Redis | None = None

    def client(self) -> aioredis.Redis:
        if self._client is None:
            if self._url is not None:
                self._client = aioredis.Redis.from_url(self._url, **self._options)
            else:
                self._client = aioredis.Redis(**self._options)
        return self._client

    async def get(self, key: str) -> bytes | None:
        with redis_errors("GET"):
            value = await self.client().get(utf8(key))
        return cast(bytes | None, value)

    async def set(self, key: str, payload: bytes, expiry: int) -> None:
        with redis_errors("SET"):
            await self.client().set(utf8(key), payload, ex=expiry)

    async def scan(self, match: bytes, count: int) -> AsyncIterator[list[bytes]]:
        """Yield the keys of each SCAN page matching the glob `match`."""
        client = self.client()
        cursor = 0
        while True:
            with redis_errors("SCAN"):
                cursor, keys = await client.scan(cursor, match=match, count=count)
            if keys:
                yield cast(list[bytes], keys)
            if cursor == 0:
                return

    async def unlink(self, keys: list[bytes]) -> int:
        with redis_errors("UNLINK"):
            removed: int = await self.client().unlink(*keys)
        return removed

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with redis_errors("close"):
                await client.aclose()
