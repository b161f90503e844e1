"""query_many_with_cache gives what query_with_cache gives, item by item, in fewer trips."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis

from mysql_redis_cache import (
    InvalidArgumentError,
    InvalidParamError,
    MRCClient,
    QueryError,
)

from ._redis_server import redis_cluster
from .conftest import MYSQL_CONFIG, REDIS_URL, reader_of

Q = "SELECT ? AS id, CONCAT('row ', ?) AS label"
NAMES = ["Id", "Label"]


async def test_same_results_as_one_by_one(client: MRCClient, redis_sync: redis.Redis) -> None:
    """Hits, misses and a repeated item come back equal to query_with_cache's, in order."""
    for n in (1, 3):
        await client.query_with_cache(Q, [n, n], NAMES)
    params = [[n, n] for n in (1, 2, 3, 4, 1)]
    batch = await client.query_many_with_cache(Q, params, NAMES)
    one_by_one = [await client.query_with_cache(Q, p, NAMES) for p in params]
    assert one_by_one == batch
    assert batch[0] is not batch[4]  # each item its own copy
    batch[0][0]["id"] = 99
    assert 1 == batch[4][0]["id"]


async def test_hits_take_one_round_trip(client: MRCClient) -> None:
    """64 cached entries are read in one MGET and count as 64 hits."""
    params = [[n, n] for n in range(64)]
    for p in params:
        await client.query_with_cache(Q, p, NAMES)
    reader = reader_of(client)
    before, hits = reader.batches, client.stats.hits
    results = await client.query_many_with_cache(Q, params, NAMES)
    assert [[{"id": n, "label": f"row {n}"}] for n in range(64)] == results
    assert 1 == reader.batches - before
    assert 64 == client.stats.hits - hits


async def test_misses_fill_once_and_are_cached(client: MRCClient) -> None:
    """Misses run once each (a duplicate shares its fill) and are cached for next time."""
    params = [[n, n] for n in (7, 8, 7)]
    first = await client.query_many_with_cache(Q, params, NAMES)
    assert 3 == client.stats.misses  # three lookups, two fills
    assert first == await client.query_many_with_cache(Q, params, NAMES)
    assert 3 == client.stats.misses
    assert 3 == client.stats.hits


async def test_each_item_counts_as_a_lookup_as_in_gather(client: MRCClient) -> None:
    """4 items over 2 keys count 4 hits, as a gather of the same 4 calls does."""
    params = [[n, n] for n in (1, 2, 1, 2)]
    await client.query_many_with_cache(Q, params, NAMES)
    hits = client.stats.hits
    await asyncio.gather(*(client.query_with_cache(Q, p, NAMES) for p in params))
    by_gather = client.stats.hits - hits
    await client.query_many_with_cache(Q, params, NAMES)
    assert (4, 4) == (by_gather, client.stats.hits - hits - by_gather)


async def test_ambiguous_items_bypass_like_query_with_cache(client: MRCClient) -> None:
    """An item whose params could build another call's key runs uncached, as it would alone."""
    results = await client.query_many_with_cache(Q, [[1, "x_Label=2"], [2, "y"]], NAMES)
    assert [[{"id": 1, "label": "row x_Label=2"}], [{"id": 2, "label": "row y"}]] == results
    assert 1 == client.stats.bypasses
    assert None is await client.read_from_cache(Q, [1, "x_Label=2"], NAMES)


@pytest.mark.parametrize(
    ("params_list", "error"),
    [
        ([[1, 1], [1, 2, 3]], InvalidArgumentError),  # more params than names
        ([[1, 1], {"id": 1}], InvalidParamError),
        ({"a": [1, 1]}, InvalidParamError),
        ("11", InvalidParamError),
    ],
    ids=["unnamed-param", "dict-item", "dict-list", "string"],
)
async def test_refusals_before_anything_runs(
    client: MRCClient, params_list: object, error: type[Exception]
) -> None:
    """A refused item fails the whole call before any query or read."""
    with pytest.raises(error):
        await client.query_many_with_cache(Q, params_list, NAMES)  # type: ignore[arg-type]
    assert (0, 0) == (client.stats.hits, client.stats.misses)


async def test_a_failing_item_raises_query_error(client: MRCClient) -> None:
    """A query error in one item reaches the caller as QueryError."""
    with pytest.raises(QueryError):
        await client.query_many_with_cache(
            "SELECT * FROM no_such_table WHERE id = ?", [[1]], ["Id"]
        )


@pytest.fixture
def cluster_url() -> Iterator[str]:
    with redis_cluster(3) as ports:
        yield f"redis://127.0.0.1:{ports[0]}"


async def test_cluster_batches_split_per_slot(cluster_url: str) -> None:
    """On a cluster, entries across slots are read together and match one-by-one reads."""
    async with MRCClient(MYSQL_CONFIG, {"url": cluster_url, "cluster": True}) as client:
        params = [[n, n] for n in range(30)]
        misses = await client.query_many_with_cache(Q, params, NAMES)
        hits = await client.query_many_with_cache(Q, params, NAMES)
        assert misses == hits == [await client.query_with_cache(Q, p, NAMES) for p in params]
    assert 60 == client.stats.hits


async def test_empty_batch(client: MRCClient) -> None:
    """No params lists, no results, no round trip."""
    assert [] == await client.query_many_with_cache(Q, [], NAMES)


async def test_local_cache_serves_batches(redis_sync: redis.Redis) -> None:
    """With the local cache on, a repeated batch is answered locally."""
    async with MRCClient(MYSQL_CONFIG, REDIS_URL, local_cache=2**20) as client:
        params = [[n, n] for n in range(5)]
        first = await client.query_many_with_cache(Q, params, NAMES)
        await client.query_many_with_cache(Q, params, NAMES)
        assert first == await client.query_many_with_cache(Q, params, NAMES)
    assert client.stats.local_hits >= 5


async def test_local_remote_missing_and_repeated_items_mixed(redis_sync: redis.Redis) -> None:
    """A batch mixing local hits, Redis hits, misses and repeats of each gives, in order,
    what query_with_cache gives, each item a copy of its own."""
    async with MRCClient(MYSQL_CONFIG, REDIS_URL, local_cache=2**20) as client:
        for n in (0, 1):  # read twice: kept locally
            await client.query_with_cache(Q, [n, n], NAMES)
            await client.query_with_cache(Q, [n, n], NAMES)
        redis_sync.set(client.get_key_from_query(Q, [2, 2], NAMES), b'[{"id":2,"label":"r2"}]')
        order = [0, 5, 2, 1, 5, 9, 0, 2]
        local_before = client.stats.local_hits
        batch = await client.query_many_with_cache(Q, [[n, n] for n in order], NAMES)
        assert client.stats.local_hits > local_before
        one_by_one = [await client.query_with_cache(Q, [n, n], NAMES) for n in order]
    assert one_by_one == batch
    assert [{"id": 2, "label": "r2"}] == batch[2]
    for i, j in ((0, 6), (1, 4), (2, 7)):
        assert batch[i] is not batch[j]
        batch[i][0]["id"] = -1
        assert -1 != batch[j][0]["id"]
