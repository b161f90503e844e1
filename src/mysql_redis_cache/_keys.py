"""Cache keys in the Node library's format: `Name=String(value)_..._<sha1(query)>`."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from ._errors import InvalidArgumentError
from ._jsvalue import js_string, utf8


def query_hash(query: str) -> str:
    """Hex SHA-1 of the query text as Node hashes it (UTF-8)."""
    return hashlib.sha1(utf8(query)).hexdigest()


def check_names(params: Sequence[object] | None, names: Sequence[str]) -> None:
    """Refuse params that would not all reach the key.

    Raises:
        InvalidArgumentError: more params than names. Node keys only the named ones,
            so two calls differing in an unnamed param would share one entry.
    """
    if params and len(params) > len(names):
        raise InvalidArgumentError(
            f"{len(params)} params but {len(names)} param names: every param must be named, "
            "or calls that differ only in an unnamed param would read each other's rows"
        )


def build_key(query: str, params: Sequence[object] | None, names: Sequence[str]) -> str:
    """The key Node's getKeyFromQuery(query, params, names) returns."""
    check_names(params, names)
    if not params:
        return query_hash(query)
    parts = [
        # Node reads params[i] past the end as undefined
        f"{js_string(name)}={js_string(params[i]) if i < len(params) else 'undefined'}_"
        for i, name in enumerate(names)
    ]
    parts.append(query_hash(query))
    return "".join(parts)


def is_unambiguous(params: Sequence[object] | None, names: Sequence[str]) -> bool:
    """Whether no other params for the same names could build the same key.

    Node's key shows only String(value): an object is `[object Object]` whatever it
    holds, and a value containing `_Other=` can shift where the next param seems to start.
    """
    if not params:
        return True
    markers = [f"_{js_string(name)}=" for name in names]
    for value in params:
        if isinstance(value, Mapping) or (
            isinstance(value, list | tuple) and any(isinstance(v, Mapping) for v in value)
        ):
            return False
        text = js_string(value)
        if any(marker in text for marker in markers):
            return False
    return True
