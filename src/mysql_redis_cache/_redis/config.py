"""The user's Redis configuration (a dict or a URL) checked and turned into redis-py arguments.

redis-py accepts a malformed URL as localhost db 0 and passes unknown keywords on until
the first connection fails with a TypeError; both are refused here, at construction.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import (
    URL_QUERY_ARGUMENT_PARSERS,
    AbstractConnection,
    SSLConnection,
)

from .._errors import ConfigError


def _parameters(function: Any) -> frozenset[str]:
    return frozenset(inspect.signature(function).parameters) - {"self", "kwargs"}


_OURS = frozenset({"cluster", "sentinel"})
_CLIENT_KEYWORDS = _parameters(aioredis.Redis.__init__) | _OURS
_CLUSTER_KEYWORDS = _CLIENT_KEYWORDS | _parameters(aioredis.RedisCluster.__init__)
_URL_OPTIONS = frozenset(URL_QUERY_ARGUMENT_PARSERS) | _parameters(AbstractConnection.__init__)
_SSL_URL_OPTIONS = _URL_OPTIONS | _parameters(SSLConnection.__init__)
_SCHEMES = ("redis", "rediss", "unix")
_NO_DECODE = "decode_responses must stay off: cached values are read as bytes"


def check_redis_url(url: str) -> int:
    """Refuse a Redis URL that redis-py would misread; return its database number.

    Raises:
        ConfigError: the scheme, host, port, database or a query option is not valid,
            naming the part.
    """
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed [IPv6 address], say
        raise ConfigError(f"Redis URL {url!r} cannot be read: {exc}") from exc
    if parts.scheme not in _SCHEMES:
        raise ConfigError(f"Redis URL must start with redis://, rediss:// or unix://, got {url!r}")
    db_text = ""
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigError(f"Redis URL {url!r} names no socket path")
    else:
        if not parts.hostname:
            raise ConfigError(f"Redis URL {url!r} names no host (expected redis://host:port/db)")
        try:
            parts.port  # noqa: B018  # urllib checks the port when it is read
        except ValueError as exc:
            raise ConfigError(f"bad port in Redis URL {url!r}: {exc}") from exc
        db_text = unquote(parts.path).removeprefix("/")
        if db_text and not (db_text.isascii() and db_text.isdigit()):
            raise ConfigError(
                f"the path of Redis URL {url!r} must be a database number, got {db_text!r}"
            )
    allowed = _SSL_URL_OPTIONS if parts.scheme == "rediss" else _URL_OPTIONS
    for key, text in parse_qsl(parts.query, keep_blank_values=True):
        if key == "decode_responses":
            raise ConfigError(_NO_DECODE)
        if key not in allowed:
            raise ConfigError(f"unknown Redis URL option {key!r} in {url!r}")
        parse = URL_QUERY_ARGUMENT_PARSERS.get(key)
        try:
            value = parse(text) if parse else text
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bad value {text!r} for Redis URL option {key!r}") from exc
        if key == "db":
            db_text = str(value)
    return int(db_text or 0)


def parse_redis_config(config: Mapping[str, Any] | str | None) -> tuple[str | None, dict[str, Any]]:
    """Split a Redis config into (URL or None, redis-py keywords), after checking both.

    Accepts a `redis://`/`rediss://`/`unix://` URL, a dict of redis-py keywords, or a
    node-redis style dict with `url` (and `database` for `db`).

    Raises:
        ConfigError: a malformed URL, an unknown keyword, a setting the library must
            control, or a database number other than 0 on Redis Cluster.
    """
    if config is None:
        return None, {}
    if isinstance(config, str):
        url, options = config, {}
    elif isinstance(config, Mapping):
        options = dict(config)
        url = options.pop("url", None)
    else:
        raise ConfigError(
            f"redis_config must be a URL, a dict or a redis.asyncio client, got {config!r:.60}"
        )
    if "database" in options:
        options["db"] = options.pop("database")
    if url is not None and not isinstance(url, str):
        raise ConfigError(f"the Redis 'url' must be a string, got {url!r:.60}")
    db = check_redis_url(url) if url is not None else 0
    known = _CLUSTER_KEYWORDS if options.get("cluster") else _CLIENT_KEYWORDS
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"unknown Redis config keys: {unknown}")
    if options.get("decode_responses"):
        raise ConfigError(_NO_DECODE)
    if options.get("cluster") and (db or options.get("db")):
        raise ConfigError("Redis Cluster has only database 0: remove the database number")
    return url, options
