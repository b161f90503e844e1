"""Load on a healthy Redis is no outage: cold bursts of thousands of misses are all cached,
an overload only adds latency, fills of one key in several processes all store, and a
failure deep in redis-py's connect path reaches callers only as fail-open or MRCError."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio.connection

from mysql_redis_cache import MRCClient, MRCError

from ._redis_server import redis_cluster
from .conftest import MYSQL_CONFIG, REDIS_URL, stored_keys

pytestmark = pytest.mark.load

# The query of the burst: each miss holds one of the 10 MySQL connections 2 ms.
SLOW = "SELECT ? AS v, SLEEP(0.002) AS s"
FAST = "SELECT ? AS v"


def assert_healthy(client: MRCClient) -> None:
    assert (0, 0) == (client.stats.errors, client.stats.skipped), client.stats
    assert not client._guard.breaker.is_open


async def burst(client: MRCClient, count: int) -> list[Any]:
    return await asyncio.gather(*(client.query_with_cache(SLOW, [n], ["Id"]) for n in range(count)))


@pytest.mark.parametrize(
    ("count", "options"),
    [
        (3_000, {}),
        (10_000, {}),
        # shorter than the loop's busiest iteration in such a burst: still no outage
        (3_000, {"redis_timeout": 0.05}),
    ],
    ids=["3000", "10000", "3000-50ms-timeout"],
)
async def test_a_cold_burst_is_all_cached(
    redis_sync: redis.Redis, count: int, options: dict[str, Any]
) -> None:
    """Thousands of concurrent distinct misses: no error, every entry stored, then all hits."""
    async with MRCClient(MYSQL_CONFIG, REDIS_URL, **options) as client:
        rows = await burst(client, count)
        assert [[{"v": n, "s": 0}] for n in range(count)] == rows
        assert_healthy(client)
        assert count == len(stored_keys(redis_sync))
        client.stats.reset()
        assert rows == await burst(client, count)
        assert (count, 0) == (client.stats.hits, client.stats.misses)
        assert_healthy(client)


async def test_a_cold_burst_on_a_cluster_is_all_cached() -> None:
    """The same on a real three-node Redis Cluster, whose nodes refuse commands past their
    own pool size."""
    with redis_cluster() as ports:
        config = {"url": f"redis://127.0.0.1:{ports[0]}", "cluster": True}
        async with MRCClient(MYSQL_CONFIG, config) as client:
            rows = await burst(client, 3_000)
            assert_healthy(client)
            stored = sum(redis.Redis(port=port).dbsize() for port in ports)
            assert 3_000 == stored
            client.stats.reset()
            assert rows == await burst(client, 3_000)
            assert (3_000, 0) == (client.stats.hits, client.stats.misses)
            assert_healthy(client)


async def capacity(client: MRCClient, keys: int) -> float:
    """Calls a second the client gets through with one call for each cached key in flight
    at once: its best rate, as concurrent reads share round trips (64 closed-loop workers
    measured less than 70 % of it, too little to overload it at 1.5x)."""
    loop = asyncio.get_running_loop()
    best = 0.0
    for _ in range(3):  # the first also warms up
        start = loop.time()
        await asyncio.gather(*(client.query_with_cache(FAST, [n], ["Id"]) for n in range(keys)))
        best = max(best, keys / (loop.time() - start))
    return best


def count_statements(client: MRCClient) -> list[str]:
    """The statements `client` sends to MySQL from now on, recorded as they go (the
    server's Com_select counts every client on the machine, so it cannot tell)."""
    sent: list[str] = []
    run = client._sql_side.run

    async def recorded(sql: str) -> Any:
        sent.append(sql)
        return await run(sql)

    client._sql_side.run = recorded  # type: ignore[method-assign]
    return sent


async def test_an_overload_adds_latency_not_outages(redis_sync: redis.Redis) -> None:
    """Calls over 5,000 cached keys arriving at 1.5x the client's best rate for 4 s: no
    Redis error, nothing skipped, no MySQL query, and the backlog drains within twice the
    overload's length (the work it holds takes about half of it)."""
    keys, seconds = 5_000, 4.0
    async with MRCClient(MYSQL_CONFIG, REDIS_URL) as client:
        await client.query_many_with_cache(FAST, [[n] for n in range(keys)], ["Id"])
        rate = 1.5 * await capacity(client, keys)
        client.stats.reset()
        statements = count_statements(client)
        loop = asyncio.get_running_loop()
        pending: set[asyncio.Task[Any]] = set()
        sent, start = 0, loop.time()
        while (elapsed := loop.time() - start) < seconds:
            for _ in range(int(elapsed * rate) - sent):  # open loop: late arrivals catch up
                task = loop.create_task(client.query_with_cache(FAST, [sent % keys], ["Id"]))
                pending.add(task)
                task.add_done_callback(pending.discard)
                sent += 1
            await asyncio.sleep(0.001)
        overloaded = loop.time() - start
        backlog = len(pending)
        await asyncio.gather(*pending)
        drained = loop.time() - start - overloaded
        assert (sent, 0, 0) == (client.stats.hits, client.stats.misses, client.stats.bypasses)
        assert_healthy(client)
    assert [] == statements  # every call a hit: nothing reached MySQL
    assert backlog > 0.1 * sent, (backlog, sent)  # it was an overload
    assert drained < 2 * overloaded, (drained, overloaded, backlog, sent)


@pytest.fixture
def failing_connects(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The next three connections redis-py opens fail deep in its connect path with what
    redis-py 8.2 raised there under load: a TypeError, not a RedisError."""
    failures = [3]
    real = redis.asyncio.connection.AbstractConnection.on_connect_check_health

    async def flaky(self: Any, *args: Any, **kwargs: Any) -> Any:
        if failures[0] > 0:
            failures[0] -= 1
            raise TypeError("'NoneType' object is not callable")
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(
        redis.asyncio.connection.AbstractConnection, "on_connect_check_health", flaky
    )
    return failures


async def test_a_raw_failure_in_connect_fails_open(
    redis_sync: redis.Redis, failing_connects: list[int]
) -> None:
    """A burst whose first connections fail with a TypeError is served from MySQL, counted
    once as an outage, and the cache is back once the connects succeed."""
    async with MRCClient(MYSQL_CONFIG, REDIS_URL, breaker_cooldown=0.05) as client:
        rows = await asyncio.gather(
            *(client.query_with_cache(FAST, [n], ["Id"]) for n in range(1000))
        )
        assert [[{"v": n}] for n in range(1000)] == rows
        assert client.stats.errors >= 1
        for _ in range(20):  # each probe may meet one of the failing connects left
            await asyncio.sleep(0.06)
            assert [{"v": 5}] == await client.query_with_cache(FAST, [5], ["Id"])
            if not client._guard.breaker.is_open:
                break
        assert not client._guard.breaker.is_open
        assert [{"v": 6}] == await client.query_with_cache(FAST, [6], ["Id"])
    assert 0 == failing_connects[0]


async def test_a_raw_failure_in_connect_raises_only_mrc_errors(
    redis_sync: redis.Redis, failing_connects: list[int]
) -> None:
    """Failing closed, the same burst raises nothing but MRCError."""
    async with MRCClient(MYSQL_CONFIG, REDIS_URL, fail_open=False) as client:
        outcomes = await asyncio.gather(
            *(client.query_with_cache(FAST, [n], ["Id"]) for n in range(1000)),
            return_exceptions=True,
        )
    errors = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert errors
    assert [] == [error for error in errors if not isinstance(error, MRCError)]


def hot_key_fleet(refresh_ahead: bool) -> list[dict[str, Any]]:
    """3 processes x 16 workers reading one key (TTL 4 s, a 200 ms fill) every 5 ms for
    12 s, with no invalidation; each process's report."""
    script = Path(__file__).with_name("_hot_key.py")
    argv = [sys.executable, str(script), REDIS_URL, "12", "4"]
    if refresh_ahead:
        argv.append("refresh-ahead")
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(3)]
    return [json.loads(proc.communicate(timeout=60)[0]) for proc in procs]


def test_fills_of_one_key_in_three_processes_never_refuse_each_other(
    redis_sync: redis.Redis,
) -> None:
    """Without refresh-ahead: no store refused, at most one fill per process per TTL
    window, and each expiry stalls the callers for the fill's 200 ms."""
    reports = hot_key_fleet(refresh_ahead=False)
    assert [0, 0, 0] == [report["refused"] for report in reports]
    assert all(report["fills"] <= 4 for report in reports), reports  # 12 s / 4 s, + the first
    assert all(report["errors"] == 0 for report in reports), reports
    assert max(report["slowest"] for report in reports) >= 0.15, reports


def test_refresh_ahead_keeps_a_hot_key_from_stalling(redis_sync: redis.Redis) -> None:
    """With refresh-ahead: after each process's first fill no call takes 100 ms, and the
    fill runs at most 8 times in all (the first fills, then one refresh per window)."""
    reports = hot_key_fleet(refresh_ahead=True)
    assert max(report["slowest"] for report in reports) < 0.1, reports
    assert sum(report["fills"] for report in reports) <= 8, reports
    assert sum(report["refreshes"] for report in reports) >= 2, reports
    assert [0, 0, 0] == [report["refused"] + report["errors"] for report in reports]
