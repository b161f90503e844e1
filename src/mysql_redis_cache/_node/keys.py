"""Cache keys in the Node library's format: `Name=String(value)_..._<sha1(query)>`."""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence

from .._errors import InvalidArgumentError, InvalidParamError
from .jsvalue import int_text, js_string, too_deep, utf8


@functools.lru_cache(maxsize=4096)
def query_hash(query: str) -> str:
    """Hex SHA-1 of the query text as Node hashes it (UTF-8); services reuse few queries."""
    return hashlib.sha1(utf8(query)).hexdigest()


def check_params(params: object) -> None:
    """Refuse params that are not a list (or another sequence) of values.

    Raises:
        InvalidParamError: a dict (`%(name)s` habit), a string, or a single value.
    """
    if params is None or type(params) is list or type(params) is tuple:
        return
    if isinstance(params, Mapping):
        raise InvalidParamError(
            "params must be a list, not a dict: write ? for each value and pass the values "
            "in order, with param_names naming them"
        )
    if isinstance(params, str | bytes | bytearray) or not isinstance(params, Sequence):
        raise InvalidParamError(
            f"params must be a list of values, got {type(params).__name__} {params!r:.40}"
        )


def refuse_non_finite(params: Sequence[object]) -> None:
    """Refuse NaN and Infinity params for SQL: mysql2 writes them as bare words, which
    MySQL reads as column names.

    Raises:
        InvalidParamError: a NaN or infinite float, at any depth of lists.
    """
    for value in params:
        if type(value) is float and not math.isfinite(value):
            raise InvalidParamError(f"{value!r} has no SQL form (mysql2 would send {value})")
        if isinstance(value, list | tuple):
            refuse_non_finite(value)


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


MAX_KEY_CHARS = 16 * 1024  # longer keys (huge params) bypass the cache

# Keys already built for int and str params (most calls repeat a few), cleared when full.
# Only those types: 1 == True == 1.0 as dict keys, but their keys differ.
_BUILT: dict[tuple[str, tuple[object, ...], tuple[str, ...]], tuple[str, bool]] = {}
_BUILT_MAX = 4096


def build_checked_key(
    query: str, params: Sequence[object] | None, names: Sequence[str]
) -> tuple[str, bool]:
    """The key Node builds, and whether no other params for the same names could build it.

    Node's key shows only String(value): an object is `[object Object]` whatever it
    holds, and a value containing `_Other=` can shift where the next param seems to start.
    Names past the params read as `undefined`, as in Node.
    """
    try:
        if (type(names) is not list and type(names) is not tuple) or (names and not params):
            _check_name_list(names)  # before `seen`, where "A" would pass as ("A",)
        if not params:
            return query_hash(query), True
        for value in params:
            kind = type(value)
            if kind is not str and kind is not int:
                return _build(query, params, names)
        seen = (query, tuple(params), tuple(names))
        try:
            built = _BUILT.get(seen)
        except TypeError:  # an unhashable name, refused there
            return _build(query, params, names)
        if built is None:
            built = _build(query, params, names)
            if len(_BUILT) >= _BUILT_MAX:
                _BUILT.clear()
            _BUILT[seen] = built
        return built
    except RecursionError as exc:
        raise too_deep(exc) from exc


def build_checked_keys(
    text_of: Callable[[Sequence[object] | None], str],
    params_list: Sequence[Sequence[object] | None],
    names: Sequence[str],
) -> list[tuple[str, str, bool]]:
    """(text, key, unambiguous) for each params of a batch: the text is `text_of(params)`
    and the rest what `build_checked_key(text, params, names)` gives.

    The fast path takes what nearly every batch holds, one int or `_`-less string per name
    (ids and codes): their text is asked of `text_of` once, for the first of them (which
    may not treat them differently: the batch's query checks and rewrites them all alike),
    its hash taken once, and the names checked once. Other params go the single way.
    """
    try:
        _check_name_list(names)
        count = len(names)
        plain = count > 0 and all(type(name) is str for name in names)
        prefix = f"{names[0]}=" if plain and count == 1 else ""
        prefixes = [f"{name}=" for name in names] if plain else []
        text = hashed = ""
        built = []
        for params in params_list:
            if plain and (type(params) is list or type(params) is tuple) and len(params) == count:
                for value in params:
                    kind = type(value)
                    if kind is not int and (kind is not str or "_" in value):
                        break
                else:
                    if not hashed:
                        text = text_of(params)
                        hashed = query_hash(text)
                    try:
                        if count == 1:
                            key = f"{prefix}{params[0]}_{hashed}"
                        else:
                            key = "".join(
                                [f"{p}{v}_" for p, v in zip(prefixes, params, strict=True)]
                            )
                            key += hashed
                    except ValueError:  # an int past 4300 digits: the single way writes it
                        pass
                    else:
                        built.append((text, key, len(key) <= MAX_KEY_CHARS))
                        continue
            own = text_of(params)
            built.append((own, *build_checked_key(own, params, names)))
        return built
    except RecursionError as exc:
        raise too_deep(exc) from exc


def _check_name_list(names: Sequence[str]) -> None:
    if isinstance(names, str | bytes):
        raise InvalidArgumentError(
            f"param_names must be a list of names, not a string: write [{names!r}]"
        )
    if isinstance(names, Mapping) or not isinstance(names, Sequence):
        raise InvalidArgumentError(
            f"param_names must be a list of names, got {type(names).__name__}"
        )
    for name in names:
        if not isinstance(name, str):
            # Node would key String(name), but drop_outdated_cache takes str names only
            raise InvalidArgumentError(
                f"param name {name!r} is a {type(name).__name__}: param names must be strings"
            )
        if "=" in name:
            raise InvalidArgumentError(
                f"param name {name!r} contains '=': no invalidation could ever find its entries"
            )


def _build(query: str, params: Sequence[object], names: Sequence[str]) -> tuple[str, bool]:
    _check_name_list(names)
    count = len(params)
    if count > len(names):
        check_names(params, names)  # raises
    parts = []
    unambiguous = True
    for i, name in enumerate(names):
        if type(name) is not str:  # a str subclass: its own text, whatever its __str__
            name = str.__str__(name)
        if i >= count:
            parts.append(f"{name}=undefined_")
            continue
        value = params[i]
        kind = type(value)
        # str and int first: they are nearly every param, and an int is never ambiguous
        if kind is int:
            try:
                parts.append(f"{name}={value}_")
            except ValueError:  # past 4300 digits, str() refuses
                parts.append(f"{name}={int_text(value)}_")  # type: ignore[arg-type]
            continue
        text = value if isinstance(value, str) and kind is str else js_string(value)
        parts.append(f"{name}={text}_")
        if unambiguous and (
            ("_" in text and _shifts_a_name(text, names))
            or (kind is not str and _hides_an_object(value))
        ):
            unambiguous = False
    parts.append(query_hash(query))
    key = "".join(parts)
    # a key this long would cost Redis memory on every entry and every scan: no caching
    return key, unambiguous and len(key) <= MAX_KEY_CHARS


def _hides_an_object(value: object) -> bool:
    """Whether String(value) shows `[object Object]` for what may be any object."""
    return isinstance(value, Mapping) or (
        isinstance(value, list | tuple) and any(isinstance(v, Mapping) for v in value)
    )


def _shifts_a_name(text: str, names: Sequence[str]) -> bool:
    """Whether `text` holds `_<name>=` for one of the key's names."""
    return any(f"_{js_string(name)}=" in text for name in names)


def build_key(query: str, params: Sequence[object] | None, names: Sequence[str]) -> str:
    """The key Node's getKeyFromQuery(query, params, names) returns."""
    return build_checked_key(query, params, names)[0]
