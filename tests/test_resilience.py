"""The cache never makes a request fail: outages, stampedes, locks (real Redis processes)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from mysql_redis_cache import CacheUnavailableError, MRCClient

from ._redis_server import RedisProcess, free_port, redis_server
from .conftest import MYSQL_CONFIG, REDIS_URL

DEAD_REDIS = f"redis://127.0.0.1:{free_port()}/0"


@pytest.fixture
def private_redis() -> Iterator[RedisProcess]:
    with redis_server() as server:
        yield server


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


async def test_unreachable_redis_serves_from_mysql(caplog: pytest.LogCaptureFixture) -> None:
    """Redis down at start: every call is answered from MySQL; one warning; Redis tried once."""
    async with MRCClient(MYSQL_CONFIG, DEAD_REDIS, breaker_cooldown=30) as client:
        with caplog.at_level(logging.WARNING, logger="mysql_redis_cache"):
            results = [
                await client.query_with_cache("SELECT ? AS n", [n], ["N"]) for n in range(50)
            ]
    assert [[{"n": n}] for n in range(50)] == results
    assert 1 == client.stats.errors  # calls that reached Redis
    # every other Redis call (a read and a write per request) was skipped
    assert 50 * 2 - 1 == client.stats.skipped
    assert 1 == len(warnings_of(caplog))


async def test_breaker_probes_once_per_cooldown() -> None:
    """With the breaker open, at most one call per cool-down touches Redis."""
    async with MRCClient(MYSQL_CONFIG, DEAD_REDIS, breaker_cooldown=0.2) as client:

        async def fn() -> int:
            return 1

        loop = asyncio.get_running_loop()
        start = loop.time()
        calls = 0
        while loop.time() - start < 0.5:
            await client.with_cache(fn, "probe")
            calls += 1
            await asyncio.sleep(0.001)
    reached = client.stats.errors
    assert calls > 100
    assert reached <= 1 + 0.5 / 0.2 + 1  # the first failure, then one probe per cool-down


async def test_fail_open_false_raises() -> None:
    """fail_open=False surfaces the outage as CacheUnavailableError, quickly after the first."""
    async with MRCClient(MYSQL_CONFIG, DEAD_REDIS, fail_open=False) as client:
        with pytest.raises(CacheUnavailableError):
            await client.query_with_cache("SELECT 1")
        with pytest.raises(CacheUnavailableError, match="breaker"):
            await client.read_from_cache("SELECT 1")


async def test_kill_and_restart_under_load(
    private_redis: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """Zero failed requests across a Redis crash and restart; the cache comes back by itself."""
    client = MRCClient(
        MYSQL_CONFIG, {"url": private_redis.url, "client_name": "mrc-chaos"}, breaker_cooldown=0.1
    )
    failures = 0
    hits_after_restart = 0
    with caplog.at_level(logging.WARNING, logger="mysql_redis_cache"):
        for n in range(300):
            if n == 60:
                private_redis.kill()
            if n == 150:
                private_redis.start()
            if n == 200:
                hits_before = client.stats.hits
            try:
                rows = await client.query_with_cache("SELECT ? AS n", [n % 10], ["N"])
                assert [{"n": n % 10}] == rows
            except Exception:
                failures += 1
            await asyncio.sleep(0.002)
        hits_after_restart = client.stats.hits - hits_before
    check = redis.Redis.from_url(private_redis.url)
    connections = sum(1 for c in check.client_list() if c.get("name") == "mrc-chaos")
    check.close()
    await client.close()
    assert 0 == failures
    assert hits_after_restart >= 90
    assert ["unavailable", "reachable again"] == [
        "unavailable" if "unavailable" in m else "reachable again" for m in warnings_of(caplog)
    ]
    assert connections <= 2  # the dedicated read connection and one pooled for writes


async def test_hung_redis_times_out(private_redis: RedisProcess) -> None:
    """Reads from a Redis that stops answering fail after redis_timeout, lone and batched."""
    async with MRCClient(
        MYSQL_CONFIG, private_redis.url, fail_open=False, redis_timeout=0.2, breaker_cooldown=0.1
    ) as client:
        await client.write_to_cache("hang", [1])
        assert [1] == await client.read_from_cache("hang")
        private_redis.pause()
        try:
            reads = (client.read_from_cache("hang", [n], ["N"]) for n in range(20))
            results = await asyncio.wait_for(
                asyncio.gather(*reads, return_exceptions=True), timeout=10
            )
        finally:
            private_redis.resume()
        assert all(isinstance(result, CacheUnavailableError) for result in results), results
        assert "silent for 0.2 s" in str(results[0])
        await asyncio.sleep(0.15)  # the breaker's cool-down
        assert [1] == await client.read_from_cache("hang")


async def test_steady_reads_never_time_out(private_redis: RedisProcess) -> None:
    """The one timer checking reads re-arms across many timeouts' worth of traffic and idling."""
    async with MRCClient(
        MYSQL_CONFIG, private_redis.url, fail_open=False, redis_timeout=0.05
    ) as client:
        await client.write_to_cache("steady", [1])
        loop = asyncio.get_running_loop()
        start = loop.time()
        reads = 0
        while loop.time() - start < 0.4:
            assert [1] == await client.read_from_cache("steady")
            reads += 1
        await asyncio.sleep(0.2)  # idle past the timer
        results = await asyncio.gather(*(client.read_from_cache("steady") for _ in range(10)))
    assert [[1]] * 10 == results
    assert reads > 100
    assert 0 == client.stats.errors


async def test_caller_cancel_stays_a_cancel(private_redis: RedisProcess) -> None:
    """A caller's own timeout on a hung read is the caller's: no CacheError, no error counted."""
    async with MRCClient(
        MYSQL_CONFIG, private_redis.url, fail_open=False, redis_timeout=5
    ) as client:
        assert None is await client.read_from_cache("cancelled")
        private_redis.pause()
        try:
            with pytest.raises(TimeoutError):  # asyncio's, from wait_for
                await asyncio.wait_for(client.read_from_cache("cancelled"), 0.1)
        finally:
            private_redis.resume()
        assert None is await client.read_from_cache("cancelled")  # on a new connection
    assert 0 == client.stats.errors


async def test_stampede_runs_once(client: MRCClient, redis_sync: redis.Redis) -> None:
    """100 concurrent callers on a cold key share one execution."""
    runs = 0

    async def slow() -> list[int]:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.05)
        return [42]

    results = await asyncio.gather(
        *(client.with_cache(slow, "cold", [1], ["K"]) for _ in range(100))
    )
    assert 1 == runs
    assert [[42]] * 100 == results
    assert 99 == client.stats.joins


async def test_stampede_error_reaches_every_waiter(
    client: MRCClient, redis_sync: redis.Redis
) -> None:
    """If the shared execution fails, every caller gets the error and nothing is cached."""
    runs = 0

    async def boom() -> None:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.02)
        raise RuntimeError("db down")

    results = await asyncio.gather(
        *(client.with_cache(boom, "cold-err") for _ in range(20)), return_exceptions=True
    )
    assert 1 == runs
    assert all(isinstance(r, RuntimeError) for r in results)
    assert 0 == redis_sync.dbsize()


async def test_cancelled_caller_does_not_cancel_others(client: MRCClient) -> None:
    """Cancelling the first caller leaves the shared execution running for the rest."""

    async def slow() -> str:
        await asyncio.sleep(0.05)
        return "done"

    first = asyncio.ensure_future(client.with_cache(slow, "cancel-me"))
    await asyncio.sleep(0.01)
    second = asyncio.ensure_future(client.with_cache(slow, "cancel-me"))
    await asyncio.sleep(0.01)
    first.cancel()
    assert "done" == await second


async def test_cross_process_lock_single_execution(redis_sync: redis.Redis) -> None:
    """Two clients (as two processes) with the lock compute a cold entry once."""
    runs = 0

    async def slow() -> list[int]:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.2)
        return [runs]

    async with (
        MRCClient(MYSQL_CONFIG, REDIS_URL, lock_timeout=2) as a,
        MRCClient(MYSQL_CONFIG, REDIS_URL, lock_timeout=2) as b,
    ):
        results = await asyncio.gather(a.with_cache(slow, "locked"), b.with_cache(slow, "locked"))
        key = a.get_key_from_query("locked")
        assert 1 == runs
        assert [[1], [1]] == list(results)
        assert 1 == a.stats.lock_waits + b.stats.lock_waits
        assert not redis_sync.exists(key + ":lock")
        assert b"[1]" == redis_sync.get(key)


async def test_orphaned_lock_never_hangs(client: MRCClient, redis_sync: redis.Redis) -> None:
    """A lock left by a crashed process is waited on for at most lock_timeout."""
    async with MRCClient(MYSQL_CONFIG, REDIS_URL, lock_timeout=0.3) as locked:
        key = locked.get_key_from_query("orphan")
        redis_sync.set(key + ":lock", b"someone-else", px=60_000)

        async def fn() -> str:
            return "computed"

        result = await asyncio.wait_for(locked.with_cache(fn, "orphan"), timeout=5)
    assert "computed" == result
    assert b'"computed"' == redis_sync.get(key)
    assert b"someone-else" == redis_sync.get(key + ":lock")  # not ours: left alone


def test_stats_export() -> None:
    """Counters export as a dict and reset to zero."""
    client = MRCClient(MYSQL_CONFIG, REDIS_URL)
    client.stats.hits = 3
    assert 3 == client.stats.as_dict()["hits"]
    client.stats.reset()
    assert all(v == 0 for v in client.stats.as_dict().values())


@pytest.mark.parametrize("option", ["redis_timeout", "breaker_cooldown", "lock_timeout"])
@pytest.mark.parametrize("value", [0, -1, "1", True])
def test_bad_resilience_options(option: str, value: Any) -> None:
    """Timeouts and cool-downs must be positive numbers."""
    from mysql_redis_cache import ConfigError

    with pytest.raises(ConfigError, match=option):
        MRCClient(MYSQL_CONFIG, REDIS_URL, **{option: value})


async def test_stampede_callers_get_their_own_copies(client: MRCClient) -> None:
    """Callers sharing one execution get equal results that are not one shared object."""

    async def rows() -> list[dict[str, int]]:
        await asyncio.sleep(0.02)
        return [{"n": 1}]

    results = await asyncio.gather(*(client.with_cache(rows, "copies") for _ in range(5)))
    results[0][0]["n"] = 99
    assert [[{"n": 1}]] * 4 == results[1:]
    assert 5 == len({id(r) for r in results})
