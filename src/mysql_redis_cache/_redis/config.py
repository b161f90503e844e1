"""The user's Redis configuration (a dict or a URL) turned into redis-py arguments."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .._errors import ConfigError


def parse_redis_config(config: Mapping[str, Any] | str | None) -> tuple[str | None, dict[str, Any]]:
    """Split a Redis config into (URL or None, redis-py keywords).

    Accepts a `redis://`/`rediss://`/`unix://` URL, a dict of redis-py keywords, or a
    node-redis style dict with `url` (and `database` for `db`).

    Raises:
        ConfigError: a bad URL scheme or a setting the library must control.
    """
    if config is None:
        return None, {}
    if isinstance(config, str):
        url, options = config, {}
    else:
        options = dict(config)
        url = options.pop("url", None)
    if "database" in options:
        options["db"] = options.pop("database")
    if url is not None and urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"Redis URL must start with redis://, rediss:// or unix://, got {url!r}")
    if options.get("decode_responses"):
        raise ConfigError("decode_responses must stay off: cached values are read as bytes")
    return url, options
