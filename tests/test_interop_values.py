"""Cached values must be byte-identical to Node's, and readable in both directions."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis

from mysql_redis_cache import MRCClient
from mysql_redis_cache._node.json import encode
from mysql_redis_cache._node.jsvalue import utf8

from ._node import run_node
from ._tables import create_all_types
from .conftest import MYSQL_CONFIG, REDIS_URL

pytestmark = [pytest.mark.interop, pytest.mark.usefixtures("node")]

QUERY = "SELECT * FROM mrc_all_types WHERE id <= ? ORDER BY id"
PARAMS = [10]
NAMES = ["MaxId"]
EXPRESSIONS = (
    "SELECT 2 AS `2`, 1 AS `1`, 'b' AS b, 0.5, 1e21, -0.0, 1.0E0, 1e-7, 0.00001, "
    "CAST(1 AS DOUBLE), NULL AS n, JSON_OBJECT('k', 1.50) AS jo, 'x' AS `2`, "
    # 16 significant digits: mysql2's digit-by-digit parse can differ from a correct one
    "CAST(9999999999.999998 AS DOUBLE) AS d16, CAST(-1234567.891011121 AS DOUBLE) AS d16n, "
    "CAST(0.1234567890123456 AS DOUBLE) AS d16s, CAST(123456789012345.67 AS DOUBLE) AS d17"
)
# Many rows per column: the whole-column casts, with NULLs, NULs and mixed numbers
COLUMNS = (
    "SELECT seq, seq / 8 AS dec_mixed, CAST(seq / 3 AS DOUBLE) AS dbl, CONCAT('v', seq) AS txt,"
    " IF(seq % 5 = 0, NULL, seq * 1000) AS maybe, IF(seq % 7 = 0, CONCAT(seq), 'x') AS num_txt,"
    " IF(seq % 9 = 0, CONCAT('a', CHAR(0 USING utf8mb4), seq), 'b') AS nul_txt,"
    " CAST('2024-03-30' + INTERVAL seq HOUR AS DATETIME) AS dt,"
    " CAST('2024-01-01 00:00:00.123' + INTERVAL seq MINUTE AS DATETIME(3)) AS dt3,"
    " IF(seq % 4 = 0, NULL, CAST('2024-10-01' + INTERVAL seq DAY AS DATE)) AS da,"
    " IF(seq % 50 = 0, 0.00001, seq / 4) AS small_dec, CAST(seq * 1e15 AS DOUBLE) AS big_dbl"
    " FROM seq_1_to_300"
)
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "utc": ("UTC", {}),
    "rome-local": ("Europe/Rome", {}),
    "sydney-local": ("Australia/Sydney", {}),
    "timezone-Z": ("Europe/Rome", {"timezone": "Z"}),
    "timezone-offset": ("UTC", {"timezone": "+05:30"}),
    "date-strings": ("UTC", {"dateStrings": True}),
    "date-strings-list": ("UTC", {"dateStrings": ["DATE"]}),
}


@pytest.fixture(scope="module", autouse=True)
def all_types_table() -> None:
    async def create() -> None:
        async with MRCClient(MYSQL_CONFIG) as client:
            await create_all_types(client)

    asyncio.run(create())


def node_mysql(extra: dict[str, Any]) -> dict[str, Any]:
    return {**MYSQL_CONFIG, **extra}


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
@pytest.mark.parametrize(
    "query", [QUERY, EXPRESSIONS, COLUMNS], ids=["table", "expressions", "columns"]
)
async def test_same_bytes_as_node(
    redis_sync: redis.Redis, local_tz: Any, config: tuple[str, dict[str, Any]], query: str
) -> None:
    """For the same query, Python stores exactly the bytes Node stores."""
    zone, extra = config
    params = PARAMS if query == QUERY else None
    names = NAMES if query == QUERY else []
    op: dict[str, Any] = {"op": "query_with_cache", "query": query, "names": names}
    if params is not None:
        op["params"] = params
    run_node([op], mysql=node_mysql(extra), redis_url=REDIS_URL, tz=zone)
    local_tz(zone)
    async with MRCClient(node_mysql(extra), REDIS_URL) as client:
        key = client.get_key_from_query(query, params, names)
        node_bytes = redis_sync.get(key)
        redis_sync.delete(key)
        await client.query_with_cache(query, params, names)
    assert node_bytes is not None
    assert node_bytes == redis_sync.get(key)


async def test_lone_surrogates_in_params_are_sent_as_node_sends_them(
    redis_sync: redis.Redis,
) -> None:
    """Node's Buffer.from writes a lone surrogate as U+FFFD: the same query gets the same
    rows and stores the same bytes, not an encoding error."""
    query, params, names = "SELECT ? AS s, HEX(?) AS h", ["a\ud800b", "\udc00"], ["S", "H"]
    run_node(
        [{"op": "query_with_cache", "query": query, "params": params, "names": names}],
        mysql=MYSQL_CONFIG,
        redis_url=REDIS_URL,
    )
    async with MRCClient(MYSQL_CONFIG, REDIS_URL) as client:
        key = utf8(client.get_key_from_query(query, params, names))  # as Node writes it
        node_bytes = redis_sync.get(key)
        redis_sync.delete(key)
        rows = await client.query_with_cache(query, params, names)
        assert [{"s": "a\ufffdb", "h": "EFBFBD"}] == rows
        assert [{"s": "a\ufffdb", "h": "EFBFBD"}] == await client.query_to_promise(query, params)
    assert node_bytes is not None
    assert node_bytes == redis_sync.get(key)


async def test_python_reads_what_node_wrote(client: MRCClient, redis_sync: redis.Redis) -> None:
    """A Python call for the same query and params is a hit on Node's entry."""
    [node_result] = run_node(
        [{"op": "query_with_cache", "query": QUERY, "params": PARAMS, "names": NAMES}],
        mysql=MYSQL_CONFIG,
        redis_url=REDIS_URL,
    )
    key = client.get_key_from_query(QUERY, PARAMS, NAMES)
    redis_sync.set(key, b'[{"marker":"written by node"}]', keepttl=True)
    assert await client.query_with_cache(QUERY, PARAMS, NAMES) == [{"marker": "written by node"}]
    redis_sync.delete(key)
    run_node(
        [{"op": "query_with_cache", "query": QUERY, "params": PARAMS, "names": NAMES}],
        mysql=MYSQL_CONFIG,
        redis_url=REDIS_URL,
    )
    assert json.loads(node_result) == await client.read_from_cache(QUERY, PARAMS, NAMES)


async def test_node_reads_what_python_wrote(client: MRCClient) -> None:
    """Node's readFromCache and queryWithCache return Python's entry unchanged."""
    rows = await client.query_with_cache(QUERY, PARAMS, NAMES)
    marker = [{"marker": "written by python", "n": 1.5}]
    await client.write_to_cache("SELECT 'other'", marker, [7], ["StoreId"])
    read, hit, other = run_node(
        [
            {"op": "read_from_cache", "query": QUERY, "params": PARAMS, "names": NAMES},
            {"op": "query_with_cache", "query": QUERY, "params": PARAMS, "names": NAMES},
            {
                "op": "query_with_cache",
                "query": "SELECT 'other'",
                "params": [7],
                "names": ["StoreId"],
            },
        ],
        mysql=MYSQL_CONFIG,
        redis_url=REDIS_URL,
    )
    assert rows == json.loads(read)
    assert rows == json.loads(hit)
    assert marker == json.loads(other)


async def test_python_value_written_with_node_ttl_rules(
    client: MRCClient, redis_sync: redis.Redis
) -> None:
    """Entries expire after ttl ± 10 %, like Node's: jittered, on both sides of ttl."""
    ttls = []
    for n in range(50):
        await client.write_to_cache("SELECT ?", [1], [n], ["N"], ttl=1000)
        ttls.append(redis_sync.ttl(client.get_key_from_query("SELECT ?", [n], ["N"])))
    assert all(900 <= ttl <= 1100 for ttl in ttls), ttls
    assert min(ttls) < 1000 < max(ttls), ttls  # no jitter would give 1000 (or 999) each


async def test_miss_equals_hit(client: MRCClient) -> None:
    """query_with_cache returns equal values on a miss and on the hit after it."""
    miss = await client.query_with_cache(QUERY, PARAMS, NAMES)
    hit = await client.query_with_cache(QUERY, PARAMS, NAMES)
    assert miss == hit
    assert type(miss[0]["bi"]) is type(hit[0]["bi"])


async def test_with_cache_miss_equals_hit(client: MRCClient) -> None:
    """with_cache returns the cached JSON shape on a miss too."""
    from datetime import UTC, datetime

    async def fn() -> dict[str, Any]:
        return {"when": datetime(2024, 1, 1, tzinfo=UTC), "n": 2.0, "raw": b"\x01"}

    miss = await client.with_cache(fn, "fn:demo", [1], ["A"])
    hit = await client.with_cache(fn, "fn:demo", [1], ["A"])
    assert type(miss["n"]) is int  # JSON.stringify(2.0) is "2": an int on a miss too
    assert type(hit["n"]) is int
    assert (
        miss
        == hit
        == {
            "when": "2024-01-01T00:00:00.000Z",
            "n": 2,
            "raw": {"type": "Buffer", "data": [1]},
        }
    )


async def test_ok_packet_matches_node(client: MRCClient, redis_sync: redis.Redis) -> None:
    """A statement without rows caches mysql2's ResultSetHeader, as Node does."""
    async with client.get_mysql_pool().acquire() as conn, conn.cursor() as cur:
        await cur.execute("CREATE OR REPLACE TABLE mrc_ok (id INT PRIMARY KEY, v INT)")
        await cur.execute("REPLACE INTO mrc_ok VALUES (1, 0)")
    update = "UPDATE mrc_ok SET v = v + 1 WHERE id = ?"
    [node_json] = run_node(
        [{"op": "query_to_promise", "query": update, "params": [1]}], mysql=MYSQL_CONFIG
    )
    ours = await client.query_to_promise(update, [1])
    assert node_json.encode() == encode(ours)  # key order and number layout too
