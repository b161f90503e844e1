"""Beyond the corpus: dates at the edges of JavaScript's and Python's ranges, against Node."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from mysql_redis_cache import MRCClient, QueryError
from mysql_redis_cache._node.json import encode
from mysql_redis_cache._node.sql import format_query

from ._node import run_node, tag
from .conftest import MYSQL_CONFIG

pytestmark = [pytest.mark.interop, pytest.mark.usefixtures("node")]

EDGE_DATES = (
    "SELECT CAST('0001-01-01 00:00:00' AS DATETIME) AS y1,"
    " CAST('0000-06-22 08:15:58' AS DATETIME) AS y0,"
    " CAST('0012-03-31 23:59:59.999' AS DATETIME(3)) AS y12,"
    " CAST('0030-06-22 08:15:58' AS DATETIME) AS y30,"
    " CAST('0043-06-22 08:15:58.123456' AS DATETIME(6)) AS y43,"
    " CAST('0040-02-29 10:00:00' AS DATETIME) AS y40,"
    " CAST('0099-12-31 23:59:59' AS DATETIME) AS y99,"
    " CAST('0150-06-22 08:15:58' AS DATETIME) AS y150,"
    " CAST('9999-12-31 23:59:59' AS DATETIME) AS y9999,"
    " CAST('0043-06-22' AS DATE) AS d43, CAST('0000-06-22' AS DATE) AS d0,"
    " CAST('0001-01-01' AS DATE) AS d1, CAST('9999-12-31' AS DATE) AS d9999"
)
SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "utc-local": ("UTC", {}),
    "new-york-local": ("America/New_York", {}),
    "kathmandu-local": ("Asia/Kathmandu", {}),
    "timezone-Z": ("America/New_York", {"timezone": "Z"}),
    "timezone-plus": ("UTC", {"timezone": "+05:30"}),
    "timezone-minus": ("Asia/Kathmandu", {"timezone": "-03:00"}),
}


@pytest.mark.parametrize("setting", SETTINGS.values(), ids=SETTINGS.keys())
async def test_edge_dates_match_node(local_tz: Any, setting: tuple[str, dict[str, Any]]) -> None:
    """Years 0-99 (V8's legacy parser), year 0 and past 9999 come out as Node has them."""
    zone, extra = setting
    config = {**MYSQL_CONFIG, **extra}
    [node_json] = run_node([{"op": "query_to_promise", "query": EDGE_DATES}], mysql=config, tz=zone)
    local_tz(zone)
    async with MRCClient(config) as client:
        rows = await client.query_to_promise(EDGE_DATES)
    assert node_json.encode() == encode(rows)  # the bytes each side stores, not just values


FAR_PARAMS = {
    "date-1-minus-8": (date(1, 1, 1), "-08:00"),
    "date-1-plus": (date(1, 1, 1), "+05:30"),
    "datetime-9999-minus": (datetime(9999, 12, 31, 23, 59, 59), "-03:00"),
    "datetime-9999-local": (datetime(9999, 12, 31, 23, 59, 59), "local"),
}


@pytest.mark.parametrize(("value", "timezone"), FAR_PARAMS.values(), ids=FAR_PARAMS.keys())
def test_far_dates_as_sql_and_json_match_node(local_tz: Any, value: date, timezone: str) -> None:
    """Dates whose instant falls outside Python's years format and encode as Node's do.

    Under UTC: the harness sends Node the instant, so the zone must not be in question.
    """
    zone = "UTC"
    mysql = {"host": "127.0.0.1", "timezone": timezone} if timezone != "local" else None
    sql, text = run_node(
        [
            {"op": "format", "query": "SELECT ?", "params": tag([value])},
            {"op": "stringify", "value": tag(value)},
        ],
        mysql=mysql,
        tz=zone,
    )
    local_tz(zone)
    assert sql == format_query("SELECT ?", [value], timezone)
    assert text.encode() == encode(value)


SESSION_QUERIES = {
    "collation": "SELECT @@collation_connection AS c, STRCMP('ß', 'ss') AS s,"
    " 'a' = 'A' AS ci, 'ä' = 'a' AS accents",
    "ignore-space": "SELECT COUNT (*) AS n, MAX (x) AS m FROM (SELECT 1 AS x UNION SELECT 2) t",
    "found-rows": "UPDATE mrc_session SET v = v WHERE id = 1",
    "group-by-collation": "SELECT COUNT(DISTINCT w) AS n FROM"
    " (SELECT 'ß' AS w UNION ALL SELECT 'ss' UNION ALL SELECT 'SS') t",
}


@pytest.fixture
async def session_table() -> Any:
    async with MRCClient(MYSQL_CONFIG) as client:
        await client.query_to_promise("CREATE OR REPLACE TABLE mrc_session (id INT, v INT)")
        await client.query_to_promise("INSERT INTO mrc_session VALUES (1, 1)")
        yield
        await client.query_to_promise("DROP TABLE mrc_session")


@pytest.mark.usefixtures("session_table")
@pytest.mark.parametrize("query", SESSION_QUERIES.values(), ids=SESSION_QUERIES.keys())
async def test_session_behaves_like_mysql2s(query: str) -> None:
    """Collation, IGNORE_SPACE and FOUND_ROWS give the results Node gets."""
    [node_json] = run_node([{"op": "query_to_promise", "query": query}], mysql=MYSQL_CONFIG)
    async with MRCClient(MYSQL_CONFIG) as client:
        ours = await client.query_to_promise(query)
    assert node_json.encode() == encode(ours)


OBJECTS = {
    "index-keys-first": {"b": 1, "10": 2, "a": 3, "2": 4},
    "null-and-number": {None: [], 10: b"\x01"},
    "not-indexes": {"01": 1, "-1": 2, "1.5": 3, "4294967295": 4, "4294967294": 5},
    "nested": {"z": {"3": 1, "x": 2, "1": 3}, "0": [{"9": 0, "k": 1}]},
}


@pytest.mark.parametrize("value", OBJECTS.values(), ids=OBJECTS.keys())
def test_object_key_order_matches_node(value: dict[Any, Any]) -> None:
    """Dicts encode with JS property order: integer-like keys first, ascending."""
    [node_text, node_sql] = run_node(
        [
            {"op": "stringify", "value": tag(value)},
            {"op": "format", "query": "UPDATE t SET ?", "params": tag([value])},
        ]
    )
    assert node_text.encode() == encode(value)
    assert node_sql == format_query("UPDATE t SET ?", [value])


async def test_private_property_columns_are_refused_like_mysql2() -> None:
    """A column named __proto__ is refused, as mysql2 refuses it, instead of cached."""
    query = "SELECT 1 AS `__proto__`, 2 AS b"
    with pytest.raises(Exception, match="private property"):
        run_node([{"op": "query_to_promise", "query": query}], mysql=MYSQL_CONFIG)
    async with MRCClient(MYSQL_CONFIG) as client:
        with pytest.raises(QueryError, match="can't be the same as an object's private property"):
            await client.query_to_promise(query)


BINARY_JSON = {
    "object": "SELECT JSON_OBJECT('k', CAST('é' AS BINARY)) AS j",
    "array": "SELECT JSON_ARRAY(CAST('ü€' AS BINARY), 'x') AS j",
    "text": "SELECT JSON_OBJECT('k', 'é') AS j",
}


@pytest.mark.parametrize("query", BINARY_JSON.values(), ids=BINARY_JSON.keys())
async def test_json_with_a_binary_charset_reads_as_mysql2(query: str) -> None:
    """JSON built from binary values is read as latin1, as mysql2 reads it; text as UTF-8."""
    [node_json] = run_node([{"op": "query_to_promise", "query": query}], mysql=MYSQL_CONFIG)
    async with MRCClient(MYSQL_CONFIG) as client:
        assert node_json.encode() == encode(await client.query_to_promise(query))


HISTORIC = {
    "lmt-1883": date(1883, 11, 18),
    "lmt-instant": datetime(1883, 11, 18, 12, tzinfo=UTC),
    "no-dst-1902": date(1902, 10, 13),
    "war-time-winter": date(1944, 1, 13),
    "war-time-summer": date(1944, 7, 13),
    "before-epoch-summer": datetime(1960, 7, 4, 12, 30),
    "after-2038": datetime(2050, 7, 4, 8, 0),
    "leap-1900": date(1900, 2, 28),
}


@pytest.mark.parametrize("value", HISTORIC.values(), ids=HISTORIC.keys())
@pytest.mark.parametrize("zone", ["America/New_York", "Europe/London", "Australia/Sydney"])
def test_historic_dates_key_as_node(local_tz: Any, zone: str, value: date) -> None:
    """Local mean time and zone names outside 1970-2038 print as V8 prints them."""
    local_tz(zone)
    [key] = run_node([{"op": "key", "query": "q", "params": tag([value]), "names": ["D"]}], tz=zone)
    assert key == MRCClient(MYSQL_CONFIG).get_key_from_query("q", [value], ["D"])
