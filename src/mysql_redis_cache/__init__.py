"""Read-through MySQL query cache in Redis, sharing entries with the Node library.

`MRCClient` caches query results; `MRCServer` invalidates them; `MRCIndexer` keeps the
index that lets invalidations skip scanning every key. Their blocking twins,
for code that is not async, are in `mysql_redis_cache.sync`.
"""

from importlib import metadata as _metadata

from ._client import MRCClient
from ._errors import (
    CacheAuthError,
    CacheError,
    CacheUnavailableError,
    ClientClosedError,
    ConfigError,
    EncodeError,
    EventLoopError,
    InvalidArgumentError,
    InvalidParamError,
    MRCError,
    NotificationsOffError,
    QueryError,
)
from ._index.indexer import MRCIndexer
from ._node.json import JSONValue
from ._node.rows import Row
from ._options import Options
from ._server import DropProgress, MRCServer
from ._stats import CacheStats

__version__ = _metadata.version("actvalue.mysql-redis-cache")

__all__ = [
    "CacheAuthError",
    "CacheError",
    "CacheStats",
    "CacheUnavailableError",
    "ClientClosedError",
    "ConfigError",
    "DropProgress",
    "EncodeError",
    "EventLoopError",
    "InvalidArgumentError",
    "InvalidParamError",
    "JSONValue",
    "MRCClient",
    "MRCError",
    "MRCIndexer",
    "MRCServer",
    "NotificationsOffError",
    "Options",
    "QueryError",
    "Row",
    "__version__",
]
