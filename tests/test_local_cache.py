"""The local cache: hits without a round trip, dropped whenever Redis reports a change."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis

from mysql_redis_cache import ConfigError, MRCClient, MRCServer
from mysql_redis_cache._redis.local import ABSENT, LocalCache

from ._node import run_node
from ._redis_server import redis_cluster, redis_server
from .conftest import MYSQL_CONFIG, REDIS_URL, reader_of

Q = "SELECT ? AS n"
MiB = 2**20


@pytest.fixture
async def local(redis_sync: redis.Redis) -> AsyncIterator[MRCClient]:
    async with MRCClient(MYSQL_CONFIG, REDIS_URL, local_cache=MiB) as client:
        yield client


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 3.0) -> bool:
    """Whether `check` comes true within `seconds` (invalidations travel asynchronously)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.005)
    return False


def listener_ids(client: MRCClient) -> int:
    reader = reader_of(client)
    listener_id: int = reader._listener_id
    return listener_id


async def test_repeated_reads_are_local_hits(local: MRCClient) -> None:
    """After the first reads, hits come from the local cache, each caller its own copy."""
    first = await local.query_with_cache(Q, [1], ["N"])
    # Redis reports the miss's own store to the listener (its GET tracked the key); a read
    # in flight when that report lands keeps nothing, and the next one is kept instead
    later = [await local.query_with_cache(Q, [1], ["N"]) for _ in range(3)]
    assert [[{"n": 1}]] * 4 == [first, *later]
    assert (1, 3) == (local.stats.misses, local.stats.hits)
    assert local.stats.local_hits >= 1
    later[-1][0]["n"] = 99  # a caller mutating its result touches nobody else's
    assert [{"n": 1}] == await local.query_with_cache(Q, [1], ["N"])
    assert local.stats.local_hits >= 2


async def test_delete_elsewhere_drops_the_local_entry(
    local: MRCClient, redis_sync: redis.Redis
) -> None:
    """A key deleted by another client stops being served locally."""
    await local.write_to_cache(Q, [{"v": "old"}], [1], ["N"])
    await local.read_from_cache(Q, [1], ["N"])
    assert [{"v": "old"}] == await local.read_from_cache(Q, [1], ["N"])
    assert 1 == local.stats.local_hits
    redis_sync.delete(local.get_key_from_query(Q, [1], ["N"]))

    async def gone() -> bool:
        return await local.read_from_cache(Q, [1], ["N"]) is None

    assert await eventually(gone)


async def test_invalidation_by_server_reaches_the_local_cache(local: MRCClient) -> None:
    """MRCServer.drop_outdated_cache in another process empties matching local entries."""
    for store in (1, 2):
        await local.write_to_cache(Q, [store], [store], ["StoreId"])
        await local.read_from_cache(Q, [store], ["StoreId"])
    async with MRCServer(REDIS_URL) as server:
        assert 1 == await server.drop_outdated_cache(["StoreId"], [1])

    async def dropped() -> bool:
        return await local.read_from_cache(Q, [1], ["StoreId"]) is None

    assert await eventually(dropped)
    assert [2] == await local.read_from_cache(Q, [2], ["StoreId"])  # not asked for: kept


@pytest.mark.interop
@pytest.mark.usefixtures("node")
async def test_node_write_replaces_the_local_entry(local: MRCClient) -> None:
    """An entry rewritten by the Node library is read fresh, not from the local copy."""
    await local.write_to_cache(Q, [{"by": "python"}], [5], ["N"])
    assert [{"by": "python"}] == await local.read_from_cache(Q, [5], ["N"])
    run_node(
        [{"op": "write_to_cache", "query": Q, "value": [{"by": "node"}], "params": [5],
          "names": ["N"]}],
        redis_url=REDIS_URL,
    )  # fmt: skip

    async def fresh() -> bool:
        return bool(await local.read_from_cache(Q, [5], ["N"]) == [{"by": "node"}])

    assert await eventually(fresh)


async def test_own_writes_are_seen_at_once(local: MRCClient) -> None:
    await local.write_to_cache(Q, ["v1"], [3], ["N"])
    await local.read_from_cache(Q, [3], ["N"])
    await local.write_to_cache(Q, ["v2"], [3], ["N"])
    assert ["v2"] == await local.read_from_cache(Q, [3], ["N"])  # no wait for a report


async def test_expiry_in_redis_reaches_the_local_cache(local: MRCClient) -> None:
    await local.write_to_cache(Q, ["short"], [4], ["N"], ttl=1)
    await local.read_from_cache(Q, [4], ["N"])
    assert ["short"] == await local.read_from_cache(Q, [4], ["N"])

    async def expired() -> bool:
        return await local.read_from_cache(Q, [4], ["N"]) is None

    assert await eventually(expired, seconds=5)


async def test_flushdb_empties_the_local_cache(local: MRCClient, redis_sync: redis.Redis) -> None:
    await local.write_to_cache(Q, ["x"], [6], ["N"])
    await local.read_from_cache(Q, [6], ["N"])
    redis_sync.flushdb()

    async def flushed() -> bool:
        return await local.read_from_cache(Q, [6], ["N"]) is None

    assert await eventually(flushed)


async def test_broken_listener_empties_and_recovers(
    local: MRCClient, redis_sync: redis.Redis
) -> None:
    """When the invalidation connection dies, nothing is served locally until it is back."""
    await local.write_to_cache(Q, ["x"], [7], ["N"])
    await local.read_from_cache(Q, [7], ["N"])
    old_listener = listener_ids(local)
    redis_sync.client_kill_filter(_id=str(old_listener))

    async def emptied() -> bool:
        return not reader_of(local).local.active

    assert await eventually(emptied)
    local_hits = local.stats.local_hits
    # the changes it would have reported are unknown: the next read asks Redis again
    redis_sync.set(local.get_key_from_query(Q, [7], ["N"]), b'["changed"]')
    assert ["changed"] == await local.read_from_cache(Q, [7], ["N"])
    assert local_hits == local.stats.local_hits
    assert ["changed"] == await local.read_from_cache(Q, [7], ["N"])
    assert local_hits + 1 == local.stats.local_hits  # tracking is back, with a new listener
    assert old_listener != listener_ids(local)


async def test_redis_restart_never_serves_stale() -> None:
    """Entries cached before a Redis restart are not served after it."""
    with redis_server() as server:
        async with MRCClient(
            MYSQL_CONFIG, server.url, local_cache=MiB, breaker_cooldown=0.05
        ) as client:
            await client.write_to_cache(Q, ["before"], [8], ["N"])
            await client.read_from_cache(Q, [8], ["N"])
            server.kill()
            server.start()
            redis.Redis.from_url(server.url).set(
                client.get_key_from_query(Q, [8], ["N"]), b'["after"]'
            )

            async def after() -> bool:
                return bool(await client.read_from_cache(Q, [8], ["N"]) == ["after"])

            assert await eventually(after)
            assert ["after"] == await client.read_from_cache(Q, [8], ["N"])


async def test_each_event_loop_closes_its_listener(redis_sync: redis.Redis) -> None:
    """A module-level client over many asyncio.run() calls leaves no connections behind."""
    client = MRCClient(
        MYSQL_CONFIG, {"url": REDIS_URL, "client_name": "mrc-local"}, local_cache=MiB
    )

    async def invocation() -> None:
        await client.query_with_cache(Q, [1], ["N"])
        await client.query_with_cache(Q, [1], ["N"])

    def run_in_thread() -> None:
        for _ in range(5):
            asyncio.run(invocation())

    await asyncio.to_thread(run_in_thread)
    await asyncio.sleep(0.05)
    names = [c.get("name") for c in redis_sync.client_list()]
    # the listener connection is made from the same settings: it carries the name too
    assert 0 == names.count("mrc-local")
    # a local cache lives with its loop: in each, the first read goes to Redis (in the
    # first loop, a miss and then that read), the second is local
    assert 4 == client.stats.local_hits


def test_local_cache_settings_are_checked() -> None:
    for bad in (0, -1, 1.5, True, "1MB"):
        with pytest.raises(ConfigError, match="local_cache"):
            MRCClient(MYSQL_CONFIG, REDIS_URL, local_cache=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="local_cache_ttl"):
        MRCClient(MYSQL_CONFIG, REDIS_URL, local_cache=MiB, local_cache_ttl=0)


def test_cluster_refuses_the_local_cache() -> None:
    with redis_cluster(3) as ports, pytest.raises(ConfigError, match="Cluster"):
        MRCClient(
            MYSQL_CONFIG, {"url": f"redis://127.0.0.1:{ports[0]}", "cluster": True},
            local_cache=MiB,
        )  # fmt: skip


def cache_of(max_bytes: int, max_age: float = 60) -> LocalCache:
    cache = LocalCache(max_bytes, max_age)
    cache.active = True
    return cache


def fill(cache: LocalCache, entries: dict[bytes, bytes]) -> None:
    cache.begin_read()
    cache.end_read(list(entries), list(entries.values()), [-1] * len(entries))


def test_invalidation_during_a_read_keeps_its_reply_out() -> None:
    """A report that overtakes the reply it concerns wins: the older value is not stored."""
    cache = cache_of(MiB)
    cache.begin_read()
    cache.invalidate([b"k"])
    cache.end_read([b"k", b"other"], [b'"old"', b'"fine"'], [-1, -1])
    assert ABSENT is cache.value(b"k")
    assert "fine" == cache.value(b"other")
    cache.begin_read()
    cache.invalidate(None)  # FLUSHDB while reading
    cache.end_read([b"k"], [b'"old"'], [-1])
    assert ABSENT is cache.value(b"k")
    assert 0 == len(cache)


def test_least_recently_used_entries_go_first() -> None:
    cache = cache_of(500)
    for n in range(4):
        fill(cache, {b"k%d" % n: b'"%b"' % (b"x" * 98)})
    assert ABSENT is not cache.value(b"k0")  # now the most recently used
    fill(cache, {b"k4": b'"%b"' % (b"y" * 98), b"huge": b'"%b"' % (b"z" * 124)})  # over 1/4
    assert [b"k0", b"k2", b"k3", b"k4"] == [
        k for k in (b"k0", b"k1", b"k2", b"k3", b"k4", b"huge") if k in cache
    ]
    assert cache.size <= 500


def test_entries_expire_locally() -> None:
    cache = cache_of(MiB, 0.01)
    fill(cache, {b"k": b'"v"'})
    assert "v" == cache.value(b"k")
    time.sleep(0.02)
    assert ABSENT is cache.value(b"k")
    assert 0 == cache.size


def test_hits_are_copies_of_what_was_read() -> None:
    """Rows are kept decoded and copied per hit; nested values are decoded per hit."""
    rows = b'[{"id":1,"name":"a","price":1.5,"ok":true,"none":null},{"id":2,"name":"b"}]'
    nested = b'[{"id":1,"js":{"k":[1,2]}}]'
    cache = cache_of(MiB)
    fill(cache, {b"rows": rows, b"nested": nested, b"null": b"null", b"bad": b"{not json"})
    for key, raw in ((b"rows", rows), (b"nested", nested)):
        for _ in range(3):  # the first hit decodes the bytes, the later ones copy
            value = cache.value(key)
            assert json.loads(raw) == value
            value[0]["id"] = 99  # a caller mutating its result touches nobody else's
            value.append("extra")
            if key == b"nested":
                value[0]["js"]["k"].append(3)
    assert None is cache.value(b"null") is cache.value(b"null")
    assert ABSENT is cache.value(b"bad")  # dropped: the read from Redis counts it
    assert 3 == len(cache)


def test_decoded_rows_count_against_the_budget() -> None:
    """Rows kept decoded are charged at their (larger) memory size, and evict others."""
    row = b'{"id":1,"name":"%b"}' % (b"n" * 20)
    raw = b"[" + b",".join([row] * 20) + b"]"
    cache = cache_of(40 * len(raw))
    keys = [b"k%d" % n for n in range(30)]
    fill(cache, dict.fromkeys(keys, raw))
    assert 30 * len(raw) == cache.size
    cache.value(keys[-1])
    assert cache.size > 31 * len(raw)  # its rows weigh several times its bytes
    for key in keys[-4:-1]:
        cache.value(key)
    assert cache.size <= 40 * len(raw)
    assert ABSENT is cache.value(keys[0])  # the least recently used went
    assert all(cache.value(key) == json.loads(raw) for key in keys[-4:])
