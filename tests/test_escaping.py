"""No value changes a query's structure: round trips of hostile strings, refused modes."""

from __future__ import annotations

from collections.abc import AsyncIterator

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
def test_utf8_charsets_are_accepted(charset: str) -> None:
    """utf8mb4 and utf8 are accepted."""
    MRCClient({**MYSQL_CONFIG, "charset": charset})


def test_no_backslash_escapes_in_config_is_refused() -> None:
    """sql_mode with NO_BACKSLASH_ESCAPES in the config is refused at construction."""
    with pytest.raises(ConfigError, match="NO_BACKSLASH_ESCAPES"):
        MRCClient({**MYSQL_CONFIG, "sql_mode": "ANSI_QUOTES,NO_BACKSLASH_ESCAPES"})


async def test_no_backslash_escapes_on_the_server_is_refused(redis_sync: redis.Redis) -> None:
    """A server whose sql_mode has NO_BACKSLASH_ESCAPES gets no statement at all."""
    async with MRCClient(MYSQL_CONFIG, REDIS_URL) as admin:
        pool = admin.get_mysql_pool()
        async with pool.acquire() as conn:
            await conn.query("SELECT @@GLOBAL.sql_mode")
            before = conn._result.rows[0][0]
            await conn.query(
                "SET GLOBAL sql_mode = CONCAT(@@GLOBAL.sql_mode, ',NO_BACKSLASH_ESCAPES')"
            )
        try:
            async with MRCClient(MYSQL_CONFIG, REDIS_URL) as client:
                with pytest.raises(ConfigError, match="NO_BACKSLASH_ESCAPES"):
                    await client.query_to_promise("SELECT ? AS v", ["\\' OR 1=1 -- "])
        finally:
            async with pool.acquire() as conn:
                mode = before.decode() if isinstance(before, bytes) else before
                await conn.query(f"SET GLOBAL sql_mode = '{mode}'")
