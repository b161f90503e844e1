"""Parsing of MySQL and Redis configuration."""

from __future__ import annotations

from typing import Any

import pytest

from mysql_redis_cache import ConfigError
from mysql_redis_cache._mysql.config import parse_mysql_config, parse_mysql_url
from mysql_redis_cache._redis.config import parse_redis_config

URLS: list[tuple[str, dict[str, Any]]] = [
    ("mysql://root@localhost/test", {"host": "localhost", "user": "root", "db": "test"}),
    (
        "mysql://us%40er:p%3Ass%2Fw@db.example:3307/my%20db",
        {"host": "db.example", "port": 3307, "user": "us@er", "password": "p:ss/w", "db": "my db"},
    ),
    (
        "mariadb://u:@h/d?connectionLimit=3&timezone=Z&dateStrings=DATE,DATETIME",
        {
            "host": "h",
            "user": "u",
            "password": "",
            "db": "d",
            "connectionLimit": 3,
            "timezone": "Z",
            "dateStrings": ("DATE", "DATETIME"),
        },
    ),
    ("mysql://h?multipleStatements=true", {"host": "h", "multipleStatements": True}),
]


@pytest.mark.parametrize(("url", "expected"), URLS, ids=[u for u, _ in URLS])
def test_mysql_url(url: str, expected: dict[str, Any]) -> None:
    """URLs are percent-decoded and their parameters converted."""
    assert expected == parse_mysql_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "postgres://h/d",
        "mysql://h/d?nosuch=1",
        "mysql://h/d?connectionLimit=x",
        "mysql://h:99999/d",
    ],
)
def test_bad_mysql_url(url: str) -> None:
    """Bad schemes, unknown parameters and bad values raise ConfigError."""
    with pytest.raises(ConfigError):
        parse_mysql_url(url)


def test_mysql2_names_are_translated() -> None:
    """database, connectionLimit, timezone and dateStrings map to the driver and cast options."""
    settings = parse_mysql_config(
        {"database": "x", "connectionLimit": 4, "timezone": "+02:00", "dateStrings": ["date"]}
    )
    assert settings.connect_kwargs["db"] == "x"
    assert settings.pool_size == 4
    assert settings.cast.timezone == "+02:00"
    assert settings.cast.date_strings == ("DATE",)
    assert settings.connect_kwargs["autocommit"] is True


@pytest.mark.parametrize(
    "config",
    [{"database": "a", "db": "b"}, {"connectionLimit": 0}, {"dateStrings": ["TIME"]}],
    ids=["db-twice", "zero-pool", "bad-date-strings"],
)
def test_bad_mysql_config(config: dict[str, Any]) -> None:
    """Contradictory or invalid values raise ConfigError."""
    with pytest.raises(ConfigError):
        parse_mysql_config(config)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (None, (None, {})),
        ("redis://h:1/2", ("redis://h:1/2", {})),
        ({"url": "rediss://h", "database": 3}, ("rediss://h", {"db": 3})),
        ({"host": "h", "port": 7000}, (None, {"host": "h", "port": 7000})),
    ],
)
def test_redis_config(config: Any, expected: tuple[str | None, dict[str, Any]]) -> None:
    """URLs, redis-py keywords and node-redis style dicts are all accepted."""
    assert expected == parse_redis_config(config)


BAD_REDIS: list[tuple[Any, str]] = [
    ("reddis://h", "must start with redis://"),
    ("redis://:@/", "names no host"),
    ("redis:/127.0.0.1:6379/5", "names no host"),
    ("redis://127.0.0.1:6379/abc", "must be a database number, got 'abc'"),
    ("redis://127.0.0.1:99999/0", "bad port"),
    ("redis://h/0?bogus=1", "unknown Redis URL option 'bogus'"),
    ("redis://h/0?socket_timeout=soon", "bad value 'soon' for Redis URL option 'socket_timeout'"),
    ("redis://h/0?decode_responses=True", "decode_responses must stay off"),
    ("unix://", "names no socket path"),
    ({"hostt": "h"}, "unknown Redis config keys: \\['hostt'\\]"),
    ({"socket_timout": 1}, "unknown Redis config keys: \\['socket_timout'\\]"),
    ({"decode_responses": True}, "decode_responses must stay off"),
    ({"url": "redis://h/5", "cluster": True}, "only database 0"),
    ({"host": "h", "db": 2, "cluster": True}, "only database 0"),
    (42, "must be a URL, a dict"),
]


@pytest.mark.parametrize(("config", "message"), BAD_REDIS, ids=[repr(c) for c, _ in BAD_REDIS])
def test_bad_redis_config(config: Any, message: str) -> None:
    """Malformed URLs and unknown keys raise ConfigError naming the part, at construction."""
    with pytest.raises(ConfigError, match=message):
        parse_redis_config(config)


GOOD_REDIS_URLS = [
    "redis://h",
    "redis://h/",
    "redis://user:pw@h:6380/15?socket_timeout=0.5&client_name=svc",
    "rediss://h:6380/0?ssl_cert_reqs=none&ssl_check_hostname=false",
    "unix:///run/redis.sock?db=3",
    "redis://[::1]:6379/1",
]


@pytest.mark.parametrize("url", GOOD_REDIS_URLS)
def test_good_redis_urls_pass(url: str) -> None:
    """Well-formed URLs with the options redis-py knows are accepted as they are."""
    assert (url, {}) == parse_redis_config(url)


def test_cluster_accepts_its_own_keywords() -> None:
    """RedisCluster's keywords are known when cluster is on, and only then."""
    options = {"host": "h", "cluster": True, "read_from_replicas": True}
    assert (None, options) == parse_redis_config(options)
    with pytest.raises(ConfigError, match="read_from_replicas"):
        parse_redis_config({"host": "h", "read_from_replicas": True})


def test_bad_redis_url() -> None:
    """A non-Redis URL raises ConfigError."""
    with pytest.raises(ConfigError):
        parse_redis_config("http://h")


def test_options_name_the_same_options_everywhere() -> None:
    """MRCClient's keywords, ClientOptions and Options name the same options, with the
    same defaults: an option added to one and not the others fails here."""
    import dataclasses
    import inspect

    from mysql_redis_cache import MRCClient, Options
    from mysql_redis_cache._options import ClientOptions

    keywords = {
        name: param.default
        for name, param in inspect.signature(MRCClient.__init__).parameters.items()
        if param.kind is inspect.Parameter.KEYWORD_ONLY
    }
    fields = {f.name: f.default for f in dataclasses.fields(Options)}
    assert keywords == fields
    assert set(keywords) == set(ClientOptions.__annotations__)


@pytest.mark.parametrize(
    "option",
    [
        {"fail_open": "false"},  # read from an environment variable, it would fail open
        {"normalize_numbers": 0},
        {"scripts": "yes"},
        {"trace_keys": 1},
        {"refresh_ahead": "yes"},
    ],
    ids=lambda option: next(iter(option)),
)
def test_boolean_options_must_be_bools(option: dict[str, Any]) -> None:
    """A boolean option given as a str or an int is refused, naming the option."""
    from mysql_redis_cache import MRCClient

    with pytest.raises(ConfigError, match=next(iter(option))):
        MRCClient(None, None, **option)
