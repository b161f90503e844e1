"""Checked by mypy, never run: the public API types as documented."""

from __future__ import annotations

from typing import Any

from mysql_redis_cache import MRCClient, MRCServer


async def usage() -> None:
    async with MRCClient("mysql://root@127.0.0.1/test", "redis://127.0.0.1") as client:
        rows: Any = await client.query_with_cache("SELECT ?", [1], ["A"], ttl=60)
        key: str = client.get_key_from_query("SELECT ?", [1], ["A"])
        await client.write_to_cache("SELECT 1", rows)

        async def fn() -> int:
            return 1

        await client.with_cache(fn, "fn", [1], ["A"])
        assert key
    async with MRCServer("redis://127.0.0.1") as server:
        deleted: int = await server.drop_outdated_cache(["A"], [1], require_all_match=True)
        assert deleted >= 0
