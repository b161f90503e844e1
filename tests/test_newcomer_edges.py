"""What a newcomer met: refused credentials read as outages, a shutdown read as a MySQL
crash, and smaller edges of the API."""

from __future__ import annotations

import asyncio
import inspect
import logging

import pytest

from mysql_redis_cache import (
    CacheAuthError,
    ClientClosedError,
    ConfigError,
    InvalidArgumentError,
    MRCClient,
    MRCServer,
    QueryError,
)

from ._mysql_admin import running
from ._redis_server import redis_server
from ._threads import until
from .conftest import MYSQL_CONFIG

pytestmark = pytest.mark.usefixtures("redis_sync")


@pytest.mark.parametrize(
    "url",
    ["redis://:wrong-pw@127.0.0.1:{port}/0", "redis://127.0.0.1:{port}/0"],
    ids=["wrong-password", "no-password"],
)
async def test_refused_credentials_are_a_config_error(url: str) -> None:
    """With fail_open=False a refused (or missing) password raises CacheAuthError, a
    ConfigError that says what to check."""
    with redis_server("--requirepass", "right-pw") as private:
        async with MRCClient(MYSQL_CONFIG, url.format(port=private.port), fail_open=False) as c:
            with pytest.raises(CacheAuthError, match="check the password") as info:
                await c.query_with_cache("SELECT 1 AS one")
    assert isinstance(info.value, ConfigError)


async def test_refused_credentials_fail_open_with_an_error_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Failing open, a refused password is logged once at ERROR (not as an outage
    WARNING), and the rows still come from MySQL."""
    with redis_server("--requirepass", "right-pw") as private:
        url = f"redis://:wrong-pw@127.0.0.1:{private.port}/0"
        async with MRCClient(MYSQL_CONFIG, url) as client:
            with caplog.at_level(logging.WARNING, "mysql_redis_cache"):
                for _ in range(3):
                    assert [{"one": 1}] == await client.query_with_cache("SELECT 1 AS one")
    records = [r for r in caplog.records if r.name == "mysql_redis_cache"]
    assert ["ERROR"] == [r.levelname for r in records]
    assert "credentials" in records[0].getMessage()


async def test_close_during_query_to_promise_is_client_closed() -> None:
    """close() while query_to_promise runs ends it with ClientClosedError, as it does a
    query_with_cache, not with MySQL's 'Lost connection'."""
    marker = "mrc-closing-promise"
    async with MRCClient(MYSQL_CONFIG) as client:
        call = asyncio.ensure_future(client.query_to_promise(f"SELECT SLEEP(5) /* {marker} */"))
        assert await asyncio.to_thread(until, lambda: running(marker) == 1)
        await client.close(grace=0.1)
        with pytest.raises(ClientClosedError):
            await call


async def test_refused_mysql_login_says_so() -> None:
    """A wrong MySQL password is worded as a refused connection, not a failed query."""
    async with MRCClient({**MYSQL_CONFIG, "password": "wrong-pw"}) as client:
        with pytest.raises(QueryError, match="MySQL refused the connection"):
            await client.query_to_promise("SELECT 1")


async def test_a_coroutine_given_as_fn_is_closed() -> None:
    """with_cache refuses a coroutine object and closes it: no 'never awaited' warning."""

    async def rows() -> list[int]:
        return [1]

    coroutine = rows()
    async with MRCClient(MYSQL_CONFIG) as client:
        with pytest.raises(InvalidArgumentError, match="async function"):
            await client.with_cache(coroutine, "q", [1], ["Id"])  # type: ignore[arg-type]
    assert inspect.getcoroutinestate(coroutine) == inspect.CORO_CLOSED


async def test_one_name_for_many_values_suggests_repeating_it() -> None:
    """drop_outdated_cache(['Id'], [1, 2, 3]) says how to write it."""
    async with MRCServer() as server:
        with pytest.raises(InvalidArgumentError, match=r"\['Id'\] \* 3"):
            await server.drop_outdated_cache(["Id"], [1, 2, 3])
