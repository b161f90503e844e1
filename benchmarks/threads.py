"""Cached hits from threads: the sync client against a hand-rolled sync cache (redis-py's
blocking GET plus a JSON decode of the same entry, the floor such a cache would have),
and against asyncio.run() per call of the async client (what threads did before).

Run: `make bench-threads` (or `make bench`, which runs it last). Medians of REPEAT runs,
the sides alternating within each run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import threading
import time
from collections.abc import Callable

import redis

from mysql_redis_cache import MRCClient
from mysql_redis_cache import sync as mrc_sync
from tests._settings import MYSQL_CONFIG

from .cache import REDIS_URL

QUERY, PARAMS, NAMES = "SELECT ? AS id, 'name' AS name, 3.5 AS price", [1], ["Id"]


def per_second(threads: int, calls: int, call: Callable[[], object]) -> float:
    """Calls a second when `threads` threads each make `calls` calls of `call`."""
    start = threading.Barrier(threads + 1)

    def work() -> None:
        start.wait()
        for _ in range(calls):
            call()

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in pool:
        thread.join()
    return threads * calls / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000, help="calls per thread")
    args = parser.parse_args()
    client = mrc_sync.MRCClient(MYSQL_CONFIG, REDIS_URL)
    client.query_with_cache(QUERY, PARAMS, NAMES)  # the entry every side reads
    key = client.get_key_from_query(QUERY, PARAMS, NAMES)
    raw = redis.Redis.from_url(REDIS_URL, max_connections=64)
    module_level = MRCClient(MYSQL_CONFIG, REDIS_URL)

    def floor() -> object:
        return json.loads(raw.get(key))  # type: ignore[arg-type]

    def ours() -> object:
        return client.query_with_cache(QUERY, PARAMS, NAMES)

    def loop_per_call() -> object:
        return asyncio.run(module_level.query_with_cache(QUERY, PARAMS, NAMES))

    assert floor() == ours() == loop_per_call()
    rows: dict[str, list[float]] = {}
    sides: list[tuple[str, int, int, Callable[[], object]]] = [
        ("16 threads: sync client", 16, args.calls, ours),
        ("16 threads: redis-py GET + json (floor)", 16, args.calls, floor),
        ("1 thread: sync client", 1, args.calls * 4, ours),
        ("1 thread: redis-py GET + json (floor)", 1, args.calls * 4, floor),
        ("1 thread: asyncio.run() per call", 1, args.calls // 4, loop_per_call),
        ("4 threads: asyncio.run() per call", 4, args.calls // 4, loop_per_call),
    ]
    for _ in range(args.repeat):
        for name, threads, calls, call in sides:
            rows.setdefault(name, []).append(per_second(threads, calls, call))
    median = {name: statistics.median(values) for name, values in rows.items()}
    print(f"{'cached hits from threads':<42} {'calls/s':>10} {'per call':>10}  vs")
    for name, threads, _, _ in sides:
        rate = median[name]
        versus = ""
        if name.endswith("sync client"):
            floor_name = name.replace("sync client", "redis-py GET + json (floor)")
            versus = f"{rate / median[floor_name]:.2f}x the floor"
        elif "asyncio.run" in name:
            sync_name = f"{threads} thread{'s' if threads > 1 else ''}: sync client"
            if sync_name in median:
                versus = f"sync client {median[sync_name] / rate:.1f}x faster"
        print(f"{name:<42} {rate:>10,.0f} {threads / rate * 1e3:>8.3f}ms  {versus}")
    client.close()
    asyncio.run(module_level.close())
    raw.close()


if __name__ == "__main__":
    main()
