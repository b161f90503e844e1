"""MRCClient behaviour against the real MariaDB and Redis."""

from __future__ import annotations

import json
import logging
import tracemalloc
from typing import Any

import pytest
import redis

from mysql_redis_cache import (
    ConfigError,
    EncodeError,
    InvalidArgumentError,
    InvalidParamError,
    MRCClient,
    QueryError,
)
from mysql_redis_cache._node.json import decode, encode

from ._tables import create_all_types
from .conftest import MYSQL_CONFIG, MYSQL_URL, REDIS_URL


async def test_query_with_cache_hits_second_time(
    client: MRCClient, redis_sync: redis.Redis
) -> None:
    """The second call is served from Redis, not MySQL."""
    query = "SELECT ? AS v, CONNECTION_ID() AS c"
    first = await client.query_with_cache(query, [1], ["V"])
    redis_sync.set(client.get_key_from_query(query, [1], ["V"]), b'[{"v":"cached"}]')
    assert await client.query_with_cache(query, [1], ["V"]) == [{"v": "cached"}]
    assert first[0]["v"] == 1


@pytest.mark.parametrize(
    "raw",
    [
        b"[-9223372036854776000]",  # BIGINT's minimum, as JSON.stringify writes it
        b'[{"n":-9223372036854775809,"m":18446744073709551616}]',
        b"[123456789012345678901,-123456789012345678901]",
        b"[9223372036854775807,-9223372036854775808,18446744073709551615]",
        b'["2024-01-01","-1",1.5,1e21]',
    ],
)
def test_decode_matches_json_exactly(raw: bytes) -> None:
    """Whichever JSON library decodes, every number comes back as json.loads reads it."""
    decoded = decode(raw)
    assert repr(json.loads(raw)) == repr(decoded)


async def test_a_large_entry_is_stored_without_a_copy(
    client: MRCClient, redis_sync: redis.Redis
) -> None:
    """Storing a 4 MB entry takes no more memory at its peak than encoding it does: the
    command sent to Redis is not a second copy of the payload."""
    rows = [{"id": n, "text": "x" * 400} for n in range(10_000)]
    await client.write_to_cache("big", [1], [1], ["N"])  # the connection is open

    async def peak_of(work: Any) -> int:
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            await work()
            return tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()

    async def encoding() -> None:
        encode(rows)

    encoded = await peak_of(encoding)
    stored = await peak_of(lambda: client.write_to_cache("big", rows, [1], ["N"]))
    entry = redis_sync.get(client.get_key_from_query("big", [1], ["N"]))
    assert entry is not None
    assert rows == json.loads(entry)
    assert stored < encoded + len(entry) // 4, (stored, encoded, len(entry))


@pytest.mark.parametrize("size", [2, 3, 255, 256, 4095, 4096, 70_000])
async def test_entries_of_every_size_are_stored_as_sent(
    client: MRCClient, redis_sync: redis.Redis, size: int
) -> None:
    """Entries of `size` bytes, at the command packer's boundaries, reach Redis intact,
    through a fill and a plain write, and the keys, tokens and numbers around them too."""
    # a JSON string: its UTF-8 bytes and two quotes; multi-byte, so bytes are not chars
    text = "é" * ((size - 2) // 2) + "x" * (size % 2)

    async def fn() -> str:
        return text

    assert text == await client.with_cache(fn, "sized", [size], ["Size"])
    await client.write_to_cache("sized-write", text, [size], ["Size"], ttl=77)
    for query in ("sized", "sized-write"):
        key = client.get_key_from_query(query, [size], ["Size"])
        entry = redis_sync.get(key)
        assert entry is not None
        assert (size, text) == (len(entry), json.loads(entry))
    assert 0 < redis_sync.ttl(client.get_key_from_query("sized-write", [size], ["Size"])) <= 85
    assert 0 == client.stats.errors


async def test_extreme_bigints_miss_equals_hit(client: MRCClient) -> None:
    """BIGINT's extremes read back from the cache exactly as the miss returned them."""
    await create_all_types(client)
    query = "SELECT id, bi FROM mrc_all_types ORDER BY id"
    miss = await client.query_with_cache(query)
    hit = await client.query_with_cache(query)
    assert repr(miss) == repr(hit)


async def test_unnamed_params_are_refused(client: MRCClient) -> None:
    """More params than names would let different params share an entry: refused."""
    with pytest.raises(InvalidArgumentError):
        await client.query_with_cache("SELECT ?, ?", [1, 2], ["A"])
    with pytest.raises(InvalidArgumentError):
        client.get_key_from_query("SELECT ?", [1])


@pytest.mark.parametrize("ttl", [0, -5, 1.5, True, "60"])
async def test_bad_ttl_is_refused(client: MRCClient, redis_sync: redis.Redis, ttl: Any) -> None:
    """A TTL must be a positive int; nothing is written otherwise."""
    with pytest.raises(InvalidArgumentError):
        await client.write_to_cache("SELECT 1", [1], ttl=ttl)
    assert redis_sync.dbsize() == 0


async def test_ambiguous_params_bypass_the_cache(
    client: MRCClient, redis_sync: redis.Redis
) -> None:
    """Params whose key could be another call's are served but never cached."""
    calls = []

    async def fn() -> list[int]:
        calls.append(1)
        return [len(calls)]

    names = ["A", "B"]
    first = await client.with_cache(fn, "q", ["x_B=y", "z"], names)
    second = await client.with_cache(fn, "q", ["x", "y_B=z"], names)
    assert client.get_key_from_query("q", ["x_B=y", "z"], names) == client.get_key_from_query(
        "q", ["x", "y_B=z"], names
    )
    assert (first, second) == ([1], [2])
    assert redis_sync.dbsize() == 0


async def test_object_params_bypass_the_cache(client: MRCClient, redis_sync: redis.Redis) -> None:
    """An object keys as [object Object] whatever it holds, so it is never cached."""
    rows = await client.query_with_cache("SELECT ? AS v", [{"a": 1}], ["O"])
    assert rows == [{"v": "[object Object]"}]
    assert redis_sync.dbsize() == 0


async def test_corrupt_entry_is_a_miss_and_heals(
    client: MRCClient, redis_sync: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """An entry that is not JSON is logged, treated as a miss and overwritten."""
    key = client.get_key_from_query("SELECT 1 AS one")
    redis_sync.set(key, b"\x00not json")
    with caplog.at_level(logging.WARNING, logger="mysql_redis_cache"):
        assert await client.query_with_cache("SELECT 1 AS one") == [{"one": 1}]
    assert redis_sync.get(key) == b'[{"one":1}]'
    assert any("not JSON" in r.message for r in caplog.records)


async def test_cached_null_is_a_hit(client: MRCClient) -> None:
    """A cached null is returned without running the function again."""
    calls = []

    async def fn() -> None:
        calls.append(1)

    assert await client.with_cache(fn, "null-fn") is None
    assert await client.with_cache(fn, "null-fn") is None
    assert len(calls) == 1


async def test_mysql_errors_are_query_errors(client: MRCClient, redis_sync: redis.Redis) -> None:
    """A failing query raises QueryError with the driver error as cause; nothing is cached."""
    with pytest.raises(QueryError) as info:
        await client.query_with_cache("SELECT * FROM no_such_table_mrc")
    assert info.value.__cause__ is not None
    assert redis_sync.dbsize() == 0


async def test_unencodable_result_writes_nothing(
    client: MRCClient, redis_sync: redis.Redis
) -> None:
    """A result with no JSON form raises EncodeError before anything is written."""

    async def fn() -> object:
        return {"s": {1, 2}}

    with pytest.raises(EncodeError):
        await client.with_cache(fn, "set-fn")
    assert redis_sync.dbsize() == 0


async def test_unsupported_param_type(client: MRCClient) -> None:
    """A param mysql2 has no counterpart for raises InvalidParamError."""
    with pytest.raises(InvalidParamError):
        await client.query_to_promise("SELECT ?", [object()])


async def test_keep_numeric_strings_option(redis_sync: redis.Redis) -> None:
    """normalize_numbers=False keeps numeric-looking strings and DECIMAL text."""
    async with MRCClient(MYSQL_CONFIG, REDIS_URL, normalize_numbers=False) as client:
        rows = await client.query_to_promise("SELECT '007' AS s, CAST(1.50 AS DECIMAL(4,2)) AS d")
    assert rows == [{"s": "007", "d": "1.50"}]


async def test_mysql_url_config(redis_sync: redis.Redis) -> None:
    """A mysql:// URL works like the dict form."""
    url = f"{MYSQL_URL}?connectionLimit=2"
    async with MRCClient(url, REDIS_URL) as client:
        assert await client.query_to_promise("SELECT DATABASE() AS db") == [
            {"db": MYSQL_CONFIG["database"]}
        ]
        assert client.get_mysql_pool().maxsize == 2


async def test_pool_usable_before_any_query(redis_sync: redis.Redis) -> None:
    """get_mysql_pool works before the first cached query, and close() closes it."""
    client = MRCClient(MYSQL_CONFIG, REDIS_URL)
    pool = client.get_mysql_pool()
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT 41 + 1")
        assert await cur.fetchone() == (42,)
    await client.close()
    assert pool.closed


async def test_close_redis_then_reuse(client: MRCClient) -> None:
    """After close_redis_connection the next call reconnects."""
    await client.write_to_cache("SELECT 5", [5])
    await client.close_redis_connection()
    assert await client.read_from_cache("SELECT 5") == [5]


async def test_multiple_statements_refused_by_default(client: MRCClient) -> None:
    """As in mysql2, two statements in one query are a syntax error unless enabled."""
    with pytest.raises(QueryError):
        await client.query_to_promise("SELECT 1; SELECT 2")
    async with MRCClient({**MYSQL_CONFIG, "multipleStatements": True}) as multi:
        assert await multi.query_to_promise("SELECT 1; SELECT 2") == [[{"1": 1}], [{"2": 2}]]


def test_bad_config_is_refused() -> None:
    """Unknown keys and bad values raise ConfigError naming the problem."""
    with pytest.raises(ConfigError, match="nosuch"):
        MRCClient({"nosuch": 1})
    with pytest.raises(ConfigError, match="timezone"):
        MRCClient({"timezone": "Europe/Rome"})
    with pytest.raises(ConfigError):
        MRCClient(None, {"decode_responses": True})


async def test_geometry_columns_are_refused(client: MRCClient, redis_sync: redis.Redis) -> None:
    """A column type the cache cannot mirror raises instead of caching a wrong value."""
    with pytest.raises(QueryError, match="GEOMETRY"):
        await client.query_with_cache("SELECT POINT(1, 2) AS p")
    assert 0 == redis_sync.dbsize()


async def test_pool_waits_when_full_and_terminates() -> None:
    """A full pool makes the next borrower wait for a release; terminate closes all."""
    import asyncio

    client = MRCClient({**MYSQL_CONFIG, "connectionLimit": 1})
    pool = client.get_mysql_pool()
    first = await pool.acquire()
    waiter = asyncio.ensure_future(pool.acquire())
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await pool.release(first)
    second = await waiter
    assert second is first
    assert (1, 0) == (pool.size, pool.freesize)
    pool.terminate()
    assert pool.driver.is_closed(second)
    await client.close()


async def test_failed_connects_never_leave_borrowers_waiting() -> None:
    """With MySQL unreachable and a full pool, every concurrent query fails; none hangs."""
    import asyncio

    from ._redis_server import free_port

    dead = {**MYSQL_CONFIG, "port": free_port(), "connectionLimit": 1, "connect_timeout": 1}
    async with MRCClient(dead, REDIS_URL) as client:
        results = await asyncio.wait_for(
            asyncio.gather(
                *(client.query_to_promise("SELECT 1") for _ in range(3)), return_exceptions=True
            ),
            timeout=10,
        )
    assert all(isinstance(r, QueryError) for r in results)
