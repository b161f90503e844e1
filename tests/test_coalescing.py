"""Concurrent cache reads share round trips to Redis; a lone read waits for none."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from mysql_redis_cache import CacheError, MRCClient

from ._redis_server import redis_server
from .conftest import MYSQL_CONFIG

Q = "SELECT ? AS n"


def reader_batches(client: MRCClient) -> int:
    batches: int = client._redis._bound.get().reader.batches
    return batches


async def test_callers_woken_together_read_together(client: MRCClient) -> None:
    """64 workers reading in a loop cost about one round trip per round, not one per group."""
    for n in range(64):
        await client.write_to_cache(Q, [{"n": n}], [n], ["N"])
    await client.read_from_cache(Q, [0], ["N"])  # open the read connection
    before = reader_batches(client)
    rounds = 20

    async def worker(n: int) -> list[object]:
        return [await client.read_from_cache(Q, [n], ["N"]) for _ in range(rounds)]

    results = await asyncio.gather(*(worker(n) for n in range(64)))
    assert [[[{"n": n}]] * rounds for n in range(64)] == results
    round_trips = reader_batches(client) - before
    assert round_trips <= rounds + 2  # the first read goes alone; the rest ride together
    assert client.stats.coalesced >= 63 * rounds


async def test_lone_reads_go_out_at_once(client: MRCClient) -> None:
    """Sequential reads: one GET each, none waits for another caller or counts as coalesced."""
    await client.write_to_cache(Q, [{"n": 1}], [1], ["N"])
    before = reader_batches(client)
    for _ in range(10):
        assert [{"n": 1}] == await client.read_from_cache(Q, [1], ["N"])
    assert 10 == reader_batches(client) - before
    assert 0 == client.stats.coalesced


async def test_duplicate_keys_in_a_batch_are_asked_once(
    client: MRCClient, redis_sync: redis.Redis
) -> None:
    """Callers after the same key share its reply but get their own copy of the value."""
    await client.write_to_cache(Q, [{"n": 7}], [7], ["N"])
    await client.read_from_cache(Q, [7], ["N"])
    values = await asyncio.gather(*(client.read_from_cache(Q, [7], ["N"]) for _ in range(50)))
    assert all(v == [{"n": 7}] for v in values)
    assert len({id(v) for v in values}) == 50
    assert len({id(v[0]) for v in values}) == 50  # rows too: one decode, copied per caller
    nested = [{"n": 8, "tags": ["a"]}]  # not plain rows: decoded for each caller
    await client.write_to_cache(Q, nested, [8], ["N"])
    values = await asyncio.gather(*(client.read_from_cache(Q, [8], ["N"]) for _ in range(50)))
    assert all(v == nested for v in values)
    assert len({id(v[0]["tags"]) for v in values}) == 50


@pytest.mark.parametrize("concurrent", [1, 20])
async def test_failed_reads_raise_cache_errors(concurrent: int) -> None:
    """A lone read and a batch that fail both reach every caller as CacheError."""
    with redis_server() as server:
        async with MRCClient(MYSQL_CONFIG, server.url, fail_open=False) as client:
            await client.write_to_cache(Q, [1], [1], ["N"])
            server.kill()
            outcomes = await asyncio.gather(
                *(client.read_from_cache(Q, [1], ["N"]) for _ in range(concurrent)),
                return_exceptions=True,
            )
    assert len(outcomes) == concurrent
    assert all(isinstance(o, CacheError) for o in outcomes), outcomes


def reader_of(client: MRCClient) -> Any:
    return client._redis._bound.get().reader


async def test_reads_write_to_the_stream_directly(client: MRCClient) -> None:
    """With this redis-py, reads skip send_packed_command: a redis-py upgrade that moves
    its stream shows here, not as a silent slowdown."""
    await client.read_from_cache(Q, [1], ["N"])
    assert reader_of(client)._writer is not None


async def test_health_checks_go_through_redis_py(redis_sync: redis.Redis) -> None:
    """With health_check_interval, reads use redis-py's send, which PINGs idle connections."""
    pings_before = redis_sync.info("commandstats").get("cmdstat_ping", {}).get("calls", 0)
    config = {"host": "127.0.0.1", "db": 9, "health_check_interval": 0.05}
    async with MRCClient(MYSQL_CONFIG, config) as client:
        await client.write_to_cache(Q, [1], [1], ["N"])
        assert [1] == await client.read_from_cache(Q, [1], ["N"])
        assert reader_of(client)._writer is None
        await asyncio.sleep(0.1)
        assert [1] == await client.read_from_cache(Q, [1], ["N"])
    pings = redis_sync.info("commandstats").get("cmdstat_ping", {}).get("calls", 0)
    assert pings > pings_before


async def test_only_small_entries_keep_a_shared_decode(client: MRCClient) -> None:
    """Repeated reads of an entry share its decode, but a large one is not kept alive."""
    small = [{"n": 1}]
    large = [{"n": n, "text": "x" * 100} for n in range(3000)]  # about 330 KB of JSON
    await client.write_to_cache(Q, small, [1], ["N"])
    await client.write_to_cache(Q, large, [2], ["N"])
    for _ in range(3):
        assert small == await client.read_from_cache(Q, [1], ["N"])
    assert client._last[1] is not None
    for _ in range(3):
        assert large == await client.read_from_cache(Q, [2], ["N"])
    assert (None, None) == client._last
