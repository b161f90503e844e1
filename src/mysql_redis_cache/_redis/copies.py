"""A decoded entry kept once and handed out as copies, where that beats decoding again.

Every caller must get a value of its own to mutate. Rows of immutable values (what a
query caches) are copied row by row, a fraction of the cost of decoding their JSON; a
lone immutable value is shared as it is; anything else is decoded afresh each time.
`Decodes` keeps recent entries' templates for as long as Redis returns the same bytes.
"""

from __future__ import annotations

import sys
from itertools import chain
from typing import Any

from .._node.json import decode

_IMMUTABLE = frozenset({str, int, float, bool, type(None)})
_ROWS, _SHARED, _DECODED = range(3)


class Template:
    """Gives out copies of one decoded value; `size` is about the memory it holds."""

    __slots__ = ("_data", "_kind", "size")

    def __init__(self, kind: int, data: Any, size: int) -> None:
        self._kind = kind
        self._data = data
        self.size = size

    def copy(self) -> Any:
        kind = self._kind
        if kind == _ROWS:
            return [row.copy() for row in self._data]
        if kind == _SHARED:
            return self._data
        return decode(self._data)


def template_of(value: Any, raw: bytes, limit: int | None = None) -> Template:
    """A template for `value`, decoded from `raw`, that holds at most `limit` bytes.

    Holds `value`'s rows (copied, so the caller keeps `value`), or `raw` when copying
    is not possible or would pass `limit`.
    """
    if type(value) in _IMMUTABLE:
        return Template(_SHARED, value, sys.getsizeof(value))
    if type(value) is list and _plain_rows(value):
        rows: list[dict[str, Any]] = value
        size = _rows_size(rows)
        if limit is None or size <= limit:
            return Template(_ROWS, [row.copy() for row in rows], size)
    return Template(_DECODED, raw, len(raw))


def _plain_rows(value: list[Any]) -> bool:
    """Whether `value` is a list of dicts holding only immutable values."""
    if not set(map(type, value)) <= {dict}:
        return False
    return set(map(type, chain.from_iterable(map(dict.values, value)))) <= _IMMUTABLE


def _rows_size(rows: list[dict[str, Any]]) -> int:
    """About the memory `rows` hold: the list, the dicts and their values (keys are shared)."""
    values = chain.from_iterable(map(dict.values, rows))
    return sys.getsizeof(rows) + sum(map(sys.getsizeof, rows)) + sum(map(sys.getsizeof, values))


class Decodes:
    """The decodes of entries read lately, by key, reused while Redis returns equal bytes.

    Every read still goes to Redis; only decoding is saved, and only when the bytes read
    equal the bytes decoded before, so a changed entry is always decoded anew. The first
    read of some bytes decodes them, the second also keeps a Template, later ones copy it.
    Holds entries up to `max_entry` bytes, about `budget` bytes in all, oldest dropped first.
    """

    __slots__ = ("_budget", "_max_entry", "_memo", "_size")

    def __init__(self, budget: int, max_entry: int) -> None:
        self._budget = budget
        self._max_entry = max_entry
        self._memo: dict[str, tuple[bytes, Template | None]] = {}
        self._size = 0

    def value(self, key: str, raw: bytes) -> Any:
        """`decode(raw)`, or a copy of it when `raw` was read for `key` before.

        Raises: as `decode`.
        """
        memo = self._memo.get(key)
        if memo is not None:
            last, template = memo
            if raw is last or raw == last:
                if template is not None:
                    return template.copy()
                value = decode(raw)
                template = template_of(value, raw, self._max_entry * 4)
                self._memo[key] = (last, template)
                self._grow(template.size)
                return value
            self._forget(key)
        value = decode(raw)
        if len(raw) <= self._max_entry:
            self._memo[key] = (raw, None)
            self._grow(len(raw))
        return value

    def clear(self) -> None:
        self._memo.clear()
        self._size = 0

    def __len__(self) -> int:
        return len(self._memo)

    def _forget(self, key: str) -> None:
        kept = self._memo.pop(key, None)
        if kept is not None:
            raw, template = kept
            self._size -= len(raw) + (template.size if template is not None else 0)

    def _grow(self, size: int) -> None:
        self._size += size
        memo = self._memo
        while self._size > self._budget and memo:
            self._forget(next(iter(memo)))
