"""Concurrent cache reads share round trips to Redis; a lone read waits for none."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis

from mysql_redis_cache import CacheError, MRCClient
from mysql_redis_cache._redis.copies import Decodes

from ._redis_server import redis_server
from .conftest import MYSQL_CONFIG, reader_of

Q = "SELECT ? AS n"


def reader_batches(client: MRCClient) -> int:
    batches: int = reader_of(client).batches
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


async def test_reads_write_to_the_stream_directly(client: MRCClient) -> None:
    """With this redis-py, reads skip send_packed_command: a redis-py upgrade that moves
    its stream shows here, not as a silent slowdown."""
    await client.read_from_cache(Q, [1], ["N"])
    assert reader_of(client).channel.writer is not None


async def test_health_checks_go_through_redis_py() -> None:
    """With health_check_interval, reads use redis-py's send, which PINGs idle connections
    (counted on a server of the test's own, which nobody else pings)."""
    with redis_server() as private:
        counter = redis.Redis(port=private.port)
        config = {"host": "127.0.0.1", "port": private.port, "health_check_interval": 0.05}
        async with MRCClient(MYSQL_CONFIG, config) as client:
            await client.write_to_cache(Q, [1], [1], ["N"])
            assert [1] == await client.read_from_cache(Q, [1], ["N"])
            assert reader_of(client).channel.writer is None
            pings_before = counter.info("commandstats").get("cmdstat_ping", {}).get("calls", 0)
            await asyncio.sleep(0.1)
            assert [1] == await client.read_from_cache(Q, [1], ["N"])
            pings = counter.info("commandstats").get("cmdstat_ping", {}).get("calls", 0)
        counter.close()
    assert pings > pings_before


async def test_only_small_entries_keep_a_shared_decode(client: MRCClient) -> None:
    """Repeated reads of an entry share its decode, but a large one is not kept alive."""
    small = [{"n": 1}]
    large = [{"n": n, "text": "x" * 100} for n in range(3000)]  # about 330 KB of JSON
    await client.write_to_cache(Q, small, [1], ["N"])
    await client.write_to_cache(Q, large, [2], ["N"])
    for _ in range(3):
        assert small == await client.read_from_cache(Q, [1], ["N"])
    for _ in range(3):
        assert large == await client.read_from_cache(Q, [2], ["N"])
    assert 1 == len(client._lookups.get().decodes)


async def test_shared_decodes_follow_the_bytes_in_redis(
    client: MRCClient, redis_sync: redis.Redis
) -> None:
    """A kept decode is used only while Redis returns the same bytes: an entry changed
    behind the client's back (by Node, by hand) reads as its new value at once."""
    keys = [client.get_key_from_query(Q, [n], ["N"]) for n in range(8)]
    for n, key in enumerate(keys):
        redis_sync.set(key, f'[{{"n":{n}}}]')
    for _ in range(3):  # the third read copies a kept decode
        many = await client.query_many_with_cache(Q, [[n] for n in range(8)], ["N"])
        assert [[{"n": n}] for n in range(8)] == many
        assert [{"n": 0}] == await client.query_with_cache(Q, [0], ["N"])
    for n, key in enumerate(keys):
        redis_sync.set(key, f'[{{"n":{n}, "changed": true}}]')
    many = await client.query_many_with_cache(Q, [[n] for n in range(8)], ["N"])
    assert [[{"n": n, "changed": True}] for n in range(8)] == many
    assert [{"n": 0, "changed": True}] == await client.query_with_cache(Q, [0], ["N"])


async def test_shared_decodes_hand_out_copies(client: MRCClient) -> None:
    """Each read gets rows of its own, nested values included, however often it is read."""
    flat = [{"n": 1, "s": "a"}]
    nested = [{"n": 2, "tags": ["x"], "meta": {"k": 1}}]
    await client.write_to_cache(Q, flat, [1], ["N"])
    await client.write_to_cache(Q, nested, [2], ["N"])
    for _ in range(4):
        first, second = await client.query_many_with_cache(Q, [[1], [2]], ["N"])
        assert (flat, nested) == (first, second)
        first[0]["n"] = 99
        second[0]["tags"].append("mutated")
        second[0]["meta"]["k"] = 99
        assert flat == await client.read_from_cache(Q, [1], ["N"])
        assert nested == await client.read_from_cache(Q, [2], ["N"])


def test_shared_decodes_stay_within_their_budget() -> None:
    """The oldest decodes are dropped once their bytes (and rows) pass the budget."""
    decodes = Decodes(budget=10_000, max_entry=2_000)
    for n in range(200):
        raw = json.dumps([{"n": n, "pad": "x" * 100}]).encode()
        for _ in range(3):
            assert [{"n": n, "pad": "x" * 100}] == decodes.value(f"k{n}", raw)
        assert decodes._size <= 10_000
    assert 0 < len(decodes) < 200
    assert "k199" in decodes._memo
    assert "k0" not in decodes._memo
    decodes.value("big", b"[" + b"1," * 2_000 + b"1]")
    assert "big" not in decodes._memo
