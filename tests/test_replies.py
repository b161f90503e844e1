"""Replies on the read connection, parsed as they arrive: the same answers and errors as
redis-py's own reading, and no wrong answer or hang when a server misbehaves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis._parsers import _AsyncRESP3Parser

from mysql_redis_cache import CacheError, CacheUnavailableError, MRCClient

from .conftest import MYSQL_CONFIG, REDIS_URL, reader_of

Q = "SELECT ? AS n"


def python_parsed() -> aioredis.Redis:
    """A client of REDIS_URL whose connections parse with redis-py's own Python parser."""
    pool = aioredis.ConnectionPool.from_url(REDIS_URL, parser_class=_AsyncRESP3Parser)
    return aioredis.Redis.from_pool(pool)  # closes the pool with it


@pytest.fixture(params=["hiredis", "redis-py"])
async def either(
    request: pytest.FixtureRequest, redis_sync: redis.Redis
) -> AsyncIterator[MRCClient]:
    """A client that reads through Replies (hiredis) or through redis-py's parser."""
    if request.param == "hiredis":
        async with MRCClient(MYSQL_CONFIG, REDIS_URL, fail_open=False) as client:
            yield client
        return
    own = python_parsed()
    async with MRCClient(MYSQL_CONFIG, own, fail_open=False) as client:
        yield client
    await own.aclose()


async def test_replies_are_parsed_as_they_arrive_with_hiredis(client: MRCClient) -> None:
    """With hiredis, reads skip redis-py's reading: a redis-py upgrade that changes what
    this relies on shows here, not as a silent slowdown."""
    await client.read_from_cache(Q, [1], ["N"])
    assert reader_of(client).channel.replies is not None


async def test_a_parser_the_user_picked_is_left_to_read() -> None:
    own = python_parsed()
    async with MRCClient(MYSQL_CONFIG, own) as client:
        await client.write_to_cache(Q, [1], [1], ["N"])
        assert [1] == await client.read_from_cache(Q, [1], ["N"])
        assert reader_of(client).channel.replies is None
    await own.aclose()


async def test_reads_agree_whichever_parses(either: MRCClient, redis_sync: redis.Redis) -> None:
    """Hits, misses, an empty string, a batch and concurrent reads give the same answers."""
    for n in range(5):
        await either.write_to_cache(Q, [{"n": n}], [n], ["N"])
    redis_sync.set(either.get_key_from_query(Q, [5], ["N"]), b"")
    assert [{"n": 1}] == await either.read_from_cache(Q, [1], ["N"])
    assert None is await either.read_from_cache(Q, [9], ["N"])
    assert None is await either.read_from_cache(Q, [5], ["N"])
    many = await either.query_many_with_cache(Q, [[n] for n in range(5)], ["N"])
    assert [[{"n": n}] for n in range(5)] == many
    together = await asyncio.gather(*(either.read_from_cache(Q, [n % 7], ["N"]) for n in range(70)))
    assert [[{"n": n % 7}] if n % 7 < 5 else None for n in range(70)] == together


async def test_an_error_reply_is_a_cache_error(either: MRCClient, redis_sync: redis.Redis) -> None:
    """GET of a key holding a hash: Redis's WRONGTYPE reaches the caller as CacheError (not
    an outage), and the next read works."""
    redis_sync.hset(either.get_key_from_query(Q, [1], ["N"]), "a", "b")
    await either.write_to_cache(Q, [2], [2], ["N"])
    with pytest.raises(CacheError, match="WRONGTYPE") as caught:
        await either.read_from_cache(Q, [1], ["N"])
    assert not isinstance(caught.value, CacheUnavailableError)
    assert not either._guard.breaker.is_open
    assert [2] == await either.read_from_cache(Q, [2], ["N"])


async def test_an_error_among_the_local_cache_replies(redis_sync: redis.Redis) -> None:
    """With the local cache a read asks for the value and its PTTL together: an error in
    either reaches the caller."""
    async with MRCClient(MYSQL_CONFIG, REDIS_URL, local_cache=2**20, fail_open=False) as client:
        redis_sync.hset(client.get_key_from_query(Q, [1], ["N"]), "a", "b")
        with pytest.raises(CacheError, match="WRONGTYPE"):
            await client.read_from_cache(Q, [1], ["N"])
        await client.write_to_cache(Q, [2], [2], ["N"])
        assert [2] == await client.read_from_cache(Q, [2], ["N"])


# A stand-in Redis, for what a real one never does. It speaks RESP2 (clients connect with
# protocol=2): "+OK" to whatever is not a GET, and `answer(key)` to a GET, hanging up
# after an answer that does not end in CRLF.
type Answer = Callable[[bytes], bytes]


async def fake_redis(answer: Answer, connections: list[int]) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while line := await reader.readline():
                count = int(line[1:])
                args = []
                for _ in range(count):
                    size = int((await reader.readline())[1:])
                    args.append((await reader.readexactly(size + 2))[:-2])
                reply = answer(args[1]) if args[0].upper() == b"GET" else b"+OK\r\n"
                writer.write(reply)
                await writer.drain()
                if not reply.endswith(b"\r\n"):
                    break  # hang up, instead of a reply or in the middle of one
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def read_from_fake(
    answer: Answer, reads: Callable[[MRCClient], Awaitable[list[Any]]]
) -> tuple[list[Any], int]:
    """What `reads` returns from a client of a fake Redis that answers GETs with `answer`,
    and the number of connections the client made to it."""
    connections: list[int] = []
    server = await fake_redis(answer, connections)
    port = server.sockets[0].getsockname()[1]
    try:
        url = f"redis://127.0.0.1:{port}/0?protocol=2"
        async with MRCClient(MYSQL_CONFIG, url, fail_open=False, redis_timeout=1) as client:
            outcomes = await asyncio.wait_for(reads(client), 10)
    finally:
        server.close()
        await server.wait_closed()
    return outcomes, len(connections)


async def twice(client: MRCClient) -> list[Any]:
    outcomes: list[Any] = []
    for key in (b"first", b"second"):
        try:
            outcomes.append(await client._redis.get(key.decode()))
        except CacheError as exc:
            outcomes.append(type(exc))
    return outcomes


async def test_an_unrequested_reply_is_never_taken_for_the_next_one() -> None:
    """A server that answers a GET twice: the extra reply ends the connection, and the next
    read gets its own answer on a new one, not the extra."""

    def answer(key: bytes) -> bytes:
        if key == b"first":
            return b"$-1\r\n$5\r\nextra\r\n"
        return b"$6\r\nsecond\r\n"

    outcomes, connections = await read_from_fake(answer, twice)
    assert [None, b"second"] == outcomes
    assert 2 == connections


async def test_push_messages_are_skipped() -> None:
    """RESP3 push messages before a reply are not taken for it."""

    def answer(key: bytes) -> bytes:
        return b">2\r\n$4\r\nnote\r\n$2\r\nhi\r\n$%d\r\n%b\r\n" % (len(key), key)

    outcomes, connections = await read_from_fake(answer, twice)
    assert [b"first", b"second"] == outcomes
    assert 1 == connections


@pytest.mark.parametrize(
    "reply", [b"@not resp\r\n", b"", b"$5\r\nab"], ids=["garbage", "hang-up", "cut-short"]
)
async def test_a_broken_reply_is_an_outage_not_a_hang(reply: bytes) -> None:
    """Not RESP, a hang-up, a reply cut short by a hang-up: a read fails as unavailable
    (on a used connection, after one more try on a new one), and never hangs."""

    def answer(key: bytes) -> bytes:
        return b"$2\r\nok\r\n" if key == b"ok" else reply

    async def reads(client: MRCClient) -> list[Any]:
        return [await client._redis.get("ok"), *await twice(client)]

    outcomes, connections = await read_from_fake(answer, reads)
    assert [b"ok", CacheUnavailableError, CacheUnavailableError] == outcomes
    assert 3 == connections  # "ok" and the first try, the retry, the second read
