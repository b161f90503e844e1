"""Admission of fills: a bound on those that run at once, first come first served, and
nothing held by a miss while it waits (real MySQL and Redis)."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis

from mysql_redis_cache import ClientClosedError, MRCClient

from .conftest import MYSQL_CONFIG, REDIS_URL, stored_keys

REQUEST = contextvars.ContextVar("request", default="none")


async def test_fills_run_a_bounded_number_at_once_in_arrival_order(
    redis_sync: redis.Redis,
) -> None:
    """200 distinct misses with max_fills=3: never more than 3 functions running, started
    in the order the calls came, every entry stored."""
    running, most, started = 0, 0, []

    def source(n: int) -> Callable[[], Awaitable[int]]:
        async def fn() -> int:
            nonlocal running, most
            started.append(n)
            running += 1
            most = max(most, running)
            await asyncio.sleep(0.001)
            running -= 1
            return n

        return fn

    async with MRCClient(MYSQL_CONFIG, REDIS_URL, max_fills=3) as client:
        results = await asyncio.gather(
            *(client.with_cache(source(n), "admitted", [n], ["N"]) for n in range(200))
        )
    assert list(range(200)) == results
    assert 3 == most
    assert list(range(200)) == started
    assert 200 == len(stored_keys(redis_sync))


async def test_waiting_misses_hold_no_task(redis_sync: redis.Redis) -> None:
    """3,000 distinct misses at once: while they wait their turn, the only tasks are the
    callers' own and the admitted fills (the rest are places in a queue)."""
    most = 0

    async def fn() -> int:
        nonlocal most
        most = max(most, len(asyncio.all_tasks()))
        await asyncio.sleep(0)
        return 1

    async with MRCClient(MYSQL_CONFIG, REDIS_URL, max_fills=20) as client:
        await client.with_cache(fn, "warm")  # connects, so connecting tasks are not counted
        baseline = len(asyncio.all_tasks())
        calls = [client.with_cache(fn, "queued", [n], ["N"]) for n in range(3000)]
        await asyncio.gather(*calls)
        assert 0 == client.stats.errors + client.stats.skipped
    # the callers, at most 20 fills, and the reader's and writer's batches
    assert most <= baseline + 3000 + 20 + 2
    assert 3001 == len(stored_keys(redis_sync))


async def seen() -> str:
    """A fill function: the REQUEST it runs with."""
    return REQUEST.get()


def waiting_for(gate: asyncio.Event) -> Callable[[], Awaitable[str]]:
    """A fill function that holds its admission place until `gate` is set."""

    async def blocker() -> str:
        await gate.wait()
        return REQUEST.get()

    return blocker


async def test_a_queued_fill_runs_in_its_first_callers_context(redis_sync: redis.Redis) -> None:
    """A fill that waited its turn sees the context variables of the call that started it,
    not those of whoever ran before it."""
    gate = asyncio.Event()

    async def call(request: str, fn: Callable[[], Awaitable[str]], key: str) -> Any:
        REQUEST.set(request)
        return await client.with_cache(fn, key)

    async with MRCClient(MYSQL_CONFIG, REDIS_URL, max_fills=1) as client:
        first = asyncio.ensure_future(call("a", waiting_for(gate), "ctx-first"))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(call("b", seen, "ctx-second"))
        await asyncio.sleep(0.05)
        assert 1 == client._lookups.get().flights.admission.waiting
        gate.set()
        assert ["a", "b"] == list(await asyncio.gather(first, second))


async def test_a_queued_fill_keeps_its_first_callers_context_after_it_gave_up(
    redis_sync: redis.Redis,
) -> None:
    """The first caller gives up while its fill waits, then changes its context: the fill,
    run for the caller that joined it, still sees the context of the call that started it."""
    gate, moved_on = asyncio.Event(), asyncio.Event()

    async def giving_up() -> None:
        REQUEST.set("a")
        try:
            await client.with_cache(seen, "ctx-abandoned")
        except asyncio.CancelledError:
            REQUEST.set("changed")  # the task goes on, in the same context
            moved_on.set()
            await asyncio.sleep(1)

    async def joiner() -> Any:
        REQUEST.set("b")
        return await client.with_cache(seen, "ctx-abandoned")

    async with MRCClient(MYSQL_CONFIG, REDIS_URL, max_fills=1) as client:
        first = asyncio.ensure_future(client.with_cache(waiting_for(gate), "ctx-blocker"))
        await asyncio.sleep(0.05)
        starter = asyncio.ensure_future(giving_up())
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(joiner())
        await asyncio.sleep(0.05)
        starter.cancel()
        await moved_on.wait()
        gate.set()
        assert "a" == await second
        await first
        starter.cancel()
        await asyncio.gather(starter, return_exceptions=True)


async def test_a_miss_whose_callers_all_gave_up_never_runs(redis_sync: redis.Redis) -> None:
    """Callers cancelled while their fill waits for admission: it is skipped when its turn
    comes, the next one runs, and a later call of the key starts a fill of its own."""
    gate = asyncio.Event()
    runs: list[str] = []

    def source(name: str) -> Callable[[], Awaitable[str]]:
        async def fn() -> str:
            runs.append(name)
            if name == "first":
                await gate.wait()
            return name

        return fn

    async with MRCClient(MYSQL_CONFIG, REDIS_URL, max_fills=1) as client:
        first = asyncio.ensure_future(client.with_cache(source("first"), "gone-1"))
        await asyncio.sleep(0.05)
        doomed = [asyncio.ensure_future(client.with_cache(source("doomed"), "gone-2"))]
        doomed.append(asyncio.ensure_future(client.with_cache(source("doomed"), "gone-2")))
        after = asyncio.ensure_future(client.with_cache(source("after"), "gone-3"))
        await asyncio.sleep(0.05)
        for task in doomed:
            task.cancel()
        await asyncio.gather(*doomed, return_exceptions=True)
        gate.set()
        assert ["first", "after"] == list(await asyncio.gather(first, after))
        assert "again" == await client.with_cache(source("again"), "gone-2")
    assert ["first", "after", "again"] == runs
    assert client._lookups.get().flights.admission.running == 0


async def test_close_turns_away_queued_misses(redis_sync: redis.Redis) -> None:
    """close() with misses queued for admission: each of their callers gets
    ClientClosedError, their functions never run, the admitted one finishes."""
    gate = asyncio.Event()
    runs: list[int] = []

    def source(n: int) -> Callable[[], Awaitable[int]]:
        async def fn() -> int:
            runs.append(n)
            await gate.wait()
            return n

        return fn

    client = MRCClient(MYSQL_CONFIG, REDIS_URL, max_fills=1)
    calls = [
        asyncio.ensure_future(client.with_cache(source(n), "closing", [n], ["N"]))
        for n in range(50)
    ]
    await asyncio.sleep(0.05)
    closing = asyncio.ensure_future(client.close(grace=5))
    await asyncio.sleep(0.05)
    gate.set()
    await closing
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert 0 == results[0]
    assert all(isinstance(r, ClientClosedError) for r in results[1:])
    assert [0] == runs


@pytest.mark.parametrize("max_fills", [1, 8])
async def test_joiners_of_a_queued_fill_share_it(redis_sync: redis.Redis, max_fills: int) -> None:
    """Callers of a key whose fill waits its turn join it: one run, one result each."""
    runs = 0

    async def fn() -> list[int]:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.001)
        return [runs]

    async def other() -> int:
        await asyncio.sleep(0.01)
        return 0

    async with MRCClient(MYSQL_CONFIG, REDIS_URL, max_fills=max_fills) as client:
        busy = [client.with_cache(other, "busy", [n], ["N"]) for n in range(max_fills)]
        results = await asyncio.gather(
            *busy, *(client.with_cache(fn, "shared") for _ in range(100))
        )
    assert [[1]] * 100 == results[max_fills:]
    assert 1 == runs
