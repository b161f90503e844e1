"""Beyond the corpus: dates at the edges of JavaScript's and Python's ranges, against Node."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

import pytest

from mysql_redis_cache import MRCClient
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
    assert json.loads(node_json) == rows


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
