"""query_with_cache in every form asyncio offers: awaited, gathered, as a task, cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

import pytest
import redis

from mysql_redis_cache import (
    CacheUnavailableError,
    ClientClosedError,
    InvalidParamError,
    MRCClient,
)

from ._redis_server import RedisProcess, redis_server
from .conftest import MYSQL_CONFIG, REDIS_URL, reader_of

Q = "SELECT ? AS n, CONCAT('row ', ?) AS label"
NAMES = ["N", "Label"]


def params(n: int) -> list[Any]:
    return [n, n]


def expected(n: int) -> list[dict[str, Any]]:
    return [{"n": n, "label": f"row {n}"}]


@pytest.fixture
def private_redis() -> Iterator[RedisProcess]:
    with redis_server() as server:
        yield server


async def test_gathered_hits_coalesce(client: MRCClient) -> None:
    """64 fresh calls under gather: the first one's GET, one MGET for the rest; in order."""
    for n in range(64):
        await client.query_with_cache(Q, params(n), NAMES)
    before, hits = reader_of(client).batches, client.stats.hits
    results = await asyncio.gather(
        *(client.query_with_cache(Q, params(n), NAMES) for n in range(64))
    )
    assert [expected(n) for n in range(64)] == results
    assert 2 == reader_of(client).batches - before
    assert 64 == client.stats.hits - hits


async def run_as_task(call: Coroutine[Any, Any, Any]) -> Any:
    return await asyncio.create_task(call)


async def run_in_task_group(call: Coroutine[Any, Any, Any]) -> Any:
    async with asyncio.TaskGroup() as group:
        task = group.create_task(call)
    return task.result()


async def run_gathered(call: Coroutine[Any, Any, Any]) -> Any:
    [result] = await asyncio.gather(call)
    return result


async def run_waited(call: Coroutine[Any, Any, Any]) -> Any:
    task = asyncio.create_task(call)  # asyncio.wait takes tasks, never coroutines
    await asyncio.wait([task])
    return task.result()


async def run_as_future(call: Coroutine[Any, Any, Any]) -> Any:
    future = asyncio.ensure_future(call)
    while not future.done():  # polled, never awaited: it must still finish  # noqa: ASYNC110
        await asyncio.sleep(0.001)
    return future.result()


FORMS: dict[str, Callable[[Coroutine[Any, Any, Any]], Awaitable[Any]]] = {
    "await": lambda call: call,
    "create_task": run_as_task,
    "task_group": run_in_task_group,
    "gather": run_gathered,
    "wait": run_waited,
    "ensure_future": run_as_future,
    "wait_for": lambda call: asyncio.wait_for(call, 10),
    "shield": lambda call: asyncio.shield(call),
}


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
async def test_every_form_gives_the_rows(
    client: MRCClient, form: Callable[[Coroutine[Any, Any, Any]], Awaitable[Any]]
) -> None:
    """A miss, then a hit, through each form: the rows each time, one fill."""
    for _ in range(2):
        assert expected(7) == await form(client.query_with_cache(Q, params(7), NAMES))
    assert (1, 1) == (client.stats.misses, client.stats.hits)


def test_asyncio_run_drives_a_call() -> None:
    """asyncio.run(client.query_with_cache(...)) works, one loop after another."""
    client = MRCClient(MYSQL_CONFIG, REDIS_URL)
    for _ in range(2):
        assert expected(3) == asyncio.run(client.query_with_cache(Q, params(3), NAMES))
    asyncio.run(client.close())


async def test_calls_are_coroutines(client: MRCClient) -> None:
    """A call is a coroutine whether Redis is idle or busy; one closed unrun reads nothing,
    one awaited twice says so."""
    await client.query_with_cache(Q, params(1), NAMES)
    before = reader_of(client).batches
    call = client.query_with_cache(Q, params(1), NAMES)
    assert asyncio.iscoroutine(call)
    call.close()
    await asyncio.sleep(0.01)
    assert before == reader_of(client).batches
    busy = [client.query_with_cache(Q, params(n), NAMES) for n in range(3)]
    assert all(asyncio.iscoroutine(c) for c in busy)
    assert [expected(n) for n in range(3)] == await asyncio.gather(*busy)
    call = client.query_with_cache(Q, params(1), NAMES)
    assert expected(1) == await call
    with pytest.raises(RuntimeError, match="cannot reuse"):
        await call


async def test_bad_arguments_raise_where_the_call_is_awaited(client: MRCClient) -> None:
    """As with a coroutine: making the call raises nothing, awaiting it raises."""
    call = client.query_with_cache(Q, "not a list", NAMES)
    with pytest.raises(InvalidParamError):
        await call
    with pytest.raises(InvalidParamError):
        await asyncio.gather(client.query_with_cache(Q, 5, NAMES))  # type: ignore[arg-type]


async def test_gathered_misses_of_one_key_fill_once(client: MRCClient) -> None:
    """Ten gathered calls for one missing entry: one fill, nine callers join it."""
    results = await asyncio.gather(
        *(client.query_with_cache(Q, params(5), NAMES) for _ in range(10))
    )
    assert [expected(5)] * 10 == results
    assert 9 == client.stats.joins
    assert results[0] is not results[1]


async def test_cancelled_gather_leaves_the_client_working(private_redis: RedisProcess) -> None:
    """Gathered calls cancelled while Redis hangs are cancelled, and the next calls work."""
    async with MRCClient(MYSQL_CONFIG, private_redis.url, redis_timeout=5) as client:
        await client.query_with_cache(Q, params(1), NAMES)
        private_redis.pause()
        try:
            calls = [
                asyncio.ensure_future(client.query_with_cache(Q, params(n), NAMES))
                for n in range(10)
            ]
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*calls), 0.1)
        finally:
            private_redis.resume()
        await asyncio.wait(calls, timeout=5)  # the one whose read was sent ends its cancelling
        assert [True] * 10 == [c.cancelled() for c in calls]
        assert [expected(n) for n in range(3)] == await asyncio.gather(
            *(client.query_with_cache(Q, params(n), NAMES) for n in range(3))
        )


@pytest.mark.parametrize("fail_open", [True, False])
async def test_gathered_calls_when_redis_is_gone(
    private_redis: RedisProcess, fail_open: bool
) -> None:
    """Redis killed: gathered calls are answered by MySQL, or raise CacheUnavailableError."""
    async with MRCClient(
        MYSQL_CONFIG, private_redis.url, fail_open=fail_open, redis_timeout=0.5
    ) as client:
        await client.query_with_cache(Q, params(1), NAMES)
        private_redis.kill()
        calls = [client.query_with_cache(Q, params(n), NAMES) for n in range(5)]
        if fail_open:
            assert [expected(n) for n in range(5)] == await asyncio.gather(*calls)
        else:
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
            assert all(isinstance(o, CacheUnavailableError) for o in outcomes), outcomes


async def test_close_cuts_gathered_fills_short(redis_sync: redis.Redis) -> None:
    """close() during gathered misses: each call ends with ClientClosedError, promptly."""
    client = MRCClient(MYSQL_CONFIG, REDIS_URL)
    slow = "SELECT ? AS n, SLEEP(2) AS s"
    calls = asyncio.gather(
        *(client.query_with_cache(slow, [n], ["N"]) for n in range(4)), return_exceptions=True
    )
    await asyncio.sleep(0.3)
    await client.close(grace=0.1)
    outcomes = await asyncio.wait_for(calls, 2)
    assert all(isinstance(o, ClientClosedError) for o in outcomes), outcomes
