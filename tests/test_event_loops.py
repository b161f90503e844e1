"""One client reused across many asyncio.run() calls, as in AWS Lambda handlers."""

from __future__ import annotations

import asyncio

import redis

from mysql_redis_cache import MRCClient, MRCServer

from .conftest import MYSQL_CONFIG, REDIS_URL, stored_keys

RUNS = 20


def named_connections(redis_sync: redis.Redis, name: str) -> int:
    return sum(1 for c in redis_sync.client_list() if c.get("name") == name)


def mysql_connections(redis_sync: redis.Redis) -> int:
    async def count() -> int:
        async with MRCClient(MYSQL_CONFIG) as probe:
            rows = await probe.query_to_promise(
                "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE DB = ?",
                [MYSQL_CONFIG["database"]],
            )
        return int(rows[0]["n"]) - 1  # the probe's own connection

    return asyncio.run(count())


def test_module_level_client_survives_new_loops(redis_sync: redis.Redis) -> None:
    """20 asyncio.run() invocations each miss then hit, and leave no connection behind."""
    client = MRCClient(MYSQL_CONFIG, {"url": REDIS_URL, "client_name": "mrc-loops"})
    mysql_before = mysql_connections(redis_sync)
    during: list[int] = []

    async def invocation(n: int) -> tuple[object, object]:
        query = "SELECT ? AS n, CONNECTION_ID() > 0 AS ok"
        miss = await client.query_with_cache(query, [n], ["N"])
        hit = await client.query_with_cache(query, [n], ["N"])
        during.append(named_connections(redis_sync, "mrc-loops"))
        return miss, hit

    for n in range(RUNS):
        miss, hit = asyncio.run(invocation(n))
        assert miss == hit == [{"n": n, "ok": 1}]
        assert 0 == named_connections(redis_sync, "mrc-loops")
    assert RUNS == len(stored_keys(redis_sync))
    assert max(during) == 2  # the dedicated read connection and one pooled for writes
    assert mysql_before == mysql_connections(redis_sync)


def test_async_with_inside_each_invocation(redis_sync: redis.Redis) -> None:
    """`async with` on a module-level client works in every invocation."""
    client = MRCClient(MYSQL_CONFIG, REDIS_URL)

    async def invocation(n: int) -> object:
        async with client:
            return await client.query_with_cache("SELECT ? AS n", [n], ["N"])

    assert [[{"n": n}] for n in range(3)] == [asyncio.run(invocation(n)) for n in range(3)]


def test_pool_made_before_any_loop_is_adopted(redis_sync: redis.Redis) -> None:
    """get_mysql_pool() at import time (no loop yet) gives a pool the first loop uses."""
    client = MRCClient(MYSQL_CONFIG, REDIS_URL)
    pool = client.get_mysql_pool()

    async def invocation() -> object:
        assert pool is client.get_mysql_pool()
        return await client.query_to_promise("SELECT 1 AS one")

    assert [{"one": 1}] == asyncio.run(invocation())


def test_module_level_server_survives_new_loops(redis_sync: redis.Redis) -> None:
    """MRCServer.drop_outdated_cache works across asyncio.run() calls, connections bounded."""
    server = MRCServer({"url": REDIS_URL, "client_name": "mrc-server-loops"})
    for n in range(RUNS):
        redis_sync.set(f"StoreId={n}_" + "a" * 40, b"[]")
        assert 1 == asyncio.run(server.drop_outdated_cache(["StoreId"], [n]))
        assert 0 == named_connections(redis_sync, "mrc-server-loops")
    assert 0 == len(stored_keys(redis_sync))
