"""Redis Cluster, Sentinel, clients the caller owns, and the counters."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiomysql
import pytest
import redis
import redis.asyncio as aioredis

from mysql_redis_cache import MRCClient, MRCServer

from ._redis_server import redis_cluster, redis_sentinel
from .conftest import MYSQL_CONFIG, REDIS_URL, stored_keys

Q = "SELECT ? AS store, ? AS user"


@pytest.fixture(scope="module")
def cluster_ports() -> Iterator[list[int]]:
    with redis_cluster(3) as ports:
        yield ports


def cluster_keys(ports: list[int]) -> set[bytes]:
    keys: set[bytes] = set()
    for port in ports:
        node = redis.Redis(port=port)
        keys.update(stored_keys(node))
        node.close()
    return keys


def flush_cluster(ports: list[int]) -> None:
    for port in ports:
        node = redis.Redis(port=port)
        node.flushall()
        node.close()


@pytest.fixture
def cluster_config(cluster_ports: list[int]) -> Iterator[dict[str, object]]:
    flush_cluster(cluster_ports)
    yield {"url": f"redis://127.0.0.1:{cluster_ports[0]}", "cluster": True}
    flush_cluster(cluster_ports)


async def test_cluster_cache_hits_across_slots(
    cluster_config: dict[str, object], cluster_ports: list[int]
) -> None:
    """Entries spread over the cluster's slots are written, then hit, concurrently."""
    async with MRCClient(MYSQL_CONFIG, cluster_config) as client:
        misses = await asyncio.gather(
            *(client.query_with_cache(Q, [s, 1], ["StoreId", "UserId"]) for s in range(40))
        )
        hits = await asyncio.gather(
            *(client.query_with_cache(Q, [s, 1], ["StoreId", "UserId"]) for s in range(40))
        )
    assert misses == hits == [[{"store": s, "user": 1}] for s in range(40)]
    assert 40 == client.stats.hits
    assert client.stats.coalesced > 0
    nodes_with_keys = sum(1 for port in cluster_ports if redis.Redis(port=port).dbsize())
    assert 3 == nodes_with_keys


async def test_cluster_invalidation_scans_every_primary(
    cluster_config: dict[str, object], cluster_ports: list[int]
) -> None:
    """drop_outdated_cache finds matches on all primaries and unlinks them per slot."""
    async with MRCClient(MYSQL_CONFIG, cluster_config) as client:
        for store in range(12):
            for user in range(5):
                await client.write_to_cache(Q, [1], [store % 3, user], ["StoreId", "UserId"])
        await client.write_to_cache(Q, [1], [60, 1], ["StoreId", "UserId"])
    async with MRCServer(cluster_config) as server:
        assert 5 == await server.drop_outdated_cache(["StoreId"], [0], dry_run=True)
        assert 5 == await server.drop_outdated_cache(["StoreId"], [0])
        assert 1 == await server.drop_outdated_cache(["StoreId", "UserId"], [1, 4], True)
    remaining = cluster_keys(cluster_ports)
    assert 10 - 1 + 1 == len(remaining)
    assert not any(k.startswith(b"StoreId=0_") for k in remaining)


@pytest.mark.parametrize("lock_timeout", [None, 5.0], ids=["no-lock", "lock"])
async def test_cluster_invalidated_fill_is_not_stored(
    cluster_config: dict[str, object], cluster_ports: list[int], lock_timeout: float | None
) -> None:
    """On a cluster too, fills overtaken by an invalidation store nothing; others store."""

    async def slow() -> list[int]:
        await asyncio.sleep(0.3)
        return [1]

    async with (
        MRCClient(MYSQL_CONFIG, cluster_config, lock_timeout=lock_timeout) as client,
        MRCServer(cluster_config) as server,
    ):
        fills = [
            asyncio.create_task(client.with_cache(slow, Q, [s, 1], ["StoreId", "UserId"]))
            for s in range(6)
        ]
        await asyncio.sleep(0.1)
        await server.drop_outdated_cache(["StoreId"], [0])
        await server.drop_outdated_cache(["StoreId"], [1])
        assert [[1]] * 6 == await asyncio.gather(*fills)
    assert {client.get_key_from_query(Q, [s, 1], ["StoreId", "UserId"]).encode()
            for s in range(2, 6)} == cluster_keys(cluster_ports)  # fmt: skip
    assert 2 == client.stats.refused


async def test_sentinel_settings_pass_through(redis_sync: redis.Redis) -> None:
    """A Sentinel config finds the primary through the sentinel and caches there."""
    with redis_sentinel() as (primary_port, sentinel_port):
        config = {
            "sentinel": {"sentinels": [("127.0.0.1", sentinel_port)], "service_name": "mymaster"}
        }
        async with MRCClient(MYSQL_CONFIG, config) as client:
            rows = await client.query_with_cache(Q, [6, 1], ["StoreId", "UserId"])
            assert rows == await client.read_from_cache(Q, [6, 1], ["StoreId", "UserId"])
        primary = redis.Redis(port=primary_port)
        assert 1 == primary.dbsize()
        primary.close()


async def test_caller_owned_clients_are_used_and_left_open(redis_sync: redis.Redis) -> None:
    """A Redis client and a MySQL pool passed in are used, and still work after close()."""
    own_redis = aioredis.Redis.from_url(REDIS_URL)
    own_pool = await aiomysql.create_pool(
        host=MYSQL_CONFIG["host"], user=MYSQL_CONFIG["user"], db=MYSQL_CONFIG["database"],
        autocommit=True,
    )  # fmt: skip
    async with MRCClient(own_pool, own_redis) as client:
        assert own_pool is client.get_mysql_pool()
        rows = await client.query_with_cache("SELECT ? AS n", [5], ["N"])
        assert [{"n": 5}] == rows
    async with MRCServer(own_redis) as server:
        assert 1 == await server.drop_outdated_cache(["N"], [5])
    assert await own_redis.ping()
    async with own_pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("SELECT 1")
    own_pool.close()
    await own_pool.wait_closed()
    await own_redis.aclose()


async def test_counters(client: MRCClient, redis_sync: redis.Redis) -> None:
    """hits, misses, joins and coalesced reads are counted."""

    async def fn() -> int:
        await asyncio.sleep(0.01)
        return 1

    await asyncio.gather(*(client.with_cache(fn, "counted", [n % 2], ["K"]) for n in range(10)))
    await asyncio.gather(*(client.with_cache(fn, "counted", [n % 2], ["K"]) for n in range(10)))
    stats = client.stats.as_dict()
    assert (10, 10, 8) == (stats["hits"], stats["misses"], stats["joins"])
    assert stats["coalesced"] >= 9


async def test_cluster_outage_fails_open(redis_sync: redis.Redis) -> None:
    """When every cluster node dies, calls are still served from MySQL."""
    with redis_cluster(3) as ports:
        client = MRCClient(MYSQL_CONFIG, {"url": f"redis://127.0.0.1:{ports[0]}", "cluster": True})
        assert [{"store": 1, "user": 1}] == await client.query_with_cache(
            Q, [1, 1], ["StoreId", "UserId"]
        )
    # the context has killed every node
    rows = [await client.query_with_cache(Q, [s, 1], ["StoreId", "UserId"]) for s in range(3)]
    assert [[{"store": s, "user": 1}] for s in range(3)] == rows
    assert client.stats.errors >= 1
    await client.close()
