"""A circuit breaker for Redis (after an outage, skip Redis until a cool-down passes),
and the guard every cache-path Redis call goes through."""

from __future__ import annotations

import copy
import logging
from collections.abc import Awaitable, Callable, Coroutine

from .._errors import CacheError, CacheUnavailableError, ConfigError
from .._stats import CacheStats
from .states import Occasional, Probing, WriteGate, refusal_of

logger = logging.getLogger("mysql_redis_cache")


class BreakerOpen(CacheUnavailableError):
    """Redis was not asked: the circuit breaker is open, or the read ahead failed."""


class Breaker(Probing):
    """Closed while Redis answers; open for `cooldown` seconds after a failure.

    When the cool-down ends, exactly one call is let through as a probe (the others keep
    skipping Redis); its success closes the breaker, its failure re-opens it. One WARNING
    is logged when an outage starts and one when Redis is back.
    """

    def __init__(self, cooldown: float, fail_open: bool = True) -> None:
        super().__init__(cooldown)
        self._meanwhile = "serving without the cache" if fail_open else "calls raise"
        self._outage = False

    @property
    def is_open(self) -> bool:
        return self._outage

    def failure(self, exc: BaseException) -> None:
        self._hold()
        if not self._outage:
            self._outage = True
            if isinstance(exc, ConfigError):  # refused credentials: only a change fixes it
                logger.error(
                    "%s: %s until Redis accepts them, trying again every %.2g s",
                    exc,
                    self._meanwhile,
                    self.cooldown,
                )
                return
            logger.warning(
                "Redis unavailable (%s): %s, probing every %.2g s",
                exc,
                self._meanwhile,
                self.cooldown,
            )

    def success(self) -> None:
        if self._outage:
            self._outage = False
            logger.warning("Redis is reachable again: cache back in use")


class Guard:
    """Redis calls through the breaker and the write gate: each failure counted, the
    breaker opened by an outage, writes held back while Redis refuses them, and, failing
    open, a fallback returned in place of the error.

    `on_outage` runs after an outage-class failure (the pooled connections are dropped:
    none of them may be reused after it).
    """

    def __init__(
        self,
        breaker: Breaker,
        stats: CacheStats,
        fail_open: bool,
        on_outage: Callable[[], Awaitable[None]],
        where: str,
    ) -> None:
        self.breaker = breaker
        self.fail_open = fail_open
        self.gate = WriteGate(breaker.cooldown, where)
        # why the call just made fell back: "skipped" (breaker open), "error", or None
        self.missed: str | None = None
        self._refusals = Occasional(
            f"Redis at {where} refused a command, served without the cache", "errors"
        )
        self._stats = stats
        self._on_outage = on_outage

    def fork(self) -> Guard:
        """A guard for another event loop: the same breaker, write gate and counters, and
        its own record of why its last call fell back."""
        twin = copy.copy(self)
        twin.missed = None
        return twin

    async def op[T](self, op: Awaitable[T], fallback: T, *, write: bool = False) -> T:
        """Await the Redis call `op` (a `write`: it stores something); failing open,
        `fallback` if it fails, the breaker is open, or Redis refuses writes.

        Raises:
            CacheError: a failure (or an open breaker or gate) with `fail_open=False`.
        """
        self.missed = None
        if not self.breaker.allow():
            self._stats.skipped += 1
            self.missed = "skipped"
            return self._skip(
                op, fallback, BreakerOpen("Redis is unavailable: circuit breaker open")
            )
        if write and not self.gate.allow():
            self._stats.unstored += 1
            self.missed = "skipped"
            assert self.gate.refusal is not None
            return self._skip(
                op, fallback, CacheError(f"Redis at {self.gate.where} {self.gate.refusal.value}")
            )
        try:
            value = await op
        except CacheError as exc:
            return await self.failed(exc, fallback, write=write)
        self.breaker.success()
        if write:
            self.gate.accepted()
        return value

    def _skip[T](self, op: Awaitable[T], fallback: T, error: CacheError) -> T:
        """Fall back without asking Redis (or raise `error`, failing closed)."""
        if isinstance(op, Coroutine):
            op.close()
        if self.fail_open:
            return fallback
        raise error

    async def failed[T](self, exc: CacheError, fallback: T, *, write: bool = False) -> T:
        """Count a Redis failure: an outage opens the breaker, a refused write the gate,
        any other refusal is logged a few times; then fail open or raise."""
        self.missed = "skipped" if isinstance(exc, BreakerOpen) else "error"
        if isinstance(exc, BreakerOpen):  # Redis was not asked
            self._stats.skipped += 1
        elif isinstance(exc, CacheUnavailableError):
            self._stats.errors += 1
            self.breaker.failure(exc)
            await self._on_outage()
        else:
            self._stats.errors += 1
            self.breaker.success()  # Redis answered, if with an error
            refusal = refusal_of(exc)
            if refusal is not None:
                self.gate.refused(refusal, exc.__cause__ or exc)
                if write:
                    self._stats.unstored += 1
            else:
                self._refusals.failed(exc)
        if not self.fail_open:
            raise exc
        return fallback
