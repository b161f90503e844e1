"""Result rows as the Node library caches them: mysql2's type casting, then its row normalizer.

Values come out in their JSON shape (what a cache hit decodes to): dates as ISO strings,
binary as `{"type": "Buffer", "data": [...]}`, numbers as JS numbers would print.
"""

from __future__ import annotations

import functools
import json
import re
from calendar import monthrange
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import repeat
from operator import itemgetter
from typing import Any

from pymysql.constants import FIELD_TYPE

from .._errors import QueryError
from .json import buffer_json
from .jsvalue import (
    iso_from_ms,
    iso_utc,
    js_date,
    js_number_value,
    js_object,
    legacy_date,
    local_ms,
    local_zone,
    local_zone_name,
    utc_ms,
)

type Row = dict[str, Any]
"""A result row as cached: column name to a JSON value (str, int, float, bool, None, list
or dict). The values are `Any` so that `row["price"] * 2` type-checks without a narrowing
step; annotate with `JSONValue` where you want that strictness."""

_BINARY_CHARSET = 63
_MAX_SAFE_INT = 2**53
# The Node normalizer's /^-?\d+\.?\d*$/; JS \d is ASCII-only and $ does not match before "\n".
_NUMERIC = re.compile(r"-?[0-9]+\.?[0-9]*")
_NUMERIC_START = frozenset("-0123456789")
# What mysql2 refuses as a column name (helpers.js privateObjectProps).
_PRIVATE_PROPS = frozenset(
    {"__defineGetter__", "__defineSetter__", "__lookupGetter__", "__lookupSetter__", "__proto__"}
)
_FIXED_OFFSET = re.compile(r"[+-][0-9]{2}:[0-9]{2}")

Converter = Callable[[bytes], Any]
_INF = float("inf")
_HOUR_SPAN = timedelta(minutes=59, seconds=59, milliseconds=999)


@dataclass(slots=True)
class RawResult:
    """One statement's result: column definitions and undecoded rows, or an OK packet."""

    fields: list[Any]
    rows: list[tuple[bytes | None, ...]]
    affected_rows: int = 0
    insert_id: int = 0
    server_status: int = 0
    warning_count: int = 0
    message: str = ""


@dataclass(frozen=True, slots=True)
class CastOptions:
    """The mysql2 options that change how values are cast."""

    timezone: str = "local"
    date_strings: bool | tuple[str, ...] = False
    normalize_numbers: bool = True


def _int(value: int | bytes) -> int | float:
    """An integer column's value (the driver already parsed it) as a JS Number."""
    number = int(value)
    if -_MAX_SAFE_INT <= number <= _MAX_SAFE_INT:
        return number
    return js_number_value(float(number))  # mysql2 returns a lossy Number, as JS prints it


def _float(raw: bytes) -> int | float | None:
    value = _parsed_float(raw)
    if value != value or value in (_INF, -_INF):
        return None  # JSON.stringify writes null
    return js_number_value(value)


def _parsed_float(raw: bytes) -> float:
    # mysql2 accumulates short numbers digit by digit; for up to 15 digits that is exactly
    # float(), beyond it can differ in the last bit, so the same arithmetic is replayed.
    digits = len(raw) - raw.count(b".") - raw.count(b"-") - raw.count(b"+")
    if digits <= 15 or len(raw) > 17 or b"e" in raw or b"E" in raw:
        return float(raw)
    return _accumulated_float(raw.decode("ascii"))


def _accumulated_float(text: str) -> float:
    result, factor, past_dot = 0.0, 1.0, False
    body = text
    if body.startswith("-"):
        factor, body = -1.0, body[1:]
    body = body.removeprefix("+")
    for ch in body:
        if ch == ".":
            past_dot = True
            continue
        result = result * 10 + (ord(ch) - 48)
        if past_dot:
            factor *= 10
    return result / factor


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _decimal_number(raw: bytes) -> int | float:
    """A DECIMAL as the normalizer leaves it: its text always looks numeric."""
    return js_number_value(float(raw))


def _buffer(raw: bytes) -> dict[str, Any]:
    return buffer_json(raw)


def _date_at(timezone: str, year: int, month: int, day: int, *clock: int) -> datetime | None:
    """The instant mysql2 builds for a DATETIME under its `timezone` option (within the
    years Python holds; see `_iso_at` for the rest)."""
    if timezone == "local":
        return js_date(local_zone(), year, month, day, *clock)
    if timezone == "Z":
        return js_date(UTC, year, month, day, *clock)
    wall = js_date(UTC, year, month, day, *clock)
    return None if wall is None else wall - _option_offset(timezone)


def _iso_at(
    timezone: str, year: int, month: int, day: int, *clock: int, strict: bool = False
) -> str | None:
    """`_date_at` as the ISO text JSON.stringify writes (None for an Invalid Date), for
    every year a JS Date holds. `strict`: mysql2 parsed an ISO string, so the year is
    taken as it is (Date.UTC maps 0-99 to 19xx)."""
    if timezone == "local":
        try:
            instant = js_date(local_zone(), year, month, day, *clock)
        except OverflowError:  # its UTC instant is past year 9999 (or before year 1)
            return iso_from_ms(local_ms(year, month, day, *clock))
        return None if instant is None else iso_utc(instant)
    if strict and not (1 <= month <= 12 and 1 <= day <= 31):
        return None
    if not strict and 0 <= year <= 99:
        year += 1900
    offset = timedelta() if timezone == "Z" else _option_offset(timezone)
    return iso_from_ms(utc_ms(year, month, day, *clock) - offset // timedelta(milliseconds=1))


def _option_offset(timezone: str) -> timedelta:
    """The offset a '+HH:MM' / '-HH:MM' timezone option names."""
    if not _FIXED_OFFSET.fullmatch(timezone):
        raise QueryError(f"unsupported timezone option {timezone!r}: use 'local', 'Z' or '+HH:MM'")
    sign = -1 if timezone[0] == "-" else 1
    return sign * timedelta(hours=int(timezone[1:3]), minutes=int(timezone[4:6]))


def _make_date(options: CastOptions) -> Converter:
    def convert(raw: bytes) -> str | None:
        if len(raw) != 10:
            return None
        year, month, day = int(raw[0:4]), int(raw[5:7]), int(raw[8:10])
        if options.timezone not in ("local", "Z"):  # mysql2 parses an ISO string
            return _iso_at(options.timezone, year, month, day, strict=True)
        return _iso_at(options.timezone, year, month, day)

    return convert


_UTC_NAMES = frozenset(
    {"UTC", "Etc/UTC", "GMT", "Etc/GMT", "UCT", "Etc/UCT", "Universal", "Etc/Universal",
     "Zulu", "Etc/Zulu", "Etc/GMT0", "Etc/GMT+0", "Etc/GMT-0", "GMT0", "GMT+0", "GMT-0"}
)  # fmt: skip


def _fixed_offset(timezone: str) -> timedelta | None:
    """The wall-to-UTC offset when it never changes ('Z', '+HH:MM', a UTC local zone)."""
    if timezone == "Z" or (timezone == "local" and local_zone_name() in _UTC_NAMES):
        return timedelta()
    if timezone == "local":
        return None
    return _option_offset(timezone)


def _make_datetime(options: CastOptions) -> Converter:
    # Per wall-clock hour ('YYYY-MM-DD HH'): None when every time in it needs the full
    # path (zero or overflowing dates, years below 100, a DST transition), else its UTC
    # offset. Rows of one result mostly share hours, so most values cost a dict lookup.
    hours: dict[bytes, timedelta | None] = {}
    fixed = _fixed_offset(options.timezone)

    def hour_offset(raw: bytes) -> timedelta | None:
        year, month, day, hour = int(raw[0:4]), int(raw[5:7]), int(raw[8:10]), int(raw[11:13])
        if year < 100 or not (1 <= month <= 12 and 1 <= day <= monthrange(year, month)[1]):
            return None
        if fixed is not None:
            return fixed
        try:
            start = _date_at(options.timezone, year, month, day, hour, 0, 0, 0)
            end = _date_at(options.timezone, year, month, day, hour, 59, 59, 999)
        except OverflowError:  # its instant is past year 9999: the full path copes
            return None
        if start is None or end is None or end - start != _HOUR_SPAN:
            return None
        return datetime(year, month, day, hour, tzinfo=UTC) - start

    def convert(raw: bytes) -> str | None:
        if len(raw) < 19:
            return None
        key = raw[:13]
        if key in hours:
            offset = hours[key]
        else:
            offset = hours[key] = hour_offset(raw)
        millis = (raw[20:23] + b"00")[:3] if len(raw) > 20 else b"000"
        if offset is not None:
            if not offset:
                return (raw[:10] + b"T" + raw[11:19] + b"." + millis + b"Z").decode()
            try:
                utc = datetime(
                    int(raw[0:4]), int(raw[5:7]), int(raw[8:10]),
                    int(raw[11:13]), int(raw[14:16]), int(raw[17:19]),
                ) - offset  # fmt: skip
            except OverflowError:  # past 9999-12-31 in UTC: JS writes +010000
                return _full(raw, millis)
            return (
                f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:"
                f"{utc.minute:02d}:{utc.second:02d}.{millis.decode()}Z"
            )
        return _full(raw, millis)

    def _full(raw: bytes, millis: bytes) -> str | None:
        year, month, day = int(raw[0:4]), int(raw[5:7]), int(raw[8:10])
        if month == 0 or day == 0 or month > 12 or day > 31:
            return None  # a zero date: mysql2 makes an Invalid Date, which JSON writes as null
        if year < 100:
            # mysql2 hands these to V8's legacy Date-from-string parser
            legacy = legacy_date(year, month, day)
            if legacy is None:
                return None
            year, month, day = legacy
        clock = (int(raw[11:13]), int(raw[14:16]), int(raw[17:19]), int(millis))
        return _iso_at(options.timezone, year, month, day, *clock)

    return convert


def _ordered_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object with JS property order: array-index keys first, ascending."""
    return js_object(dict(pairs))


def _json_float(text: str) -> int | float | None:
    value = float(text)  # JSON.parse rounds correctly, like float()
    return None if value in (float("inf"), float("-inf")) else js_number_value(value)


def _parse_json(text: str) -> Any:
    return json.loads(
        text,
        parse_int=lambda s: _int(int(s)),
        parse_float=_json_float,
        parse_constant=lambda s: None,
        object_pairs_hook=_ordered_pairs,
    )


def _json_column(raw: bytes) -> Any:
    return _parse_json(raw.decode("utf-8", "replace"))


def _binary_json_column(raw: bytes) -> Any:
    """JSON in a binary-charset column (e.g. JSON_OBJECT over a BLOB): mysql2 reads the
    text with the column's encoding, 'binary', which is latin1."""
    return _parse_json(raw.decode("latin-1"))


def _unsupported(type_name: str) -> Converter:
    def convert(raw: bytes) -> Any:
        raise QueryError(f"column type {type_name} is not supported by the cache")

    return convert


def _wants_string(type_name: str, date_strings: bool | tuple[str, ...]) -> bool:
    if isinstance(date_strings, bool):
        return date_strings
    return type_name in date_strings


# Converters that can return numeric-looking strings: the normalizer skips other columns
# (numbers, buffers, ISO dates).
_MAY_LOOK_NUMERIC: frozenset[Converter] = frozenset({_text, _json_column, _binary_json_column})


def converter_for(field: Any, options: CastOptions) -> Converter:
    """The function that casts one column's raw bytes as mysql2 would."""
    code = field.type_code
    if getattr(field, "ext_format", None) == "json" or code == FIELD_TYPE.JSON:
        return _binary_json_column if field.charsetnr == _BINARY_CHARSET else _json_column
    if code in (FIELD_TYPE.TINY, FIELD_TYPE.SHORT, FIELD_TYPE.LONG, FIELD_TYPE.INT24,
                FIELD_TYPE.YEAR, FIELD_TYPE.LONGLONG):  # fmt: skip
        return _int
    if code in (FIELD_TYPE.FLOAT, FIELD_TYPE.DOUBLE):
        return _float
    if code in (FIELD_TYPE.DECIMAL, FIELD_TYPE.NEWDECIMAL):
        return _decimal_number if options.normalize_numbers else _text
    if code == FIELD_TYPE.TIME:
        return _text
    if code == FIELD_TYPE.DATE:
        return _text if _wants_string("DATE", options.date_strings) else _make_date(options)
    if code in (FIELD_TYPE.DATETIME, FIELD_TYPE.TIMESTAMP):
        name = "DATETIME" if code == FIELD_TYPE.DATETIME else "TIMESTAMP"
        return _text if _wants_string(name, options.date_strings) else _make_datetime(options)
    if code == FIELD_TYPE.GEOMETRY:
        return _unsupported("GEOMETRY")
    if field.charsetnr == _BINARY_CHARSET:
        return _buffer
    return _text


def _normalized(value: Any) -> Any:
    """The Node library's _normalizeRow for one value: numeric-looking strings become numbers."""
    if (
        value.__class__ is str
        and value[:1] in _NUMERIC_START  # cheap test before the regex
        and _NUMERIC.fullmatch(value)
    ):
        number = float(value)
        if number not in (float("inf"), float("-inf")):
            return js_number_value(number)
    return value


# -- whole columns --------------------------------------------------------------------
# The same results as the converters above, from list operations that run in C: a
# 10k-row miss otherwise spends most of its time in per-value Python calls. Each
# returns None when some value needs the per-value path, and raises TypeError on a NULL.

Bulk = Callable[[Sequence[Any]], Sequence[Any] | None]
_DAY = itemgetter(slice(0, 10))
_ISO_TAILS = {10: b"T00:00:00.000Z", 19: b".000Z", 23: b"Z"}  # DATE, DATETIME, DATETIME(3)
_NUMERIC_AFTER_NUL = re.compile(rb"\x00[-0-9]")


def _ints_bulk(column: Sequence[int]) -> Sequence[int] | None:
    if -_MAX_SAFE_INT <= min(column) and max(column) <= _MAX_SAFE_INT:
        return column
    return None


def _js_numbers(values: list[float]) -> list[int | float] | None:
    """js_number_value over a column of floats."""
    magnitudes = list(map(abs, values))
    total = sum(magnitudes)
    if total != total or max(magnitudes) >= _MAX_SAFE_INT:  # NaN, or beyond exact ints
        return None
    if min(magnitudes) < 1e-4 and any(0 < m < 1e-4 for m in magnitudes):
        return None  # SmallFloat values
    integral = list(map(float.is_integer, values))
    if not any(integral):
        return values
    return [int(v) if whole else v for v, whole in zip(values, integral, strict=True)]


def _doubles_bulk(column: Sequence[bytes]) -> list[int | float] | None:
    values = list(map(float, column))
    lengths = list(map(len, column))
    if 16 in lengths or 17 in lengths:  # 16 or 17 digits: mysql2's own arithmetic
        for i, length in enumerate(lengths):
            if length in (16, 17):
                values[i] = _parsed_float(column[i])
    return _js_numbers(values)


def _decimals_bulk(column: Sequence[bytes]) -> list[int | float] | None:
    return _js_numbers(list(map(float, column)))


def _texts_bulk(column: Sequence[bytes], normalize: bool) -> list[Any] | None:
    joined = b"\x00".join(column)
    if joined.count(b"\x00") != len(column) - 1:
        return None  # a value holds NUL itself
    texts: list[Any] = joined.decode("utf-8", "replace").split("\x00")
    if len(texts) != len(column):  # pragma: no cover - a replacement never eats a NUL
        return None
    if normalize and _NUMERIC_AFTER_NUL.search(b"\x00" + joined):
        return [_normalized(text) for text in texts]
    return texts


def _iso_bulk(column: Sequence[bytes]) -> list[str] | None:
    """DATE / DATETIME text as ISO instants, when wall time is UTC (offset zero)."""
    lengths = set(map(len, column))
    tail = _ISO_TAILS.get(lengths.pop()) if len(lengths) == 1 else None
    if tail is None or not all(map(_plain_day, set(map(_DAY, column)))):
        return None
    iso = (tail + b"\x00").join(column) + tail
    return iso.replace(b" ", b"T").decode("ascii").split("\x00")


def _plain_day(day: bytes) -> bool:
    """A real calendar day from year 100 on: one the per-value path keeps as it is."""
    year, month, dom = int(day[0:4]), int(day[5:7]), int(day[8:10])
    return year >= 100 and 1 <= month <= 12 and 1 <= dom <= monthrange(year, month)[1]


def _bulk_for(convert: Converter, code: int, options: CastOptions) -> Bulk | None:
    if convert is _int:
        return _ints_bulk
    if convert is _float:
        return _doubles_bulk
    if convert is _decimal_number:
        return _decimals_bulk
    if convert is _text:
        return functools.partial(_texts_bulk, normalize=options.normalize_numbers)
    dated = code in (FIELD_TYPE.DATE, FIELD_TYPE.DATETIME, FIELD_TYPE.TIMESTAMP)
    if dated and _fixed_offset(options.timezone) == timedelta():
        return _iso_bulk
    return None


def _column_order(names: Sequence[str]) -> list[str]:
    unique = list(dict.fromkeys(names))
    return list(_ordered_pairs([(n, None) for n in unique]))


def _cast_column(
    column: Sequence[Any], convert: Converter, bulk: Bulk | None, normalize: bool
) -> Sequence[Any]:
    if bulk is not None:
        cast = _bulk_cast(column, bulk)
        if cast is not None:
            return cast
    if normalize:
        return [None if raw is None else _normalized(convert(raw)) for raw in column]
    return [None if raw is None else convert(raw) for raw in column]


def _bulk_cast(column: Sequence[Any], bulk: Bulk) -> Sequence[Any] | None:
    """`bulk` over the column, NULLs kept in place; None when it must be cast one by one."""
    try:
        return bulk(column)
    except TypeError:  # a NULL (None) among the values
        pass
    present = [raw for raw in column if raw is not None]
    if len(present) == len(column):
        return None
    if not present:
        return list(column)
    try:
        cast = bulk(present)
    except TypeError:
        return None
    if cast is None:
        return None
    values = iter(cast)
    return [None if raw is None else next(values) for raw in column]


def rows_from(result: RawResult, options: CastOptions) -> list[dict[str, Any]]:
    """Cast every row of a result set into the value Node would cache for it.

    Raises:
        QueryError: a column named like an object's private property, which mysql2
            refuses (its rows would not be plain objects).
    """
    names = [field.name for field in result.fields]
    for name in names:
        if name in _PRIVATE_PROPS:
            raise QueryError(
                f"The field name ({name}) can't be the same as an object's private property."
            )
    if not result.rows:
        return []
    normalize = options.normalize_numbers
    columns = []
    for field, column in zip(result.fields, zip(*result.rows, strict=True), strict=True):
        convert = converter_for(field, options)
        bulk = _bulk_for(convert, field.type_code, options)
        columns.append(
            _cast_column(column, convert, bulk, normalize and convert in _MAY_LOOK_NUMERIC)
        )
    order = _column_order(names)
    if order == names:  # map() over zip(): a third faster than a comprehension here
        return list(map(dict, map(zip, repeat(names), zip(*columns, strict=True))))
    # duplicate names keep the first position and the last value; index-like names go first
    rows = []
    for values in zip(*columns, strict=True):
        row = dict(zip(names, values, strict=True))
        rows.append({name: row[name] for name in order})
    return rows


def ok_packet(result: RawResult) -> dict[str, Any]:
    """mysql2's ResultSetHeader for a statement that returns no rows."""
    info = result.message
    match = re.search(r"Changed: (\d+)", info)
    return {
        "fieldCount": 0,
        "affectedRows": result.affected_rows,
        "insertId": _int(result.insert_id),
        "info": info,
        "serverStatus": result.server_status,
        "warningStatus": result.warning_count,
        "changedRows": int(match.group(1)) if match else 0,
    }


def shape(results: Sequence[RawResult], options: CastOptions) -> Any:
    """What Node's queryToPromise caches for a query's results."""
    shaped = [rows_from(r, options) if r.fields else ok_packet(r) for r in results]
    return shaped[0] if len(shaped) == 1 else shaped
