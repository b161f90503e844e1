"""Keys and SQL text must be what the real npm package and mysql2 produce."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from mysql_redis_cache import InvalidParamError, MRCClient
from mysql_redis_cache._node.json import encode
from mysql_redis_cache._node.keys import _BUILT, _BUILT_MAX, build_checked_key, build_checked_keys
from mysql_redis_cache._node.sql import format_query

from ._node import run_node, tag

NASTY = 'it\'s a "test" \\ with\0NUL\b\t\n\r\x1a and ? inside 😀 é \u2028'

KEY_CASES: dict[str, tuple[str, list[Any] | None, list[str]]] = {
    "no-params": ("SELECT 1", None, []),
    "empty-params-with-names": ("SELECT 1", [], ["A"]),
    "int": ("SELECT * FROM t WHERE a = ?", [6], ["StoreId"]),
    "negative-int": ("SELECT ?", [-42], ["N"]),
    "big-int": ("SELECT ?", [2**64 + 1], ["N"]),
    "float": ("SELECT ?", [1.5], ["N"]),
    "integral-float": ("SELECT ?", [1.0], ["N"]),
    "tiny-float": ("SELECT ?", [1e-7], ["N"]),
    "small-float": ("SELECT ?", [0.000001], ["N"]),
    "huge-float": ("SELECT ?", [1e21], ["N"]),
    "float-1e20": ("SELECT ?", [1e20], ["N"]),
    "neg-zero": ("SELECT ?", [-0.0], ["N"]),
    "nan": ("SELECT ?", [float("nan")], ["N"]),
    "inf": ("SELECT ?", [float("inf"), float("-inf")], ["P", "M"]),
    "bools": ("SELECT ?, ?", [True, False], ["T", "F"]),
    "null": ("SELECT ?", [None], ["N"]),
    "string": ("SELECT ?", ["hello world"], ["S"]),
    "nasty-string": ("SELECT ?", [NASTY], ["S"]),
    "unicode-query": ("SELECT 'é😀' WHERE a = ?", ["x"], ["A"]),
    "list": ("SELECT * FROM t WHERE a IN (?)", [[1, 2, 3]], ["Ids"]),
    "list-with-null": ("SELECT ?", [[1, None, "a"]], ["L"]),
    "nested-list": ("SELECT ?", [[[1, 2], [3, [4, 5]]]], ["L"]),
    "empty-list": ("SELECT ?", [[]], ["L"]),
    "dict": ("UPDATE t SET ?", [{"a": 1}], ["O"]),
    "bytes-utf8": ("SELECT ?", ["é".encode()], ["B"]),
    "bytes-invalid-utf8": ("SELECT ?", [b"\xff\xfeA\xc3"], ["B"]),
    "more-names-than-params": ("SELECT ?", [1], ["A", "B"]),
    "many-params": ("SELECT ?,?,?,?", [1, "two", 3.5, None], ["A", "B", "C", "D"]),
    "decimal": ("SELECT ?", [Decimal("12.50")], ["D"]),
    "underscore-value": ("SELECT ?", ["en_US"], ["Locale"]),
}


@pytest.mark.interop
@pytest.mark.usefixtures("node")
@pytest.mark.parametrize("case", KEY_CASES.values(), ids=KEY_CASES.keys())
def test_key_matches_node(client: MRCClient, case: tuple[str, list[Any] | None, list[str]]) -> None:
    """Every key matches getKeyFromQuery in the npm package."""
    query, params, names = case
    if any(isinstance(p, Decimal) for p in params or []):
        # JS has no decimal: Node's caller would pass the same text as a string
        node_params: Any = [str(p) for p in params or []]
    else:
        node_params = tag(params) if params is not None else None
    op: dict[str, Any] = {"op": "key", "query": query, "names": names}
    if node_params is not None:
        op["params"] = node_params
    [expected] = run_node([op])
    assert expected == client.get_key_from_query(query, params, names)


@pytest.mark.interop
@pytest.mark.usefixtures("node")
def test_remembered_keys_keep_equal_values_apart(client: MRCClient) -> None:
    """Keys built before are reused only for params of the same types: 1 == True == 1.0."""
    cases: list[tuple[list[Any], Sequence[str]]] = [
        ([1], ["N"]), ([True], ["N"]), ([1.0], ["N"]), (["1"], ["N"]),
        ([1, 2], ["N", "M"]), ([1], ["N", "M"]), ([1], ("N",)),
    ]  # fmt: skip
    ops = [{"op": "key", "query": "SELECT ?", "params": tag(p), "names": n} for p, n in cases]
    expected = run_node(ops)
    for _ in range(2):  # the second round finds the first round's keys
        assert expected == [client.get_key_from_query("SELECT ?", p, n) for p, n in cases]
    assert expected[0] != expected[1]  # the case a shared entry would get wrong


def test_remembered_keys_are_bounded() -> None:
    for n in range(_BUILT_MAX + 10):
        build_checked_key("SELECT ?", [n], ["N"])
    assert 0 < len(_BUILT) <= _BUILT_MAX


DATE_ZONES = ["UTC", "Europe/Rome", "America/New_York", "Australia/Sydney", "Asia/Kolkata"]
DATES = [
    datetime(2024, 1, 15, 10, 30, 5, 123000, tzinfo=UTC),
    datetime(2024, 7, 15, 23, 59, 59, tzinfo=UTC),
    datetime(2024, 3, 31, 2, 30),  # naive: local wall time, inside Rome's DST gap
    datetime(1999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    date(2020, 2, 29),
]


@pytest.mark.interop
@pytest.mark.usefixtures("node")
@pytest.mark.parametrize("zone", DATE_ZONES)
def test_date_keys_and_sql_match_node(client: MRCClient, local_tz: Any, zone: str) -> None:
    """Dates key as Date.toString() and format as mysql2 does, in the process time zone."""
    local_tz(zone)
    ops = []
    for value in DATES:
        ops.append({"op": "key", "query": "SELECT ?", "params": tag([value]), "names": ["D"]})
        ops.append({"op": "format", "query": "SELECT ?", "params": tag([value])})
    results = run_node(ops, tz=zone)
    ours = []
    for value in DATES:
        ours.append(client.get_key_from_query("SELECT ?", [value], ["D"]))
        ours.append(client.format_query("SELECT ?", [value]))
    assert results == ours


FORMAT_CASES: dict[str, tuple[str, list[Any]]] = {
    "values": ("SELECT * FROM t WHERE a = ? AND b = ?", [1, "x"]),
    "nasty-string": ("SELECT ?", [NASTY]),
    "identifier": ("SELECT ?? FROM ??", ["col", "db.table"]),
    "identifier-backtick": ("SELECT ??", ["we`ird.na`me"]),
    "identifier-arrow": ("SELECT ??", ["doc->'$.a'"]),
    "identifier-list": ("SELECT ??", [["a", "b.c"]]),
    "in-list": ("SELECT * FROM t WHERE id IN (?)", [[1, 2, "three", None, True]]),
    "grouped-list": ("INSERT INTO t (a, b) VALUES ?", [[[1, "a"], [2, "b"]]]),
    "set-object": ("UPDATE t SET ? WHERE id = ?", [{"a": 1, "b": "x", "c": None}, 5]),
    "insert-set-object": ("INSERT INTO t SET ?", [{"a": [1, 2], "b": {"nested": 1}}]),
    "on-duplicate-object": (
        "INSERT INTO t (a) VALUES (?) ON DUPLICATE KEY UPDATE ?",
        [1, {"a": 2}],
    ),
    "where-object": ("SELECT * FROM t WHERE ?", [{"a": 1}]),
    "object-in-list": ("SELECT ?", [[{"a": 1}]]),
    "set-after-where": ("UPDATE t SET a = 1 WHERE ?", [{"b": 2}]),
    "null-bool": ("SELECT ?, ?, ?", [None, True, False]),
    "numbers": ("SELECT ?, ?, ?, ?, ?", [1.5, 1e21, 1e-7, -0.0, 2**53]),
    "nan": ("SELECT ?", [float("nan")]),
    "bytes": ("SELECT ?", [b"\x00\x01\xff"]),
    "question-in-literals": (
        "SELECT '?', \"?\", `?` FROM t WHERE a = ? -- ?\n AND b = ? # ?\n AND c = ? /* ? */",
        [1, 2, 3],
    ),
    "escaped-quote-literal": ("SELECT 'it\\'s ?' , ?", ["v"]),
    "executable-comment": ("SELECT /*! ? */ 1", [1]),
    "dash-no-space": ("SELECT 1--?", [5]),
    "triple-question": ("SELECT ??? , ?", [1]),
    "fewer-params": ("SELECT ?, ?", [1]),
    "more-params": ("SELECT ?", [1, 2]),
    "unterminated-string": ("SELECT ? 'abc", [1]),
    "keyword-set-in-name": ("SELECT * FROM settings WHERE ?", [{"a": 1}]),
    "update-set-list": ("UPDATE t SET a = ?, ?", [1, {"b": 2}]),
    "empty-list": ("SELECT ?", [[]]),
    "decimal-as-text": ("SELECT ?", ["12.50"]),
}


@pytest.mark.interop
@pytest.mark.usefixtures("node")
@pytest.mark.parametrize("case", FORMAT_CASES.values(), ids=FORMAT_CASES.keys())
def test_sql_text_matches_mysql2(client: MRCClient, case: tuple[str, list[Any]]) -> None:
    """The SQL text equals mysql2's pool.format(); the client refuses unfilled placeholders."""
    query, params = case
    [expected] = run_node([{"op": "format", "query": query, "params": tag(params)}])
    assert expected == format_query(query, params)
    if query == "SELECT ?, ?" and len(params) == 1:
        with pytest.raises(InvalidParamError, match="2 \\? placeholders but 1 params"):
            client.format_query(query, params)
    elif any(isinstance(p, float) and not math.isfinite(p) for p in params):
        with pytest.raises(InvalidParamError, match="no SQL form"):  # MySQL reads a column
            client.format_query(query, params)
    else:
        assert expected == client.format_query(query, params)


@pytest.mark.interop
@pytest.mark.usefixtures("node")
@pytest.mark.parametrize("timezone_option", ["Z", "+05:30", "-08:00"])
def test_sql_dates_honour_timezone_option(timezone_option: str) -> None:
    """With a `timezone` option, dates format in that offset, as in mysql2."""
    mysql = {"host": "127.0.0.1", "timezone": timezone_option}
    value = datetime(2024, 1, 15, 10, 30, 5, 123000, tzinfo=UTC)
    [expected] = run_node(
        [{"op": "format", "query": "SELECT ?", "params": tag([value])}], mysql=mysql
    )
    ours = MRCClient({"host": "127.0.0.1", "timezone": timezone_option})
    assert expected == ours.format_query("SELECT ?", [value])


JSON_VALUES: dict[str, Any] = {
    "numbers": [1.0, 1e-7, 0.00001, 1e21, 1e20, -0.0, 0.1, 123.456, 5e-324, 1.7976931348623157e308],
    "non-finite": [float("nan"), float("inf"), float("-inf")],
    "integral-past-2**53": [2.0**63, 12345678901234567890.0, -(2.0**60), 9007199254740993.0],
    "strings": [NASTY, "\ud800 lone surrogate", "\x7f\x1f"],
    "nested": {"a": [1, {"b": None}], "c": True, "d": "x"},
    "bytes": b"\x00\x10\xff",
    "date": datetime(2024, 1, 15, 10, 30, 5, 123000, tzinfo=UTC),
    "int-keys": {1: "one", "two": 2},
}


@pytest.mark.interop
@pytest.mark.usefixtures("node")
@pytest.mark.parametrize("value", JSON_VALUES.values(), ids=JSON_VALUES.keys())
def test_json_matches_stringify(value: Any) -> None:
    """Encoded bytes equal JSON.stringify of the JavaScript counterpart."""
    node_value = (
        tag(value) if not isinstance(value, dict) else {str(k): tag(v) for k, v in value.items()}
    )
    [expected] = run_node([{"op": "stringify", "value": node_value}])
    assert expected.encode() == encode(value)


def test_batch_keys_equal_single_keys() -> None:
    """build_checked_keys (query_many_with_cache's) gives what build_checked_key gives, item
    by item, for the params its fast path takes and for those it hands over."""
    import random

    rng = random.Random(7)
    values: list[Any] = [0, -5, 2**60, "", "a", "a_b", "_N=1", "x" * 20_000, True, None, 1.5,
                         [1, 2], {"a": 1}, "é", "1"]  # fmt: skip
    for names in (["N"], ["N", "M"], ["N", "M", "L"]):
        params_list: list[Any] = [
            [rng.choice(values) for _ in range(rng.randint(0, len(names)))] for _ in range(300)
        ]
        params_list += [None, (), tuple(params_list[0])]
        query = rng.choice(["SELECT ?", "SELECT ?, ?", "SELECT 1"])

        def text_of(params: object, query: str = query) -> str:
            return query if params else f"{query} -- no params"  # texts may differ

        expected = [(text_of(p), *build_checked_key(text_of(p), p, names)) for p in params_list]
        assert expected == build_checked_keys(text_of, params_list, names)
