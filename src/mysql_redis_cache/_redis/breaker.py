"""A circuit breaker for Redis: after a failure, skip Redis until a cool-down passes."""

from __future__ import annotations

import logging
import time

from .._errors import CacheUnavailableError

logger = logging.getLogger("mysql_redis_cache")


class BreakerOpen(CacheUnavailableError):
    """Redis was not asked: the circuit breaker is open, or the read ahead failed."""


class Breaker:
    """Closed while Redis answers; open for `cooldown` seconds after a failure.

    When the cool-down ends, exactly one call is let through as a probe (the others keep
    skipping Redis); its success closes the breaker, its failure re-opens it. One WARNING
    is logged when an outage starts and one when Redis is back.
    """

    def __init__(self, cooldown: float, fail_open: bool = True) -> None:
        self.cooldown = cooldown
        self._meanwhile = "serving without the cache" if fail_open else "calls raise"
        self._open_until = 0.0
        self._outage = False

    @property
    def is_open(self) -> bool:
        return self._outage

    def allow(self) -> bool:
        """Whether this call may use Redis (taking the probe slot when one is due)."""
        if not self._outage:
            return True
        now = time.monotonic()
        if now < self._open_until:
            return False
        self._open_until = now + self.cooldown  # this call is the probe
        return True

    def failure(self, exc: BaseException) -> None:
        self._open_until = time.monotonic() + self.cooldown
        if not self._outage:
            self._outage = True
            logger.warning(
                "Redis unavailable (%s): %s, probing every %.2g s",
                exc,
                self._meanwhile,
                self.cooldown,
            )

    def success(self) -> None:
        if self._outage:
            self._outage = False
            self._open_until = 0.0
            logger.warning("Redis is reachable again: cache back in use")
