"""MRCServer: invalidation of cached queries."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Self

from ._redis.fills import STAMP_REFRESH, guarded_entry
from ._redis.holder import Doomed, RedisConfig, RedisHolder
from ._redis.invalidate import matches, scan_pattern, tokens_for
from ._telemetry.setup import telemetry

logger = logging.getLogger("mysql_redis_cache")

SCAN_COUNT = 1000
# One filtered SCAN per OR'ed name beats one unfiltered SCAN (every key sent here and
# checked) up to about 8 names: at 1M keys, 3.4 s vs 9.5 s for 2 names, level at 8
# (benchmarks/invalidation.py, "OR with several names").
MAX_FILTERED_SCANS = 8


@dataclass(slots=True)
class DropProgress:
    """Counts of a running `drop_outdated_cache`, passed to its `progress` callback.

    `examined` estimates the keys SCAN has walked (pages times COUNT) out of `total`, the
    database size when the run started times the number of scans; `matched` counts keys
    picked for deletion and `deleted` the ones Redis removed.
    """

    total: int = 0
    examined: int = 0
    matched: int = 0
    deleted: int = 0


class MRCServer:
    """Drops cache entries whose key names given param values.

    Args:
        redis_config: as for MRCClient.
        name: as for MRCClient (OpenTelemetry, with the `otel` extra):
            `mrc.cache.invalidated` counts the entries deleted, and each invalidation gets
            a span while tracing.
        meter_provider: as for MRCClient.
        tracer_provider: as for MRCClient.
    """

    def __init__(
        self,
        redis_config: RedisConfig = None,
        *,
        name: str | None = None,
        meter_provider: Any = None,
        tracer_provider: Any = None,
    ) -> None:
        """Check the configuration; nothing connects until first use.

        Raises:
            ConfigError: a bad Redis config, naming the bad part.
        """
        self._redis = RedisHolder(redis_config)
        self._telemetry = telemetry(
            name=name,
            meter_provider=meter_provider,
            tracer_provider=tracer_provider,
            trace_keys=False,
            redis=self._redis.address,
        )

    async def drop_outdated_cache(
        self,
        key_names: Sequence[str],
        key_values: Sequence[object],
        require_all_match: bool = False,
        *,
        dry_run: bool = False,
        progress: Callable[[DropProgress], object] | None = None,
    ) -> int:
        """Delete the cache entries for these param values; return how many were deleted.

        A key is deleted when it is a cache key and `Name=String(value)` is a whole
        `_`-delimited segment of it, for at least one pair (or all, with
        `require_all_match`). Other keys are never touched.

        Args:
            dry_run: count the entries that would be deleted, delete nothing.
            progress: called after every SCAN page with a `DropProgress`.

        Returns:
            The number of entries deleted (with `dry_run`, that would be deleted).

        Raises:
            InvalidArgumentError: empty names, names and values that do not pair up, or a
                name that cannot be matched soundly.
            CacheError: Redis failed.
        """
        tokens = tokens_for(key_names, key_values)
        if self._telemetry is None:
            return await self._drop(tokens, require_all_match, dry_run, progress)
        with self._telemetry.span("mrc drop_outdated_cache") as span:
            result = await self._drop(tokens, require_all_match, dry_run, progress)
            if span is not None:
                span.set_attribute("mrc.cache.invalidated", result)
                span.set_attribute("mrc.cache.dry_run", dry_run)
        if not dry_run:
            self._telemetry.invalidated(result)
        return result

    async def _drop(
        self,
        tokens: list[bytes],
        require_all_match: bool,
        dry_run: bool,
        progress: Callable[[DropProgress], object] | None,
    ) -> int:
        """`drop_outdated_cache`'s scan and deletes."""
        # AND: every doomed key holds the first token. OR: one filtered scan per token,
        # each skipping keys an earlier token's scan already took; past
        # MAX_FILTERED_SCANS tokens, one unfiltered scan.
        scans: list[bytes | None] = list(tokens[:1] if require_all_match else tokens)
        if len(scans) > MAX_FILTERED_SCANS:
            scans = [None]
        counts = DropProgress(total=await self._redis.dbsize() * len(scans))
        if not dry_run:
            await self._redis.stamp(tokens)  # before the scan: see _redis/fills.py
        stamped = time.monotonic()
        for index, token in enumerate(scans):
            earlier = tokens[:index] if token is not None else []

            def doomed(page: list[bytes], earlier: list[bytes] = earlier) -> Doomed:
                entries: list[bytes] = []
                others: list[bytes] = []
                for key in page:
                    entry = guarded_entry(key)
                    if matches(entry or key, tokens, require_all_match) and not (
                        earlier and matches(entry or key, earlier, False)
                    ):
                        if entry is None:
                            entries.append(key)
                        else:  # a fill marker: its fill must not store, nor what it stored
                            others += (key, entry)
                return entries, others

            async for picked, deleted in self._redis.sweep(
                None if token is None else scan_pattern(token), SCAN_COUNT, doomed, dry_run
            ):
                if not dry_run and time.monotonic() - stamped > STAMP_REFRESH:
                    await self._redis.stamp(tokens, renew=True)
                    stamped = time.monotonic()
                counts.examined = min(counts.examined + SCAN_COUNT, counts.total)
                counts.matched += picked
                counts.deleted += deleted
                if progress is not None:
                    progress(counts)
        result = counts.matched if dry_run else counts.deleted
        logger.debug("dropped %d cache entries for %s (dry run: %s)", result, tokens, dry_run)
        return result

    async def close_redis_connection(self) -> None:
        """Close the Redis connection; the next call reopens it."""
        await self._redis.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the Redis connection (what `async with` does on the way out)."""
        await self._redis.close()
