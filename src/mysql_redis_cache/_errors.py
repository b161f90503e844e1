"""The library's exceptions.

MRCError
├── ConfigError            (also ValueError)  a bad mysql/redis config or option
│   └── NotificationsOffError                Redis sends no keyspace notifications (indexer)
├── InvalidArgumentError   (also ValueError)  a call the library refuses
│   └── InvalidParamError                    a query param it cannot format or key
├── EncodeError            (also TypeError)   a result that cannot be stored as JSON
├── QueryError                               MySQL failed; the driver error is the cause
├── CacheError                               Redis failed; the driver error is the cause
│   └── CacheUnavailableError                Redis cannot be reached, or the breaker is open
│       └── CacheAuthError  (also ConfigError) Redis refused the credentials
├── ClientClosedError                        the call was cut short by close()
└── EventLoopError         (also RuntimeError) a sync client called inside an event loop
"""

from __future__ import annotations


class MRCError(Exception):
    """Base class of every error this library raises."""


class ConfigError(MRCError, ValueError):
    """A MySQL or Redis configuration, or a client option, is invalid."""


class NotificationsOffError(ConfigError):
    """Redis does not send the keyspace notifications `MRCIndexer` needs, and refused to
    turn them on: set `notify-keyspace-events` as the message says."""


class InvalidArgumentError(MRCError, ValueError):
    """A call's arguments are refused, because honouring them could mix up cache entries."""


class InvalidParamError(InvalidArgumentError):
    """A query parameter has a type that can be neither formatted into SQL nor keyed."""


class EncodeError(MRCError, TypeError):
    """A value cannot be encoded as the JSON the Node library would store."""


class QueryError(MRCError):
    """The MySQL query failed; `__cause__` holds the driver's exception."""


class CacheError(MRCError):
    """Redis failed or answered with something unusable; `__cause__` holds the reason."""


class CacheUnavailableError(CacheError):
    """Redis cannot be reached (refused, timed out), or the circuit breaker is open."""


class CacheAuthError(CacheUnavailableError, ConfigError):
    """Redis refused the client's credentials (a wrong or missing password or ACL user):
    a configuration error, not an outage; failing open, logged at ERROR."""


class ClientClosedError(MRCError):
    """close() turned the call away: it waited for a connection, came in while closing,
    or shared a fill that close() cancelled. A later call reopens the client."""


class EventLoopError(MRCError, RuntimeError):
    """A blocking call of `mysql_redis_cache.sync` was made in a thread that runs an event
    loop: it would stall that loop. Await the async client's method there instead."""


class config_errors:  # lower case: used as `with config_errors("redis_config"):`
    """Re-raise anything but an MRCError raised while reading a config as a ConfigError
    naming the config (a value of a type nothing expects, say)."""

    def __init__(self, label: str) -> None:
        self._label = label

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, Exception) and not isinstance(exc, MRCError):
            raise ConfigError(f"{self._label} cannot be read: {exc!r}") from exc
