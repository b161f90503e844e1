"""One process of a fleet reading one hot key: `python tests/_hot_key.py URL SECONDS TTL
[REFRESH_AHEAD]` runs 16 workers calling `with_cache` every 5 ms, whose fill takes
200 ms, and prints the process's counts (and its slowest call after the first fill) as
JSON."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from mysql_redis_cache import MRCClient

FILL_SECONDS = 0.2
WORKERS = 16


async def main(url: str, seconds: float, ttl: int, refresh_ahead: bool) -> None:
    fills = 0

    async def fill() -> list[dict[str, int]]:
        nonlocal fills
        fills += 1
        await asyncio.sleep(FILL_SECONDS)
        return [{"v": 1}]

    slowest = 0.0
    calls = 0
    options: dict[str, Any] = {"refresh_ahead": True} if refresh_ahead else {}
    async with MRCClient(None, url, **options) as client:
        await client.with_cache(fill, "SELECT hot", [1], ["Hot"], ttl=ttl)  # the first fill
        stop = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal slowest, calls
            while time.monotonic() < stop:
                start = time.monotonic()
                await client.with_cache(fill, "SELECT hot", [1], ["Hot"], ttl=ttl)
                slowest = max(slowest, time.monotonic() - start)
                calls += 1
                await asyncio.sleep(0.005)

        await asyncio.gather(*(worker() for _ in range(WORKERS)))
    report = {"fills": fills, "calls": calls, "slowest": slowest, **client.stats.as_dict()}
    sys.stdout.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), len(sys.argv) > 4))
