"""drop_outdated_cache deletes exactly the entries asked for, Node's included."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
import redis

from mysql_redis_cache import DropProgress, InvalidArgumentError, MRCClient, MRCServer

from ._node import run_node
from .conftest import REDIS_URL, stored_keys

Q = "SELECT * FROM orders WHERE store = ? AND user = ?"


async def seed(
    client: MRCClient, pairs: Sequence[tuple[object, object]]
) -> dict[tuple[object, object], str]:
    keys = {}
    for store, user in pairs:
        await client.write_to_cache(Q, [store, user], [store, user], ["StoreId", "UserId"])
        keys[(store, user)] = client.get_key_from_query(Q, [store, user], ["StoreId", "UserId"])
    return keys


async def test_drops_only_whole_segments(
    client: MRCClient, server: MRCServer, redis_sync: redis.Redis
) -> None:
    """StoreId=6 drops its entries, never StoreId=60, XStoreId=6 or non-cache keys."""
    keys = await seed(client, [(6, 1), (60, 1), (6, 2), (600, 6)])
    await client.write_to_cache(Q, "x", [6], ["XStoreId"])
    near_miss = client.get_key_from_query(Q, [6], ["XStoreId"])
    others = [b"cfg:StoreId=6:flags", b"StoreId=6_not-a-hash", b"StoreId=6_" + b"g" * 40]
    for key in others:
        redis_sync.set(key, b"keep")
    assert await server.drop_outdated_cache(["StoreId"], [6]) == 2
    remaining = stored_keys(redis_sync)
    assert keys[(6, 1)].encode() not in remaining
    assert keys[(6, 2)].encode() not in remaining
    assert {
        keys[(60, 1)].encode(),
        keys[(600, 6)].encode(),
        near_miss.encode(),
        *others,
    } == remaining


async def test_or_and_and(client: MRCClient, server: MRCServer, redis_sync: redis.Redis) -> None:
    """OR drops entries with any pair; require_all_match only those with every pair."""
    keys = await seed(client, [(6, 1), (6, 2), (7, 1), (8, 3)])
    assert await server.drop_outdated_cache(["StoreId", "UserId"], [6, 1], True) == 1
    assert not redis_sync.exists(keys[(6, 1)])
    assert await server.drop_outdated_cache(["StoreId", "UserId"], [6, 1]) == 2
    assert {keys[(8, 3)].encode()} == stored_keys(redis_sync)


async def test_values_convert_like_keys(client: MRCClient, server: MRCServer) -> None:
    """6.0 and '6' name the same entries as 6; True names 'true'."""
    await seed(client, [(6, True)])
    assert await server.drop_outdated_cache(["UserId"], ["True"]) == 0
    assert await server.drop_outdated_cache(["StoreId", "UserId"], [6.0, True], True) == 1


async def test_glob_characters_in_values(
    client: MRCClient, server: MRCServer, redis_sync: redis.Redis
) -> None:
    """Values holding glob metacharacters match literally."""
    keys = await seed(client, [("a*", 1), ("ab", 1), ("[a]", 1)])
    assert await server.drop_outdated_cache(["StoreId"], ["a*"]) == 1
    assert await server.drop_outdated_cache(["StoreId"], ["[a]"]) == 1
    assert len(keys) - 2 == len(stored_keys(redis_sync))


@pytest.mark.parametrize(
    ("names", "values"),
    [([], []), (["A"], []), (["A", "B"], [1]), (["A=B"], [1]), ([""], [1]), ("StoreId", "6")],
    ids=["empty", "missing-values", "length-mismatch", "equals-in-name", "empty-name", "strings"],
)
async def test_refusals(
    server: MRCServer, redis_sync: redis.Redis, names: list[str], values: list[object]
) -> None:
    """Requests that Node would turn into mass deletion are refused, deleting nothing."""
    redis_sync.set("A=1_" + "a" * 40, b"1")
    with pytest.raises(InvalidArgumentError):
        await server.drop_outdated_cache(names, values)
    assert len(stored_keys(redis_sync)) == 1


@pytest.mark.interop
@pytest.mark.usefixtures("node")
async def test_python_drops_node_entries(server: MRCServer, redis_sync: redis.Redis) -> None:
    """Entries Node wrote are found and dropped exactly like Python's."""
    run_node(
        [
            {
                "op": "write_to_cache",
                "query": Q,
                "value": [1],
                "params": [s, 1],
                "names": ["StoreId", "UserId"],
            }
            for s in (6, 60, 61)
        ],
        redis_url=REDIS_URL,
    )
    assert await server.drop_outdated_cache(["StoreId"], [6]) == 1
    assert len(stored_keys(redis_sync)) == 2


@pytest.mark.interop
@pytest.mark.usefixtures("node")
async def test_node_drops_python_entries(client: MRCClient, redis_sync: redis.Redis) -> None:
    """Node's dropOutdatedCache finds the entries Python wrote."""
    await seed(client, [(6, 1), (7, 1)])
    [dropped] = run_node(
        [{"op": "drop_outdated_cache", "names": ["StoreId"], "values": [6], "all": False}],
        redis_url=REDIS_URL,
    )
    assert dropped == 1
    assert len(stored_keys(redis_sync)) == 1


async def test_dry_run_counts_without_deleting(
    client: MRCClient, server: MRCServer, redis_sync: redis.Redis
) -> None:
    """dry_run returns what would go and deletes nothing; a key matching two tokens counts once."""
    await seed(client, [(6, 1), (6, 2), (7, 1), (8, 8)])
    before = len(stored_keys(redis_sync))
    assert 3 == await server.drop_outdated_cache(["StoreId", "UserId"], [6, 1], dry_run=True)
    assert before == len(stored_keys(redis_sync))
    assert 3 == await server.drop_outdated_cache(["StoreId", "UserId"], [6, 1])


async def test_progress_reports_every_page(
    client: MRCClient, server: MRCServer, redis_sync: redis.Redis
) -> None:
    """The progress callback sees counts grow to the final result, across many pages."""
    pipe = redis_sync.pipeline(transaction=False)
    for n in range(5000):
        pipe.set(client.get_key_from_query("q", [n % 10, n], ["StoreId", "N"]), b"1")
    pipe.execute()
    seen: list[tuple[int, int, int, int]] = []

    def progress(p: DropProgress) -> None:
        seen.append((p.total, p.examined, p.matched, p.deleted))

    assert 500 == await server.drop_outdated_cache(["StoreId"], [3], progress=progress)
    assert len(seen) >= 5
    assert (5000, 5000, 500, 500) == seen[-1]
    assert all(a[1] <= b[1] and a[3] <= b[3] for a, b in itertools.pairwise(seen))


async def test_many_names_use_one_unfiltered_scan(
    client: MRCClient, server: MRCServer, redis_sync: redis.Redis
) -> None:
    """Past MAX_FILTERED_SCANS OR'ed names the result is the same from one full scan."""
    from mysql_redis_cache._server import MAX_FILTERED_SCANS

    stores = list(range(MAX_FILTERED_SCANS + 2))
    await seed(client, [(s, 1) for s in stores] + [(99, 2)])
    redis_sync.set(b"cfg:StoreId=1:flags", b"keep")
    seen: list[int] = []
    deleted = await server.drop_outdated_cache(
        ["StoreId"] * len(stores), stores, progress=lambda p: seen.append(p.total)
    )
    assert len(stores) == deleted
    assert {b"cfg:StoreId=1:flags"} | {
        client.get_key_from_query(Q, [99, 2], ["StoreId", "UserId"]).encode()
    } == stored_keys(redis_sync)
    assert len(stored_keys(redis_sync)) + deleted == seen[0]
