"""Refresh-ahead: a hit near its entry's expiry renews it in the background, through the
fill machinery (single-flight, the lock, the marker, the jittered TTL), and Node reads
what it stored."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
import redis

from mysql_redis_cache import ConfigError, MRCClient, MRCServer

from ._node import run_node
from .conftest import MYSQL_CONFIG, REDIS_URL

# β so large that δ·β passes any TTL left in these tests: the first hit that knows its
# entry's expiry and the last fill's duration refreshes (XFetch's draw is then ~certain).
EAGER = 1e12


class Source:
    """A `with_cache` function that counts its runs and returns the count."""

    def __init__(self, seconds: float = 0.02, fail_after: int | None = None) -> None:
        self.runs = 0
        self.seconds = seconds
        self.fail_after = fail_after
        self.started = asyncio.Event()

    async def __call__(self) -> list[int]:
        self.runs += 1
        self.started.set()
        if self.fail_after is not None and self.runs > self.fail_after:
            raise RuntimeError("the source failed")
        await asyncio.sleep(self.seconds)
        return [self.runs]


async def until(check: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.mark.interop
@pytest.mark.usefixtures("node")
async def test_a_hit_refreshes_its_entry_and_node_reads_it(redis_sync: redis.Redis) -> None:
    """A hit starts one background refresh; it stores the new value with a TTL in Node's
    jitter range, under Node's key, and the npm package reads it back."""
    source = Source()
    async with MRCClient(MYSQL_CONFIG, REDIS_URL, refresh_ahead=EAGER) as client:
        assert [1] == await client.with_cache(source, "q", [7], ["Id"], ttl=100)
        assert [1] == await client.with_cache(source, "q", [7], ["Id"], ttl=100)  # a hit
        flights = client._lookups.get().flights
        await until(lambda: client.stats.refreshes == 1 and not flights._refreshing)
        key = client.get_key_from_query("q", [7], ["Id"])
    assert 2 == source.runs
    assert b"[2]" == redis_sync.get(key)
    assert 90 <= redis_sync.ttl(key) <= 110
    [node] = run_node(
        [{"op": "read_from_cache", "query": "q", "params": [7], "names": ["Id"]}],
        redis_url=REDIS_URL,
    )
    assert [2] == json.loads(node)


async def test_no_refresh_without_a_fill_timed_here(redis_sync: redis.Redis) -> None:
    """Entries another process wrote are never refreshed before this one has timed a fill."""
    source = Source()
    async with MRCClient(MYSQL_CONFIG, REDIS_URL, refresh_ahead=EAGER) as client:
        await client.write_to_cache("q", [0], [7], ["Id"], ttl=100)
        for _ in range(20):
            assert [0] == await client.with_cache(source, "q", [7], ["Id"])
        await asyncio.sleep(0.05)
    assert (0, 0) == (source.runs, client.stats.refreshes)


async def test_one_refresh_at_a_time_per_key(redis_sync: redis.Redis) -> None:
    """Many hits at once start one refresh (single-flight), not one each."""
    source = Source(seconds=0.2)
    async with MRCClient(MYSQL_CONFIG, REDIS_URL, refresh_ahead=EAGER) as client:
        await client.with_cache(source, "q", [7], ["Id"])
        await asyncio.gather(*(client.with_cache(source, "q", [7], ["Id"]) for _ in range(200)))
        await until(lambda: not client._lookups.get().flights._refreshing)
    assert (2, 1) == (source.runs, client.stats.refreshes)


async def test_no_refresh_while_another_process_holds_the_lock(redis_sync: redis.Redis) -> None:
    """The key's lock held elsewhere (a fill or a refresh in another process): no refresh."""
    source = Source()
    async with MRCClient(MYSQL_CONFIG, REDIS_URL, refresh_ahead=EAGER) as client:
        await client.with_cache(source, "q", [7], ["Id"])
        key = client.get_key_from_query("q", [7], ["Id"])
        redis_sync.set(key + ":lock", b"another process", px=5000)
        for _ in range(5):
            await client.with_cache(source, "q", [7], ["Id"])
        await until(lambda: not client._lookups.get().flights._refreshing)
    assert (1, 0) == (source.runs, client.stats.refreshes)


async def test_a_refresh_overtaken_by_an_invalidation_stores_nothing(
    redis_sync: redis.Redis,
) -> None:
    source = Source(seconds=0.3)
    async with (
        MRCClient(MYSQL_CONFIG, REDIS_URL, refresh_ahead=EAGER) as client,
        MRCServer(REDIS_URL) as server,
    ):
        await client.with_cache(source, "q", [7], ["Id"])
        source.started.clear()
        await client.with_cache(source, "q", [7], ["Id"])
        await asyncio.wait_for(source.started.wait(), 5)  # the refresh runs
        await server.drop_outdated_cache(["Id"], [7])
        await until(lambda: not client._lookups.get().flights._refreshing)
        assert None is await client.read_from_cache("q", [7], ["Id"])
    assert (1, 1) == (client.stats.refreshes, client.stats.refused)


async def test_a_failed_refresh_leaves_the_entry_and_logs_once(
    redis_sync: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    source = Source(fail_after=1)
    caplog.set_level(logging.WARNING, "mysql_redis_cache")
    async with MRCClient(MYSQL_CONFIG, REDIS_URL, refresh_ahead=EAGER) as client:
        await client.with_cache(source, "q", [7], ["Id"])
        for _ in range(3):
            assert [1] == await client.with_cache(source, "q", [7], ["Id"])
            await until(lambda: not client._lookups.get().flights._refreshing)
    assert 3 == client.stats.refresh_errors
    assert [1] == json.loads(redis_sync.get(client.get_key_from_query("q", [7], ["Id"])) or b"")
    logged = [r for r in caplog.records if "refresh" in r.getMessage()]
    assert 1 == len(logged)


async def test_close_cancels_a_running_refresh(redis_sync: redis.Redis) -> None:
    """close() gives a refresh its grace, then cancels it: nothing is stored after."""
    source = Source(seconds=10)
    client = MRCClient(MYSQL_CONFIG, REDIS_URL, refresh_ahead=EAGER)
    source.seconds = 0.01
    await client.with_cache(source, "q", [7], ["Id"])
    source.seconds = 10
    source.started.clear()
    await client.with_cache(source, "q", [7], ["Id"])
    await asyncio.wait_for(source.started.wait(), 5)
    start = time.monotonic()
    await client.close(grace=0.2)
    assert time.monotonic() - start < 2
    assert b"[1]" == redis_sync.get(client.get_key_from_query("q", [7], ["Id"]))


async def test_refreshes_wait_their_turn(redis_sync: redis.Redis) -> None:
    """With max_fills=1 and a fill running, a refresh waits for admission."""
    slow = Source(seconds=0.3)
    async with MRCClient(MYSQL_CONFIG, REDIS_URL, refresh_ahead=EAGER, max_fills=1) as client:
        source = Source()
        await client.with_cache(source, "q", [7], ["Id"])
        filling = asyncio.ensure_future(client.with_cache(slow, "other", [1], ["Id"]))
        await asyncio.wait_for(slow.started.wait(), 5)
        await client.with_cache(source, "q", [7], ["Id"])  # a hit: the refresh queues
        await asyncio.sleep(0.05)
        assert (1, 1) == (client._lookups.get().flights.admission.waiting, source.runs)
        await filling
        await until(lambda: not client._lookups.get().flights._refreshing)
    assert 2 == source.runs


@pytest.mark.parametrize("value", [0, -1.0, "yes", float("inf")])
def test_refresh_ahead_takes_a_bool_or_a_positive_beta(value: object) -> None:
    with pytest.raises(ConfigError, match="refresh_ahead"):
        MRCClient(MYSQL_CONFIG, REDIS_URL, refresh_ahead=value)  # type: ignore[arg-type]


def pttl_calls(server_url: str) -> int:
    with redis.Redis.from_url(server_url) as admin:
        stats = admin.info("commandstats")
    return int(stats.get("cmdstat_pttl", {}).get("calls", 0))


async def test_hits_read_the_ttl_only_where_a_refresh_may_be_near() -> None:
    """Far from expiry a hit sends no PTTL: the expiry this process stored, or read once,
    is remembered. An entry it knows nothing of is asked once."""
    from ._redis_server import redis_server

    source = Source()
    with redis_server() as server:
        async with MRCClient(MYSQL_CONFIG, server.url, refresh_ahead=True) as client:
            await client.with_cache(source, "q", [1], ["Id"], ttl=3600)  # timed and stored
            for _ in range(50):
                await client.with_cache(source, "q", [1], ["Id"])
            assert 0 == pttl_calls(server.url)
            with redis.Redis.from_url(server.url) as other:  # another process's entry
                other.set(client.get_key_from_query("q", [2], ["Id"]), b"[0]", ex=3600)
            for _ in range(50):
                assert [0] == await client.with_cache(source, "q", [2], ["Id"])
            assert 1 == pttl_calls(server.url)
            batch = await client.query_many_with_cache("SELECT ? AS n", [[1], [2]], ["N"])
            assert [[{"n": 1}], [{"n": 2}]] == batch
        assert (1, 0) == (source.runs, client.stats.refreshes)
