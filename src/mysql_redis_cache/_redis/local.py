"""The local cache: entries kept in process while Redis promises to report their changes.

Redis's server-assisted client-side caching (CLIENT TRACKING ... REDIRECT) remembers
which keys the read connection fetched and, when one of them is written, deleted or
expires, publishes its name on `__redis__:invalidate` to a listener connection. Entries
live here only while both connections are up: when either drops, everything is cleared.

An invalidation can overtake the reply to the read it concerns (they travel on two
connections), so keys invalidated while a read is in flight are not stored from it.

An entry is kept as its bytes until it is hit here; then as a Template, which for
query rows holds them decoded and copies them for each hit.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Any

from .._node.json import decode
from .copies import Template, template_of

ABSENT = object()  # what `value` returns for a key it does not hold


class Entry:
    """One key's value: the bytes read until its first hit here, then a Template."""

    __slots__ = ("data", "deadline", "expiry", "size")

    def __init__(self, data: bytes | Template, deadline: float, size: int, expiry: float) -> None:
        self.data = data
        self.deadline = deadline  # when it leaves the local cache
        self.expiry = expiry  # when Redis expires it (monotonic; inf: never)
        self.size = size


class LocalCache:
    """Entries by key, least recently used evicted past `max_bytes`, none older than `max_age`.

    Sizes are the bytes read, or for decoded rows an estimate of the memory they hold.
    """

    def __init__(self, max_bytes: int, max_age: float) -> None:
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.active = False  # tracking is on and its listener runs: entries may be used
        self._entries: OrderedDict[bytes, Entry] = OrderedDict()
        self._size = 0
        self._in_flight: set[bytes] | None = None  # invalidated during the read in flight
        self._all_in_flight = False

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: bytes) -> bool:
        return key in self._entries

    @property
    def size(self) -> int:
        """Bytes held."""
        return self._size

    def value(self, key: bytes) -> Any:
        """A fresh copy of the value at `key`, or ABSENT (an undecodable entry is dropped)."""
        entry = self._entries.get(key)
        if entry is None or not self.active:
            return ABSENT
        if entry.deadline < time.monotonic():
            self._discard(key)
            return ABSENT
        self._entries.move_to_end(key)
        data = entry.data
        if type(data) is Template:
            return data.copy()
        assert isinstance(data, bytes)
        try:
            value = decode(data)
        except ValueError:
            self._discard(key)  # the read from Redis will count and replace it
            return ABSENT
        template = template_of(value, data, self.max_bytes // 4)
        self._size += template.size - entry.size
        entry.data, entry.size = template, template.size
        self._evict()
        return value

    def begin_read(self) -> None:
        """A read of Redis starts: remember what is invalidated until `end_read`."""
        self._in_flight = set()
        self._all_in_flight = False

    def end_read(self, keys: list[bytes], values: list[bytes | None], ttls: list[int]) -> None:
        """Keep what the read returned, except keys invalidated while it was in flight.

        `ttls` are the keys' PTTLs read with them: no entry outlives its Redis expiry.
        """
        dirty, self._in_flight = self._in_flight, None
        if not self.active or self._all_in_flight or dirty is None:
            return
        now = time.monotonic()
        longest = now + self.max_age
        limit = self.max_bytes // 4  # one entry never pushes out most of the others
        for key, value, ttl in zip(keys, values, ttls, strict=True):
            if value and len(value) <= limit and key not in dirty and ttl != -2:
                expiry = math.inf if ttl < 0 else now + ttl / 1000
                self._store(key, value, min(longest, expiry), expiry)

    def invalidate(self, keys: list[bytes] | None) -> None:
        """Drop `keys` (None: every key, as Redis says after a FLUSHDB)."""
        if keys is None:
            self.clear()
            self._all_in_flight = True
            return
        for key in keys:
            self._discard(key)
        if self._in_flight is not None:
            self._in_flight.update(keys)

    def clear(self) -> None:
        self._entries.clear()
        self._size = 0

    def deactivate(self) -> None:
        """Redis no longer reports changes: forget everything and store nothing new."""
        self.active = False
        self.clear()
        self._all_in_flight = True

    def expiry(self, key: bytes) -> float | None:
        """When Redis expires the entry held for `key` (monotonic time), if one is held."""
        entry = self._entries.get(key)
        return None if entry is None else entry.expiry

    def _store(self, key: bytes, value: bytes, deadline: float, expiry: float) -> None:
        self._discard(key)
        self._entries[key] = Entry(value, deadline, len(value), expiry)
        self._size += len(value)
        self._evict()

    def _evict(self) -> None:
        while self._size > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._size -= evicted.size

    def _discard(self, key: bytes) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._size -= entry.size
