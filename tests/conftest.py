"""Fixtures: the real MariaDB and Redis on this machine (a database and a redis-server of
the suite's own, see _isolation.py), and the real npm package."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast
from urllib.parse import quote

import pytest
import redis

from mysql_redis_cache import MRCClient, MRCServer

from ._isolation import SuiteServers
from ._node import node_available
from ._settings import MYSQL_SERVER

SERVERS = SuiteServers()
MYSQL_HOST = MYSQL_SERVER["host"]
MYSQL_CONFIG: dict[str, Any] = {**MYSQL_SERVER, "database": SERVERS.database}
MYSQL_URL = (
    f"mysql://{quote(MYSQL_CONFIG['user'])}:{quote(MYSQL_CONFIG['password'])}@"
    f"{MYSQL_CONFIG['host']}:{MYSQL_CONFIG['port']}/{MYSQL_CONFIG['database']}"
)
# Flushed around every test: a server of the suite's own (or MRC_TEST_REDIS_URL's)
REDIS_URL = SERVERS.redis_url


def pytest_unconfigure(config: pytest.Config) -> None:
    SERVERS.stop()


def stored_keys(client: redis.Redis) -> set[bytes]:
    """Every key but the invalidation stamps (`mrc:inv:*`) that MRCServer leaves a minute."""
    keys = cast(list[bytes], client.keys())
    return {key for key in keys if not key.startswith(b"mrc:inv:")}


def reader_of(client: MRCClient) -> Any:
    """The client's coalescing reader for the running event loop (opened if need be)."""
    return client._redis._bound.get().reader


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("CI") and not node_available():
        raise pytest.UsageError("CI must run the interop tests: run `make install` first")


@pytest.fixture
def redis_sync() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
async def client(redis_sync: redis.Redis) -> AsyncIterator[MRCClient]:
    async with MRCClient(MYSQL_CONFIG, REDIS_URL) as mrc:
        yield mrc


@pytest.fixture
async def server(redis_sync: redis.Redis) -> AsyncIterator[MRCServer]:
    async with MRCServer(REDIS_URL) as mrc:
        yield mrc


@pytest.fixture
def node() -> None:
    if not node_available():
        pytest.skip("node or interop/node_modules missing: run `make install`")


@pytest.fixture
def local_tz() -> Iterator[Any]:
    """Set the process time zone (as TZ does for Node) and restore it afterwards."""
    before = os.environ.get("TZ")

    def set_tz(name: str) -> None:
        os.environ["TZ"] = name
        time.tzset()

    yield set_tz
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()
