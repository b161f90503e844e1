"""Invalidation at 100k and 1M keys: this library vs Node 4.1.0 vs a raw redis-py loop.

    uv run python -m benchmarks.invalidation [--sizes 100000 1000000]

Each run gets a fresh private redis-server holding cache keys `StoreId=s_UserId=u_<sha1>`
for 96 stores (so StoreId=60..69 neighbour StoreId=6), 1 % `XStoreId=` keys and 1 %
non-cache `cfg:StoreId=s:flags` keys. Every method is asked to drop StoreId=6; the
figures show its time and how many keys it deleted that were not StoreId=6 entries.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import time
from collections.abc import Callable, Coroutine
from typing import Any, cast

import redis
import redis.asyncio as aioredis

from mysql_redis_cache import MRCServer
from mysql_redis_cache._redis.invalidate import matches, tokens_for
from mysql_redis_cache._server import SCAN_COUNT
from tests._node import run_node
from tests._redis_server import redis_server

STORES = 96
TARGET = 6


def build(client: redis.Redis, size: int) -> list[bytes]:
    """Fill the database; return the keys a correct drop of StoreId=6 removes."""
    client.flushall()
    hashes = [hashlib.sha1(f"SELECT {q}".encode()).hexdigest() for q in range(50)]
    expected = []
    pipe = client.pipeline(transaction=False)
    for i in range(size):
        store, user = i % STORES, i // STORES
        if i % 100 == 1:  # near misses spread over every store, 6 included
            key = f"XStoreId={user % STORES}_UserId={user}_{hashes[i % 50]}".encode()
        elif i % 100 == 2:
            key = f"cfg:StoreId={user % STORES}:flags:{user}".encode()
        else:
            key = f"StoreId={store}_UserId={user}_{hashes[i % 50]}".encode()
            if store == TARGET:
                expected.append(key)
        pipe.set(key, b"[]")
        if len(pipe) >= 10_000:
            pipe.execute()
    pipe.execute()
    return expected


async def ours(url: str) -> int:
    async with MRCServer(url) as server:
        return await server.drop_outdated_cache(["StoreId"], [TARGET])


async def raw_floor(url: str) -> int:
    """The floor: SCAN MATCH '*StoreId=6_*' COUNT 1000 + UNLINK, no verification."""
    client = aioredis.Redis.from_url(url)
    deleted, cursor = 0, 0
    while True:
        cursor, keys = await client.scan(cursor, match=f"*StoreId={TARGET}_*", count=1000)
        if keys:
            deleted += await client.unlink(*keys)
        if cursor == 0:
            break
    await client.aclose()
    return deleted


def node(url: str) -> tuple[float, int]:
    op = {"op": "drop_outdated_cache", "names": ["StoreId"], "values": [TARGET], "all": False}
    [outcome] = run_node([{"op": "timed", "inner": op}], redis_url=url)
    return outcome["ms"] / 1000, outcome["result"]


def measure(
    client: redis.Redis, size: int, url: str, method: Callable[[str], tuple[float, int]]
) -> tuple[float, int, int]:
    """(seconds, keys wrongly deleted, StoreId=6 entries left behind) for one run."""
    expected = build(client, size)
    before = client.dbsize()
    seconds, _ = method(url)
    stamps = len(cast(list[bytes], client.keys("mrc:inv:*")))  # MRCServer's, see fills.py
    removed = before - (client.dbsize() - stamps)
    pipe = client.pipeline(transaction=False)
    for key in expected:
        pipe.exists(key)
    missed = sum(pipe.execute())
    return seconds, removed - (len(expected) - missed), missed


def timed(coro_fn: Callable[[str], Coroutine[Any, Any, int]]) -> Callable[[str], tuple[float, int]]:
    def run(url: str) -> tuple[float, int]:
        start = time.perf_counter()
        result = asyncio.run(coro_fn(url))
        return time.perf_counter() - start, result

    return run


async def unfiltered_count(url: str, tokens: list[bytes]) -> int:
    """The alternative OR strategy: one SCAN without MATCH, every key checked here."""
    client = aioredis.Redis.from_url(url)
    found, cursor = 0, 0
    while True:
        cursor, keys = await client.scan(cursor, count=SCAN_COUNT)
        found += sum(1 for key in cast(list[bytes], keys) if matches(key, tokens, False))
        if cursor == 0:
            break
    await client.aclose()
    return found


def or_strategies(client: redis.Redis, url: str, size: int, repeat: int) -> None:
    """Time OR requests both ways, counting only (dry run), on the same data."""
    build(client, size)
    print(f"\nOR with several names at {size} keys (dry run, median of {repeat}):")
    for stores in ([6, 7], [6, 7, 8, 9], list(range(6, 14))):
        names = ["StoreId"] * len(stores)

        async def per_token(url: str, names: list[str] = names, stores: list[int] = stores) -> int:
            async with MRCServer(url) as server:
                return await server.drop_outdated_cache(names, stores, dry_run=True)

        async def single(url: str, names: list[str] = names, stores: list[int] = stores) -> int:
            return await unfiltered_count(url, tokens_for(names, stores))

        filtered = statistics.median(timed(per_token)(url)[0] for _ in range(repeat))
        unfiltered = statistics.median(timed(single)(url)[0] for _ in range(repeat))
        print(
            f"  {len(stores)} names: one filtered scan per name {filtered:.3f} s, "
            f"one unfiltered scan {unfiltered:.3f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3, help="runs per method (median)")
    parser.add_argument(
        "--or-size", type=int, default=1_000_000, help="keys for the OR strategy comparison"
    )
    args = parser.parse_args()
    methods = {
        "this library": timed(ours),
        "raw redis-py floor": timed(raw_floor),
        "Node 4.1.0": node,
    }
    with redis_server() as server:
        url = server.url
        client = redis.Redis.from_url(url)
        print(f"{'keys':>9}  {'method':<20} {'median s':>9} {'wrong deletions':>16} {'missed':>7}")
        for size in args.sizes:
            medians = {}
            for name, method in methods.items():
                runs = [measure(client, size, url, method) for _ in range(args.repeat)]
                medians[name] = statistics.median(r[0] for r in runs)
                wrong, missed = max(r[1] for r in runs), max(r[2] for r in runs)
                print(f"{size:>9}  {name:<20} {medians[name]:>9.3f} {wrong:>16} {missed:>7}")
            ours_s = medians["this library"]
            print(
                f"{size:>9}  ours / floor = {ours_s / medians['raw redis-py floor']:.2f}x"
                f"   Node / ours = {medians['Node 4.1.0'] / ours_s:.1f}x faster"
            )
        or_strategies(client, url, args.or_size, args.repeat)
        client.close()


if __name__ == "__main__":
    main()
