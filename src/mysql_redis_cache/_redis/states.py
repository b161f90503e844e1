"""The states between "Redis is up" and "Redis is down", told apart by what Redis says.

- Down or silent, or not speaking RESP at all (a wrong port): an outage, for the
  circuit breaker (`breaker.py`).
- A read-only replica (`READONLY`) or a full memory (`OOM`): reads are served, writes
  are refused. The write gate stops sending writes for a cool-down, then lets one probe;
  misses are answered without storing their entry meanwhile.
- A command refused (`WRONGTYPE` on a key that is not a string, `NOPERM`, an unknown
  command): that call alone is served without the cache, logged now and then
  (`Occasional`).

Each state is logged once when it begins and once when it ends, naming it in an
operator's words, never once a call; `CacheStats` counts what it cost.
"""

from __future__ import annotations

import enum
import logging
import time

import redis.exceptions

logger = logging.getLogger("mysql_redis_cache")


class Refusal(enum.Enum):
    """Why Redis refused a write while answering reads."""

    READ_ONLY = "is a read-only replica"
    OUT_OF_MEMORY = "is out of memory (maxmemory with noeviction)"


def refusal_of(exc: BaseException | None) -> Refusal | None:
    """The write-refusing state an error reply (or its cause) shows, if any."""
    while exc is not None:
        if isinstance(exc, redis.exceptions.ReadOnlyError):
            return Refusal.READ_ONLY
        if isinstance(exc, redis.exceptions.OutOfMemoryError):
            return Refusal.OUT_OF_MEMORY
        exc = exc.__cause__
    return None


def scripts_refused(exc: BaseException) -> bool:
    """Whether an error reply to EVALSHA/EVAL says scripts may not run at all: the user's
    ACL forbids them (`NOPERM`), or the server (a proxy, a managed service) has no such
    command."""
    if isinstance(exc, redis.exceptions.NoPermissionError):
        return True
    text = str(exc).lower()
    return isinstance(exc, redis.exceptions.ResponseError) and (
        "unknown command" in text or "scripting is disabled" in text
    )


class Probing:
    """Open after a failure: for `cooldown` seconds nothing passes, then exactly one call
    (the probe); its failure opens it again, its success closes it."""

    def __init__(self, cooldown: float) -> None:
        self.cooldown = cooldown
        self._until = 0.0

    @property
    def is_open(self) -> bool:
        raise NotImplementedError

    def allow(self) -> bool:
        """Whether this call may go (taking the probe slot when one is due)."""
        if not self.is_open:
            return True
        now = time.monotonic()
        if now < self._until:
            return False
        self._until = now + self.cooldown  # this call is the probe
        return True

    def _hold(self) -> None:
        """Keep it open for another cooldown."""
        self._until = time.monotonic() + self.cooldown


class WriteGate(Probing):
    """Closed while Redis takes writes; open for `cooldown` seconds after it refused one
    (read-only, out of memory), then one write probes. Reads never pass through it."""

    def __init__(self, cooldown: float, where: str) -> None:
        super().__init__(cooldown)
        self.where = where
        self.refusal: Refusal | None = None

    @property
    def is_open(self) -> bool:
        return self.refusal is not None

    def refused(self, refusal: Refusal, exc: BaseException) -> None:
        self._hold()
        if self.refusal is not refusal:
            self.refusal = refusal
            logger.warning(
                "Redis at %s %s: entries are read but not stored (%s); probing every %.2g s",
                self.where,
                refusal.value,
                exc,
                self.cooldown,
            )

    def accepted(self) -> None:
        if self.refusal is not None:
            logger.warning("Redis at %s takes writes again: entries are stored", self.where)
            self.refusal = None


class Occasional:
    """Failures that come one call at a time (a command Redis refused, a refresh that
    failed): the first is logged at WARNING, then one summary a minute at most, with the
    count. `what` says what happened; `counter` names the stats counter that counts them."""

    INTERVAL = 60.0

    def __init__(self, what: str, counter: str) -> None:
        self.what = what
        self.counter = counter
        self._next = 0.0
        self._since = 0

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now < self._next:
            self._since += 1
            return
        more = f" ({self._since} more since the last report)" if self._since else ""
        logger.warning(
            "%s: %s%s; further ones are counted in stats.%s and reported once a minute",
            self.what,
            exc,
            more,
            self.counter,
        )
        self._since = 0
        self._next = now + self.INTERVAL
