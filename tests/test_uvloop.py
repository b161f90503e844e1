"""The client on uvloop (what uvicorn runs when it is installed): hits, batches, misses,
and the Redis failures whose handling rests on the event loop's transports and timers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

import redis
import uvloop

from mysql_redis_cache import CacheUnavailableError, MRCClient

from ._redis_server import redis_server
from .conftest import MYSQL_CONFIG, REDIS_URL, reader_of, stored_keys

Q = "SELECT ? AS n"


def on_uvloop[T](main: Coroutine[Any, Any, T]) -> T:
    async def checked() -> T:
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        return await main

    return uvloop.run(checked())


def test_hits_misses_and_batches(redis_sync: redis.Redis) -> None:
    async def main() -> None:
        async with MRCClient(MYSQL_CONFIG, REDIS_URL) as client:
            assert [{"n": 1}] == await client.query_with_cache(Q, [1], ["N"])
            assert [{"n": 1}] == await client.query_with_cache(Q, [1], ["N"])
            together = await asyncio.gather(
                *(client.query_with_cache(Q, [n % 4], ["N"]) for n in range(64))
            )
            assert [[{"n": n % 4}] for n in range(64)] == together
            many = await client.query_many_with_cache(Q, [[n] for n in range(100)], ["N"])
            assert [[{"n": n}] for n in range(100)] == many
            assert reader_of(client).channel.replies is not None
            assert (0, 0) == (client.stats.errors, client.stats.skipped)

    on_uvloop(main())
    assert 100 == len(stored_keys(redis_sync))


def test_a_hung_redis_times_out_and_a_killed_one_fails_open() -> None:
    async def main() -> None:
        with redis_server() as server:
            async with MRCClient(MYSQL_CONFIG, server.url, redis_timeout=0.2) as client:
                await client.write_to_cache(Q, [1], [1], ["N"])
                assert [1] == await client.read_from_cache(Q, [1], ["N"])
                server.pause()
                try:
                    start = time.monotonic()
                    assert [{"n": 2}] == await client.query_with_cache(Q, [2], ["N"])
                    assert time.monotonic() - start < 5
                finally:
                    server.resume()
                assert client._guard.breaker.is_open
                await asyncio.sleep(1.1)  # the breaker's cooldown
                assert [1] == await client.read_from_cache(Q, [1], ["N"])
                server.kill()
                assert [{"n": 3}] == await client.query_with_cache(Q, [3], ["N"])
            async with MRCClient(MYSQL_CONFIG, server.url, fail_open=False) as closed:
                try:
                    await closed.read_from_cache(Q, [1], ["N"])
                except CacheUnavailableError:
                    return
                raise AssertionError("a read from a dead Redis did not fail")

    on_uvloop(main())
