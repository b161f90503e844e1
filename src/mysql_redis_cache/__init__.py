"""Read-through MySQL query cache in Redis, sharing entries with the Node library.

`MRCClient` caches query results; `MRCServer` invalidates them.
"""

from importlib.metadata import PackageNotFoundError, version

from ._client import MRCClient
from ._errors import (
    CacheError,
    ClientClosedError,
    ConfigError,
    EncodeError,
    InvalidArgumentError,
    InvalidParamError,
    MRCError,
    QueryError,
)
from ._server import MRCServer

try:
    __version__ = version("actvalue.mysql-redis-cache")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "CacheError",
    "ClientClosedError",
    "ConfigError",
    "EncodeError",
    "InvalidArgumentError",
    "InvalidParamError",
    "MRCClient",
    "MRCError",
    "MRCServer",
    "QueryError",
    "__version__",
]
