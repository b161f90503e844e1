"""Redis between up and down, on real servers: a read-only replica, a full memory, a port
that is not Redis, a user whose ACL forbids scripts, and a silent partition under the
local cache. Each state keeps serving what it can, is logged once when it begins (and
once when it ends), and is counted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from mysql_redis_cache import MRCClient

from ._redis_server import RedisProcess, redis_sentinel, redis_server, sentinel_failover
from .conftest import MYSQL_CONFIG

Q = "SELECT ? AS n"


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "mysql_redis_cache" and record.levelname == "WARNING"
    ]


async def mixed_rounds(client: MRCClient, rounds: int = 3) -> None:
    """`rounds` x (50 cached keys, 50 that never get stored): every result right."""
    for _ in range(rounds):
        rows = await asyncio.gather(*(client.query_with_cache(Q, [n], ["N"]) for n in range(100)))
        assert [[{"n": n}] for n in range(100)] == rows


async def cache_first_half(url: str) -> None:
    async with MRCClient(MYSQL_CONFIG, url) as writer:
        await asyncio.gather(*(writer.query_with_cache(Q, [n], ["N"]) for n in range(50)))


@pytest.fixture
def replica() -> Iterator[tuple[RedisProcess, RedisProcess]]:
    """A primary and a replica of it, in sync."""
    with (
        redis_server() as primary,
        redis_server("--replicaof", "127.0.0.1", str(primary.port)) as copy,
    ):
        with redis.Redis.from_url(copy.url) as check:
            deadline = time.monotonic() + 10
            while check.info("replication").get("master_link_status") != "up":
                assert time.monotonic() < deadline, "the replica did not sync"
                time.sleep(0.05)
        yield primary, copy


async def test_a_read_only_replica_serves_hits_and_logs_once(
    replica: tuple[RedisProcess, RedisProcess], caplog: pytest.LogCaptureFixture
) -> None:
    """Pointed at a replica (a failover demoted its primary), 300 calls: every cached
    entry is a hit, misses are answered without storing, one WARNING says why."""
    primary, copy = replica
    await cache_first_half(primary.url)
    await asyncio.sleep(0.2)  # replicated
    await assert_reads_served_writes_held(copy.url, caplog, "read-only replica")


async def assert_reads_served_writes_held(
    url: str, caplog: pytest.LogCaptureFixture, state: str
) -> None:
    """300 mixed calls at `url`: the 150 cached served, the 150 others not stored, no
    outage, and at most two WARNINGs, the first naming `state`."""
    async with MRCClient(MYSQL_CONFIG, url) as client:
        await mixed_rounds(client)
        assert (150, 150) == (client.stats.hits, client.stats.unstored)
        assert not client._guard.breaker.is_open
    logged = warnings(caplog)
    assert len(logged) <= 2, logged
    assert state in logged[0]


async def test_a_full_memory_serves_hits_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    """At maxmemory with noeviction: hits served, misses answered without storing."""
    with redis_server("--maxmemory-policy", "noeviction") as server:
        await cache_first_half(server.url)
        with redis.Redis.from_url(server.url) as admin:
            admin.config_set("maxmemory", 1)  # below what it uses: every write refused
        await assert_reads_served_writes_held(server.url, caplog, "out of memory")


async def test_writes_are_stored_again_when_the_state_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The limit lifted: the next probe stores, and one WARNING says so."""
    with redis_server("--maxmemory-policy", "noeviction") as server:
        with redis.Redis.from_url(server.url) as admin:
            admin.config_set("maxmemory", 1)
        async with MRCClient(MYSQL_CONFIG, server.url, breaker_cooldown=0.05) as client:
            assert [{"n": 1}] == await client.query_with_cache(Q, [1], ["N"])
            with redis.Redis.from_url(server.url) as admin:
                admin.config_set("maxmemory", 0)
            await asyncio.sleep(0.1)
            assert [{"n": 2}] == await client.query_with_cache(Q, [2], ["N"])
            assert [{"n": 2}] == await client.read_from_cache(Q, [2], ["N"])
    logged = warnings(caplog)
    assert 2 == len(logged), logged
    assert "takes writes again" in logged[1]


async def test_a_sentinel_failover_stores_on_the_new_primary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Through Sentinel, after the primary is demoted, fills store on the new primary
    within a few calls, and every call is answered."""
    with redis_sentinel(replica=True) as (_, sentinel_port):
        config = {
            "sentinel": {"sentinels": [("127.0.0.1", sentinel_port)], "service_name": "mymaster"}
        }
        async with MRCClient(MYSQL_CONFIG, config, breaker_cooldown=0.1) as client:
            assert [{"n": 0}] == await client.query_with_cache(Q, [0], ["N"])
            sentinel_failover(sentinel_port)
            for n in range(1, 30):
                assert [{"n": n}] == await client.query_with_cache(Q, [n], ["N"])
                if [{"n": n}] == await client.read_from_cache(Q, [n], ["N"]):
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail(f"nothing stored after the failover: {client.stats}")
            assert [{"n": 0}] == await client.query_with_cache(Q, [0], ["N"])  # replicated
        assert client.stats.errors <= 2, client.stats


@pytest.fixture
async def not_redis() -> Any:
    """A TCP server that answers anything with an HTTP error, as a wrong port would."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read(1024)
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0"
    server.close()
    await server.wait_closed()


async def test_a_port_that_is_not_redis_is_an_outage(
    not_redis: str, caplog: pytest.LogCaptureFixture
) -> None:
    """50 calls to an HTTP server: served from MySQL, the breaker open after the first
    failure, at most two WARNINGs, and the first says what is wrong."""
    async with MRCClient(MYSQL_CONFIG, not_redis, breaker_cooldown=30) as client:
        for n in range(50):
            assert [{"n": n}] == await client.query_with_cache(Q, [n], ["N"])
        assert client._guard.breaker.is_open
        assert 1 == client.stats.errors
    logged = warnings(caplog)
    assert len(logged) <= 2, logged
    assert "does not speak RESP" in logged[0]


@pytest.fixture
def no_scripts_url() -> Iterator[str]:
    """A Redis user allowed every command but scripts, as locked-down deployments set."""
    with redis_server() as server, redis.Redis.from_url(server.url) as admin:
        admin.execute_command(
            "ACL", "SETUSER", "app", "on", ">secret", "~*", "&*", "+@all", "-@scripting"
        )
        yield f"redis://app:secret@127.0.0.1:{server.port}/0"


@pytest.mark.parametrize("scripts", [True, False], ids=["detected", "chosen"])
async def test_a_user_without_scripts_still_caches(
    no_scripts_url: str, scripts: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Scripts refused by ACL: entries are stored with plain commands and hit on the
    second round; one WARNING names the guarantee lost (none when chosen up front)."""
    async with MRCClient(MYSQL_CONFIG, no_scripts_url, scripts=scripts) as client:
        for _ in range(2):
            rows = await asyncio.gather(*(client.query_with_cache(Q, [n], ["N"]) for n in range(5)))
            assert [[{"n": n}] for n in range(5)] == rows
        assert (5, 5) == (client.stats.misses, client.stats.hits)
        assert 0 == client.stats.errors
    logged = warnings(caplog)
    assert len(logged) == (1 if scripts else 0), logged
    if scripts:
        assert "refuses scripts" in logged[0]


async def test_plain_commands_still_refuse_an_overtaken_fill(no_scripts_url: str) -> None:
    """Without scripts, a fill whose marker an invalidation deleted stores nothing."""
    from mysql_redis_cache import MRCServer

    async with MRCClient(MYSQL_CONFIG, no_scripts_url, scripts=False) as client:
        started = asyncio.Event()

        async def slow() -> list[int]:
            started.set()
            await asyncio.sleep(0.2)
            return [1]

        fill = asyncio.ensure_future(client.with_cache(slow, "q", [5], ["Id"]))
        await started.wait()
        async with MRCServer(no_scripts_url) as server:
            await server.drop_outdated_cache(["Id"], [5])
        assert [1] == await fill
        assert None is await client.read_from_cache("q", [5], ["Id"])
        assert 1 == client.stats.refused


class BlackholeProxy:
    """A loopback TCP proxy to Redis that can stop forwarding without closing anything,
    as a network partition that sends no FIN or RST would."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.blackholed = False
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.url = ""

    async def start(self) -> None:
        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    if not self.blackholed:
                        writer.write(data)
            except ConnectionError:
                pass

        async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
            self._writers += (client_w, server_w)
            await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))

        self._server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.url = f"redis://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/0"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()


async def test_a_silent_partition_empties_the_local_cache(caplog: pytest.LogCaptureFixture) -> None:
    """Behind a proxy that stops forwarding without closing, a value changed by another
    writer is served from the local cache for at most 2 s (the heartbeat's 1 s, twice)."""
    with redis_server() as server:
        proxy = BlackholeProxy(server.port)
        await proxy.start()
        try:
            async with MRCClient(MYSQL_CONFIG, proxy.url, local_cache=2**20) as client:
                await client.write_to_cache("k", ["old"])
                for _ in range(3):
                    assert ["old"] == await client.read_from_cache("k")
                assert client.stats.local_hits >= 1
                proxy.blackholed = True
                with redis.Redis.from_url(server.url) as other:
                    other.set(client.get_key_from_query("k"), b'["new"]')
                changed = time.monotonic()
                last_old = changed
                while time.monotonic() - changed < 3.0:
                    if ["old"] == await client.read_from_cache("k"):
                        last_old = time.monotonic()
                    await asyncio.sleep(0.05)
                assert last_old - changed <= 2.0
        finally:
            await proxy.stop()
    assert any("heartbeat" in message for message in warnings(caplog))
