"""Every wrong argument to a public method is an InvalidArgumentError naming it, refused
before anything reaches Redis or MySQL; dates at the edges of Python's years key, format
and store as Node's do."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis

from mysql_redis_cache import InvalidArgumentError, InvalidParamError, MRCClient, MRCServer

from ._redis_server import redis_server
from .conftest import MYSQL_CONFIG, REDIS_URL

type Call = Callable[[MRCClient], Awaitable[Any]]


async def _query_is(query: Any, client: MRCClient) -> None:
    for call in (
        client.query_with_cache(query, [6], ["StoreId"]),
        client.read_from_cache(query, [6], ["StoreId"]),
        client.write_to_cache(query, [1], [6], ["StoreId"]),
        client.query_to_promise(query, [6]),
        client.query_many_with_cache(query, [[6]], ["StoreId"]),
    ):
        with pytest.raises(InvalidArgumentError, match="query must be a str"):
            await call
    with pytest.raises(InvalidArgumentError, match="query must be a str"):
        client.get_key_from_query(query, [6], ["StoreId"])
    with pytest.raises(InvalidArgumentError, match="query must be a str"):
        client.format_query(query, [6])


@pytest.mark.parametrize("query", [None, b"SELECT 1", 7], ids=["None", "bytes", "int"])
async def test_a_query_that_is_no_str_is_refused(client: MRCClient, query: Any) -> None:
    """None, bytes or a number as the query: refused in every method, by name."""
    await _query_is(query, client)


@pytest.mark.parametrize(
    ("names", "values"),
    [(["StoreId"], 6), ({"StoreId": 6}, None), ("StoreId", [6]), (["StoreId"], b"6")],
    ids=["int-values", "dict-and-None", "str-names", "bytes-values"],
)
async def test_invalidation_refuses_what_is_no_list(
    server: MRCServer, names: Any, values: Any
) -> None:
    with pytest.raises(InvalidArgumentError, match="must be a list"):
        await server.drop_outdated_cache(names, values)


async def test_with_cache_refuses_a_plain_function(
    client: MRCClient, redis_sync: redis.Redis
) -> None:
    """A sync function (or no function) as `fn` is refused, and nothing is cached."""
    with pytest.raises(InvalidArgumentError, match="fn must be an async function"):
        await client.with_cache(lambda: [1], "q", [1], ["N"])  # type: ignore[arg-type,return-value]
    with pytest.raises(InvalidArgumentError, match="fn must be an async function"):
        await client.with_cache(None, "q", [1], ["N"])  # type: ignore[arg-type]
    assert [] == redis_sync.keys()


async def test_too_few_params_are_refused_before_redis() -> None:
    """More ? than params: refused before the client even connects to Redis."""
    with redis_server() as server, redis.Redis.from_url(server.url) as admin:
        before = admin.info("stats")["total_connections_received"]
        async with MRCClient(MYSQL_CONFIG, server.url) as client:
            for call in (
                client.query_with_cache("SELECT ?, ?", [1], ["N"]),
                client.query_many_with_cache("SELECT ?, ??", [[1]], ["N"]),
                client.query_to_promise("SELECT ?", []),
            ):
                with pytest.raises(InvalidParamError, match="placeholders"):
                    await call
        assert before == admin.info("stats")["total_connections_received"]


async def test_placeholders_in_quotes_and_comments_take_no_param(client: MRCClient) -> None:
    """'?' in a string, a comment or `???` is no placeholder: one param is enough."""
    rows = await client.query_with_cache("SELECT ? AS n, '?' AS q /* ? */", [1], ["N"])
    assert [{"n": 1, "q": "?"}] == rows


EDGES = [
    datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    datetime(9999, 12, 31, 23, 59, 59, 500000, tzinfo=timezone(timedelta(seconds=-37))),
]


@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
@pytest.mark.parametrize("edge", EDGES, ids=["year-1", "year-9999"])
async def test_dates_at_the_edges_key_write_and_query(
    local_tz: Any, redis_sync: redis.Redis, zone: str, edge: datetime
) -> None:
    """No OverflowError: the key is built, the entry written and read, and the query
    formatted and run with the `local` timezone option."""
    local_tz(zone)
    async with MRCClient({**MYSQL_CONFIG, "timezone": "local"}, REDIS_URL) as client:
        await client.write_to_cache("q", ["v"], [edge], ["At"])
        assert ["v"] == await client.read_from_cache("q", [edge], ["At"])
        rows = await client.query_with_cache("SELECT ? AS at", [edge], ["At"])
        assert 1 == len(rows)
        assert client.format_query("?", [edge]).startswith("'")
