"""mysql_redis_cache.sync: the blocking clients, from many threads at once."""

from __future__ import annotations

import asyncio
import collections
import json
import secrets
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import redis

from mysql_redis_cache import (
    ClientClosedError,
    EventLoopError,
    MRCClient,
    MRCError,
    QueryError,
)
from mysql_redis_cache import sync as mrc_sync

from ._mysql_admin import admin, running
from ._node import run_node
from ._redis_server import redis_server
from ._threads import (
    in_threads,
    mysql_connections,
    own_database,
    redis_connections,
    until,
    warnings_logged,
)
from .conftest import MYSQL_CONFIG, REDIS_URL, stored_keys

THREADS = 16


def _table(database: str) -> str:
    """A table of one row (id 1, version 0) in `database`; its name."""
    name = f"{database}.versions"
    with admin() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {name} (id INT PRIMARY KEY, version INT NOT NULL)")
        cur.execute(f"INSERT INTO {name} VALUES (1, 0)")
    return name


def test_threads_share_hits_fills_and_invalidations(redis_sync: redis.Redis) -> None:
    """16 threads on one sync client: rows right, one fill of a hot key across all of
    them, no row older than an invalidation that returned before the read began."""
    with own_database() as mysql, warnings_logged() as warned:
        table = _table(mysql["database"])
        client = mrc_sync.MRCClient(mysql, REDIS_URL)
        server = mrc_sync.MRCServer(REDIS_URL)
        published = 0  # the version every read that starts now must see at least
        stale: list[tuple[int, int]] = []
        wrong: list[object] = []
        fills = collections.Counter[int]()
        stop = threading.Event()

        def hot() -> list[dict[str, int]]:
            fills[0] += 1
            time.sleep(0.05)  # long enough for every thread to miss it meanwhile
            return [{"hot": 1}]

        def work(thread: int) -> None:
            if thread == 0:  # the writer: a new version, then its invalidation
                nonlocal published
                for version in range(1, 21):
                    with admin() as conn, conn.cursor() as cur:
                        cur.execute(f"UPDATE {table} SET version = %s WHERE id = 1", (version,))
                    server.drop_outdated_cache(["Id"], [1])
                    published = version
                    time.sleep(0.01)
                stop.set()
                return
            n = 0
            while not stop.is_set() or n < 50:
                n += 1
                floor = published
                [row] = client.query_with_cache(f"SELECT version FROM {table} WHERE id = ?",
                                                [1], ["Id"])  # fmt: skip
                if row["version"] < floor:
                    stale.append((floor, row["version"]))
                if [{"v": n % 5, "t": thread}] != client.query_with_cache(
                    "SELECT ? AS v, ? AS t", [n % 5, thread], ["V", "T"]
                ):
                    wrong.append(thread)
                if [{"hot": 1}] != client.with_cache(hot, "hot", [1], ["Hot"], ttl=3600):
                    wrong.append("hot")

        assert [] == in_threads(THREADS, work)
        assert [] == stale
        assert [] == wrong
        assert 1 == fills[0], [r.getMessage() for r in warned]
        assert client.stats.coalesced > 0  # threads' reads shared round trips
        client.close()
        server.close()
        assert [] == [r.getMessage() for r in warned]


def test_threads_ride_out_a_redis_restart() -> None:
    """A Redis kill and restart while 16 threads call: 0 exceptions, every row right,
    and hits again once it is back."""
    with redis_server() as private, own_database() as mysql:
        client = mrc_sync.MRCClient(mysql, private.url, breaker_cooldown=0.1)
        phase = threading.Barrier(THREADS + 1)
        wrong: list[object] = []
        hits_after: list[int] = []

        def work(thread: int) -> None:
            for n in range(210):
                if n in (70, 140):  # Redis is killed at the first, back at the second
                    phase.wait(timeout=60)
                    phase.wait(timeout=60)
                if n == 200:
                    hits_after.append(client.stats.hits)
                rows = client.query_with_cache("SELECT ? AS v, ? AS t", [n % 7, thread],
                                               ["V", "T"])  # fmt: skip
                if rows != [{"v": n % 7, "t": thread}]:
                    wrong.append(rows)
                if n >= 140:
                    time.sleep(0.002)  # past the breaker's cool-down, probes bring it back

        errors: list[BaseException] = []
        runner = threading.Thread(target=lambda: errors.extend(in_threads(THREADS, work)))
        runner.start()
        phase.wait(timeout=60)
        private.kill()
        phase.wait(timeout=60)
        phase.wait(timeout=60)
        down = client.stats.errors + client.stats.skipped
        private.start()
        phase.wait(timeout=60)
        runner.join(timeout=300)
        assert [] == errors
        assert [] == wrong
        assert down > 0  # the calls met the dead server
        assert client.stats.hits > max(hits_after)  # and hit again once it was back
        client.close()


def test_refused_inside_an_event_loop(redis_sync: redis.Redis) -> None:
    """A sync call from a thread that runs an event loop raises EventLoopError, an
    MRCError that names the async class."""
    client = mrc_sync.MRCClient(MYSQL_CONFIG, REDIS_URL)

    async def inside() -> None:
        with pytest.raises(EventLoopError, match=r"await mysql_redis_cache\.MRCClient") as info:
            client.query_with_cache("SELECT 1")
        assert isinstance(info.value, MRCError)
        with pytest.raises(EventLoopError):
            client.close()

    asyncio.run(inside())
    client.close()


def test_close_from_another_thread_while_calls_run(redis_sync: redis.Redis) -> None:
    """close() from another thread while 16 threads wait on slow queries returns within
    its grace; each call ends with its rows or ClientClosedError, and nothing stays open."""
    marker = f"mrc-sync-closing-{secrets.token_hex(3)}"
    with own_database() as mysql:
        client = mrc_sync.MRCClient(mysql, {"url": REDIS_URL, "client_name": marker})
        outcomes: list[str] = []

        def work(thread: int) -> None:
            try:
                client.query_with_cache(f"SELECT SLEEP(5) AS s, ? AS t /* {marker} */",
                                        [thread], ["T"])  # fmt: skip
                outcomes.append("rows")
            except ClientClosedError:
                outcomes.append("closed")

        runner = threading.Thread(target=lambda: outcomes.extend(map(repr, in_threads(8, work))))
        runner.start()
        assert until(lambda: running(marker, mysql["database"]) >= 8)  # every call's query runs
        began = time.monotonic()
        client.close(grace=0.2)
        took = time.monotonic() - began
        runner.join(timeout=30)
        assert not runner.is_alive()
        assert ["closed"] * 8 == outcomes
        assert took < 5  # well before the queries would have ended: they were cut short
        assert 0 == redis_connections(redis_sync, marker)
        assert until(lambda: 0 == mysql_connections(mysql["database"]), 10)
        assert [t.name for t in threading.enumerate() if t.name.startswith("mysql-redis")] == []


def test_with_cache_runs_fn_in_the_calling_thread(redis_sync: redis.Redis) -> None:
    """A miss runs the plain function in the thread that called; errors reach it as is."""
    with mrc_sync.MRCClient(MYSQL_CONFIG, REDIS_URL) as client:
        caller = threading.get_ident()
        assert {"ran_in": caller} == client.with_cache(
            lambda: {"ran_in": threading.get_ident()}, "fn", [1], ["Id"]
        )

        def fails() -> object:
            raise LookupError("from fn")

        with pytest.raises(LookupError, match="from fn"):
            client.with_cache(fails, "fn", [2], ["Id"])

        async def coroutine() -> object:
            return 1

        with pytest.raises(MRCError, match="plain function"):
            client.with_cache(coroutine, "fn", [3], ["Id"])


def test_errors_and_pure_calls_match_the_async_client(redis_sync: redis.Redis) -> None:
    """Errors come through unchanged, and keys and SQL are the async client's."""
    args: tuple[Any, ...] = ("SELECT ? AS a, ?? AS b", [1, "col"], ["A", "B"])
    with mrc_sync.MRCClient(MYSQL_CONFIG, REDIS_URL) as client:
        with pytest.raises(QueryError):
            client.query_to_promise("SELECT * FROM no_such_table_here")
        assert MRCClient(MYSQL_CONFIG).get_key_from_query(*args) == client.get_key_from_query(*args)
        assert "SELECT 1 AS a, `col` AS b" == client.format_query(*args[:2])


@pytest.mark.interop
def test_node_and_the_sync_client_share_entries(node: None, redis_sync: redis.Redis) -> None:
    """Node reads the bytes the sync client stored, and the sync client hits Node's."""
    ours = ("SELECT ? AS n, 'py' AS who", [41], ["N"])
    theirs = ("SELECT ? AS n, 'node' AS who", [42], ["N"])
    with mrc_sync.MRCClient(MYSQL_CONFIG, REDIS_URL) as client:
        client.query_with_cache(*ours)
        stored = redis_sync.get(client.get_key_from_query(*ours))
        [node_read] = run_node(
            [{"op": "read_from_cache", "query": ours[0], "params": ours[1], "names": ours[2]}],
            mysql=MYSQL_CONFIG,
            redis_url=REDIS_URL,
        )
        assert stored == node_read.encode()
        run_node(
            [{"op": "query_with_cache", "query": theirs[0], "params": theirs[1],
              "names": theirs[2]}],
            mysql=MYSQL_CONFIG, redis_url=REDIS_URL,
        )  # fmt: skip
        hits = client.stats.hits
        assert [{"n": 42, "who": "node"}] == client.read_from_cache(*theirs)
        assert hits + 1 == client.stats.hits
        assert 2 == len(stored_keys(redis_sync))


def test_unclosed_client_lets_the_process_exit(tmp_path: Any) -> None:
    """A sync client never closed does not keep the interpreter from exiting."""
    script = tmp_path / "unclosed.py"
    script.write_text(
        "import sys\n"
        "from mysql_redis_cache.sync import MRCClient\n"
        "client = MRCClient(None, sys.argv[1])\n"
        "client.read_from_cache('q', [1], ['Id'])\n"
        "print('done')\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script), REDIS_URL], capture_output=True, text=True, timeout=30,
        check=False,
    )  # fmt: skip
    assert (0, "done\n") == (proc.returncode, proc.stdout)


_RACING_CLOSES = """
import json, sys, threading, time
from mysql_redis_cache import ClientClosedError
from mysql_redis_cache.sync import MRCClient

client = MRCClient(json.loads(sys.argv[1]), sys.argv[2])
outcomes, stop = [], threading.Event()

def work():
    n = 0
    while not stop.is_set():
        n += 1
        try:
            rows = client.query_with_cache("SELECT ? AS v", [n % 5], ["V"])
            outcomes.append("rows" if rows == [{"v": n % 5}] else f"wrong {rows}")
        except ClientClosedError:
            outcomes.append("closed")
        except BaseException as exc:
            outcomes.append(repr(exc))

threads = [threading.Thread(target=work) for _ in range(8)]
for thread in threads:
    thread.start()
for _ in range(5):
    time.sleep(0.2)
    client.close(grace=0.1)
stop.set()
for thread in threads:
    thread.join(60)
client.close()
print(json.dumps({"alive": sum(t.is_alive() for t in threads), "outcomes": sorted(set(outcomes)),
                  "rows": outcomes.count("rows")}))
"""


def test_calls_racing_repeated_closes_never_hang(redis_sync: redis.Redis) -> None:
    """8 threads calling while another closes the client five times: every call ends,
    with its rows or ClientClosedError (a close turns away what it does not finish; the
    next call starts the client again), and no thread waits for ever. In a process of its
    own: a connection may still leak in this race (a known issue), which pytest would
    report against whichever test runs when it is collected."""
    with own_database() as mysql:
        proc = subprocess.run(
            [sys.executable, "-c", _RACING_CLOSES, json.dumps(mysql), REDIS_URL],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert 0 == proc.returncode, proc.stderr
    result = json.loads(proc.stdout)
    assert 0 == result["alive"]  # no caller waits for ever
    assert {"rows", "closed"} >= set(result["outcomes"]), result
    assert result["rows"] > 0
