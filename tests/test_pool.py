"""The MySQL pool lends its connections in turn, and the release that frees one sends the
next caller's statement on it (real MariaDB; both drivers in CI)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis

from mysql_redis_cache import MRCClient, QueryError

from ._mysql_admin import kill, running
from .conftest import MYSQL_CONFIG, REDIS_URL


@pytest.fixture
async def one_connection(redis_sync: redis.Redis) -> AsyncIterator[MRCClient]:
    async with MRCClient({**MYSQL_CONFIG, "connectionLimit": 1}, REDIS_URL) as client:
        await client.query_to_promise("SELECT 1")  # the one connection is open
        yield client


async def test_a_caller_running_statements_back_to_back_lets_a_waiting_one_in(
    one_connection: MRCClient,
) -> None:
    """A caller that queues behind 20 back-to-back statements runs after the first of them,
    not after all 20: the released connection goes to it, not to the next statement."""
    finished: list[str] = []

    async def back_to_back() -> None:
        for n in range(20):
            await one_connection.query_to_promise("SELECT ? AS n", [n])
            finished.append(f"statement {n}")

    async def other() -> None:
        await one_connection.query_to_promise("SELECT 1 AS other")
        finished.append("other")

    first = asyncio.ensure_future(back_to_back())
    await asyncio.sleep(0)  # its first statement has the connection
    await asyncio.gather(first, other())
    assert finished.index("other") <= 1


async def test_a_release_sends_the_statement_of_the_caller_that_waits(
    one_connection: MRCClient,
) -> None:
    """Before the waiting caller runs again, its statement is already on the server."""
    pool = one_connection.get_mysql_pool()
    conn, sent = await pool.checkout()
    assert not sent
    waiter = asyncio.ensure_future(pool.checkout("SELECT SLEEP(0.3) AS mrc_sent_on_release"))
    await asyncio.sleep(0)  # it waits
    assert 0 == running("mrc_sent_on_release")
    await pool.release(conn)
    assert 1 == running("mrc_sent_on_release")  # blocks the loop: the waiter has not run
    handed, sent = await waiter
    assert handed is conn
    assert sent
    [result] = await pool.driver.run_raw(handed, "", sent=True)
    assert [(0,)] == result.rows
    await pool.release(handed)
    assert [{"n": 5}] == await one_connection.query_to_promise("SELECT ? AS n", [5])


async def test_a_transaction_left_open_is_rolled_back_before_the_next_caller(
    one_connection: MRCClient,
) -> None:
    """A statement leaves a transaction open: its release rolls it back before the caller
    waiting for the connection gets it (with its statement sent)."""
    _, waiting = await asyncio.gather(
        one_connection.query_to_promise("START TRANSACTION"),
        one_connection.query_to_promise("SELECT @@in_transaction AS t"),
    )
    assert [{"t": 0}] == waiting


async def test_thousands_at_once_each_get_their_own_result(
    redis_sync: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """3,000 statements over 10 connections: most are sent by the release before them, and
    every caller gets its own row."""
    async with MRCClient(MYSQL_CONFIG, REDIS_URL) as client:
        await client.query_to_promise("SELECT 1")
        driver = client.get_mysql_pool().driver
        sends = 0
        send_query = driver.send_query

        def counting(conn: Any, sql: str) -> bool:
            nonlocal sends
            sends += 1
            sent: bool = send_query(conn, sql)
            return sent

        monkeypatch.setattr(driver, "send_query", counting)
        results = await asyncio.gather(
            *(client.query_to_promise("SELECT ? AS n", [n]) for n in range(3_000))
        )
        assert [[{"n": n}] for n in range(3_000)] == results
        assert sends > 2_000


async def test_a_caller_that_gives_up_after_its_statement_was_sent_leaves_nothing(
    one_connection: MRCClient,
) -> None:
    """Cancelled between the release that sent its statement and its own next step: the
    statement is killed, the connection closed, and the next caller gets a new one."""
    pool = one_connection.get_mysql_pool()
    conn, _ = await pool.checkout()
    waiter = asyncio.ensure_future(pool.checkout("SELECT SLEEP(5) AS mrc_given_up"))
    await asyncio.sleep(0)
    await pool.release(conn)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert 0 == running("mrc_given_up")
    assert 0 == pool.size
    assert one_connection.get_mysql_pool().driver.is_closed(conn)
    assert [{"n": 3}] == await asyncio.wait_for(
        one_connection.query_to_promise("SELECT ? AS n", [3]), 2
    )


async def test_a_connection_released_with_results_unread_is_not_handed_on(
    redis_sync: redis.Redis,
) -> None:
    """A borrower that leaves a multi-statement result unread: the caller waiting gets a new
    connection and its own row."""
    config = {**MYSQL_CONFIG, "connectionLimit": 1, "multipleStatements": True}
    async with MRCClient(config, REDIS_URL) as client:
        await client.query_to_promise("SELECT 1")
        pool = client.get_mysql_pool()
        conn = await pool.acquire()
        await conn.query("SELECT 1 AS a; SELECT 2 AS b")
        waiter = asyncio.ensure_future(client.query_to_promise("SELECT ? AS n", [7]))
        await asyncio.sleep(0)
        await pool.release(conn)
        assert [{"n": 7}] == await asyncio.wait_for(waiter, 2)
        assert pool.driver.is_closed(conn)
        assert 1 == pool.size


async def test_connections_killed_while_callers_queue_fail_only_their_statements(
    redis_sync: redis.Redis,
) -> None:
    """500 statements queue for 10 connections while every connection is killed, twice:
    each caller gets its row or a QueryError, no killed connection is handed on, and 50
    more run."""
    async with MRCClient(MYSQL_CONFIG, REDIS_URL) as client:
        await client.query_to_promise("SELECT 1")
        pool = client.get_mysql_pool()
        calls = [
            asyncio.ensure_future(client.query_to_promise("SELECT ? AS n, SLEEP(0.02) AS s", [n]))
            for n in range(500)
        ]
        killed: set[int] = set()
        for _ in range(2):
            await asyncio.sleep(0.15)
            ids = [pool.driver.thread_id(conn) for conn in list(pool._used)]
            kill(ids)
            killed.update(ids)
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 30)
        assert len(killed) >= 15
        failed = [r for r in results if isinstance(r, BaseException)]
        assert all(isinstance(r, QueryError) for r in failed)
        assert len(failed) <= len(killed)  # at most the statements on killed connections
        mixed = [n for n, r in enumerate(results) if isinstance(r, list) and r[0]["n"] != n]
        assert [] == mixed  # each caller its own row
        after = [client.query_to_promise("SELECT ? AS n", [n]) for n in range(50)]
        assert [[{"n": n}] for n in range(50)] == await asyncio.gather(*after)
        assert pool.size <= 10
        assert not killed & {pool.driver.thread_id(conn) for conn in pool._free}
