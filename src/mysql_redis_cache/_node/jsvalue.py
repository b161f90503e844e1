"""JavaScript value semantics the cache format depends on: String(), Number formatting, Date."""

from __future__ import annotations

import functools
import json
import math
import os
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .._errors import InvalidParamError

_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# ECMAScript time values stop at ±8.64e15 ms from the epoch.
_MAX_TIME_MS = 8_640_000_000_000_000


def js_number(value: float) -> str:
    """Format a float as JavaScript's Number.prototype.toString() does."""
    if value != value:
        return "NaN"
    if value == 0:
        return "0"  # also -0: String(-0) is "0"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value < 0:
        return "-" + js_number(-value)
    # repr() gives the shortest digits that round-trip, as JS does; only the layout differs.
    mantissa, _, exp_text = repr(value).partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    all_digits = int_part + frac_part
    significant = all_digits.lstrip("0")
    # value == 0.<digits> * 10**n
    n = len(int_part) + (int(exp_text) if exp_text else 0) - (len(all_digits) - len(significant))
    digits = significant.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + digits
    exponent = n - 1
    sign = "+" if exponent >= 0 else "-"
    head = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{head}e{sign}{abs(exponent)}"


class SmallFloat(float):
    """A float below 1e-4 in magnitude, where JS writes `0.00001` and fast encoders `1e-5`.

    Still a float for every other purpose; the encoder writes it through `js_number`.
    """

    __slots__ = ()


def js_number_value(value: float) -> int | float:
    """The Python value JSON.parse(JSON.stringify(value)) gives back, as `json.loads` reads it."""
    if not math.isfinite(value):
        raise ValueError("non-finite numbers have no JSON form")
    if value == int(value) and abs(value) < 1e21:
        # below 2**53 the integer is exact; above, JS prints the shortest digits + zeros
        return int(value) if abs(value) < 9007199254740992.0 else int(js_number(value))
    if abs(value) < 1e-4:
        return SmallFloat(value)
    return value


def too_deep(exc: RecursionError) -> InvalidParamError:
    """What a param nested past Python's recursion limit raises (from `exc`)."""
    error = InvalidParamError("a param is nested too deeply to format or key")
    error.__cause__ = exc
    return error


_CHUNK_DIGITS = 4000  # under CPython's limit on int-to-str conversion (4300 digits)


def int_text(value: int) -> str:
    """The decimal digits of `value`, as JavaScript's String() of a BigInt writes them,
    however many (str() refuses past 4300 digits, a guard against slow conversions)."""
    try:
        return int.__repr__(value)  # an int subclass's own __str__ is no concern of JS
    except ValueError:
        pass
    sign, rest = ("-", -value) if value < 0 else ("", value)
    chunks = []
    base = 10**_CHUNK_DIGITS
    while rest:
        rest, chunk = divmod(rest, base)
        chunks.append(chunk)
    head, *tail = reversed(chunks)
    return sign + str(head) + "".join(str(chunk).zfill(_CHUNK_DIGITS) for chunk in tail)


def js_string(value: object) -> str:
    """Convert a query parameter as JavaScript's String(value) does for the Node key."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value if type(value) is str else str.__str__(value)  # never its own __str__
    if isinstance(value, int):
        return int_text(value)
    if isinstance(value, float):
        return js_number(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, list | tuple):
        return ",".join("" if item is None else js_string(item) for item in value)
    if isinstance(value, Mapping):
        return "[object Object]"
    if isinstance(value, date):
        try:
            return date_to_string(to_instant(value))
        except OverflowError:  # an instant in year 0 or 10000: fine for a JS Date
            return far_date_to_string(instant_ms(value))
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidParamError(f"non-finite Decimal {value!r} has no SQL form")
        return format(value, "f")
    raise InvalidParamError(
        f"unsupported query parameter type {type(value).__name__}: use None, bool, int, float, "
        "str, bytes, Decimal, date, datetime, or a list, tuple or dict of them"
    )


@functools.cache
def _zone_names() -> dict[str, list[str]]:
    text = resources.files(__package__).joinpath("tznames.json").read_text("utf-8")
    names: dict[str, list[str]] = json.loads(text)
    return names


def local_zone_name() -> str:
    """The IANA name of this process's local time zone, as Node would see it."""
    return _zone_name_for(os.environ.get("TZ"))


@functools.cache
def _zone_name_for(tz_variable: str | None) -> str:
    # cached per value of TZ: resolving /etc/localtime costs more than a row conversion
    tz = (tz_variable or "").lstrip(":")
    if tz:
        return tz
    try:
        target = Path("/etc/localtime").resolve(strict=True)
        parts = target.parts
        if "zoneinfo" in parts:
            return "/".join(parts[parts.index("zoneinfo") + 1 :])
    except OSError:
        pass
    return "UTC"


@functools.cache
def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def local_zone() -> tzinfo:
    """The process's local zone as a tzinfo (UTC when it cannot be resolved, as in Node)."""
    return _zone(local_zone_name())


def to_instant(value: date) -> datetime:
    """The instant a JS Date built from `value` holds: naive values are local wall time."""
    if isinstance(value, datetime):
        if value.tzinfo is not None and value.utcoffset() is not None:
            return value.astimezone(UTC)
        return value.replace(tzinfo=local_zone()).astimezone(UTC)
    return datetime.combine(value, time(), local_zone()).astimezone(UTC)


def _offset_text(offset: timedelta, colon: bool) -> str:
    # V8 truncates toward zero: local mean time -4:56:02 prints as -0456
    minutes = int(offset.total_seconds() / 60)
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}{':' if colon else ''}{mins:02d}"


def date_to_string(instant: datetime) -> str:
    """JS Date.prototype.toString() in the local zone, e.g. 'Mon Jan 01 2024 ... (Central ...)'."""
    zone_name = local_zone_name()
    local = instant.astimezone(_zone(zone_name))
    offset = local.utcoffset() or timedelta()
    utc = instant.astimezone(UTC)
    fields = (utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second)
    return _date_text(
        local.weekday(), local.year, local.month, local.day,
        (local.hour, local.minute, local.second), offset, zone_name, fields,
    )  # fmt: skip


def far_date_to_string(ms: int) -> str:
    """`date_to_string` for an instant, given as epoch milliseconds, in a year Python's
    datetime cannot hold (0, or 10000)."""
    zone_name = local_zone_name()
    offset = local_offset(ms)
    days, rest = divmod(ms + offset // timedelta(milliseconds=1), 86_400_000)
    year, month, day = civil_from_days(days)
    clock = (rest // 3_600_000, rest // 60_000 % 60, rest // 1000 % 60)
    utc_days, utc_rest = divmod(ms, 86_400_000)
    fields = (*civil_from_days(utc_days), utc_rest // 3_600_000, utc_rest // 60_000 % 60, 0)
    return _date_text((days + 3) % 7, year, month, day, clock, offset, zone_name, fields)


def local_offset(ms: int) -> timedelta:
    """The local zone's UTC offset at the instant `ms`; outside Python's years, the one at
    the nearest instant it can hold (the zone's first offset before year 1, which is
    where V8 finds it too; its rule for the season at the end of 9999)."""
    low, high = datetime(1, 1, 1, 14, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC)
    edge = low if ms < instant_ms(low) else high if ms > instant_ms(high) else None
    instant = edge if edge is not None else datetime.fromtimestamp(ms / 1000, UTC)
    return instant.astimezone(local_zone()).utcoffset() or timedelta()


def _date_text(
    weekday: int,
    year: int,
    month: int,
    day: int,
    clock: tuple[int, int, int],
    offset: timedelta,
    zone_name: str,
    utc: tuple[int, int, int, int, int, int],
) -> str:
    """toString()'s text for a local wall time (`weekday` 0 is Monday) and its offset;
    `utc` holds the instant's UTC fields, for the zone's name."""
    names = _zone_names().get(zone_name)
    if names is None:
        long_name = "GMT" + (_offset_text(offset, True) if offset else "")
    else:
        long_name = names[1] if _labelled_dst(utc, zone_name) else names[0]
    hour, minute, second = clock
    return (
        f"{_WEEKDAYS[weekday]} {_MONTHS[month - 1]} {day:02d} {year:04d} "
        f"{hour:02d}:{minute:02d}:{second:02d} GMT{_offset_text(offset, False)} ({long_name})"
    )


_V8_TIME_RANGE = (datetime(1970, 1, 1, tzinfo=UTC), datetime(2038, 1, 19, 3, 14, 7, tzinfo=UTC))


def _labelled_dst(utc: tuple[int, int, int, int, int, int], zone_name: str) -> bool:
    """Whether V8 names the zone's daylight time for the instant with these UTC fields.

    Outside 1970-2038 V8 takes the name (not the offset) at an equivalent instant: the
    same UTC month, day and time in a year of 2008-2035 that starts on the same weekday
    and has the same length. So history (no DST in 1902, war time in 1944) is ignored.
    """
    start, end = _V8_TIME_RANGE
    year, month, day, hour, minute, second = utc
    if start.year <= year <= end.year:
        instant = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
        if start <= instant <= end:
            return bool(instant.astimezone(_zone(zone_name)).dst())
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    weekday = (days_from_civil(year, 1, 1) + 4) % 7  # 0 = Sunday, as V8 counts
    recent = (1956 if leap else 1967) + (weekday * 12) % 28
    equivalent_year = 2008 + (recent + 3 * 28 - 2008) % 28
    day = min(day, 28 if month == 2 and not leap else 31)
    try:
        equivalent = datetime(equivalent_year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        equivalent = datetime(equivalent_year, month, 30, hour, minute, second, tzinfo=UTC)
    return bool(equivalent.astimezone(_zone(zone_name)).dst())


def iso_utc(instant: datetime) -> str:
    """JS Date.prototype.toISOString(): UTC with milliseconds and 'Z'."""
    utc = instant.astimezone(UTC)
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:"
        f"{utc.second:02d}.{utc.microsecond // 1000:03d}Z"
    )


# Epoch-millisecond arithmetic, as ECMAScript does it, for years Python's datetime cannot
# hold (0 and below, 10000 and above) but a JS Date can.


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a proleptic Gregorian date, for any year."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def civil_from_days(days: int) -> tuple[int, int, int]:
    """The (year, month, day) `days` after 1970-01-01, for any year."""
    days += 719468
    era = days // 146097
    day_of_era = days - era * 146097
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36524 - day_of_era // 146096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    mp = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * mp + 2) // 5 + 1
    month = mp + (3 if mp < 10 else -9)
    return year_of_era + era * 400 + (month <= 2), month, day


def utc_ms(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, ms: int = 0
) -> int:
    """Date.UTC's arithmetic (months and days roll over) without its two-digit-year rule."""
    years, month_index = divmod(month - 1, 12)
    days = days_from_civil(year + years, month_index + 1, 1) + day - 1
    return ((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + ms


def iso_from_ms(ms: int) -> str | None:
    """toISOString() of a time value; None where JS has an Invalid Date."""
    if abs(ms) > _MAX_TIME_MS:
        return None
    days, rest = divmod(ms, 86_400_000)
    year, month, day = civil_from_days(days)
    hour, rest = divmod(rest, 3_600_000)
    minute, rest = divmod(rest, 60_000)
    second, millis = divmod(rest, 1000)
    # toISOString writes years outside 0-9999 as a sign and six digits
    year_text = f"{year:04d}" if 0 <= year <= 9999 else f"{year:+07d}"
    return f"{year_text}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{millis:03d}Z"


def instant_ms(value: date) -> int:
    """The time value a JS Date built from `value` holds (naive values are local wall time),
    also for wall times whose UTC instant Python cannot hold."""
    wall = value if isinstance(value, datetime) else datetime.combine(value, time())
    if wall.tzinfo is None or wall.utcoffset() is None:
        wall = wall.replace(tzinfo=local_zone())
    offset = wall.utcoffset() or timedelta()
    naive = utc_ms(wall.year, wall.month, wall.day, wall.hour, wall.minute, wall.second)
    return naive + wall.microsecond // 1000 - offset // timedelta(milliseconds=1)


def local_ms(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, ms: int = 0
) -> int:
    """`new Date(year, month - 1, ...)`'s time value for a local wall time whose instant
    Python cannot hold (the wall time itself must be within years 1-9999)."""
    if 0 <= year <= 99:
        year += 1900
    # the wall time with months and days rolled over as JS does, then as instant_ms reads it
    days, rest = divmod(utc_ms(year, month, day, hour, minute, second, ms), 86_400_000)
    return instant_ms(datetime(*civil_from_days(days)) + timedelta(milliseconds=rest))


def js_object(pairs: dict[str, Any]) -> dict[str, Any]:
    """`pairs` in a JS object's property order: array-index keys ('0', '1', ... below
    2**32 - 1) first, ascending, then the others as inserted."""
    indexes = [k for k in pairs if k[:1].isdigit() and _ARRAY_INDEX.fullmatch(k)]
    indexes = [k for k in indexes if len(k) <= 10 and int(k) < 2**32 - 1]
    if not indexes:
        return pairs
    ordered = {k: pairs[k] for k in sorted(indexes, key=int)}
    ordered.update((k, v) for k, v in pairs.items() if k not in ordered)
    return ordered


def legacy_date(year: int, month: int, day: int) -> tuple[int, int, int] | None:
    """The date V8's legacy parser reads from 'YYYY-MM-DD ...' when YYYY is below 100
    (what mysql2 hands it for such DATETIMEs), or None where it gives an Invalid Date.

    The three numbers are read as month/day/year when the first could be a month, as a
    two-digit year otherwise (00-49: 20xx, 50-99: 19xx); 13-31 is neither.
    """
    if 1 <= year <= 12:
        return 2000 + day, year, month
    if 13 <= year <= 31:
        return None
    return (2000 if year < 50 else 1900) + year, month, day


def js_date(
    zone: tzinfo,
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    ms: int = 0,
) -> datetime | None:
    """`new Date(year, month - 1, day, ...)` (or `Date.UTC(...)` with UTC) as wall time in
    `zone`, with JS's overflow rules: years 0-99 are 19xx, month 0 and day 0 roll back.

    Returns None where JS would make an Invalid Date (outside the time-value range).
    """
    if 0 <= year <= 99:
        year += 1900  # the Date constructor maps two-digit years to 19xx
    month_index = year * 12 + (month - 1)
    y, m = divmod(month_index, 12)
    if not 1 <= y <= 9999:
        return None
    wall = datetime(y, m + 1, 1) + timedelta(
        days=day - 1, hours=hour, minutes=minute, seconds=second, milliseconds=ms
    )
    instant = wall.replace(tzinfo=zone).astimezone(UTC)
    if abs((instant - _EPOCH) // timedelta(milliseconds=1)) > _MAX_TIME_MS:
        return None
    return instant


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")


def utf8(text: str) -> bytes:
    """UTF-8 bytes as Node's Buffer.from(text) gives them: lone surrogates become U+FFFD."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _LONE_SURROGATE.sub("\ufffd", text).encode("utf-8")
