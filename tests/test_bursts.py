"""Bursts of cache misses are cached, not taken for an outage: many concurrent fills,
large batches, TLS connections, and a borrowed client whose pool runs out."""

from __future__ import annotations

import asyncio

import redis
import redis.asyncio as aioredis

from mysql_redis_cache import MRCClient

from ._redis_server import tls_redis_server
from .conftest import MYSQL_CONFIG, REDIS_URL, reader_of, stored_keys

Q = "SELECT ? AS n"


def assert_all_cached(client: MRCClient, url: str, count: int) -> None:
    assert (0, 0) == (client.stats.errors, client.stats.skipped), client.stats
    assert not client._guard.breaker.is_open
    with redis.Redis.from_url(url) as check:
        assert count == len(stored_keys(check))


async def test_concurrent_misses_past_the_pool_size_are_all_cached(
    redis_sync: redis.Redis,
) -> None:
    """300 different misses at once: more fills than connections wait for one (redis-py's
    own pool would refuse them, which read as Redis being down)."""
    async with MRCClient(MYSQL_CONFIG, REDIS_URL) as client:
        rows = await asyncio.gather(*(client.query_with_cache(Q, [n], ["N"]) for n in range(300)))
        assert [[{"n": n}] for n in range(300)] == rows
        pool = client._redis.client().connection_pool
        assert len(pool._available_connections) + len(pool._in_use_connections) <= 32
    assert_all_cached(client, REDIS_URL, 300)


async def test_a_large_batch_of_misses_is_all_cached(redis_sync: redis.Redis) -> None:
    """1000 misses in one batch are filled a few dozen at a time, all cached."""
    async with MRCClient(MYSQL_CONFIG, REDIS_URL) as client:
        rows = await client.query_many_with_cache(Q, [[n] for n in range(1000)], ["N"])
        assert [[{"n": n}] for n in range(1000)] == rows
    assert_all_cached(client, REDIS_URL, 1000)


async def test_max_connections_from_the_config_is_kept(redis_sync: redis.Redis) -> None:
    async with MRCClient(MYSQL_CONFIG, f"{REDIS_URL}?max_connections=4") as client:
        await asyncio.gather(*(client.query_with_cache(Q, [n], ["N"]) for n in range(50)))
        pool = client._redis.client().connection_pool
        assert 4 == pool.max_connections
        assert len(pool._available_connections) + len(pool._in_use_connections) <= 4
    assert_all_cached(client, REDIS_URL, 50)


async def test_tls_bursts_share_one_ssl_context() -> None:
    """Over TLS, 200 concurrent misses are all cached, and the connections opened for them
    share one SSL context (redis-py would load the CA bundle for each, blocking the loop)."""
    with tls_redis_server() as url:
        async with MRCClient(MYSQL_CONFIG, url) as client:
            await asyncio.gather(*(client.query_with_cache(Q, [n], ["N"]) for n in range(200)))
            assert -2 == await client._redis.ttl("absent")  # a command through the pool
            pool = client._redis.client().connection_pool
            handle = client._redis._bound.get()
            assert handle.writer is not None
            connections = [
                handle.reader.channel._conn,
                handle.writer.channel._conn,
                *pool._available_connections,
            ]
            assert 3 == len(connections)
            assert 1 == len({id(conn.ssl_context) for conn in connections})
            assert [{"n": 7}] == await client.read_from_cache(Q, [7], ["N"])
            assert (
                reader_of(client).channel.replies is not None
            )  # replies over TLS parsed as they arrive
        assert_all_cached(client, url, 200)


async def test_a_borrowed_clients_small_pool_is_not_used_by_the_cache(
    redis_sync: redis.Redis,
) -> None:
    """A client the user passes, with a pool that refuses commands past 2 connections: the
    cache reads and fills on connections of its own, so a burst never finds it full."""
    own = aioredis.Redis.from_url(REDIS_URL, max_connections=2)
    async with MRCClient(MYSQL_CONFIG, own) as client:
        rows = await asyncio.gather(*(client.query_with_cache(Q, [n], ["N"]) for n in range(40)))
        assert [[{"n": n}] for n in range(40)] == rows
        assert_all_cached(client, REDIS_URL, 40)
        assert [{"n": 1}] == await client.query_with_cache(Q, [1], ["N"])
    await own.aclose()
