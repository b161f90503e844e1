"""The user's MySQL configuration (a dict or a URL) turned into driver arguments."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict
from urllib.parse import parse_qsl, unquote, urlsplit

import aiomysql

from .._errors import ConfigError
from .._node.rows import CastOptions

_TIMEZONE = re.compile(r"local|Z|[+-][0-9]{2}:[0-9]{2}")
_DATE_TYPES = frozenset({"DATE", "DATETIME", "TIMESTAMP"})
# Connection charsets whose escaping (backslashes, as mysql2 writes) is safe for every
# value and whose results decode as UTF-8, as mysql2 decodes them.
SAFE_CHARSETS = frozenset({"utf8mb4", "utf8", "utf8mb3"})
NO_BACKSLASH_ESCAPES = (
    "sql_mode NO_BACKSLASH_ESCAPES is not supported: values are escaped with backslashes, "
    "as mysql2 does, and under that mode a backslash is a plain character, so a value "
    "could end its string literal"
)


class MySQLConfig(TypedDict, total=False):
    """The dict form of `mysql_config`: aiomysql keywords plus the mysql2 names Node users have."""

    host: str
    port: int
    user: str
    password: str
    db: str
    database: str  # mysql2's name for db
    connectionLimit: int  # mysql2's pool size
    timezone: str  # 'local' (default), 'Z' or '+HH:MM', as in mysql2
    dateStrings: bool | list[str]
    multipleStatements: bool
    charset: str
    autocommit: bool
    connect_timeout: float
    unix_socket: str
    ssl: Any


@dataclass(frozen=True, slots=True)
class MySQLSettings:
    """Parsed MySQL configuration: connection keywords, pool size and cast options."""

    connect_kwargs: dict[str, Any]
    pool_size: int
    cast: CastOptions
    multiple_statements: bool = False


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _date_strings(value: object) -> bool | tuple[str, ...]:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return _bool(value)
        except ValueError:
            value = value.split(",")
    if isinstance(value, list | tuple) and all(str(v).upper() in _DATE_TYPES for v in value):
        return tuple(str(v).upper() for v in value)
    raise ValueError(f"expected a bool or a list of {sorted(_DATE_TYPES)}, got {value!r}")


# URL query parameters of mysql:// and their converters.
_MYSQL_URL_PARAMS: dict[str, Callable[[str], Any]] = {
    "connectionLimit": int,
    "timezone": str,
    "dateStrings": _date_strings,
    "multipleStatements": _bool,
    "charset": str,
    "connect_timeout": float,
    "autocommit": _bool,
    "unix_socket": str,
}

_AIOMYSQL_KEYWORDS = frozenset(inspect.signature(aiomysql.Connection.__init__).parameters) - {
    "self",
    "loop",
    "conv",
}


def parse_mysql_url(url: str) -> dict[str, Any]:
    """`mysql://user:pass@host:port/db?connectionLimit=5` → config dict (percent-decoded)."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed [IPv6 address], say
        raise ConfigError(f"MySQL URL cannot be read: {exc}") from exc
    if parts.scheme not in ("mysql", "mariadb"):
        raise ConfigError(f"MySQL URL must start with mysql:// or mariadb://, got {url!r}")
    if not parts.hostname and "unix_socket" not in parts.query:
        raise ConfigError(f"MySQL URL {url!r} names no host (expected mysql://user:pass@host/db)")
    config: dict[str, Any] = {}
    if parts.hostname:
        config["host"] = unquote(parts.hostname)
    try:
        if parts.port is not None:
            config["port"] = parts.port
    except ValueError as exc:
        raise ConfigError(f"bad port in MySQL URL: {exc}") from exc
    if parts.username is not None:
        config["user"] = unquote(parts.username)
    if parts.password is not None:
        config["password"] = unquote(parts.password)
    database = unquote(parts.path.lstrip("/"))
    if database:
        config["db"] = database
    for key, text in parse_qsl(parts.query, keep_blank_values=True):
        convert = _MYSQL_URL_PARAMS.get(key)
        if convert is None:
            raise ConfigError(
                f"unknown MySQL URL parameter {key!r}; known: {sorted(_MYSQL_URL_PARAMS)}"
            )
        try:
            config[key] = convert(text)
        except ValueError as exc:
            raise ConfigError(f"bad value for MySQL URL parameter {key!r}: {exc}") from exc
    return config


def parse_mysql_config(config: Mapping[str, Any] | str) -> MySQLSettings:
    """Validate a MySQL config dict or URL.

    Raises:
        ConfigError: unknown keys, bad values, or a malformed URL.
    """
    options = dict(parse_mysql_url(config) if isinstance(config, str) else config)
    if "database" in options:
        if "db" in options:
            raise ConfigError("give either 'database' or 'db', not both")
        options["db"] = options.pop("database")
    if "minsize" in options:
        raise ConfigError(
            "minsize is not supported (the 0.x option): the pool opens connections on demand, "
            "up to connectionLimit (or maxsize); remove minsize"
        )
    pool_size = options.pop("connectionLimit", options.pop("maxsize", 10))
    if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
        raise ConfigError(f"connectionLimit must be a positive int, got {pool_size!r}")
    timezone = options.pop("timezone", "local")
    if not isinstance(timezone, str) or not _TIMEZONE.fullmatch(timezone):
        raise ConfigError(f"timezone must be 'local', 'Z' or '+HH:MM', got {timezone!r}")
    try:
        date_strings = _date_strings(options.pop("dateStrings", False))
    except ValueError as exc:
        raise ConfigError(f"bad dateStrings: {exc}") from exc
    multiple = options.pop("multipleStatements", False)
    unknown = set(options) - _AIOMYSQL_KEYWORDS
    if unknown:
        raise ConfigError(f"unknown MySQL config keys: {sorted(unknown)}")
    options.setdefault("host", "localhost")
    options.setdefault("user", "root")
    charset = options.setdefault("charset", "utf8mb4")
    if not isinstance(charset, str) or charset.lower() not in SAFE_CHARSETS:
        raise ConfigError(
            f"charset {charset!r} is not supported: only {sorted(SAFE_CHARSETS)} escape every "
            "value safely (in sjis, cp932, gbk and big5 a byte 0x5C can end a character) and "
            "decode results as Node does; the server converts other column charsets"
        )
    sql_mode = options.get("sql_mode")
    if isinstance(sql_mode, str) and "NO_BACKSLASH_ESCAPES" in sql_mode.upper():
        raise ConfigError(NO_BACKSLASH_ESCAPES)
    options.setdefault("autocommit", True)  # mysql2 never opens a transaction by itself
    return MySQLSettings(
        connect_kwargs=options,
        pool_size=pool_size,
        cast=CastOptions(timezone=timezone, date_strings=date_strings),
        multiple_statements=bool(multiple),
    )
