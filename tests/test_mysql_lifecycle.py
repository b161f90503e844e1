"""MySQL pool health and a lifecycle that never hangs (real MariaDB; both drivers in CI)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis

from mysql_redis_cache import ClientClosedError, MRCClient, MRCError, QueryError

from ._mysql_admin import admin, kill, running
from .conftest import MYSQL_CONFIG, REDIS_URL

SLEEPY = "SELECT SLEEP(?) AS s, ? AS n"


def pooled_ids(client: MRCClient) -> list[int]:
    pool = client.get_mysql_pool()
    return [pool.driver.thread_id(conn) for conn in pool._free]


async def warm(client: MRCClient, count: int) -> None:
    await asyncio.gather(*(client.query_to_promise(SLEEPY, [0.05, n]) for n in range(count)))


@pytest.fixture
async def client(redis_sync: redis.Redis) -> AsyncIterator[MRCClient]:
    async with MRCClient(MYSQL_CONFIG, REDIS_URL) as mrc:
        yield mrc


async def test_killed_idle_connections_are_never_handed_out(client: MRCClient) -> None:
    """After every idle pooled connection is killed (loop not yet told), 0 queries fail."""
    await warm(client, 10)
    ids = pooled_ids(client)
    assert 10 == len(ids)
    kill(ids)  # blocks the loop: the pool learns of it only when it looks
    results = await asyncio.gather(
        *(client.query_to_promise("SELECT ? AS n", [n]) for n in range(10)),
        return_exceptions=True,
    )
    assert [[{"n": n}] for n in range(10)] == results


async def test_connections_killed_mid_query_leave_the_pool(client: MRCClient) -> None:
    """Queries whose connections die fail alone; the 20 after them all succeed."""
    await warm(client, 4)
    queries = [asyncio.ensure_future(client.query_to_promise(SLEEPY, [5, n])) for n in range(4)]
    await asyncio.sleep(0.3)
    with admin() as conn, conn.cursor() as cur:
        cur.execute(  # this run's statements only: never another user's
            "SELECT ID FROM information_schema.PROCESSLIST "
            "WHERE INFO LIKE 'SELECT SLEEP(5)%%' AND DB = %s",
            (MYSQL_CONFIG["database"],),
        )
        kill([int(row[0]) for row in cur.fetchall()])
    failed = await asyncio.gather(*queries, return_exceptions=True)
    assert all(isinstance(result, QueryError) for result in failed)
    after = [await client.query_to_promise("SELECT ? AS n", [n]) for n in range(20)]
    assert [[{"n": n}] for n in range(20)] == after


@pytest.mark.parametrize("megabytes", [20, 50])
async def test_oversized_param_is_refused_and_poisons_nothing(
    client: MRCClient, megabytes: int
) -> None:
    """A statement past max_allowed_packet is a QueryError naming it; the next 3 queries run."""
    with pytest.raises(QueryError, match="max_allowed_packet"):
        await client.query_to_promise("SELECT LENGTH(?) AS n", ["x" * megabytes * 2**20])
    for n in range(3):
        assert [{"n": n}] == await client.query_to_promise("SELECT ? AS n", [n])


async def test_close_with_queued_callers_returns_promptly(redis_sync: redis.Redis) -> None:
    """One connection, three 0.3 s queries, close() at 0.1 s: the first finishes, the
    queued two get ClientClosedError, close() returns, nothing is left running."""
    client = MRCClient({**MYSQL_CONFIG, "connectionLimit": 1}, REDIS_URL)
    calls = [asyncio.ensure_future(client.query_to_promise(SLEEPY, [0.3, n])) for n in range(3)]
    await asyncio.sleep(0.1)
    start = time.monotonic()
    await asyncio.wait_for(client.close(), 2)
    results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 2)
    assert time.monotonic() - start < 2
    assert [{"s": 0, "n": 0}] == results[0]
    assert all(isinstance(result, ClientClosedError) for result in results[1:])
    assert 0 == running("SELECT SLEEP(0.3)")


async def test_close_with_a_full_pool_returns_promptly(redis_sync: redis.Redis) -> None:
    """20 queries on 10 connections, then close(): 10 results, 10 ClientClosedError."""
    client = MRCClient(MYSQL_CONFIG, REDIS_URL)
    calls = [asyncio.ensure_future(client.query_to_promise(SLEEPY, [0.3, n])) for n in range(20)]
    await asyncio.sleep(0.1)
    await asyncio.wait_for(client.close(), 2)
    results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 2)
    assert 10 == sum(isinstance(result, list) for result in results)
    assert 10 == sum(isinstance(result, ClientClosedError) for result in results)


async def test_close_past_grace_kills_what_runs(redis_sync: redis.Redis) -> None:
    """Statements still running when the grace ends are killed on the server; their
    callers get ClientClosedError, not MySQL's "Lost connection" (a shutdown, not a crash)."""
    client = MRCClient(MYSQL_CONFIG, REDIS_URL)
    calls = [asyncio.ensure_future(client.query_to_promise(SLEEPY, [30, n])) for n in range(3)]
    await asyncio.sleep(0.3)
    await asyncio.wait_for(client.close(grace=0.2), 5)
    results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5)
    assert [ClientClosedError] * 3 == [type(result) for result in results]
    assert 0 == running("SELECT SLEEP(30)")


def redis_clients(name: str) -> int:
    with redis.Redis.from_url(REDIS_URL) as check:
        return sum(1 for c in check.client_list() if c.get("name") == name)


async def test_fills_in_flight_end_with_close(redis_sync: redis.Redis) -> None:
    """Fills past the grace are cancelled: callers get ClientClosedError, nothing is written
    after close() returns, and no Redis connection is left open."""
    client = MRCClient(MYSQL_CONFIG, {"url": REDIS_URL, "client_name": "mrc-fills"})

    async def slow() -> list[int]:
        await asyncio.sleep(1)
        return [1]

    calls = [asyncio.ensure_future(client.with_cache(slow, "f", [n], ["N"])) for n in range(5)]
    await asyncio.sleep(0.1)
    await client.close(grace=0.1)
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(result, ClientClosedError) for result in results)
    await asyncio.sleep(1.1)  # past when the fills would have written
    assert 0 == redis_sync.dbsize()
    assert 0 == redis_clients("mrc-fills")


async def test_a_closed_client_reopens_on_use(redis_sync: redis.Redis) -> None:
    """After close() the next call opens new connections (one `async with` per request)."""
    client = MRCClient(MYSQL_CONFIG, REDIS_URL)
    for n in range(3):
        async with client:
            assert [{"n": n}] == await client.query_with_cache("SELECT ? AS n", [n], ["N"])
    assert 3 == client.stats.misses


async def test_cancelled_callers_free_their_connections(client: MRCClient) -> None:
    """30 callers that give up leave no statement running; the next query gets a connection."""
    calls = [
        asyncio.wait_for(client.query_with_cache(SLEEPY, [3, n], ["S", "N"]), 0.2)
        for n in range(30)
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(result, TimeoutError) for result in results)
    assert [{"one": 1}] == await asyncio.wait_for(client.query_to_promise("SELECT 1 AS one"), 1)
    for _ in range(20):  # the kills go out as the abandoned fills wind down
        if not running("SELECT SLEEP(3)"):
            break
        await asyncio.sleep(0.1)
    assert 0 == running("SELECT SLEEP(3)")


@pytest.fixture
def few_connections() -> Iterator[dict[str, Any]]:
    """A MySQL config for an unprivileged user (root may pass max_connections), with
    max_connections set to what is in use plus 3, then restored."""
    with admin() as conn, conn.cursor() as cur:
        cur.execute("CREATE USER IF NOT EXISTS 'mrc_limited'@'%' IDENTIFIED BY 'limited'")
        cur.execute(f"GRANT SELECT ON `{MYSQL_CONFIG['database']}`.* TO 'mrc_limited'@'%'")
        cur.execute("SELECT @@GLOBAL.max_connections")
        row = cur.fetchone()
        assert row is not None
        before = int(row[0])
        cur.execute("SHOW STATUS LIKE 'Threads_connected'")
        status = cur.fetchone()
        assert status is not None
        cur.execute(f"SET GLOBAL max_connections = {int(status[1]) + 3}")
        try:
            yield {**MYSQL_CONFIG, "user": "mrc_limited", "password": "limited"}
        finally:
            cur.execute(f"SET GLOBAL max_connections = {before}")


async def test_too_many_connections_waits_for_the_pool(
    redis_sync: redis.Redis, few_connections: dict[str, Any]
) -> None:
    """With the server nearly full, 20 callers all succeed through the connections it took."""
    async with MRCClient(few_connections, REDIS_URL) as client:
        results = await asyncio.gather(
            *(client.query_to_promise(SLEEPY, [0.05, n]) for n in range(20)),
            return_exceptions=True,
        )
        assert [[{"s": 0, "n": n}] for n in range(20)] == results
        assert client.get_mysql_pool().size < 10


async def test_graceful_shutdown_like_a_web_lifespan(redis_sync: redis.Redis) -> None:
    """Hits, misses, fills and queued callers in flight, then shutdown: each ends with a
    result or an MRCError, within the bound, with nothing left open on either server."""
    client = MRCClient(
        {**MYSQL_CONFIG, "connectionLimit": 4}, {"url": REDIS_URL, "client_name": "mrc-app"}
    )
    for n in range(5):  # entries to hit
        await client.query_with_cache("SELECT ? AS hot", [n], ["Hot"])

    async def request(n: int) -> Any:
        kind = n % 3
        if kind == 0:
            return await client.query_with_cache("SELECT ? AS hot", [n % 5], ["Hot"])
        if kind == 1:
            return await client.query_with_cache(SLEEPY, [0.4, n], ["S", "N"])
        return await client.query_to_promise(SLEEPY, [0.2, n])

    requests = [asyncio.ensure_future(request(n)) for n in range(30)]
    await asyncio.sleep(0.05)
    start = time.monotonic()
    await client.close(grace=1)
    assert time.monotonic() - start < 2
    results = await asyncio.wait_for(asyncio.gather(*requests, return_exceptions=True), 2)
    assert all(isinstance(result, list | MRCError) for result in results), results
    assert any(isinstance(result, list) for result in results)
    assert 0 == redis_clients("mrc-app")
    assert 0 == running("SELECT SLEEP(0.")
