"""A seeded differential test against the real npm package: generated SQL templates and
params, keys, JSON values and result rows must come out byte for byte as Node's.

`make test` runs MRC_FUZZ_CASES (default 120) cases per kind and zone with a fixed seed;
`make fuzz` runs ten times as many with a fresh seed, printed so that a failure can be
replayed with MRC_FUZZ_SEED=<seed>. A failure prints the case as Python to paste.
"""

from __future__ import annotations

import os
import random
import string
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from mysql_redis_cache import MRCClient
from mysql_redis_cache._node.json import encode
from mysql_redis_cache._node.keys import build_key
from mysql_redis_cache._node.sql import format_query

from ._node import run_node, tag
from .conftest import MYSQL_CONFIG

pytestmark = [pytest.mark.interop, pytest.mark.usefixtures("node")]

SEED = int(os.environ.get("MRC_FUZZ_SEED", "20261201"))
CASES = int(os.environ.get("MRC_FUZZ_CASES", "120"))
ZONES = ["UTC", "America/New_York", "Asia/Kathmandu"]

NASTY = ["'", '"', "\\", "`", "?", "??", "%s", "\0", "\n", "\x1a", "é", "😀", "¥", "--", "/*"]


def text(rng: random.Random) -> str:
    pool = string.ascii_letters + string.digits + "_-=.,: " + "".join(NASTY)
    return "".join(rng.choice(pool) for _ in range(rng.randint(0, 12)))


def number(rng: random.Random) -> float | int:
    return rng.choice(
        [
            rng.randint(-(2**31), 2**31),
            rng.randint(-(2**53), 2**53),
            rng.uniform(-1e6, 1e6),
            rng.choice([0.0, -0.0, 1e21, 1e-7, 5e-324, 0.1, 1 / 3, 123456789.123, 1e300]),
            float(rng.randint(-1000, 1000)),
        ]
    )


def a_date(rng: random.Random) -> date:
    year = rng.randint(1971, 2036)  # where every zone database agrees on history
    month, day = rng.randint(1, 12), rng.randint(1, 28)
    clock = (rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59))
    moment = datetime(year, month, day, *clock, rng.randrange(0, 10**6, 1000))
    kind = rng.randint(0, 2)
    return moment.date() if kind == 0 else moment.replace(tzinfo=UTC) if kind == 1 else moment


def flag(rng: random.Random) -> object:
    return rng.choice([True, False, None])


def some_bytes(rng: random.Random) -> bytes:
    return rng.randbytes(3)


def scalar(rng: random.Random) -> object:
    maker: Callable[[random.Random], object] = rng.choice([text, number, a_date, flag, some_bytes])
    return maker(rng)


def value(rng: random.Random, depth: int = 0) -> object:
    """A param: scalars, lists, nested lists, an occasional dict."""
    roll = rng.random()
    if depth < 2 and roll < 0.15:
        return [value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 1 and roll < 0.2:
        return {text(rng) or "k": scalar(rng) for _ in range(rng.randint(1, 3))}
    return scalar(rng)


def json_value(rng: random.Random, depth: int = 0) -> object:
    """A JSON-able value: dicts with integer-like keys among others, floats, strings."""
    roll = rng.random()
    if depth < 3 and roll < 0.25:
        keys = [rng.choice([text(rng), str(rng.randint(0, 20)), rng.randint(0, 9)])
                for _ in range(rng.randint(0, 4))]  # fmt: skip
        return {k: json_value(rng, depth + 1) for k in keys}
    if depth < 3 and roll < 0.4:
        return [json_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    maker: Callable[[random.Random], object] = rng.choice([text, number, flag, a_date])
    return maker(rng)


def template(rng: random.Random) -> tuple[str, int]:
    """An SQL template and its placeholder count, with quotes and comments around them."""
    parts, count = ["SELECT"], 0
    for _ in range(rng.randint(1, 5)):
        piece = rng.choice(["?", "?", "??", "'?'", "`a?`", "/* ? */", "-- ?\n", "#?\n", "???", "x"])
        count += piece in ("?", "??")
        parts.append(piece + rng.choice([",", " ", ", "]))
    if rng.random() < 0.3:
        parts.append("FROM t SET ?")
        count += 1
    return " ".join(parts), count


def case_sql(rng: random.Random) -> dict[str, Any]:
    query, count = template(rng)
    params = [value(rng) for _ in range(count + rng.randint(-1, 1) if count else 0)]
    timezone = rng.choice(["local", "Z", "+05:30", "-08:00"])
    return {"query": query, "params": params, "timezone": timezone}


def case_key(rng: random.Random) -> dict[str, Any]:
    params = [value(rng) for _ in range(rng.randint(0, 4))]
    names = [rng.choice(["Id", "StoreId", "User_Id", "n", text(rng).replace("=", "") or "x"])
             for _ in range(len(params) + rng.randint(0, 2))]  # fmt: skip
    return {"query": text(rng), "params": params, "names": names}


def case_json(rng: random.Random) -> dict[str, Any]:
    return {"value": json_value(rng)}


EXPRESSIONS: list[Callable[[random.Random], str]] = [
    lambda r: f"CAST({r.randint(-(10**12), 10**12)} AS DECIMAL(20,{r.randint(0, 6)}))",
    lambda r: f"CAST({r.uniform(-1e9, 1e9)!r} AS DOUBLE)",
    lambda r: f"{r.randint(-(2**63), 2**63 - 1)}",
    lambda r: f"CAST({r.randint(0, 2**64 - 1)} AS UNSIGNED)",
    lambda r: "'" + r.choice(["007", "1.", "-0", " 12", "12e3", "abc", "", "1.50"]) + "'",
    lambda r: f"CAST('{a_date(r).strftime('%Y-%m-%d %H:%M:%S')}' AS DATETIME({r.randint(0, 6)}))",
    lambda r: f"CAST('{a_date(r).strftime('%Y-%m-%d')}' AS DATE)",
    lambda r: f"JSON_OBJECT('{r.randint(0, 9)}', {r.randint(0, 9)}, 'b', 1.50, 'a', '007')",
    lambda r: f"X'{r.randbytes(r.randint(0, 4)).hex()}'",
    lambda r: "NULL",
    lambda r: f"CAST({r.randint(0, 4000)} AS CHAR)",
]


def case_rows(rng: random.Random) -> dict[str, Any]:
    columns = []
    for i in range(rng.randint(1, 6)):
        expression = rng.choice(EXPRESSIONS)
        columns.append(f"{expression(rng)} AS c{i}")
    extra = rng.choice([{}, {"timezone": "Z"}, {"timezone": "+05:30"}, {"dateStrings": True}])
    return {"query": "SELECT " + ", ".join(columns), "mysql": extra}


def ours_sql(case: dict[str, Any]) -> str:
    return format_query(case["query"], case["params"], case["timezone"])


def ours_key(case: dict[str, Any]) -> str:
    return build_key(case["query"], case["params"], case["names"])


def ours_json(case: dict[str, Any]) -> str:
    return encode(case["value"]).decode()


KINDS: dict[str, tuple[Callable[[random.Random], dict[str, Any]], Callable[..., Any]]] = {
    "sql": (case_sql, ours_sql),
    "key": (case_key, ours_key),
    "json": (case_json, ours_json),
}


def node_op(kind: str, case: dict[str, Any]) -> dict[str, Any]:
    if kind == "sql":
        return {"op": "format", "query": case["query"], "params": tag(case["params"])}
    if kind == "key":
        return {"op": "key", "query": case["query"], "params": tag(case["params"]),
                "names": case["names"]}  # fmt: skip
    return {"op": "stringify", "value": tag(case["value"])}


def report(kind: str, zone: str, index: int, case: dict[str, Any], node: Any, ours: Any) -> str:
    return (
        f"\n{kind} case {index} of seed {SEED} under TZ={zone} differs from Node:\n"
        f"  case = {case!r}\n  node = {node!r}\n  ours = {ours!r}\n"
        f"replay: MRC_FUZZ_SEED={SEED} MRC_FUZZ_CASES={CASES} pytest {__file__}"
    )


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("kind", KINDS)
def test_generated_cases_match_node(local_tz: Any, kind: str, zone: str) -> None:
    """Generated SQL, keys and JSON values are byte-identical to the npm package's."""
    make, ours = KINDS[kind]
    rng = random.Random(f"{SEED}-{kind}-{zone}")
    cases = [make(rng) for _ in range(CASES)]
    local_tz(zone)  # before tagging: naive dates are local wall time on both sides
    if kind == "sql":  # one Node process per timezone option, as the option is per pool
        by_timezone: dict[str, list[int]] = {}
        for index, case in enumerate(cases):
            by_timezone.setdefault(case["timezone"], []).append(index)
        node: list[Any] = [None] * len(cases)
        for timezone, indexes in by_timezone.items():
            mysql = None if timezone == "local" else {"host": "127.0.0.1", "timezone": timezone}
            results = run_node([node_op(kind, cases[i]) for i in indexes], mysql=mysql, tz=zone)
            for i, result in zip(indexes, results, strict=True):
                node[i] = result
    else:
        node = run_node([node_op(kind, case) for case in cases], tz=zone)
    for index, (case, expected) in enumerate(zip(cases, node, strict=True)):
        actual = ours(case)
        assert expected == actual, report(kind, zone, index, case, expected, actual)


# Dates at the edges of Python's years: aware ones whose instant falls in year 0 or 10000,
# and local ones the zone's offset pushes there.
EDGE_DATES: list[date] = [
    datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(1, 1, 1, 3, 15, 7, 250000, tzinfo=timezone(timedelta(hours=14))),
    datetime(9999, 12, 31, 23, 59, 59, 500000, tzinfo=timezone(timedelta(seconds=-37))),
    datetime(9999, 12, 31, 20, tzinfo=timezone(timedelta(hours=-12))),
    datetime(1, 1, 1),
    datetime(9999, 12, 31, 23, 59, 59, 999000),
    date(1, 1, 1),
    date(9999, 12, 31),
]


@pytest.mark.parametrize("zone", ZONES)
def test_edge_dates_match_node(local_tz: Any, zone: str) -> None:
    """Keys, SQL (every timezone option) and JSON of dates at years 1 and 9999, aware and
    local, are Node's, though their instants may lie outside Python's years."""
    local_tz(zone)
    keys = run_node(
        [node_op("key", {"query": "q", "params": [d], "names": ["N"]}) for d in EDGE_DATES], tz=zone
    )
    assert keys == [build_key("q", [d], ["N"]) for d in EDGE_DATES]
    values = run_node([node_op("json", {"value": [d]}) for d in EDGE_DATES], tz=zone)
    assert values == [encode([d]).decode() for d in EDGE_DATES]
    for option in ("local", "Z", "+05:30", "-08:00"):
        mysql = None if option == "local" else {"host": "127.0.0.1", "timezone": option}
        sql = run_node(
            [node_op("sql", {"query": "SELECT ?", "params": [d]}) for d in EDGE_DATES],
            mysql=mysql,
            tz=zone,
        )
        assert sql == [format_query("SELECT ?", [d], option) for d in EDGE_DATES], option


@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
async def test_generated_rows_match_node(local_tz: Any, zone: str) -> None:
    """Rows of generated SELECTs over every kind of column cast as Node casts them."""
    rng = random.Random(f"{SEED}-rows-{zone}")
    cases = [case_rows(rng) for _ in range(max(10, CASES // 6))]
    local_tz(zone)
    for index, case in enumerate(cases):
        config = {**MYSQL_CONFIG, **case["mysql"]}
        [node_json] = run_node([{"op": "query_to_promise", "query": case["query"]}],
                               mysql=config, tz=zone)  # fmt: skip
        async with MRCClient(config) as client:
            ours = await client.query_to_promise(case["query"])
        assert node_json.encode() == encode(ours), report(
            "rows", zone, index, case, node_json, ours
        )
