"""MRCServer: invalidation of cached queries."""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from ._errors import CacheError, CacheUnavailableError, ConfigError
from ._index import proof
from ._redis.fills import STAMP_REFRESH, guarded_entry
from ._redis.holder import Doomed, RedisConfig, RedisHolder, redis_errors
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

    Scanning, `examined` estimates the keys SCAN has walked (pages times COUNT) out of
    `total`, the database size when the run started times the number of scans; through
    the index, the index members read out of those listed. `matched` counts keys picked
    for deletion and `deleted` the ones Redis removed.
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
        use_index: use the invalidation index when an `MRCIndexer` proves it holds every
            entry; scan the keyspace otherwise (False: always scan).
        index_wait: seconds to wait for a running indexer to prove it is current before
            scanning instead.
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
        """Check the configuration; nothing connects until first use.

        Raises:
            ConfigError: a bad Redis config or option, naming the bad part.
        """
        if not isinstance(use_index, bool):
            raise ConfigError(f"use_index must be True or False, got {use_index!r}")
        if (
            isinstance(index_wait, bool)
            or not isinstance(index_wait, int | float)
            or not 0 <= index_wait <= 60
        ):
            raise ConfigError(f"index_wait must be seconds from 0 to 60, got {index_wait!r}")
        self._use_index = use_index
        self._index_wait = float(index_wait)
        self._scanning_logged = False
        self.paths: collections.Counter[str] = collections.Counter()
        """How many invalidations took each path: "index" or "scan"."""
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
        `require_all_match`). Other keys are never touched. The keys are found through
        the invalidation index when an `MRCIndexer` proves it holds every entry, else by
        scanning the keyspace (`last_path` says which).

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
                span.set_attribute("mrc.invalidation.path", self.last_path)
        if not dry_run:
            self._telemetry.invalidated(result)
        return result

    @property
    def last_path(self) -> str:
        """The path the last invalidation took: "index" or "scan" ("" before any)."""
        return self._last_path

    _last_path = ""

    async def _drop(
        self,
        tokens: list[bytes],
        require_all_match: bool,
        dry_run: bool,
        progress: Callable[[DropProgress], object] | None,
    ) -> int:
        """`drop_outdated_cache`'s work: through the index when an indexer proves it
        complete, else by scanning."""
        drop = _Drop(tokens, require_all_match, dry_run, progress)
        # the database's size for progress reports, before the stamps add to it
        size = await self._redis.dbsize() if progress is not None else 0
        if not dry_run:
            await self._redis.stamp(tokens)  # before the proof or scan: see _redis/fills.py
        why = await self._prove() if self._use_index else "use_index is off"
        if why is None:
            try:
                await self._drop_indexed(drop)
            except CacheUnavailableError:
                raise
            except CacheError as exc:  # an index set that is not one (WRONGTYPE), say
                why = f"the index could not be read ({exc})"
        self._last_path = "scan" if why else "index"
        self.paths[self._last_path] += 1
        if why is None and self._scanning_logged:
            logger.info("invalidations use the index again")
            self._scanning_logged = False
        elif why is not None:
            if self._use_index and not self._scanning_logged:
                logger.info("invalidations scan the keyspace: %s", why)
                self._scanning_logged = True
            await self._scan(drop, size)
        result = drop.counts.matched if dry_run else drop.counts.deleted
        logger.debug("dropped %d cache entries for %s (dry run: %s)", result, tokens, dry_run)
        return result

    async def _prove(self) -> str | None:
        with redis_errors("index barrier"):
            return await proof.prove(self._redis.client(), self._index_wait)

    async def _drop_indexed(self, drop: _Drop) -> None:
        """Delete what the index lists and `matches` confirms: O(entries listed)."""
        client = self._redis.client()
        counts, seen = drop.counts, set[bytes]()
        if drop.progress is not None:
            with redis_errors("index read"):
                counts.total = await proof.size(client, drop.tokens)
        pages = proof.members(client, drop.tokens, drop.require_all)
        while True:
            with redis_errors("index read"):
                page = await anext(pages, None)
            if page is None:
                return
            fresh = [key for key in page if key not in seen]  # ZSCAN may repeat a member
            seen.update(fresh)
            entries, others = _doomed(fresh, drop.tokens, drop.require_all, [])
            counts.examined = min(counts.examined + len(page), counts.total)
            if drop.dry_run:
                counts.matched += await self._redis.unlink(entries, exists=True)
            else:
                counts.matched += len(entries)
                counts.deleted += await self._redis.unlink(entries)
                await self._redis.unlink(others)
            drop.report()

    async def _scan(self, drop: _Drop, size: int) -> None:
        """SCAN for the tokens and delete what `matches` confirms: O(keys in Redis)."""
        tokens, counts = drop.tokens, drop.counts
        # AND: every doomed key holds the first token. OR: one filtered scan per token,
        # each skipping keys an earlier token's scan already took; past
        # MAX_FILTERED_SCANS tokens, one unfiltered scan.
        scans: list[bytes | None] = list(tokens[:1] if drop.require_all else tokens)
        if len(scans) > MAX_FILTERED_SCANS:
            scans = [None]
        counts.total = size * len(scans)
        stamped = time.monotonic()
        for index, token in enumerate(scans):
            earlier = tokens[:index] if token is not None else []

            def doomed(page: list[bytes], earlier: list[bytes] = earlier) -> Doomed:
                return _doomed(page, tokens, drop.require_all, earlier)

            async for picked, deleted in self._redis.sweep(
                None if token is None else scan_pattern(token), SCAN_COUNT, doomed, drop.dry_run
            ):
                if not drop.dry_run and time.monotonic() - stamped > STAMP_REFRESH:
                    await self._redis.stamp(tokens, renew=True)
                    stamped = time.monotonic()
                counts.examined = min(counts.examined + SCAN_COUNT, counts.total)
                counts.matched += picked
                counts.deleted += deleted
                drop.report()

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


@dataclass(slots=True)
class _Drop:
    """One invalidation's request and its running counts."""

    tokens: list[bytes]
    require_all: bool
    dry_run: bool
    progress: Callable[[DropProgress], object] | None
    counts: DropProgress = field(default_factory=DropProgress)

    def report(self) -> None:
        if self.progress is not None:
            self.progress(self.counts)


def _doomed(
    page: list[bytes], tokens: list[bytes], require_all: bool, earlier: list[bytes]
) -> Doomed:
    """What to delete of `page`: the cache entries the tokens match (counted), and the
    fill markers of such entries (uncounted), except those `earlier` tokens matched."""
    entries: list[bytes] = []
    others: list[bytes] = []
    for key in page:
        entry = guarded_entry(key)
        if matches(entry or key, tokens, require_all) and not (
            earlier and matches(entry or key, earlier, False)
        ):
            if entry is None:
                entries.append(key)
            else:  # a fill marker: its fill must not store, nor what it stored
                others += (key, entry)
    return entries, others
