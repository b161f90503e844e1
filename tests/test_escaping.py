"""No value changes a query's structure: round trips of hostile strings, refused modes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator

import pymysql
import pytest
import redis

from mysql_redis_cache import ConfigError, MRCClient

from .conftest import MYSQL_CONFIG, REDIS_URL

QUOTES = ["'", '"', "`", "\\", "\\'", "\\\\'", "''", '\\"', "%", "_", "?", "??"]
CONTROL = ["\0", "\b", "\t", "\n", "\r", "\x1a", "\x7f", "\x00'\x00"]
# yen, won, fullwidth backslash, right quote, modifier apostrophe, separators, emoji...
UNICODE = ["¥", "₩", "\uff3c", "\u2019", "\u02bc", "\u2028", "\u202e", "😀", "e\u0301", "\ufeff"]
INJECTIONS = [
    "' OR 1=1 -- ",
    "\\' OR 1=1 -- ",
    "¥' OR 1=1 -- ",
    "\\\\' OR 1=1 /*",
    "'; DROP TABLE t; --",
    "*/ OR 1=1 /*",
    '" OR ""="',
    "' UNION SELECT @@version -- ",
    "\\x27 OR 1=1",
    "\u00bf' OR 1=1 -- ",
    "\u5c27' OR 1=1 -- ",
]
NASTY = [
    *QUOTES,
    *CONTROL,
    *UNICODE,
    *INJECTIONS,
    *(a + b for a in QUOTES for b in ("x", "'", "\\", "¥")),
]


@pytest.fixture
async def client(redis_sync: redis.Redis) -> AsyncIterator[MRCClient]:
    async with MRCClient(MYSQL_CONFIG, REDIS_URL) as mrc:
        yield mrc


async def test_hostile_strings_round_trip(client: MRCClient) -> None:
    """Every value comes back as one column holding exactly itself, in and out of the cache."""
    for value in NASTY:
        query = "SELECT ? AS v, 1 AS marker"
        rows = await client.query_to_promise(query, [value])
        assert [{"v": value, "marker": 1}] == rows, repr(value)
        cached = await client.query_with_cache(query, [value], ["V"])
        assert rows == cached, repr(value)


async def test_hostile_identifiers_round_trip(client: MRCClient) -> None:
    """?? quotes identifiers so that any name is one column name."""
    for name in ("a`b", "x` FROM dual; --", "`", "é`'\\"):
        assert [{name: 1}] == await client.query_to_promise("SELECT 1 AS ??", [name])


@pytest.mark.parametrize("charset", ["sjis", "cp932", "gbk", "big5", "latin1"])
def test_unsafe_charsets_are_refused(charset: str) -> None:
    """Charsets whose escaping or decoding cannot be proved are a ConfigError at construction."""
    with pytest.raises(ConfigError, match=f"charset '{charset}' is not supported"):
        MRCClient({**MYSQL_CONFIG, "charset": charset})


@pytest.mark.parametrize("charset", ["utf8mb4", "utf8", "UTF8MB4"])
async def test_utf8_charsets_are_accepted(charset: str) -> None:
    """utf8mb4 and utf8 are accepted, connect, and carry text both ways."""
    async with MRCClient({**MYSQL_CONFIG, "charset": charset}) as client:
        assert [{"s": "é ü ñ"}] == await client.query_to_promise("SELECT ? AS s", ["é ü ñ"])


def test_no_backslash_escapes_in_config_is_refused() -> None:
    """sql_mode with NO_BACKSLASH_ESCAPES in the config is refused at construction."""
    with pytest.raises(ConfigError, match="NO_BACKSLASH_ESCAPES"):
        MRCClient({**MYSQL_CONFIG, "sql_mode": "ANSI_QUOTES,NO_BACKSLASH_ESCAPES"})


@pytest.fixture
def global_no_backslash_escapes() -> Iterator[Callable[[], None]]:
    """Call it to add NO_BACKSLASH_ESCAPES to the server's global sql_mode (restored after)."""
    admin = pymysql.connect(**MYSQL_CONFIG)
    with admin.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.sql_mode")
        [(before,)] = cur.fetchall()

    def turn_on() -> None:
        with admin.cursor() as cur:
            cur.execute("SET GLOBAL sql_mode = CONCAT(@@GLOBAL.sql_mode, ',NO_BACKSLASH_ESCAPES')")

    try:
        yield turn_on
    finally:
        with admin.cursor() as cur:
            cur.execute("SET GLOBAL sql_mode = %s", (before,))
        admin.close()


HOSTILE = "\\' OR 1=1 -- "


async def test_no_backslash_escapes_on_the_server_is_refused(
    global_no_backslash_escapes: Callable[[], None],
) -> None:
    """A server whose sql_mode has NO_BACKSLASH_ESCAPES gets no statement at all."""
    global_no_backslash_escapes()
    async with MRCClient(MYSQL_CONFIG, REDIS_URL) as client:
        with pytest.raises(ConfigError, match="NO_BACKSLASH_ESCAPES"):
            await client.query_to_promise("SELECT ? AS v", [HOSTILE])


async def test_a_mode_set_after_the_client_started_is_seen_per_connection(
    client: MRCClient, global_no_backslash_escapes: Callable[[], None]
) -> None:
    """Connections opened after the global sql_mode changed are refused, from the status
    flags each connection reports; the pooled ones keep their safe session mode."""
    assert [{"v": HOSTILE}] == await client.query_to_promise("SELECT ? AS v", [HOSTILE])
    global_no_backslash_escapes()
    calls = [client.query_to_promise("SELECT ? AS v, SLEEP(0.2) AS s", [HOSTILE]) for _ in range(3)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    refused = [r for r in results if isinstance(r, ConfigError)]
    assert 2 == len(refused), results  # the two new connections
    assert [[{"v": HOSTILE, "s": 0}]] == [r for r in results if r not in refused]


async def test_a_session_that_sets_the_mode_is_not_reused(redis_sync: redis.Redis) -> None:
    """A statement that turns NO_BACKSLASH_ESCAPES on for its session: that connection is
    closed afterwards, so the next statement runs on a safe one."""
    async with MRCClient({**MYSQL_CONFIG, "connectionLimit": 1}, REDIS_URL) as client:
        await client.query_to_promise(
            "SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, ',NO_BACKSLASH_ESCAPES')"
        )
        for value in NASTY:
            rows = await client.query_to_promise("SELECT ? AS v, 1 AS marker", [value])
            assert [{"v": value, "marker": 1}] == rows, repr(value)
