"""JSON encoding byte-identical to JavaScript's JSON.stringify, and decoding of cached entries."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from ._errors import EncodeError
from ._jsvalue import iso_utc, js_number, to_instant

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


def _plain(value: object, exact: bool = False) -> object:
    """Rewrite `value` into types the stdlib encoder writes exactly as JSON.stringify would.

    With `exact`, non-integral floats are kept for `_exact` to format instead of raising.
    """
    if value is None or value is True or value is False or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value == int(value):
            if abs(value) < 1e21:
                return int(value)
            return value  # repr() of these is '1e+21'-style, as in JS
        if abs(value) < 1e-4 and not exact:
            raise _NeedsExactPath  # repr() switches to '1e-05' where JS writes 0.00001
        return value
    if isinstance(value, Mapping):
        return {_key(k): _plain(v, exact) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, exact) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return buffer_json(value)
    if isinstance(value, date):
        return iso_utc(to_instant(value))
    if isinstance(value, Decimal):
        if not value.is_finite():
            return None
        return _plain(float(value), exact) if value != value.to_integral_value() else int(value)
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
        text = _fast_encoder.encode(_plain(value))
        return text.encode("utf-8")
    except _NeedsExactPath:
        pass
    except UnicodeEncodeError:
        pass  # a lone surrogate: JS escapes it
    except RecursionError as exc:
        raise EncodeError("value is nested too deeply to encode") from exc
    except ValueError as exc:
        raise EncodeError(f"cannot encode value: {exc}") from exc
    return _exact(_plain(value, exact=True)).encode("utf-8")


def decode(raw: bytes | str) -> Any:
    """Decode a cached entry; raises ValueError when it is not JSON."""
    return json.loads(raw)
