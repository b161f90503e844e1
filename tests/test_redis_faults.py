"""Ordinary Redis events cost no stampede: dead connections, big and undecodable entries."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from mysql_redis_cache import CacheUnavailableError, MRCClient, MRCServer

from ._redis_server import RedisProcess, redis_server
from .conftest import MYSQL_CONFIG

KEYS = 20


@pytest.fixture
def private_redis() -> Iterator[RedisProcess]:
    with redis_server() as server:
        yield server


def kill_normal_clients(server: RedisProcess) -> None:
    with redis.Redis.from_url(server.url) as admin:
        admin.client_kill_filter(_type="normal", skipme=True)


def restart(server: RedisProcess) -> None:
    server.kill()
    server.start()


async def idle_past_timeout(server: RedisProcess) -> None:
    """Let Redis close the client's idle connections, and confirm that it did: only this
    admin connection, busy polling, is left on the server (which is the test's own)."""
    with redis.Redis.from_url(server.url) as admin:
        admin.config_set("timeout", 1)
        deadline = time.monotonic() + 10
        while len(admin.client_list()) > 1:  # Redis closes idle clients in its cron
            assert time.monotonic() < deadline, "Redis kept the idle connections"
            await asyncio.sleep(0.1)
        admin.config_set("timeout", 0)


async def run_event(server: RedisProcess, event: str) -> None:
    if event == "restart":
        restart(server)
    elif event == "client-kill":
        kill_normal_clients(server)
    else:
        await idle_past_timeout(server)


async def test_invalidation_survives_dead_connections(private_redis: RedisProcess) -> None:
    """MRCServer's scan finds its connection dead after CLIENT KILL and carries on."""
    async with MRCServer(private_redis.url) as server:
        assert 0 == await server.drop_outdated_cache(["N"], [1])
        with redis.Redis.from_url(private_redis.url) as admin:
            admin.set("N=1_" + "a" * 40, b"[1]")
        kill_normal_clients(private_redis)
        assert 1 == await server.drop_outdated_cache(["N"], [1])


@pytest.mark.parametrize("fail_open", [True, False], ids=["fail-open", "fail-closed"])
@pytest.mark.parametrize("event", ["restart", "client-kill", "idle-timeout"])
async def test_dead_connections_cost_no_stampede(
    private_redis: RedisProcess, event: str, fail_open: bool
) -> None:
    """After the event, every call whose entry exists hits: 0 fills, 0 errors, breaker shut."""
    runs = 0

    async def fn() -> list[int]:
        nonlocal runs
        runs += 1
        return [1]

    async with MRCClient(MYSQL_CONFIG, private_redis.url, fail_open=fail_open) as client:
        for n in range(KEYS):  # warm: the read connection and the pool are open
            await client.with_cache(fn, "q", [n], ["N"])
        await run_event(private_redis, event)
        if event == "restart":  # the entries went with the process: write them again
            with redis.Redis.from_url(private_redis.url) as writer:
                for n in range(KEYS):
                    writer.set(client.get_key_from_query("q", [n], ["N"]), b"[1]")
        runs = 0
        sequential = [await client.with_cache(fn, "q", [n], ["N"]) for n in range(KEYS // 2)]
        concurrent = await asyncio.gather(
            *(client.with_cache(fn, "q", [n], ["N"]) for n in range(KEYS))
        )
        assert [1] == await client.with_cache(fn, "fresh", [0], ["N"])  # a fill's scripts
        await client.write_to_cache("w", [2])  # a write through the pool
        assert [2] == await client.read_from_cache("w")
        assert [1] == await client.read_from_cache("fresh", [0], ["N"])
    assert [[1]] * (KEYS // 2) == sequential
    assert [[1]] * KEYS == concurrent
    assert 1 == runs  # the fresh key only
    assert (0, 0) == (client.stats.errors, client.stats.skipped)


async def test_big_entries_never_trip_the_timeout(private_redis: RedisProcess) -> None:
    """A 64 MiB entry is read 6 of 6 times within a 0.25 s timeout; small reads after it hit."""
    big = b'["' + b"x" * (64 * 2**20) + b'"]'
    async with MRCClient(MYSQL_CONFIG, private_redis.url, fail_open=False) as client:
        with redis.Redis.from_url(private_redis.url) as writer:
            writer.set(client.get_key_from_query("big"), big)
            writer.set(client.get_key_from_query("small"), b"[1]")
        for _ in range(6):
            value = await client.read_from_cache("big")
            assert 64 * 2**20 == len(value[0])
            assert [1] == await client.read_from_cache("small")
    assert 12 == client.stats.hits
    assert 0 == client.stats.errors


async def trickle_proxy(target_port: int, chunk: int, pause: float) -> asyncio.Server:
    """A loopback proxy to Redis that passes replies on in `chunk`-byte pieces, `pause` apart."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, slow: bool) -> None:
        try:
            while data := await reader.read(chunk if slow else 65536):
                writer.write(data)
                await writer.drain()
                if slow:
                    await asyncio.sleep(pause)
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pipe(client_r, server_w, False), pipe(server_r, client_w, True))

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_timeout_bounds_silence_not_a_long_reply(private_redis: RedisProcess) -> None:
    """A reply that keeps arriving, slower in all than the timeout, is read, not timed out."""
    proxy = await trickle_proxy(private_redis.port, 32 * 1024, 0.02)
    port = proxy.sockets[0].getsockname()[1]
    try:
        async with MRCClient(
            MYSQL_CONFIG, f"redis://127.0.0.1:{port}/0", redis_timeout=0.1, fail_open=False
        ) as client:
            with redis.Redis.from_url(private_redis.url) as writer:
                writer.set(client.get_key_from_query("long"), b'["' + b"x" * 2**20 + b'"]')
            start = time.monotonic()
            assert 2**20 == len((await client.read_from_cache("long"))[0])
            assert time.monotonic() - start > 0.3  # 32 pieces, 20 ms apart: > 3 timeouts
    finally:
        proxy.close()
        await proxy.wait_closed()
    assert (1, 0) == (client.stats.hits, client.stats.errors)


async def test_slow_large_write_is_no_outage(private_redis: RedisProcess) -> None:
    """A large write that takes longer than the timeout to send is stored: Redis reading
    it is no silence."""
    config = {"url": private_redis.url, "socket_timeout": 0.05, "socket_connect_timeout": 2}
    async with MRCClient(MYSQL_CONFIG, config, breaker_cooldown=30) as client:
        start = time.monotonic()
        await client.write_to_cache("huge", ["z" * 64 * 2**20])
        assert time.monotonic() - start > 0.05
        assert not client._guard.breaker.is_open
    assert (0, 0) == (client.stats.errors, client.stats.skipped)
    with redis.Redis.from_url(private_redis.url) as check:
        assert 64 * 2**20 + 4 == check.strlen(client.get_key_from_query("huge"))


async def test_result_over_max_entry_bytes_is_returned_not_stored(
    private_redis: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """A result whose JSON passes max_entry_bytes is returned, counted, logged once, not cached."""

    async def fn() -> list[str]:
        return ["y" * 2000]

    async with MRCClient(MYSQL_CONFIG, private_redis.url, max_entry_bytes=1000) as client:
        with caplog.at_level(logging.INFO, logger="mysql_redis_cache"):
            for _ in range(3):
                assert ["y" * 2000] == await client.with_cache(fn, "large", [1], ["N"])
        with redis.Redis.from_url(private_redis.url) as check:
            assert 0 == check.dbsize()
    assert 3 == client.stats.oversized
    assert 1 == sum("max_entry_bytes" in r.getMessage() for r in caplog.records)


UNDECODABLE = {
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "bom": b"\xef\xbb\xbf[1]",
    "nan": b"[NaN]",
    "infinity": b"[-Infinity]",
}


@pytest.mark.parametrize("raw", UNDECODABLE.values(), ids=UNDECODABLE.keys())
async def test_undecodable_entries_are_misses_that_heal(
    private_redis: RedisProcess, raw: bytes
) -> None:
    """What JSON.parse refuses, or Python cannot nest, is a miss that the next fill replaces."""

    async def fn() -> list[int]:
        return [3]

    async with MRCClient(MYSQL_CONFIG, private_redis.url, fail_open=False) as client:
        key = client.get_key_from_query("odd", [1], ["N"])
        with redis.Redis.from_url(private_redis.url) as writer:
            writer.set(key, raw)
        assert None is await client.read_from_cache("odd", [1], ["N"])
        assert [3] == await client.with_cache(fn, "odd", [1], ["N"])
        assert [3] == await client.read_from_cache("odd", [1], ["N"])
    assert 1 == client.stats.hits


def test_invalid_utf8_reads_as_node_does() -> None:
    """Bytes that are not UTF-8 decode with U+FFFD, as node-redis hands JSON.parse a string."""
    from mysql_redis_cache._node.json import decode

    assert ["a\ufffdb"] == decode(b'["a\xffb"]')


async def test_queued_reads_fail_fast_behind_a_timeout(private_redis: RedisProcess) -> None:
    """Reads queued behind a read that timed out skip Redis instead of waiting again."""
    async with MRCClient(
        MYSQL_CONFIG, private_redis.url, redis_timeout=0.3, breaker_cooldown=30
    ) as client:
        assert None is await client.read_from_cache("warm")
        private_redis.pause()
        try:
            start = time.monotonic()
            results = await asyncio.gather(
                *(client.read_from_cache("q", [n], ["N"]) for n in range(21))
            )
            elapsed = time.monotonic() - start
        finally:
            private_redis.resume()
    assert [None] * 21 == results
    assert (1, 20) == (client.stats.errors, client.stats.skipped)
    assert elapsed < 0.55  # one timeout, not two


LocalEvent = Callable[[RedisProcess, redis.Redis], None]


def kill_listener(server: RedisProcess, admin: redis.Redis) -> None:
    admin.client_kill_filter(_type="pubsub")


def kill_reader(server: RedisProcess, admin: redis.Redis) -> None:
    admin.client_kill_filter(_type="normal", skipme=True)


def idle_cut(server: RedisProcess, admin: redis.Redis) -> None:
    admin.config_set("timeout", 1)
    time.sleep(2.5)  # the client's loop waits too: nothing is read meanwhile
    admin.config_set("timeout", 0)


@pytest.mark.parametrize(
    "event", [kill_listener, kill_reader, idle_cut], ids=["listener", "reader", "idle-timeout"]
)
async def test_local_cache_notices_a_dead_channel(
    private_redis: RedisProcess, event: LocalEvent
) -> None:
    """With only local hits, a change made after either connection dies is seen within 0.2 s."""
    async with MRCClient(MYSQL_CONFIG, private_redis.url, local_cache=2**20) as client:
        await client.write_to_cache("hot", [1])
        assert [1] == await client.read_from_cache("hot")
        assert [1] == await client.read_from_cache("hot")
        assert 1 == client.stats.local_hits
        with redis.Redis.from_url(private_redis.url) as admin:
            event(private_redis, admin)
            await asyncio.sleep(0.05)
            admin.set(client.get_key_from_query("hot"), b"[2]")
        deadline = time.monotonic() + 0.2
        seen = None
        while time.monotonic() < deadline and seen != [2]:
            seen = await client.read_from_cache("hot")
            await asyncio.sleep(0.005)
    assert [2] == seen


async def test_local_entry_dies_with_its_redis_expiry(private_redis: RedisProcess) -> None:
    """A local entry is not served past the expiry Redis gave it."""
    async with MRCClient(MYSQL_CONFIG, private_redis.url, local_cache=2**20) as client:
        key = client.get_key_from_query("short")
        with redis.Redis.from_url(private_redis.url) as writer:
            writer.set(key, b"[1]", px=300)
        assert [1] == await client.read_from_cache("short")
        assert [1] == await client.read_from_cache("short")  # a local hit
        await asyncio.sleep(0.31)
        assert None is await client.read_from_cache("short")


async def test_fail_closed_warning_says_calls_raise(caplog: pytest.LogCaptureFixture) -> None:
    """With fail_open=False the outage warning does not claim calls are served."""
    from mysql_redis_cache import CacheUnavailableError

    from ._redis_server import free_port

    dead = f"redis://127.0.0.1:{free_port()}/0"
    async with MRCClient(MYSQL_CONFIG, dead, fail_open=False) as client:
        with (
            caplog.at_level(logging.WARNING, logger="mysql_redis_cache"),
            pytest.raises(CacheUnavailableError),
        ):
            await client.read_from_cache("x")
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "calls raise" in warning
    assert "serving without the cache" not in warning


async def test_reads_after_recovery_are_not_failed_for_an_old_outage(
    private_redis: RedisProcess,
) -> None:
    """A failed read marks only the reads queued behind it: once Redis is back and a read
    has succeeded, later queued reads go to Redis."""
    async with MRCClient(
        MYSQL_CONFIG, private_redis.url, fail_open=False, breaker_cooldown=0.05
    ) as client:
        await client.write_to_cache("back", [1])
        assert [1] == await client.read_from_cache("back")
        private_redis.kill()
        with pytest.raises(CacheUnavailableError):
            await client.read_from_cache("back")  # alone: nothing queued behind it
        private_redis.start()
        await asyncio.sleep(0.1)  # past the cool-down
        assert None is await client.read_from_cache("back")  # the probe: Redis is back
        results = await asyncio.gather(*(client.read_from_cache("q", [n], ["N"]) for n in range(5)))
    assert [None] * 5 == results
