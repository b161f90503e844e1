"""MRCClient's keyword options: what each means, checked once, kept frozen."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypedDict

from ._errors import ConfigError
from ._node.paramstyle import PARAMSTYLES

# An entry is read whole by every hit, in Node too: past this size caching costs more than
# it saves, and a single reply that large holds up every read queued behind it.
DEFAULT_MAX_ENTRY_BYTES = 16 * 2**20


class ClientOptions(TypedDict, total=False):
    """MRCClient's keyword options, as keywords (see `Options` for each)."""

    normalize_numbers: bool
    fail_open: bool
    redis_timeout: float
    breaker_cooldown: float
    lock_timeout: float | None
    mysql_driver: str
    local_cache: int | None
    local_cache_ttl: float
    paramstyle: str
    max_entry_bytes: int | None
    max_fills: int | None
    scripts: bool
    local_cache_heartbeat: float
    refresh_ahead: bool | float
    name: str | None
    meter_provider: Any
    tracer_provider: Any
    trace_keys: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """MRCClient's keyword options, checked.

    Attributes:
        normalize_numbers: turn numeric-looking strings into numbers, as the Node library
            does before caching. Off keeps them strings, and the entries then differ from
            the ones Node writes for the same query.
        fail_open: when Redis fails or cannot be reached, serve from MySQL (or `fn`)
            and log once per outage. False raises CacheError instead.
        redis_timeout: connect timeout for Redis, and the longest Redis may stay silent
            while answering, in seconds, unless the Redis config sets its own. A command
            whose connection turns out dead (a restart, CLIENT KILL, an idle timeout) is
            sent once more on a new connection; only a second failure, or a timeout,
            opens the circuit breaker.
        breaker_cooldown: after a Redis failure, skip Redis for this many seconds, then
            let one call probe it.
        lock_timeout: None for no cross-process lock. Seconds: on a miss, hold
            `<key>:lock` (SET NX PX) while computing; other processes poll the entry for
            up to this long, then compute it themselves.
        mysql_driver: 'auto' (asyncmy when installed, else aiomysql), 'aiomysql' or
            'asyncmy'. The environment variable MRC_MYSQL_DRIVER can name one for 'auto'.
        local_cache: None for none. Bytes: keep up to this much of the entries read in
            process, and answer hits from there without a round trip. Redis reports every
            change to them (CLIENT TRACKING, Redis 6+), so an entry written or deleted
            elsewhere (by Node, MRCServer, expiry) is dropped as soon as the report
            arrives; if that channel breaks, the local cache is emptied. Not for Redis
            Cluster.
        local_cache_ttl: the longest an entry stays in the local cache, in seconds.
        paramstyle: 'qmark': `?` placeholders, as in Node; a query written with `%s` is
            refused with a hint. 'format': `%s` placeholders (the 0.x port's style) are
            rewritten to `?` before the query is formatted or hashed, so its keys are
            the ones Node builds for the `?` query.
        max_entry_bytes: results whose JSON is larger (16 MiB by default) are returned but
            not cached, counted in `stats.oversized`; None for no limit. Larger entries
            written by Node or `write_to_cache` are still read.
        max_fills: how many misses may fill at once (their query or `fn` running, their
            fill marker set), per event loop; the rest wait their turn in order, and
            callers of a key already filling join that fill. None: twice the MySQL pool
            size (20 with mysql2's default `connectionLimit` of 10). Raise it for
            `with_cache` functions that do not use MySQL.
        scripts: True: a fill sets its marker and stores its entry with one Lua script
            each (see "A fill overtaken by an invalidation" in the README). False: plain
            commands, for a Redis user whose ACL forbids scripts; a fill that an
            invalidation overtakes within one round trip may then store stale rows, as
            in Node. A refusal of scripts is detected and switches to this by itself.
        local_cache_heartbeat: with the local cache, PING the connection that carries
            Redis's change reports this often, in seconds; when no reply comes within
            as long, the local cache is emptied and unused until Redis answers again. The
            longest a change made elsewhere can go unseen through a silent network
            partition is twice this.
        refresh_ahead: False, True, or XFetch's β as a positive float (True is 1.0;
            larger refreshes earlier). On, a hit also reads its entry's remaining TTL, in
            the same round trip, and now and then refreshes the entry in the background
            before it expires, so a hot entry's readers never wait for MySQL after its
            first fill. A refresh runs like a fill (single-flight, the fill marker, the
            store script, the jittered TTL), in one process at a time (it takes the key's
            lock), and only once this process has timed a fill of the same query.
        name: how the client names itself in OpenTelemetry metrics (`mrc.client.name`).
        meter_provider, tracer_provider: OpenTelemetry providers (the `otel` extra);
            None: the global ones.
        trace_keys: put each cache key on its spans.
    """

    normalize_numbers: bool = True
    fail_open: bool = True
    redis_timeout: float = 0.25
    breaker_cooldown: float = 1.0
    lock_timeout: float | None = None
    mysql_driver: str = "auto"
    local_cache: int | None = None
    local_cache_ttl: float = 60.0
    paramstyle: str = "qmark"
    max_entry_bytes: int | None = DEFAULT_MAX_ENTRY_BYTES
    max_fills: int | None = None
    scripts: bool = True
    local_cache_heartbeat: float = 1.0
    refresh_ahead: bool | float = False
    name: str | None = None
    meter_provider: Any = None
    tracer_provider: Any = None
    trace_keys: bool = False

    def __post_init__(self) -> None:
        """Refuse a bad value, naming its option (ConfigError)."""
        if self.paramstyle not in PARAMSTYLES:
            raise ConfigError(f"paramstyle must be one of {PARAMSTYLES}, got {self.paramstyle!r}")
        for option in ("normalize_numbers", "fail_open", "scripts", "trace_keys"):
            value = getattr(self, option)
            if not isinstance(value, bool):  # 'false' from an environment variable is true
                raise ConfigError(f"{option} must be True or False, got {value!r}")
        for option in ("local_cache", "max_entry_bytes"):
            size = getattr(self, option)
            if size is not None and (type(size) is not int or size <= 0):
                raise ConfigError(f"{option} must be a positive int of bytes, got {size!r}")
        if self.max_fills is not None and (type(self.max_fills) is not int or self.max_fills <= 0):
            raise ConfigError(f"max_fills must be a positive int, got {self.max_fills!r}")
        for option in (
            "redis_timeout",
            "breaker_cooldown",
            "lock_timeout",
            "local_cache_ttl",
            "local_cache_heartbeat",
        ):
            value = getattr(self, option)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
            ):
                raise ConfigError(f"{option} must be a positive number of seconds, got {value!r}")
        self.beta  # noqa: B018  # checks refresh_ahead

    @property
    def beta(self) -> float | None:
        """XFetch's β from refresh_ahead: None when off."""
        refresh_ahead = self.refresh_ahead
        if refresh_ahead is False:
            return None
        if refresh_ahead is True:
            return 1.0
        if (
            isinstance(refresh_ahead, int | float)
            and not isinstance(refresh_ahead, bool)
            and 0 < refresh_ahead < math.inf
        ):
            return float(refresh_ahead)
        raise ConfigError(
            f"refresh_ahead must be True, False or a positive β, got {refresh_ahead!r}"
        )

    @property
    def local(self) -> tuple[int, float, float] | None:
        """The local cache's (bytes, ttl, heartbeat), or None when off."""
        if self.local_cache is None:
            return None
        return self.local_cache, self.local_cache_ttl, self.local_cache_heartbeat
