"""A decoded entry kept once and handed out as copies, where that beats decoding again.

Every caller must get a value of its own to mutate. Rows of immutable values (what a
query caches) are copied row by row, a fraction of the cost of decoding their JSON; a
lone immutable value is shared as it is; anything else is decoded afresh each time.
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
