"""Which cache keys an invalidation request names, matched exactly."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from .._errors import InvalidArgumentError
from .._node.jsvalue import js_string, too_deep, utf8

_HASH = re.compile(rb"[0-9a-f]{40}")
_GLOB_SPECIAL = re.compile(rb"([*?\[\]\\])")


def tokens_for(names: Sequence[str], values: Sequence[object]) -> list[bytes]:
    """`Name=String(value)` tokens for an invalidation, after refusing unsound requests.

    Raises:
        InvalidArgumentError: no names, lengths that differ, or a name that cannot be
            matched soundly (empty, or containing '=').
    """
    for label, given in (("key_names", names), ("key_values", values)):
        if isinstance(given, str | bytes | Mapping) or not isinstance(given, Sequence):
            raise InvalidArgumentError(f"{label} must be a list, got {type(given).__name__}")
    if not names:
        raise InvalidArgumentError(
            "key_names is empty: refusing, as Node would then delete every key in the database"
        )
    if len(names) != len(values):
        hint = ""
        if len(names) == 1 and isinstance(names[0], str):
            hint = f" (for several values of one name, repeat it: [{names[0]!r}] * {len(values)})"
        raise InvalidArgumentError(
            f"{len(names)} key names but {len(values)} key values: they must pair up{hint}"
        )
    tokens = []
    for name in names:
        if not isinstance(name, str) or not name or "=" in name:
            raise InvalidArgumentError(
                f"param name {name!r} cannot be matched: it must be a non-empty string without '='"
            )
    try:
        for name, value in zip(names, values, strict=True):
            # a str subclass's own __str__ is no part of the key
            tokens.append(utf8(f"{str.__str__(name)}={js_string(value)}"))
    except RecursionError as exc:
        raise too_deep(exc) from exc
    return tokens


def scan_pattern(token: bytes) -> bytes:
    """A SCAN MATCH glob that every key holding `token` as a segment matches."""
    return b"*" + _GLOB_SPECIAL.sub(rb"\\\1", token) + b"_*"


def param_part(key: bytes) -> bytes | None:
    """`_`-framed parameter part of a cache key (`_A=1_B=2_`), or None for other keys."""
    if len(key) < 41 or key[-41:-40] != b"_" or not _HASH.fullmatch(key, len(key) - 40):
        return None
    params = key[:-40]
    if b"=" not in params:
        return None
    return b"_" + params


def matches(key: bytes, tokens: Sequence[bytes], require_all: bool) -> bool:
    """Whether `key` is a cache key holding any (or every) token as a whole segment."""
    params = param_part(key)
    if params is None:
        return False
    found = (b"_" + token + b"_" in params for token in tokens)
    return all(found) if require_all else any(found)
