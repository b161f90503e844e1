"""mysql2's client-side query formatting: `?` values and `??` identifiers.

The text produced must be the one mysql2 3.x (through sql-escaper) sends for the same
query and params under its default options, so both languages run the same SQL.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from .._errors import InvalidParamError
from .jsvalue import (
    civil_from_days,
    instant_ms,
    int_text,
    js_number,
    js_object,
    js_string,
    local_offset,
    local_zone,
    to_instant,
    too_deep,
    utc_ms,
)

_ESCAPE_CHARS = re.compile(r"[\0\b\t\n\r\x1a\"'\\]")
_ESCAPE_MAP = {
    "\0": "\\0",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\r": "\\r",
    "\x1a": "\\Z",
    '"': '\\"',
    "'": "\\'",
    "\\": "\\\\",
}
_TZ_OFFSET = re.compile(r"([+\-\s])(\d\d):?(\d\d)?")
_MAY_OPEN_CONTEXT = frozenset("'\"`#-/")
_SET_CLAUSE_TERMINATORS = (
    "where", "order", "group", "having", "limit", "union", "returning",
    "into", "for", "lock", "offset", "window", "procedure", "on",
)  # fmt: skip
_WHITESPACE = frozenset(" \t\n\r")


def escape_string(value: str) -> str:
    """Quote a string literal with backslash escapes."""
    return "'" + _ESCAPE_CHARS.sub(lambda m: _ESCAPE_MAP[m.group()], value) + "'"


def escape_id(value: object) -> str:
    """Quote an identifier for `??`; dots separate qualified parts, as in mysql2."""
    if isinstance(value, list | tuple):
        return ", ".join(escape_id(item) for item in value)
    identifier = js_string(value)
    quoted = identifier.replace("`", "``")
    if "." not in identifier or "->" in identifier:
        return f"`{quoted}`"
    return "`" + quoted.replace(".", "`.`") + "`"


def _timezone_offset_minutes(timezone: str) -> float | None:
    if timezone == "Z":
        return 0
    match = _TZ_OFFSET.search(timezone)
    if match is None:
        return None
    sign = -1 if match.group(1) == "-" else 1
    return sign * (int(match.group(2)) + (int(match.group(3) or 0)) / 60) * 60


def _write_date(value: date, timezone: str) -> str:
    try:
        instant = to_instant(value)
        if timezone == "local":
            wall = instant.astimezone(local_zone())
        else:
            offset = _timezone_offset_minutes(timezone)
            wall = instant.astimezone(UTC) + timedelta(minutes=offset or 0)
    except OverflowError:  # the wall time in that offset is before year 1 or after 9999
        return _write_far_date(value, timezone)
    return escape_string(
        f"{wall.year:04d}-{wall.month:02d}-{wall.day:02d} {wall.hour:02d}:{wall.minute:02d}:"
        f"{wall.second:02d}.{wall.microsecond // 1000:03d}"
    )


def _write_far_date(value: date, timezone: str) -> str:
    """`_write_date` with epoch-millisecond arithmetic, for years Python cannot hold."""
    naive = not isinstance(value, datetime) or value.tzinfo is None
    if timezone == "local" and naive:  # a local wall time stays itself
        ms = utc_ms(value.year, value.month, value.day)
        if isinstance(value, datetime):
            ms = utc_ms(value.year, value.month, value.day, value.hour, value.minute,
                        value.second, value.microsecond // 1000)  # fmt: skip
        return _format_wall_ms(ms, value)
    ms = instant_ms(value)
    if timezone == "local":  # the instant's local wall time, as a JS Date's getters give it
        return _format_wall_ms(ms + local_offset(ms) // timedelta(milliseconds=1), value)
    offset = _timezone_offset_minutes(timezone)
    return _format_wall_ms(ms + round((offset or 0) * 60_000), value)


def _format_wall_ms(ms: int, value: date) -> str:
    """A wall time given as epoch milliseconds, as mysql2 writes it."""
    days, rest = divmod(ms, 86_400_000)
    year, month, day = civil_from_days(days)
    if year < 0:
        raise InvalidParamError(f"{value!r} falls before year 0 where it is written")
    hour, rest = divmod(rest, 3_600_000)
    minute, rest = divmod(rest, 60_000)
    second, millis = divmod(rest, 1000)
    return escape_string(
        f"{year:04d}-{month:02d}-{day:02d} {hour:02d}:{minute:02d}:{second:02d}.{millis:03d}"
    )


def _write_list(values: Sequence[object], timezone: str) -> str:
    parts = []
    for value in values:
        if isinstance(value, list | tuple):
            parts.append(f"({_write_list(value, timezone)})")
        else:
            parts.append(_escape_value(value, timezone, stringify_objects=True))
    return ", ".join(parts)


def _write_assignments(values: Mapping[object, object], timezone: str) -> str:
    pairs = js_object({js_string(key): value for key, value in values.items()})
    return ", ".join(
        f"{escape_id(key)} = {_escape_value(value, timezone, stringify_objects=True)}"
        for key, value in pairs.items()
    )


def _escape_value(value: object, timezone: str, stringify_objects: bool) -> str:
    if value is None:
        return "NULL"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int_text(value)
    if isinstance(value, float):
        return js_number(value)
    if isinstance(value, str):
        return escape_string(value)
    if isinstance(value, date):
        return _write_date(value, timezone)
    if isinstance(value, list | tuple):
        return _write_list(value, timezone)
    if isinstance(value, bytes | bytearray | memoryview):
        return "X" + escape_string(bytes(value).hex())
    if isinstance(value, Decimal):
        return js_string(value)
    if isinstance(value, Mapping):
        if stringify_objects:
            return escape_string("[object Object]")
        return _write_assignments(value, timezone)
    raise InvalidParamError(f"unsupported query parameter type {type(value).__name__}")


def _char(sql: str, index: int) -> str:
    return sql[index] if 0 <= index < len(sql) else ""


def _is_word_char(ch: str) -> bool:
    return ch != "" and (ch.isascii() and (ch.isalnum() or ch == "_"))


def _skip_context(sql: str, position: int) -> int:
    """End of the quoted string or comment opening at `position`, or -1 when none opens."""
    ch = sql[position]
    length = len(sql)
    if ch in "'\"":
        cursor = position + 1
        while cursor < length:
            if sql[cursor] == "\\":
                cursor += 1
            elif sql[cursor] == ch:
                return cursor + 1
            cursor += 1
        return length
    if ch == "`":
        cursor = position + 1
        while cursor < length:
            if sql[cursor] == "`":
                if _char(sql, cursor + 1) != "`":
                    return cursor + 1
                cursor += 1
            cursor += 1
        return length
    if ch == "#":
        return _skip_line_comment(sql, position + 1)
    nxt = _char(sql, position + 1)
    if ch == "-" and nxt == "-":
        after = _char(sql, position + 2)
        if after == "" or ord(after) <= 32:
            return _skip_line_comment(sql, position + 2)
        return -1
    if ch == "/" and nxt == "*":
        if _char(sql, position + 2) in ("!", "+"):
            return -1  # executable comment: its placeholders are live
        end = sql.find("*/", position + 2)
        return length if end == -1 else end + 2
    return -1


def _skip_line_comment(sql: str, start: int) -> int:
    newline = sql.find("\n", start)
    return len(sql) if newline == -1 else newline + 1


def next_outside(sql: str, start: int, targets: str = "?") -> int:
    """Index of the next character of `targets` outside quotes and comments, or -1."""
    position = start
    length = len(sql)
    while position < length:
        ch = sql[position]
        if ch in targets:
            return position
        if ch in _MAY_OPEN_CONTEXT:
            end = _skip_context(sql, position)
            if end != -1:
                position = end
                continue
        position += 1
    return -1


def _lower(ch: str) -> str:
    # sql-escaper folds case with `code | 32`, which only ever matters for ASCII letters
    return chr(ord(ch) | 32) if ch else ""


def _matches_word(sql: str, position: int, word: str) -> bool:
    if any(_lower(_char(sql, position + i)) != c for i, c in enumerate(word)):
        return False
    return not _is_word_char(_char(sql, position - 1)) and not _is_word_char(
        _char(sql, position + len(word))
    )


def _find_set_keyword(sql: str, start: int) -> int:
    """Index just past the next SET (or ON DUPLICATE KEY UPDATE) keyword, or -1."""
    position = start
    length = len(sql)
    while position < length:
        ch = sql[position]
        if ch in _MAY_OPEN_CONTEXT:
            end = _skip_context(sql, position)
            if end != -1:
                position = end
                continue
        lower = _lower(ch)
        if lower == "s" and _matches_word(sql, position, "set"):
            return position + 3
        if lower == "k" and _matches_word(sql, position, "key"):
            cursor = position + 3
            while cursor < length and sql[cursor] in _WHITESPACE:
                cursor += 1
            if _matches_word(sql, cursor, "update"):
                return cursor + 6
        position += 1
    return -1


def _in_assignment_list(sql: str, set_end: int, placeholder: int) -> bool:
    depth = 0
    saw_content = False
    last_was_comma = False
    position = set_end
    while position < placeholder:
        ch = sql[position]
        if ch in _MAY_OPEN_CONTEXT:
            end = _skip_context(sql, position)
            if end != -1:
                position = end
                saw_content, last_was_comma = True, False
                continue
        if ch in _WHITESPACE:
            position += 1
            continue
        if ch in "()":
            depth += 1 if ch == "(" else -1
            if depth < 0:
                return False
            saw_content, last_was_comma = True, False
            position += 1
            continue
        if _is_word_char(ch):
            if depth == 0 and not ch.isdigit():
                for word in _SET_CLAUSE_TERMINATORS:
                    if word[0] == _lower(ch) and _matches_word(sql, position, word):
                        return False
            position += 1
            while position < placeholder and _is_word_char(sql[position]):
                position += 1
            saw_content, last_was_comma = True, False
            continue
        if depth == 0 and ch == ";":
            return False
        if depth == 0 and ch == ",":
            last_was_comma = saw_content = True
            position += 1
            continue
        saw_content, last_was_comma = True, False
        position += 1
    return depth == 0 and (not saw_content or last_was_comma)


class _SetAssignmentTest:
    """Whether an object placeholder stands where `SET ?` expands it to `k` = v pairs."""

    def __init__(self, sql: str) -> None:
        self._sql = sql
        self._set_index: int | None = None
        self._next_set_index = -1

    def __call__(self, chunk_start: int, placeholder: int) -> bool:
        sql = self._sql
        previous = placeholder - 1
        while previous >= chunk_start and sql[previous] in _WHITESPACE:
            previous -= 1
        prev = _lower(sql[previous]) if previous >= chunk_start else ""
        if not (("a" <= prev <= "z") or prev == ","):
            return False
        if self._set_index is None:
            self._set_index = _find_set_keyword(sql, 0)
            self._next_set_index = (
                -1 if self._set_index == -1 else _find_set_keyword(sql, self._set_index)
            )
        while self._next_set_index != -1 and self._next_set_index <= placeholder:
            self._set_index = self._next_set_index
            self._next_set_index = _find_set_keyword(sql, self._next_set_index)
        return (
            self._set_index != -1
            and self._set_index <= placeholder
            and _in_assignment_list(sql, self._set_index, placeholder)
        )


def format_query(
    sql: str, params: Sequence[object] | None, timezone: str = "local", *, strict: bool = False
) -> str:
    """Substitute `params` into `sql` exactly as mysql2's `pool.format(sql, params)` does.

    mysql2 leaves placeholders it has no param for in the text; `strict` refuses them
    instead (surplus params are ignored either way: Node keys may name more params
    than the query uses).

    Raises:
        InvalidParamError: a param of a type mysql2 has no counterpart for; with
            `strict`, fewer params than placeholders.
    """
    try:
        if params is None:
            return sql
        result: list[str] = []
        chunk_start = 0
        index = 0
        set_test: _SetAssignmentTest | None = None
        placeholder = next_outside(sql, 0)
        while index < len(params) and placeholder != -1:
            end = placeholder + 1
            while _char(sql, end) == "?":
                end += 1
            if end - placeholder > 2:
                placeholder = next_outside(sql, end)  # '???' is no placeholder
                continue
            value = params[index]
            if end - placeholder == 2:
                escaped = escape_id(value)
            elif isinstance(value, Mapping):
                if set_test is None:
                    set_test = _SetAssignmentTest(sql)
                if set_test(chunk_start, placeholder):
                    escaped = _write_assignments(value, timezone)
                else:
                    escaped = _escape_value(value, timezone, stringify_objects=True)
            else:
                escaped = _escape_value(value, timezone, stringify_objects=False)
            result.append(sql[chunk_start:placeholder])
            result.append(escaped)
            chunk_start = end
            index += 1
            placeholder = next_outside(sql, end)
        if strict and placeholder != -1:
            _refuse_unfilled(sql, placeholder, index)
        if chunk_start == 0:
            return sql
        result.append(sql[chunk_start:])
        return "".join(result)
    except RecursionError as exc:
        raise too_deep(exc) from exc


@functools.lru_cache(maxsize=1024)  # asked on every call, hit or miss: per query text once
def placeholder_count(sql: str) -> int:
    """How many params `sql` takes: its `?` and `??` outside quotes and comments."""
    count = 0
    placeholder = next_outside(sql, 0)
    while placeholder != -1:
        end = placeholder + 1
        while _char(sql, end) == "?":
            end += 1
        count += end - placeholder <= 2  # '???' is no placeholder
        placeholder = next_outside(sql, end)
    return count


def refuse_too_few(sql: str, given: int) -> None:
    """Refuse `given` params for `sql` if it has more placeholders, before anything runs.

    Raises:
        InvalidParamError: fewer params than placeholders.
    """
    if given < placeholder_count(sql):
        raise InvalidParamError(
            f"the query has {placeholder_count(sql)} ? placeholders but {given} params were "
            "given; mysql2 would send the rest as a literal ?"
        )


def _refuse_unfilled(sql: str, placeholder: int, given: int) -> None:
    """Raise if a real placeholder (not `???`) remains at or after `placeholder`."""
    while placeholder != -1:
        end = placeholder + 1
        while _char(sql, end) == "?":
            end += 1
        if end - placeholder <= 2:
            raise InvalidParamError(
                f"the query has more ? placeholders than the {given} params given; mysql2 "
                "would send the rest as a literal ?"
            )
        placeholder = next_outside(sql, end)
