"""Python DB-API placeholders (`%s`, `%(name)s`) met on the way to mysql2's `?`.

Node hashes the query text, so a `%s` query can never share a key with Node's `?`
query. By default such a query is refused with a hint; `paramstyle="format"` rewrites
`%s` to `?` (and `%%` to `%`, as PyMySQL does) before the query is formatted or hashed.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import cast

from .._errors import InvalidArgumentError
from .jsvalue import too_deep
from .keys import check_params, refuse_non_finite
from .sql import next_outside, refuse_too_few

PARAMSTYLES = ("qmark", "format")


def _scan(sql: str) -> tuple[list[tuple[int, str]], bool]:
    """The `%` sequences outside quotes and comments (position, text), and whether a `?`
    stands outside them too."""
    found: list[tuple[int, str]] = []
    qmark = False
    position = next_outside(sql, 0, "%?")
    while position != -1:
        if sql[position] == "?":
            qmark = True
            position = next_outside(sql, position + 1, "%?")
            continue
        if sql.startswith("%(", position):
            close = sql.find(")", position)
            text = sql[position : close + 2] if close != -1 else "%("
        else:
            text = sql[position : position + 2]
        found.append((position, text))
        position = next_outside(sql, position + len(text), "%?")
    return found, qmark


@functools.lru_cache(maxsize=1024)
def refuse_percent_placeholders(sql: str) -> None:
    """Refuse a query written with `%s` / `%(name)s` placeholders (called when it has params).

    Raises:
        InvalidArgumentError: `%s` or `%(name)s` outside quotes and no `?` at all.
    """
    found, qmark = _scan(sql)
    if qmark:
        return
    for _, text in found:
        if text == "%s" or (text.startswith("%(") and text.endswith(")s")):
            raise InvalidArgumentError(
                f"the query uses {text} placeholders; write ? for each value (?? for an "
                "identifier) and pass params as a list, as Node does, or construct "
                "MRCClient(..., paramstyle='format') to have %s rewritten to ?"
            )


@functools.lru_cache(maxsize=1024)
def format_to_qmark(sql: str) -> str:
    """`sql` with its `%s` placeholders as `?` and `%%` as `%` (paramstyle 'format').

    Raises:
        InvalidArgumentError: anything PyMySQL would not have formatted the same way: a
            `?` or `%(name)s` outside quotes, a lone `%`, or `%s` inside quotes.
    """
    found, qmark = _scan(sql)
    if qmark:
        raise InvalidArgumentError(
            "paramstyle='format' expects %s placeholders, but the query also has a ? "
            "outside quotes: write it as one style"
        )
    parts: list[str] = []
    start = 0
    for position, text in found:
        if text not in ("%s", "%%"):
            raise InvalidArgumentError(
                f"paramstyle='format' takes %s placeholders and %% for a literal %, not "
                f"{text!r} (at offset {position}); %(name)s is not supported: use %s and a list"
            )
        parts += (_unescape_quoted(sql[start:position]), "?" if text == "%s" else "%")
        start = position + 2
    parts.append(_unescape_quoted(sql[start:]))
    return "".join(parts)


def _unescape_quoted(text: str) -> str:
    """PyMySQL's `%` formatting inside quotes and comments: `%%` is `%`; nothing else goes."""
    if "%" not in text:
        return text
    out: list[str] = []
    position = 0
    while (found := text.find("%", position)) != -1:
        pair = text[found : found + 2]
        if pair != "%%":
            raise InvalidArgumentError(
                f"paramstyle='format': {pair!r} inside a quoted string or comment would be "
                "formatted by PyMySQL (write %% for a literal %), and a value in quotes is "
                "text for mysql2: move it out of the quotes as %s"
            )
        out += (text[position:found], "%")
        position = found + 2
    out.append(text[position:])
    return "".join(out)


def query_text(query: str, params: object, runs_sql: bool, paramstyle: str = "qmark") -> str:
    """The query text to format and hash, after checking it, the params and the
    paramstyle (`runs_sql`: the text will be sent to MySQL with the params)."""
    if type(query) is not str:
        raise InvalidArgumentError(f"query must be a str, got {type(query).__name__}")
    if type(params) is list:
        if runs_sql:
            for value in params:  # most params are ints and strs: skip the walk
                kind = type(value)
                if kind is float or kind is list or kind is tuple:
                    try:
                        refuse_non_finite(params)
                    except RecursionError as exc:
                        raise too_deep(exc) from exc
                    break
    elif params is not None:
        try:
            check_params(params)
            if runs_sql and params:
                refuse_non_finite(cast(Sequence[object], params))
        except RecursionError as exc:
            raise too_deep(exc) from exc
    text = query
    if "%" in query and params is not None:
        if paramstyle == "format":
            text = format_to_qmark(query)
        elif runs_sql and params:
            refuse_percent_placeholders(query)
    if runs_sql and params is not None:
        refuse_too_few(text, len(cast(Sequence[object], params)))
    return text
