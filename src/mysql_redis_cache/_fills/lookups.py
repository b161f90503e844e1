"""A client's cache calls in one event loop: reads, what a reply means, writes, and fills."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .._errors import CacheError, InvalidArgumentError
from .._node.json import TooDeep, decode, encode
from .._node.ttl import ttl_with_jitter
from .._redis.breaker import Guard
from .._redis.copies import Decodes
from .._redis.holder import RedisHolder
from .._redis.local import ABSENT
from .._stats import CacheStats
from .._telemetry.calls import note
from .flights import Flights
from .refresh import RefreshAhead

logger = logging.getLogger("mysql_redis_cache")

MISSING = object()  # what a read returns for no usable entry
type Fn = Callable[[], Awaitable[Any]]  # what a fill runs: a query, or with_cache's function
_SHARED_DECODE_MAX = 256 * 1024  # bytes: larger entries are decoded for every read
_SHARED_DECODES_BUDGET = 16 * 2**20  # bytes of recent entries whose decodes are reused


class Lookups:
    """One event loop's part of a client: its guard (the client's breaker, its own record
    of why a call fell back), its fills, and its shared decodes. Never used from another
    loop, so nothing here needs a lock."""

    __slots__ = ("decodes", "flights", "guard", "local_cache", "redis", "refresh", "stats")

    def __init__(
        self,
        redis: RedisHolder,
        guard: Guard,
        flights: Flights,
        stats: CacheStats,
        local: bool,
        refresh: RefreshAhead | None,
    ) -> None:
        self.redis = redis
        self.guard = guard
        self.flights = flights
        self.stats = stats
        self.local_cache = local
        self.refresh = refresh  # the client's, shared by its loops
        self.decodes = Decodes(_SHARED_DECODES_BUDGET, _SHARED_DECODE_MAX)

    def local(self, key: str) -> Any:
        """The local cache's copy of the entry at `key` (counted as a hit), or ABSENT."""
        value = self.redis.local(key)
        if value is not ABSENT:
            self.stats.local_hits += 1
            self.stats.hits += 1
        return value

    async def read(self, key: str, ttl: bool = False) -> Any:
        """The decoded entry at `key`, or MISSING (on a miss, or failing open)."""
        if self.local_cache:
            local = self.local(key)
            if local is not ABSENT:
                note("local_hit")
                logger.debug("cache hit %s (local)", key)
                return local
        if self.guard.breaker.is_open:
            raw = await self.guard.op(self.redis.get(key), None)
            self.lookups_missed(1)
            return self.take(key, raw)
        try:
            raw = await self.redis.request(key, ttl)
        except CacheError as exc:
            raw = await self.read_failed(exc)
        return self.take(key, raw)

    async def read_failed(self, exc: CacheError) -> bytes | None:
        """A read failed: counted as the guard counts it, and as a lookup that missed for
        it; failing open, None (no entry)."""
        raw: bytes | None = await self.guard.failed(exc, None)
        self.lookups_missed(1)
        return raw

    def lookups_missed(self, count: int) -> None:
        """`count` lookups fell back because their read was skipped or failed (as the
        guard just said), for the lookups metric and a traced call's outcome."""
        missed = self.guard.missed
        if missed == "skipped":
            self.stats._lookup_skips += count
        elif missed == "error":
            self.stats._lookup_errors += count
        if missed is not None:
            note(missed)

    def take(self, key: str, raw: bytes | None) -> Any:
        """Decode and count what a read returned: the value, or MISSING. Reads of bytes
        read before for the same key copy their decode (see `Decodes`)."""
        if raw:
            try:
                value = self.decodes.value(key, raw)
            except TooDeep:
                logger.info("cache entry %s nests too deeply for Python; a miss", key)
            except ValueError:
                self.stats.corrupt += 1
                logger.warning("cache entry %s is not JSON; treating it as a miss", key)
            else:
                self.stats.hits += 1
                logger.debug("cache hit %s", key)
                return value
        self.stats.misses += 1  # an empty string is a miss for Node too
        note("miss")
        logger.debug("cache miss %s", key)
        return MISSING

    async def read_many(
        self, keys: list[str], ttl_keys: set[str] | None = None
    ) -> tuple[list[Any], list[bytes | None]]:
        """Each key's decoded entry (or MISSING), and its bytes (None from the local
        cache), read in one round trip."""
        values: list[Any] = []
        remote = keys
        if self.local_cache:
            remote = []
            for key in keys:
                local = self.local(key)
                if local is ABSENT:
                    remote.append(key)
                    values.append(MISSING)  # replaced below
                else:
                    values.append(local)
        if not remote:
            return values, [None] * len(keys)
        absent: list[bytes | None] = [None] * len(remote)
        ttl_read = [key for key in remote if key in ttl_keys] if ttl_keys else None
        raws = await self.guard.op(self.redis.request_many(remote, ttl_read), absent)
        if raws is absent:
            self.lookups_missed(len(remote))
        value_of = self.decodes.value
        fetched: list[Any] = []
        hits = 0
        for key, raw in zip(remote, raws, strict=True):
            if raw:
                try:
                    fetched.append(value_of(key, raw))
                    hits += 1
                    continue
                except ValueError:
                    pass  # take counts and logs it
            fetched.append(self.take(key, raw))
        # take's bookkeeping once for the batch: a log call costs as much as a copy
        self.stats.hits += hits
        if logger.isEnabledFor(logging.DEBUG):
            for key, raw, value in zip(remote, raws, fetched, strict=True):
                if raw and value is not MISSING:
                    logger.debug("cache hit %s", key)
        if remote is keys:
            return fetched, raws
        new_values, new_raws = iter(fetched), iter(raws)
        merged = [next(new_values) if value is MISSING else value for value in values]
        merged_raws = [next(new_raws) if value is MISSING else None for value in values]
        return merged, merged_raws

    def write(self, key: str, payload: bytes, expiry: int) -> Awaitable[None]:
        """Store `payload` at `key` for `expiry` seconds, through the guard."""
        return self.guard.op(self.redis.set(key, payload, expiry), None)

    def bypass(self, key: str) -> None:
        """A call runs uncached: its params could build another call's key."""
        self.stats.bypasses += 1
        note("bypass")
        logger.debug("bypassing the cache: params could build another call's key %s", key)

    def refresh_due(
        self, keys: list[str], fill_of: Callable[[int], Fn], json_shaped: bool, ttl: int
    ) -> None:
        """After hits on `keys`, refresh in the background those whose time has come
        (`refresh.py`; `fill_of(i)` refreshes `keys[i]`); the hits return at once."""
        refresh = self.refresh
        assert refresh is not None
        for index, (key, expiry) in enumerate(zip(keys, self.redis.expiries(keys), strict=True)):
            if refresh.due(key, expiry):
                self.flights.refresh(key, fill_of(index), ttl_with_jitter(ttl), json_shaped)


async def compute(fn: Fn, json_shaped: bool) -> Any:
    """`fn()`'s result in its cached shape, uncached."""
    result = await fn()
    return result if json_shaped else decode(encode(result))


def awaited(fn: Callable[[], Any]) -> Fn:
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
