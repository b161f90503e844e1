"""Checked by mypy, never run: the public API types as documented."""

from __future__ import annotations

from mysql_redis_cache import JSONValue, MRCClient, MRCServer, Row


async def usage() -> None:
    async with MRCClient("mysql://root@127.0.0.1/test", "redis://127.0.0.1") as client:
        rows: list[Row] = await client.query_with_cache("SELECT ?", [1], ["A"], ttl=60)
        total: float = sum(row["price"] * 2 for row in rows)  # no narrowing needed
        strict: JSONValue = await client.read_from_cache("SELECT ?", [1], ["A"])
        if isinstance(strict, list):
            assert len(strict) == len(rows) or total >= 0
        key: str = client.get_key_from_query("SELECT ?", [1], ["A"])
        await client.write_to_cache("SELECT 1", rows)

        async def fn() -> int:
            return 1

        many: list[list[Row]] = await client.query_many_with_cache("SELECT ?", [[1], [2]], ["A"])
        assert many
        await client.with_cache(fn, "fn", [1], ["A"])
        assert key
    async with MRCServer("redis://127.0.0.1") as server:
        deleted: int = await server.drop_outdated_cache(["A"], [1], require_all_match=True)
        assert deleted >= 0
