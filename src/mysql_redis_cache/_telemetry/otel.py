"""The instruments and spans of one client or server. Their names are fixed: dashboards
depend on them (README, "Metrics and tracing").

Metrics:
- `mrc.cache.lookups` (counter; `mrc.cache.result`: hit, local_hit, miss, bypass,
  skipped, error), observed from `CacheStats`;
- `mrc.cache.fills` (counter; `mrc.cache.fill.outcome`: stored, refused, oversized,
  error) and `mrc.cache.fill.duration` (histogram, s);
- `db.client.operation.duration` (histogram, s; `db.system.name` mysql,
  `db.operation.name`), per the stable database conventions;
- `mrc.redis.breaker.open` (gauge, 1 while open);
- `mrc.cache.refreshes` and `mrc.cache.refresh.errors` (counters, observed);
- `mrc.cache.invalidated` (counter; entries `MRCServer` deleted).
Attributes are low-cardinality: `mrc.client.name` (when named) and the server's
`server.address` / `server.port`; never a key, a param or SQL text unless `trace_keys`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from importlib.metadata import version
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation

from .._stats import CacheStats
from .calls import CALL, Call

_LIBRARY = "mysql_redis_cache"
_VERSION = version("actvalue.mysql-redis-cache")


def address(host: object, port: object) -> dict[str, Any]:
    """`server.address` / `server.port` attributes (as far as they are known)."""
    attributes: dict[str, Any] = {}
    if host:  # a str subclass's own __str__ is no concern here
        attributes["server.address"] = str.__str__(host) if isinstance(host, str) else str(host)
    if port:
        attributes["server.port"] = int(port)  # type: ignore[call-overload]
    return attributes


# Histogram buckets in seconds, as the database semantic conventions recommend for
# db.client.operation.duration (the SDK's default buckets are sized for milliseconds:
# every fill would land in the first one).
SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]


class Telemetry:
    """A client's or server's instruments and tracer.

    Args:
        name: the client's name, `mrc.client.name` on everything (None: none).
        meter_provider, tracer_provider: None for the global ones (which stay no-ops
            until an SDK is configured).
        trace_keys: also put cache keys and SQL text on spans (they may hold personal data).
        redis, mysql: the servers' address attributes.
    """

    def __init__(
        self,
        *,
        name: str | None,
        meter_provider: Any,
        tracer_provider: Any,
        trace_keys: bool,
        redis: Mapping[str, Any],
        mysql: Mapping[str, Any] | None = None,
    ) -> None:
        self.trace_keys = trace_keys
        self._common: dict[str, Any] = {} if name is None else {"mrc.client.name": name}
        self._redis = {**self._common, **redis}
        self._mysql = {**self._common, "db.system.name": "mysql", **(mysql or {})}
        self._meter = metrics.get_meter(_LIBRARY, _VERSION, meter_provider=meter_provider)
        self._tracer = trace.get_tracer(_LIBRARY, _VERSION, tracer_provider=tracer_provider)
        # with no provider given, spans are made and statements timed only once an SDK
        # is the global provider
        self._records = _recording(tracer_provider, _global_tracing)
        self._measures = _recording(meter_provider, _global_metrics)
        self._fills = self._meter.create_counter(
            "mrc.cache.fills", unit="{fill}", description="Fills by outcome."
        )
        self._fill_duration = self._meter.create_histogram(
            "mrc.cache.fill.duration",
            unit="s",
            description="Duration of a cache fill.",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        )
        self._db_duration = self._meter.create_histogram(
            "db.client.operation.duration",
            unit="s",
            description="Duration of database client operations.",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        )
        self._invalidated = self._meter.create_counter(
            "mrc.cache.invalidated", unit="{entry}", description="Entries invalidated."
        )

    def observe(self, stats: CacheStats, breaker_open: Callable[[], bool]) -> None:
        """Report a client's counters and breaker from `stats` and `breaker_open` when a
        reader collects (nothing is done per call)."""
        redis = self._redis

        def lookups(options: CallbackOptions) -> Iterable[Observation]:
            totals = stats.totals()
            failed, skipped = totals["_lookup_errors"], totals["_lookup_skips"]
            for result, value in (
                ("hit", totals["hits"] - totals["local_hits"]),
                ("local_hit", totals["local_hits"]),
                ("miss", totals["misses"] - failed - skipped),
                ("bypass", totals["bypasses"]),
                ("skipped", skipped),
                ("error", failed),
            ):
                yield Observation(value, {**redis, "mrc.cache.result": result})

        def refreshes(name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
            return lambda options: [Observation(stats.totals()[name], redis)]

        def breaker(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(1 if breaker_open() else 0, redis)]

        meter = self._meter
        meter.create_observable_counter(
            "mrc.cache.lookups", [lookups], unit="{lookup}", description="Lookups by result."
        )
        meter.create_observable_counter(
            "mrc.cache.refreshes", [refreshes("refreshes")], unit="{refresh}",
            description="Entries refreshed ahead of their expiry.",
        )  # fmt: skip
        meter.create_observable_counter(
            "mrc.cache.refresh.errors", [refreshes("refresh_errors")], unit="{refresh}",
            description="Refreshes whose query or function failed.",
        )  # fmt: skip
        meter.create_observable_gauge(
            "mrc.redis.breaker.open", [breaker], unit="1",
            description="1 while the Redis circuit breaker is open.",
        )  # fmt: skip

    @property
    def tracing(self) -> bool:
        """Whether spans are recorded (a provider with an SDK behind it)."""
        return self._records()

    async def traced[T](self, method: str, call: Awaitable[T]) -> T:
        """Await one public call in its span, `mrc.cache.result` set from what it found.

        A span the sampler drops is ended at once and made no current: only a recorded
        one pays for being the parent of the call's MySQL and Redis spans.
        """
        span = self._tracer.start_span(f"mrc {method}", attributes=self._redis)
        if not span.is_recording():
            span.end()
            return await call
        outcome = Call()
        token = CALL.set(outcome)
        try:
            with trace.use_span(span, end_on_exit=True):
                try:
                    return await call
                finally:
                    span.set_attribute("mrc.cache.result", outcome.result)
        finally:
            CALL.reset(token)

    @contextlib.contextmanager
    def redis_span(self, operation: str, key: str) -> Iterator[None]:
        """The span of a Redis read sent alone (not coalesced with others)."""
        attributes = {**self._redis, "db.system.name": "redis", "db.operation.name": operation}
        if self.trace_keys:
            attributes["mrc.cache.key"] = key
        with self._tracer.start_as_current_span(
            operation, kind=trace.SpanKind.CLIENT, attributes=attributes
        ):
            yield

    def mysql_operation(self, sql: str) -> contextlib.AbstractContextManager[None]:
        """Time a MySQL statement (`db.client.operation.duration`) and, when tracing, give it
        a span per the database conventions: `with telemetry.mysql_operation(sql): ...`."""
        if not self._measures() and not self._records():
            return _UNOBSERVED  # no SDK: the instruments would drop what they are given
        return _Operation(self, sql)

    def fill(self, outcome: str, seconds: float) -> None:
        """A fill ended: stored, refused, oversized or error, after `seconds`."""
        if not self._measures():
            return
        self._fills.add(1, {**self._redis, "mrc.cache.fill.outcome": outcome})
        self._fill_duration.record(seconds, self._redis)

    def invalidated(self, count: int) -> None:
        if count:
            self._invalidated.add(count, self._redis)

    @contextlib.contextmanager
    def span(self, name: str) -> Iterator[Any]:
        """A plain span of this library's (e.g. an invalidation), when tracing."""
        if not self.tracing:
            yield None
            return
        with self._tracer.start_as_current_span(name, attributes=self._redis) as span:
            yield span


def _recording(provider: object, global_one: Callable[[], bool]) -> Callable[[], bool]:
    """Whether `provider` records: as the global provider does for None (or the API's
    proxy of the global one), never for the API's no-ops, always for any other."""
    if provider is None or _is_proxy(provider):
        return global_one
    records = not _is_no_op(provider)
    return lambda: records


def _is_no_op(provider: object) -> bool:
    return isinstance(provider, trace.NoOpTracerProvider | metrics.NoOpMeterProvider)


def _is_proxy(provider: object) -> bool:
    """The API's stand-in for a global provider not set yet (what the global lookup
    returns until an SDK is set)."""
    return isinstance(provider, trace.ProxyTracerProvider) or (
        type(provider).__name__ == "_ProxyMeterProvider"  # its class is private
    )


class _GlobalProvider:
    """Whether the global provider of a kind records (an SDK was set as the global
    provider). Looked up again once every 1,024 calls: the lookup reads the environment
    each time while no provider is set, too slow to make on every hit."""

    def __init__(self, lookup: Callable[[], object]) -> None:
        self._lookup = lookup
        self._records = False
        self._countdown = 0

    def __call__(self) -> bool:
        if self._records:
            return True  # a global provider, once set, is never unset
        self._countdown -= 1
        if self._countdown < 0:
            provider = self._lookup()
            self._records = not _is_proxy(provider) and not _is_no_op(provider)
            self._countdown = 1023
        return self._records


_global_tracing = _GlobalProvider(trace.get_tracer_provider)
_global_metrics = _GlobalProvider(metrics.get_meter_provider)
_UNOBSERVED = contextlib.nullcontext()


class _Operation:
    """A MySQL statement timed, and given a span when tracing (a class: this runs on every
    miss, and a generator-based context manager costs more)."""

    __slots__ = ("_attributes", "_span", "_sql", "_start", "_telemetry")

    def __init__(self, telemetry: Telemetry, sql: str) -> None:
        self._telemetry = telemetry
        self._sql = sql
        self._attributes = {**telemetry._mysql, "db.operation.name": _operation(sql)}
        self._span: Any = None
        self._start = 0.0

    def __enter__(self) -> None:
        telemetry = self._telemetry
        if telemetry.tracing:
            attributes = dict(self._attributes)
            if telemetry.trace_keys:
                attributes["db.query.text"] = self._sql
            self._span = telemetry._tracer.start_as_current_span(
                attributes["db.operation.name"], kind=trace.SpanKind.CLIENT, attributes=attributes
            )
            self._span.__enter__()
        self._start = time.perf_counter()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        attributes = self._attributes
        if kind is not None:
            attributes["error.type"] = kind.__qualname__
        self._telemetry._db_duration.record(time.perf_counter() - self._start, attributes)
        if self._span is not None:
            self._span.__exit__(kind, exc, tb)


def _operation(sql: str) -> str:
    """The statement's first keyword, upper-cased (`db.operation.name`): SELECT, INSERT..."""
    word = sql.lstrip(" \t\r\n(").split(None, 1)[:1]
    return word[0].upper()[:32] if word and word[0].isalpha() else "OTHER"
