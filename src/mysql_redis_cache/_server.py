"""MRCServer: invalidation of cached queries."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from ._invalidate import matches, scan_pattern, tokens_for
from ._redis import RedisHolder

logger = logging.getLogger("mysql_redis_cache")

_SCAN_COUNT = 1000


class MRCServer:
    """Drops cache entries whose key names given param values.

    Args:
        redis_config: as for MRCClient.
    """

    def __init__(self, redis_config: Mapping[str, Any] | str | None = None) -> None:
        self._redis = RedisHolder(redis_config)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close_redis_connection()

    async def drop_outdated_cache(
        self,
        key_names: Sequence[str],
        key_values: Sequence[object],
        require_all_match: bool = False,
    ) -> int:
        """Delete the cache entries for these param values; return how many were deleted.

        A key is deleted when it is a cache key and `Name=String(value)` is a whole
        `_`-delimited segment of it, for at least one pair (or all, with
        `require_all_match`). Other keys are never touched.

        Raises:
            InvalidArgumentError: empty names or names and values that do not pair up.
        """
        tokens = tokens_for(key_names, key_values)
        # OR needs a scan per token; AND only the keys holding the first token
        patterns = tokens[:1] if require_all_match else tokens
        deleted = 0
        for token in patterns:
            async for page in self._redis.scan(scan_pattern(token), _SCAN_COUNT):
                doomed = [key for key in page if matches(key, tokens, require_all_match)]
                if doomed:
                    deleted += await self._redis.unlink(doomed)
        logger.debug("dropped %d cache entries for %s", deleted, tokens)
        return deleted

    async def close_redis_connection(self) -> None:
        """Close the Redis connection; the next call reopens it."""
        await self._redis.close()
