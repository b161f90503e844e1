"""Counters of what the cache did, for metrics export."""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass(slots=True)
class CacheStats:
    """What an MRCClient has done since it was made (or since `reset()`).

    hits / misses: lookups answered from the cache / not found there.
    local_hits: the hits answered by the local cache, without a Redis round trip.
    errors: Redis calls that failed (the call was served without the cache, or raised).
    skipped: Redis calls not attempted because the circuit breaker was open.
    bypasses: calls run uncached because their params could build another call's key.
    joins: calls that shared another in-flight call's execution (single-flight).
    coalesced: reads that shared a round trip to Redis with other callers' reads.
    corrupt: entries that were not JSON, treated as misses and overwritten.
    lock_waits: calls that waited on another process's lock and got its result.
    oversized: fills not stored because their JSON was larger than max_entry_bytes.
    refused: fills whose result was returned but not stored, because an invalidation of
        their key overtook them while they ran.
    unstored: fills and writes not stored because Redis refused writes (a read-only
        replica, memory full with noeviction), whether they were sent or held back.
    refreshes: entries refreshed ahead of their expiry (`refresh_ahead`): their query or
        function ran in the background after a hit.
    refresh_errors: refreshes whose query or function failed (the entry stays until it
        expires).
    """

    hits: int = 0
    misses: int = 0
    local_hits: int = 0
    errors: int = 0
    skipped: int = 0
    bypasses: int = 0
    joins: int = 0
    coalesced: int = 0
    corrupt: int = 0
    lock_waits: int = 0
    refused: int = 0
    oversized: int = 0
    unstored: int = 0
    refreshes: int = 0
    refresh_errors: int = 0
    # lookups among `misses` whose read failed or was skipped (for the lookups metric)
    _lookup_errors: int = field(default=0, repr=False)
    _lookup_skips: int = field(default=0, repr=False)
    _earlier: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict, e.g. for a metrics exporter."""
        return {name: getattr(self, name) for name in _PUBLIC}

    def reset(self) -> None:
        """Set every counter back to zero (the lifetime totals keep counting)."""
        for name in _COUNTERS:
            self._earlier[name] = self._earlier.get(name, 0) + getattr(self, name)
            setattr(self, name, 0)

    def totals(self) -> dict[str, int]:
        """Every counter since the client was made, `reset()` or not (what a monotonic
        metric exports); the names of `as_dict()`, and the private ones."""
        return {name: self._earlier.get(name, 0) + getattr(self, name) for name in _COUNTERS}


_COUNTERS = tuple(f.name for f in fields(CacheStats) if f.name != "_earlier")
_PUBLIC = tuple(name for name in _COUNTERS if not name.startswith("_"))
