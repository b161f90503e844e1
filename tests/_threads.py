"""What the thread tests share: a database of their own (so its connections can be
counted on the server), counts of a client's connections, and a log of its warnings."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis

from ._mysql_admin import admin
from .conftest import MYSQL_CONFIG


@contextmanager
def own_database() -> Iterator[dict[str, Any]]:
    """A MySQL config for a database made for this test and dropped after it: its
    connections on the server are only the ones the test opens."""
    name = f"mrc_thr_{secrets.token_hex(4)}"
    with admin() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    try:
        yield {**MYSQL_CONFIG, "database": name}
    finally:
        with admin() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE {name}")


def mysql_connections(database: str) -> int:
    """Connections open on the server to `database`."""
    with admin() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = %s", (database,)
        )
        row = cur.fetchone()
    return int(row[0])


def redis_connections(redis_sync: redis.Redis, name: str) -> int:
    """Connections open on the Redis server under the client name `name`."""
    return sum(1 for c in redis_sync.client_list() if c.get("name") == name)


@contextmanager
def warnings_logged() -> Iterator[list[logging.LogRecord]]:
    """The library's log records at WARNING and above, from any thread."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.WARNING)
    logger = logging.getLogger("mysql_redis_cache")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def in_threads(count: int, work: Callable[[int], None]) -> list[BaseException]:
    """Run `work(i)` in `count` threads started together; what each raised, if anything."""
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def run(index: int) -> None:
        start.wait()
        try:
            work(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
        assert not thread.is_alive(), "a thread hung"
    return errors


def until(condition: Callable[[], bool], seconds: float = 30.0) -> bool:
    """Wait for `condition` to hold, polling; whether it did within `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
