"""JSON encoding byte-identical to JavaScript's JSON.stringify, and decoding of cached entries."""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from .._errors import EncodeError
from .jsvalue import (
    SmallFloat,
    instant_ms,
    iso_from_ms,
    iso_utc,
    js_number,
    js_number_value,
    js_object,
    to_instant,
)

type JSONValue = bool | int | float | str | list[JSONValue] | dict[str, JSONValue] | None
"""A decoded cache entry, or any part of one."""

# orjson reads integers past 64 bits as floats where json reads them exactly: 20+ digits,
# or a minus and 19 (below -2**63, as Node writes BIGINT's minimum). Mapping digits and
# "-" to "0" and the rest to " " finds such a run with a C-speed substring search: a
# regex took 15x longer than decoding the value itself.
_DIGITS_TO_ZERO = bytes(48 if 48 <= i <= 57 or i == 45 else 32 for i in range(256))
_TWENTY_DIGITS = b"0" * 20
_fast_encoder = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=True
)
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


@functools.cache
def _orjson() -> Any:
    """orjson when installed (the `fast` extra) and not disabled by MRC_JSON=stdlib."""
    if os.environ.get("MRC_JSON", "").lower() == "stdlib":
        return None
    try:
        import orjson
    except ImportError:
        return None
    return orjson


def _orjson_default(value: object) -> Any:
    if isinstance(value, float):  # SmallFloat
        return _orjson().Fragment(js_number(value).encode())
    raise TypeError


class _NeedsExactPath(Exception):
    """A float whose repr() layout differs from JS, or a lone surrogate: encode the slow way."""


def buffer_json(data: bytes | bytearray | memoryview) -> dict[str, Any]:
    """Node's Buffer.prototype.toJSON() shape."""
    return {"type": "Buffer", "data": list(bytes(data))}


def _key(key: object) -> str:
    # JS object keys are strings: JSON.stringify({1: x}) writes "1"
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool):
        return {None: "null", True: "true", False: "false"}[key]
    if isinstance(key, int):
        return str(key)
    if isinstance(key, float):
        return js_number(key)
    raise EncodeError(f"cannot encode a dict key of type {type(key).__name__}")


# What _plain does with a float below 1e-4, where encoders' layouts differ from JS.
_RAISE, _WRAP, _KEEP = "raise", "wrap", "keep"


def _plain(value: object, small: str = _RAISE) -> object:
    """Rewrite `value` into types an encoder writes exactly as JSON.stringify would.

    `small` floats: _RAISE for the stdlib encoder (its repr() layout is wrong), _WRAP in a
    SmallFloat for orjson (written through a Fragment), _KEEP for `_exact`.
    """
    if value is None or value is True or value is False or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        # integral values become the ints JS prints; integral floats from 1e21 keep repr()'s
        # '1e+21' layout, which is JS's too
        number = js_number_value(value)
        if isinstance(number, SmallFloat):
            if small == _RAISE:
                raise _NeedsExactPath  # repr() switches to '1e-05' where JS writes 0.00001
            if small == _KEEP:
                return value
        return number
    if isinstance(value, Mapping):
        return js_object({_key(k): _plain(v, small) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return [_plain(v, small) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return buffer_json(value)
    if isinstance(value, date):
        try:
            return iso_utc(to_instant(value))
        except OverflowError:  # an instant past year 9999 or before year 1, fine for JS
            return iso_from_ms(instant_ms(value))
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        return _plain(float(value), small) if value != value.to_integral_value() else int(value)
    raise EncodeError(f"cannot encode a value of type {type(value).__name__} as JSON for the cache")


def _string(text: str) -> str:
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif code < 0x20 or 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _exact(value: object) -> str:
    """The slow, always-exact encoder: every case handled as JSON.stringify does."""
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, float) and math.isfinite(value):
        return js_number(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{_string(k)}:{_exact(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_exact(v) for v in value) + "]"
    return _fast_encoder.encode(value)


def encode(value: object) -> bytes:
    """Encode `value` as the UTF-8 bytes JSON.stringify would produce for its JS counterpart.

    Raises:
        EncodeError: for types with no JSON form (sets, arbitrary objects, circular data).
    """
    try:
        fast = _orjson()
        if fast is not None:
            try:
                encoded: bytes = fast.dumps(_plain(value, _WRAP), default=_orjson_default)
                return encoded
            except TypeError:
                pass  # integers past 64 bits, lone surrogates: the paths below
        try:
            return _fast_encoder.encode(_plain(value)).encode("utf-8")
        except (_NeedsExactPath, UnicodeEncodeError):
            pass  # a small float or a lone surrogate: the exact path
    except RecursionError as exc:
        raise EncodeError("value is nested too deeply to encode") from exc
    except ValueError as exc:
        raise EncodeError(f"cannot encode value: {exc}") from exc
    return _exact(_plain(value, _KEEP)).encode("utf-8")


def encode_rows(rows: object) -> bytes:
    """Encode rows built by `_rows` (already in JSON shape) without re-walking them."""
    fast = _orjson()
    if fast is not None:
        try:
            encoded: bytes = fast.dumps(rows, default=_orjson_default)
            return encoded
        except TypeError:
            pass
    return encode(rows)


class TooDeep(ValueError):
    """JSON that JSON.parse accepts but that nests deeper than Python can decode."""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # JSON.parse refuses NaN and Infinity


def decode(raw: bytes) -> Any:
    """Decode a cached entry as JSON.parse does the string node-redis reads.

    Raises:
        TooDeep: valid JSON nested past Python's recursion limit.
        ValueError: anything JSON.parse rejects (including a BOM, NaN, Infinity).
    """
    fast = _orjson()
    if fast is not None and _TWENTY_DIGITS not in raw.translate(_DIGITS_TO_ZERO):
        try:
            return fast.loads(raw)
        except fast.JSONDecodeError:
            pass  # orjson refuses lone surrogates, invalid UTF-8 and deep nesting
    if raw.startswith(b"\xef\xbb\xbf"):
        raise ValueError("a BOM before JSON")  # json.loads skips it, JSON.parse does not
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        text = raw.decode(errors="replace")  # as Buffer.toString() hands it to JSON.parse
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError as exc:
        raise TooDeep("JSON nested too deeply for Python") from exc
