"""Invalidation at 100k and 1M keys: this library vs Node 4.1.0 vs a raw redis-py loop,
then the index path against the scan path on the same data.

    uv run python -m benchmarks.invalidation [--sizes 100000 1000000]

Each run gets a fresh private redis-server holding cache keys `StoreId=s_UserId=u_<sha1>`
for 96 stores (so StoreId=60..69 neighbour StoreId=6), 1 % `XStoreId=` keys and 1 %
non-cache `cfg:StoreId=s:flags` keys. Every method is asked to drop StoreId=6; the
figures show its time and how many keys it deleted that were not StoreId=6 entries.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import statistics
import time
from collections.abc import Callable, Coroutine
from typing import Any, cast

import redis
import redis.asyncio as aioredis

from mysql_redis_cache import MRCServer
from mysql_redis_cache._index.names import ALIVE, SET_PREFIX
from mysql_redis_cache._redis.invalidate import matches, tokens_for
from mysql_redis_cache._server import SCAN_COUNT
from tests._indexer import indexer_process
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


async def drop(
    url: str, name: str, value: int, use_index: bool, wait: float = 0.5
) -> tuple[float, int, str]:
    """(seconds, entries deleted, path) of one invalidation."""
    async with MRCServer(url, use_index=use_index, index_wait=wait) as server:
        await server._redis.dbsize()  # connected before the clock starts, as in an app
        start = time.perf_counter()
        deleted = await server.drop_outdated_cache([name], [value])
        return time.perf_counter() - start, deleted, server.last_path


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def index_rows(client: redis.Redis, url: str, size: int, repeat: int) -> dict[str, float]:
    """The index path and the scan path, side by side on one keyspace of `size` keys."""
    build(client, size)
    before = redis_memory(client)
    with indexer_process(url) as indexer:
        start = time.perf_counter()
        while not client.exists(ALIVE):
            time.sleep(0.01)
        backfill = time.perf_counter() - start
        sets = sum(1 for _ in client.scan_iter(match=SET_PREFIX + b"*", count=10_000))
        added = redis_memory(client) - before
        entries = size * 98 // 100
        print(
            f"{size:>9}  backfill {backfill:.2f} s; index memory {added / 2**20:.1f} MiB = "
            f"{added / entries:.0f} B per entry ({sets} sets)"
        )
        medians: dict[str, float] = {}
        for label, name, values in (
            ("one store", "StoreId", [10 + n for n in range(2 * repeat)]),
            ("one user", "UserId", [100 + n for n in range(2 * repeat)]),
        ):
            for use_index, picks in ((True, values[:repeat]), (False, values[repeat:])):
                runs = [asyncio.run(drop(url, name, value, use_index)) for value in picks]
                path = runs[0][2]
                assert all(r[2] == path for r in runs), runs
                seconds = statistics.median(r[0] for r in runs)
                medians[f"{label} {path}"] = seconds
                medians[f"{label} {path} per entry"] = seconds / max(runs[0][1], 1)
                print(
                    f"{size:>9}  {label:<10} {path:<6} {seconds * 1000:>10.2f} ms "
                    f"({runs[0][1]} entries)"
                )
            ratio = medians[f"{label} scan"] / medians[f"{label} index"]
            print(f"{size:>9}  {label:<10} scan / index = {ratio:.0f}x")
        indexer.terminate()
    return medians


def write_rate(client: redis.Redis, url: str, writes: int) -> None:
    """How fast the indexer keeps up, and what it adds: `writes` SETs pipelined as fast as
    one client can, without an indexer and then with one, timed until an invalidation
    finds the indexer caught up (it acknowledged)."""
    print(f"\nIndexer throughput and cost, {writes} writes:")
    redis_cpu: dict[bool, float] = {}
    for indexed in (False, True):
        client.flushall()
        with contextlib.ExitStack() as stack:
            indexer = stack.enter_context(indexer_process(url)) if indexed else None
            while indexed and not client.exists(ALIVE):
                time.sleep(0.01)
            cpu_before = cpu_seconds(indexer.proc.pid) if indexer else 0.0
            redis_before = redis_cpu_seconds(client)
            commands_before = commands_processed(client)
            start = time.perf_counter()
            pipe = client.pipeline(transaction=False)
            for i in range(writes):
                pipe.set(f"StoreId={i % 96}_UserId={i // 96}_{'0' * 40}", b"[]", ex=600)
                if len(pipe) >= 5000:
                    pipe.execute()
            pipe.execute()
            written = time.perf_counter() - start
            if indexer is None:
                redis_cpu[indexed] = redis_cpu_seconds(client) - redis_before
                per_write = redis_cpu[indexed] / writes * 1e6
                print(f"  no indexer: {written:.2f} s; Redis CPU {per_write:.1f} us per write")
                continue
            _, _, path = asyncio.run(drop(url, "Nothing", 0, True, wait=60))
            caught_up = time.perf_counter() - start
            cpu = cpu_seconds(indexer.proc.pid) - cpu_before
            redis_cpu[indexed] = redis_cpu_seconds(client) - redis_before
            commands = commands_processed(client) - commands_before - writes
            indexer.terminate()
        print(
            f"  indexer: writes took {written:.2f} s, all indexed and acknowledged ({path}) "
            f"after {caught_up:.2f} s = {writes / caught_up:,.0f} writes/s kept up with\n"
            f"  indexer CPU {cpu / writes * 1e6:.1f} us per write; Redis CPU "
            f"{redis_cpu[indexed] / writes * 1e6:.1f} us per write "
            f"({redis_cpu[True] / redis_cpu[False]:.2f}x without); "
            f"{commands / writes:.2f} extra commands per write"
        )


def redis_cpu_seconds(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def commands_processed(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3, help="runs per method (median)")
    parser.add_argument(
        "--or-size", type=int, default=1_000_000, help="keys for the OR strategy comparison"
    )
    parser.add_argument("--index-only", action="store_true", help="only the index rows")
    parser.add_argument("--writes", type=int, default=200_000, help="writes for the indexer rate")
    args = parser.parse_args()
    methods = {
        "this library": timed(ours),
        "raw redis-py floor": timed(raw_floor),
        "Node 4.1.0": node,
    }
    with redis_server() as server:
        url = server.url
        client = redis.Redis.from_url(url)
        print("The index path against the scan path (same keyspace, median of --repeat):")
        by_size = {size: index_rows(client, url, size, args.repeat) for size in args.sizes}
        if len(args.sizes) > 1:
            small, large = by_size[min(args.sizes)], by_size[max(args.sizes)]
            for label in ("one store index", "one store index per entry", "one user index"):
                print(f"  {label}: largest / smallest size = {large[label] / small[label]:.2f}x")
        write_rate(client, url, args.writes)
        if args.index_only:
            return
        print(
            f"\n{'keys':>9}  {'method':<20} {'median s':>9} {'wrong deletions':>16} {'missed':>7}"
        )
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
