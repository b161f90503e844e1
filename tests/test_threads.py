"""One async MRCClient used from many threads, each with event loops of its own."""

from __future__ import annotations

import asyncio
import collections
import json
import subprocess
import sys
import textwrap
import threading

import redis
from asgiref.sync import async_to_sync

from mysql_redis_cache import MRCClient, MRCServer

from ._mysql_admin import running
from ._threads import (
    in_threads,
    mysql_connections,
    own_database,
    redis_connections,
    until,
    warnings_logged,
)
from .conftest import REDIS_URL

QUERY = "SELECT ? AS v, ? AS t"
DISTINCT = 7  # params per thread: the first call of each misses, the rest hit


def test_threads_each_running_asyncio_run_per_call(redis_sync: redis.Redis) -> None:
    """8 threads x 500 asyncio.run() calls on one client: every row right, no error, no
    warning, and close() leaves no connection on either server."""
    threads, calls = 8, 500
    with own_database() as mysql, warnings_logged() as warned:
        client = MRCClient(mysql, {"url": REDIS_URL, "client_name": "mrc-thr-run"})
        wrong: list[object] = []

        def work(thread: int) -> None:
            for n in range(calls):
                params = [n % DISTINCT, thread]
                rows = asyncio.run(client.query_with_cache(QUERY, params, ["V", "T"]))
                if rows != [{"v": n % DISTINCT, "t": thread}]:
                    wrong.append(rows)

        errors = in_threads(threads, work)
        assert [] == errors
        assert [] == wrong
        assert threads * calls == client.stats.hits + client.stats.misses
        assert threads * DISTINCT == len(redis_sync.keys())
        asyncio.run(client.close())
        assert 0 == redis_connections(redis_sync, "mrc-thr-run")
        assert 0 == mysql_connections(mysql["database"])
        assert [] == [r.getMessage() for r in warned]


def test_threads_through_asgiref_async_to_sync(redis_sync: redis.Redis) -> None:
    """Django's async_to_sync from 8 threads on one module-level client, as under WSGI."""
    threads, calls = 8, 200
    with own_database() as mysql, warnings_logged() as warned:
        client = MRCClient(mysql, {"url": REDIS_URL, "client_name": "mrc-thr-asgi"})
        query = async_to_sync(client.query_with_cache)
        wrong: list[object] = []

        def work(thread: int) -> None:
            for n in range(calls):
                rows = query(QUERY, [n % DISTINCT, thread], ["V", "T"])
                if rows != [{"v": n % DISTINCT, "t": thread}]:
                    wrong.append(rows)

        assert [] == in_threads(threads, work)
        assert [] == wrong
        async_to_sync(client.close)()
        assert 0 == redis_connections(redis_sync, "mrc-thr-asgi")
        assert 0 == mysql_connections(mysql["database"])
        assert [] == [r.getMessage() for r in warned]


def test_close_reaches_the_loops_of_other_threads(redis_sync: redis.Redis) -> None:
    """close() in one loop closes the connections of loops still running in other
    threads, inside those loops; the client then works again in each of them."""
    threads = 4
    with own_database() as mysql:
        client = MRCClient(mysql, {"url": REDIS_URL, "client_name": "mrc-thr-close"})
        server = MRCServer({"url": REDIS_URL, "client_name": "mrc-thr-close"})
        opened, closed = threading.Barrier(threads + 1), threading.Event()
        after: list[object] = []

        def work(thread: int) -> None:
            async def loop() -> None:
                await client.query_with_cache(QUERY, [1, thread], ["V", "T"])
                await server.drop_outdated_cache(["T"], [-1])
                await asyncio.to_thread(opened.wait)
                await asyncio.to_thread(closed.wait)  # this loop runs on meanwhile
                after.append(await client.query_with_cache(QUERY, [1, thread], ["V", "T"]))

            asyncio.run(loop())

        errors: list[BaseException] = []
        runner = threading.Thread(target=lambda: errors.extend(in_threads(threads, work)))
        runner.start()
        opened.wait(timeout=60)
        assert redis_connections(redis_sync, "mrc-thr-close") >= threads * 2
        assert threads <= mysql_connections(mysql["database"])

        async def close_both() -> None:
            await client.close()
            await server.close()

        asyncio.run(close_both())
        assert 0 == redis_connections(redis_sync, "mrc-thr-close")
        assert 0 == mysql_connections(mysql["database"])
        closed.set()
        runner.join(timeout=60)
        assert [] == errors
        assert [[{"v": 1, "t": t}] for t in range(threads)] == sorted(
            after,
            key=lambda rows: rows[0]["t"],  # type: ignore[index]
        )
        assert 0 == redis_connections(redis_sync, "mrc-thr-close")


def test_close_from_another_thread_while_calls_run(redis_sync: redis.Redis) -> None:
    """close() from another thread's loop while 4 loops run slow queries: each call ends
    with its rows or ClientClosedError, within the grace, and nothing stays open."""
    threads = 4
    with own_database() as mysql:
        client = MRCClient(mysql, {"url": REDIS_URL, "client_name": "mrc-thr-closing"})
        started = threading.Barrier(threads + 1)
        outcomes: list[str] = []
        marker = "mrc-thr-closing"

        def work(thread: int) -> None:
            async def loop() -> None:
                calls = [
                    client.query_with_cache(f"SELECT SLEEP(?) AS s, ? AS t /* {marker} */",
                                            [0.2 * i, thread], ["S", "T"])
                    for i in range(1, 20)
                ]  # fmt: skip
                gathered = asyncio.gather(*calls, return_exceptions=True)
                await asyncio.to_thread(started.wait)
                for result in await gathered:
                    outcomes.append(type(result).__name__)

            asyncio.run(loop())

        runner = threading.Thread(target=lambda: in_threads(threads, work))
        runner.start()
        started.wait(timeout=60)
        assert until(
            lambda: running(marker, mysql["database"]) >= threads
        )  # every loop has a query running
        asyncio.run(client.close(grace=0.5))
        runner.join(timeout=60)
        assert not runner.is_alive()
        counts = collections.Counter(outcomes)
        assert {"list", "ClientClosedError"} >= set(counts), counts
        assert counts["ClientClosedError"] > 0
        assert threads * 19 == counts.total()
        assert 0 == redis_connections(redis_sync, "mrc-thr-closing")
        # the server drops a connection once its killed statement stops
        assert until(lambda: 0 == mysql_connections(mysql["database"]), 10)


_DEV_MODE_SCRIPT = """
import asyncio, json, sys, threading
from mysql_redis_cache import MRCClient

mysql, redis_url = json.loads(sys.argv[1]), sys.argv[2]
client = MRCClient(mysql, redis_url)
errors = []

def work(thread):
    for n in range(100):
        try:
            asyncio.run(client.query_with_cache("SELECT ? AS v", [n % 5], ["V"]))
        except BaseException as exc:
            errors.append(repr(exc))

threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
for t in threads: t.start()
for t in threads: t.join()
asyncio.run(client.close())
print(json.dumps(errors))
"""


def test_no_resource_warning_in_dev_mode(redis_sync: redis.Redis) -> None:
    """Under -X dev, 4 threads x 100 asyncio.run() calls print no ResourceWarning and no
    complaint of a loop used from another thread."""
    with own_database() as mysql:
        proc = subprocess.run(
            [sys.executable, "-X", "dev", "-c", textwrap.dedent(_DEV_MODE_SCRIPT),
             json.dumps(mysql), REDIS_URL],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
    assert 0 == proc.returncode, proc.stderr
    assert [] == json.loads(proc.stdout)
    for complaint in ("ResourceWarning", "Non-thread-safe", "Traceback", "never awaited"):
        assert complaint not in proc.stderr, proc.stderr
