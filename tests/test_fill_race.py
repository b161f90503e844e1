"""A fill overtaken by an invalidation of its key stores nothing stale (real MariaDB row)."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis

from mysql_redis_cache import MRCClient, MRCServer
from mysql_redis_cache._redis.fills import FILL_WINDOW_MS, stamps_for

from ._node import run_node
from .conftest import MYSQL_CONFIG, REDIS_URL, stored_keys

TOKEN = b"fill token, 16 B"  # as long as the tokens fills use

TRIALS = 10
# The row is read when the statement starts; SLEEP keeps the fill running past the update.
SLOW = "SELECT v, SLEEP(1) AS s FROM mrc_race WHERE id = ?"

Invalidator = Callable[[list[int]], Awaitable[None]]


@pytest.fixture
async def writer(redis_sync: redis.Redis) -> AsyncIterator[MRCClient]:
    """A second client (its own pool) that owns the table and changes rows mid-fill."""
    async with MRCClient(MYSQL_CONFIG, REDIS_URL) as other:
        await other.query_to_promise("DROP TABLE IF EXISTS mrc_race")
        await other.query_to_promise("CREATE TABLE mrc_race (id INT PRIMARY KEY, v INT)")
        await other.query_to_promise(
            "INSERT INTO mrc_race VALUES " + ", ".join(f"({i}, 0)" for i in range(TRIALS))
        )
        yield other
        await other.query_to_promise("DROP TABLE IF EXISTS mrc_race")


async def by_server(ids: list[int]) -> None:
    async with MRCServer(REDIS_URL) as server:
        for i in ids:
            await server.drop_outdated_cache(["Id"], [i])


async def by_node(ids: list[int]) -> None:
    ops = [{"op": "drop_outdated_cache", "names": ["Id"], "values": [i], "all": False} for i in ids]
    await asyncio.to_thread(run_node, ops, redis_url=REDIS_URL)


INVALIDATORS: dict[str, Invalidator] = {"mrcserver": by_server, "node": by_node}


@pytest.mark.parametrize(
    ("invalidator", "lock_timeout"),
    [("mrcserver", None), ("node", None), ("mrcserver", 5.0)],
    ids=["mrcserver", "node", "mrcserver-with-lock"],
)
async def test_invalidated_fill_leaves_no_stale_entry(
    writer: MRCClient, request: pytest.FixtureRequest, invalidator: str, lock_timeout: float | None
) -> None:
    """10 fills read a row, it changes and is invalidated mid-query: 0 stale entries stay."""
    if invalidator == "node":
        request.getfixturevalue("node")
    ids = list(range(TRIALS))
    async with MRCClient(MYSQL_CONFIG, REDIS_URL, lock_timeout=lock_timeout) as client:
        fills = [asyncio.create_task(client.query_with_cache(SLOW, [i], ["Id"])) for i in ids]
        await asyncio.sleep(0.2)  # every statement has read its row
        await writer.query_to_promise("UPDATE mrc_race SET v = 1")
        await INVALIDATORS[invalidator](ids)
        assert not any(fill.done() for fill in fills)  # the race really happened
        results = await asyncio.gather(*fills)
        cached = [await client.read_from_cache(SLOW, [i], ["Id"]) for i in ids]
    assert [[{"v": 0, "s": 0}]] * TRIALS == results  # they asked before the change
    assert [None] * TRIALS == cached
    assert TRIALS == client.stats.refused


async def test_fill_without_invalidation_is_stored(
    writer: MRCClient, redis_sync: redis.Redis
) -> None:
    """With no invalidation the fill stores as before, and leaves no marker behind."""
    async with MRCClient(MYSQL_CONFIG, REDIS_URL) as client:
        rows = await client.query_with_cache("SELECT v FROM mrc_race WHERE id = ?", [1], ["Id"])
        key = client.get_key_from_query("SELECT v FROM mrc_race WHERE id = ?", [1], ["Id"])
        assert rows == await client.read_from_cache(
            "SELECT v FROM mrc_race WHERE id = ?", [1], ["Id"]
        )
    assert {key.encode()} == stored_keys(redis_sync)
    assert 0 == client.stats.refused


async def test_invalidation_of_other_values_does_not_refuse(client: MRCClient) -> None:
    """An invalidation of Id=2 leaves a running fill of Id=1 alone."""

    started, release = asyncio.Event(), asyncio.Event()

    async def slow() -> list[int]:
        started.set()
        await release.wait()  # runs until the invalidation is done
        return [1]

    fill = asyncio.create_task(client.with_cache(slow, "q", [1], ["Id"]))
    await started.wait()
    await by_server([2])
    assert not fill.done()  # the invalidation ran while the fill did
    release.set()
    assert [1] == await fill
    assert [1] == await client.read_from_cache("q", [1], ["Id"])


async def test_stamp_refuses_a_fill_the_scan_missed(
    client: MRCClient, server: MRCServer, redis_sync: redis.Redis
) -> None:
    """A fill whose marker survived (the scan had not reached it) is refused by the stamp."""
    key = client.get_key_from_query("q", [7, "a_b"], ["Id", "Tag"])
    seen = await client._redis.begin_fill(key, TOKEN, None)
    assert seen is not None
    await server._redis.stamp([b"Tag=a_b"])  # what drop_outdated_cache does before scanning
    assert not await client._redis.commit_fill(key, TOKEN, b"[1]", 60, seen)
    assert set() == stored_keys(redis_sync)


def test_stamps_cover_every_token_that_could_match() -> None:
    """Values holding '_' are matched as runs of segments: each run gets a stamp."""
    key = b"A=1_B=x_C=2_" + b"f" * 40
    from mysql_redis_cache._redis.fills import stamp_of

    expected = {stamp_of(t) for t in (b"A=1", b"A=1_B=x", b"A=1_B=x_C=2", b"B=x", b"B=x_C=2")}
    expected.add(stamp_of(b"C=2"))
    assert expected == set(stamps_for(key))
    assert () == stamps_for(b"f" * 40)  # no params: nothing can invalidate it


async def test_markers_are_deleted_but_not_counted(
    client: MRCClient, server: MRCServer, redis_sync: redis.Redis
) -> None:
    """A running fill's marker goes with the invalidation; only entries are counted."""
    await client.write_to_cache("q", [1], [5], ["Id"])
    running = client.get_key_from_query("q2", [5], ["Id"])
    assert await client._redis.begin_fill(running, TOKEN, None) is not None
    assert redis_sync.exists(running + ":fill:" + TOKEN.hex())
    assert 1 == await server.drop_outdated_cache(["Id"], [5], dry_run=True)
    assert 1 == await server.drop_outdated_cache(["Id"], [5])
    assert set() == stored_keys(redis_sync)


async def test_killed_filler_blocks_nothing(redis_sync: redis.Redis) -> None:
    """A filler killed mid-fill leaves a marker that expires, and the next fill stores."""
    script = textwrap.dedent(f"""
        import asyncio, sys
        from mysql_redis_cache import MRCClient

        async def main():
            async with MRCClient({MYSQL_CONFIG!r}, {REDIS_URL!r}) as client:
                async def forever():
                    print("filling", flush=True)
                    await asyncio.sleep(60)
                await client.with_cache(forever, "dead", [1], ["Id"])

        asyncio.run(main())
    """)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        assert b"filling\n" == await asyncio.wait_for(proc.stdout.readline(), 30)
    finally:
        proc.kill()  # SIGKILL: no cleanup runs
        await proc.wait()
    async with MRCClient(MYSQL_CONFIG, REDIS_URL) as client:
        key = client.get_key_from_query("dead", [1], ["Id"])
        [marker] = redis_sync.keys(key + ":fill:*")
        assert 0 < redis_sync.pttl(marker) <= FILL_WINDOW_MS

        async def quick() -> list[int]:
            return [2]

        assert [2] == await client.with_cache(quick, "dead", [1], ["Id"])
        assert [2] == await client.read_from_cache("dead", [1], ["Id"])
    assert 0 == client.stats.refused
