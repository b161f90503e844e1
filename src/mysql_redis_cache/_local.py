"""The local cache: entries kept in process while Redis promises to report their changes.

Redis's server-assisted client-side caching (CLIENT TRACKING ... REDIRECT) remembers
which keys the read connection fetched and, when one of them is written, deleted or
expires, publishes its name on `__redis__:invalidate` to a listener connection. Entries
live here only while both connections are up: when either drops, everything is cleared.

An invalidation can overtake the reply to the read it concerns (they travel on two
connections), so keys invalidated while a read is in flight are not stored from it.

An entry is kept as its bytes until it is hit here. Then, if it decodes to rows of
plain values (or to one plain value), the decoded rows are kept instead and each hit
gets a copy of every row: a fraction of the cost of decoding again. Anything else is
decoded for each hit.
"""

from __future__ import annotations

import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from itertools import chain
from typing import Any

ABSENT = object()  # what `value` returns for a key it does not hold

_PLAIN = frozenset({str, int, float, bool, type(None)})  # immutable: shared safely
_RAW, _ROWS, _SCALAR, _DECODE = range(4)  # what an entry holds: see Entry


class Entry:
    """One key's value: its bytes (_RAW, _DECODE), rows to copy (_ROWS) or a plain value."""

    __slots__ = ("data", "deadline", "kind", "size")

    def __init__(self, data: Any, deadline: float, kind: int, size: int) -> None:
        self.data = data
        self.deadline = deadline
        self.kind = kind
        self.size = size


class LocalCache:
    """Entries by key, least recently used evicted past `max_bytes`, none older than `max_age`.

    `decode` turns an entry's bytes into a fresh value, raising ValueError when it cannot.
    Sizes are the bytes read, or for decoded rows an estimate of the memory they hold.
    """

    def __init__(self, max_bytes: int, max_age: float, decode: Callable[[bytes], Any]) -> None:
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.active = False  # tracking is on and its listener runs: entries may be used
        self._decode = decode
        self._entries: OrderedDict[bytes, Entry] = OrderedDict()
        self._size = 0
        self._in_flight: set[bytes] | None = None  # invalidated during the read in flight
        self._all_in_flight = False

    def __len__(self) -> int:
        return len(self._entries)

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
        kind = entry.kind
        if kind == _ROWS:
            return [row.copy() for row in entry.data]
        if kind == _SCALAR:
            return entry.data
        try:
            value = self._decode(entry.data)
        except ValueError:
            self._discard(key)  # the read from Redis will count and replace it
            return ABSENT
        if kind == _RAW:
            self._keep_decoded(key, entry, value)
        return value

    def _keep_decoded(self, key: bytes, entry: Entry, value: Any) -> None:
        """Keep `value` in place of the bytes if copying it is cheap, and fits."""
        entry.kind = _DECODE
        if type(value) in _PLAIN:
            kind, data, size = _SCALAR, value, sys.getsizeof(value)
        elif type(value) is list and _plain_rows(value):
            data = [row.copy() for row in value]
            kind, size = _ROWS, _rows_size(data)
        else:
            return
        if size > self.max_bytes // 4:
            return
        self._size += size - entry.size
        entry.kind, entry.data, entry.size = kind, data, size
        self._evict()

    def begin_read(self) -> None:
        """A read of Redis starts: remember what is invalidated until `end_read`."""
        self._in_flight = set()
        self._all_in_flight = False

    def end_read(self, keys: list[bytes], values: list[bytes | None]) -> None:
        """Keep what the read returned, except keys invalidated while it was in flight."""
        dirty, self._in_flight = self._in_flight, None
        if not self.active or self._all_in_flight or dirty is None:
            return
        deadline = time.monotonic() + self.max_age
        limit = self.max_bytes // 4  # one entry never pushes out most of the others
        for key, value in zip(keys, values, strict=True):
            if value and len(value) <= limit and key not in dirty:
                self._store(key, value, deadline)

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

    def _store(self, key: bytes, value: bytes, deadline: float) -> None:
        self._discard(key)
        self._entries[key] = Entry(value, deadline, _RAW, len(value))
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


def _plain_rows(value: list[Any]) -> bool:
    """Whether `value` is a list of dicts holding only immutable plain values."""
    if not set(map(type, value)) <= {dict}:
        return False
    return set(map(type, chain.from_iterable(map(dict.values, value)))) <= _PLAIN


def _rows_size(rows: list[dict[str, Any]]) -> int:
    """About the memory `rows` hold: the list, the dicts and their values (keys are shared)."""
    values = chain.from_iterable(map(dict.values, rows))
    return sys.getsizeof(rows) + sum(map(sys.getsizeof, rows)) + sum(map(sys.getsizeof, values))
