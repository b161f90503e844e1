"""OpenTelemetry: the metrics agree with client.stats, the spans follow the calls and the
database conventions, and no key or param reaches an attribute unless asked."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from mysql_redis_cache import ConfigError, MRCClient, MRCServer

from ._redis_server import RedisProcess, redis_server
from .conftest import MYSQL_CONFIG, REDIS_URL

Q = "SELECT ? AS id, ? AS label"
NAMES = ["Id", "Label"]
SECRET = "secret-4711"  # a param value that must appear in no attribute


@pytest.fixture
def private_redis() -> Iterator[RedisProcess]:
    with redis_server() as server:
        yield server


def test_without_opentelemetry_nothing_is_imported(redis_sync: redis.Redis) -> None:
    """With opentelemetry unimportable, the client caches as before, imports none of it,
    and a provider given is a clear ConfigError."""
    script = textwrap.dedent(f"""
        import asyncio, sys
        sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
        from mysql_redis_cache import ConfigError, MRCClient

        async def main():
            async with MRCClient({MYSQL_CONFIG!r}, {REDIS_URL!r}) as client:
                await client.query_with_cache("SELECT ? AS n", [1], ["N"])
                await client.query_with_cache("SELECT ? AS n", [1], ["N"])
                assert client._telemetry is None
            try:
                MRCClient(meter_provider=object())
            except ConfigError as exc:
                assert "otel" in str(exc)
            else:
                raise AssertionError("a provider without the extra was taken")
            loaded = [m for m, module in sys.modules.items()
                      if m.startswith("opentelemetry") and module is not None]
            assert [] == loaded, loaded

        asyncio.run(main())
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert 0 == proc.returncode, proc.stderr


@pytest.mark.otel
def test_an_sdk_set_globally_later_is_picked_up(redis_sync: redis.Redis) -> None:
    """A client made before the application sets its SDK as the global providers: its
    statements are timed and traced (and its fills counted) within 1,024 calls of that,
    and not before (nothing is done for instruments that would drop it)."""
    script = textwrap.dedent(f"""
        import asyncio
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from mysql_redis_cache import MRCClient

        def statements(reader):
            data = reader.get_metrics_data()
            return sum(
                point.count
                for resource in (data.resource_metrics if data else [])
                for scope in resource.scope_metrics
                for metric in scope.metrics if metric.name == "db.client.operation.duration"
                for point in metric.data.data_points
            )

        async def main():
            async with MRCClient({MYSQL_CONFIG!r}, {REDIS_URL!r}) as client:
                for _ in range(10):
                    await client.query_to_promise("SELECT 1")
                reader, exporter = InMemoryMetricReader(), InMemorySpanExporter()
                metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
                tracers = TracerProvider()
                tracers.add_span_processor(SimpleSpanProcessor(exporter))
                trace.set_tracer_provider(tracers)
                for _ in range(1100):
                    await client.query_to_promise("SELECT 1")
                timed, traced = statements(reader), len(exporter.get_finished_spans())
                assert 1100 - 1024 <= timed <= 1100, timed
                assert 1100 - 1024 <= traced <= 1100, traced
                print(timed, traced)

        asyncio.run(main())
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert 0 == proc.returncode, proc.stderr


@pytest.fixture
def sdk() -> Iterator[tuple[Any, Any, Any, Any]]:
    """A meter provider with an in-memory reader and a tracer provider with an in-memory
    exporter: (meter_provider, reader, tracer_provider, exporter)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    exporter = InMemorySpanExporter()
    tracers = TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(exporter))
    yield meters, reader, tracers, exporter
    meters.shutdown()
    tracers.shutdown()


def points(reader: Any) -> dict[str, list[Any]]:
    """Every data point collected now, by instrument name."""
    found: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def by(points: list[Any], attribute: str) -> dict[str, Any]:
    return {point.attributes[attribute]: point.value for point in points}


@pytest.mark.otel
async def test_metrics_and_spans_agree_with_stats(
    private_redis: RedisProcess, sdk: tuple[Any, Any, Any, Any]
) -> None:
    """Misses, hits, a bypass, a refused fill and an outage: each lookup and fill counted
    by result as client.stats counts them; one span per call, the MySQL statements as
    client spans under them, and no key or param in any attribute."""
    meters, reader, tracers, exporter = sdk
    async with (
        MRCClient(
            MYSQL_CONFIG, private_redis.url, name="orders", meter_provider=meters,
            tracer_provider=tracers, breaker_cooldown=30,
        ) as client,
        MRCServer(private_redis.url) as server,
    ):  # fmt: skip
        for n in range(3):
            await client.query_with_cache(Q, [n, SECRET], NAMES)  # misses
        for n in range(3):
            await client.query_with_cache(Q, [n, SECRET], NAMES)  # hits
        await client.query_with_cache(Q, [9, "x_Label=2"], NAMES)  # a bypass
        started = asyncio.Event()

        async def slow() -> list[int]:
            started.set()
            await asyncio.sleep(0.2)
            return [1]

        refused = asyncio.ensure_future(client.with_cache(slow, "q", [5], ["Id"]))
        await started.wait()
        await server.drop_outdated_cache(["Id"], [5])
        await refused
        private_redis.kill()  # an outage: an error, then the breaker skips
        for n in range(2):
            await client.query_with_cache(Q, [n, SECRET], NAMES)
        stats = client.stats
        assert (1, 1) == (stats.refused, stats.bypasses)

        found = points(reader)
        lookups = by(found["mrc.cache.lookups"], "mrc.cache.result")
        assert stats.hits == lookups["hit"] + lookups["local_hit"]
        assert stats.local_hits == lookups["local_hit"]
        assert stats.misses == lookups["miss"] + lookups["error"] + lookups["skipped"]
        assert (stats.bypasses, 1, 1) == (lookups["bypass"], lookups["error"], lookups["skipped"])
        fills = by(found["mrc.cache.fills"], "mrc.cache.fill.outcome")
        assert {"stored": 3, "refused": 1, "error": 2} == fills  # error: Redis was down
        [duration] = found["mrc.cache.fill.duration"]
        assert 6 == duration.count
        [breaker] = found["mrc.redis.breaker.open"]
        assert 1 == breaker.value
        db = found["db.client.operation.duration"]
        assert {"mysql"} == {p.attributes["db.system.name"] for p in db}
        assert {"SELECT"} == {p.attributes["db.operation.name"] for p in db}
        assert sum(p.count for p in db) == 3 + 1 + 2  # 3 misses, a bypass, 2 outage calls
        assert all(p.attributes["mrc.client.name"] == "orders" for p in found["mrc.cache.fills"])

    spans = exporter.get_finished_spans()
    calls = [s for s in spans if s.name == "mrc query_with_cache"]
    assert 3 + 3 + 1 + 2 == len(calls)
    results = [s.attributes["mrc.cache.result"] for s in calls]
    assert ["miss"] * 3 + ["hit"] * 3 + ["bypass", "error", "skipped"] == results
    mysql = [s for s in spans if s.name == "SELECT"]
    assert 6 == len(mysql)
    assert all(s.attributes["db.system.name"] == "mysql" for s in mysql)
    assert all(s.parent is not None for s in mysql)
    assert {s.context.span_id for s in calls} >= {s.parent.span_id for s in mysql}
    assert any(s.name == "GET" and s.attributes["db.system.name"] == "redis" for s in spans)
    key = client.get_key_from_query(Q, [0, SECRET], NAMES)
    every = [str(v) for s in spans for v in s.attributes.values()]
    every += [str(v) for ps in found.values() for p in ps for v in p.attributes.values()]
    assert [] == [v for v in every if SECRET in v or key in v or "Label=" in v]


@pytest.mark.otel
async def test_keys_and_sql_only_when_asked(
    redis_sync: redis.Redis, sdk: tuple[Any, Any, Any, Any]
) -> None:
    """trace_keys=True puts the key on the Redis read's span and the SQL on the MySQL's."""
    meters, _, tracers, exporter = sdk
    async with MRCClient(
        MYSQL_CONFIG, REDIS_URL, tracer_provider=tracers,
        meter_provider=meters, trace_keys=True,
    ) as client:  # fmt: skip
        await client.query_with_cache(Q, [1, SECRET], NAMES)
        key = client.get_key_from_query(Q, [1, SECRET], NAMES)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert key == spans["GET"].attributes["mrc.cache.key"]
    assert SECRET in spans["SELECT"].attributes["db.query.text"]


@pytest.mark.otel
async def test_invalidations_are_counted(
    redis_sync: redis.Redis, sdk: tuple[Any, Any, Any, Any]
) -> None:
    meters, reader, tracers, exporter = sdk
    for store, user in ((0, 1), (0, 2), (1, 1)):
        redis_sync.set(f"StoreId={store}_UserId={user}_" + "a" * 40, b"[1]")
    async with MRCServer(REDIS_URL, meter_provider=meters, tracer_provider=tracers) as server:
        assert 2 == await server.drop_outdated_cache(["StoreId"], [0])
    [point] = points(reader)["mrc.cache.invalidated"]
    assert 2 == point.value
    [span] = exporter.get_finished_spans()
    assert 2 == span.attributes["mrc.cache.invalidated"]


@pytest.mark.otel
def test_a_bad_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="name"):
        MRCClient(name="")


@pytest.mark.otel
async def test_durations_are_bucketed_in_seconds(
    redis_sync: object, sdk: tuple[Any, Any, Any, Any]
) -> None:
    """A fill of about 7 ms lands in a bucket under 10 ms, read back through the SDK (the
    SDK's default buckets, sized for milliseconds, put it under 5 s)."""
    meters, reader, _, _ = sdk

    async def seven_ms() -> list[int]:
        await asyncio.sleep(0.007)
        return [1]

    async with MRCClient(MYSQL_CONFIG, REDIS_URL, meter_provider=meters) as client:
        await client.with_cache(seven_ms, "q", [7], ["Id"])  # the one fill
        await client.query_to_promise("SELECT 1 AS one")  # a statement, no fill
    found = points(reader)
    [fill] = found["mrc.cache.fill.duration"]
    [db] = found["db.client.operation.duration"]
    for point in (fill, db):  # the SDK's default would be (0, 5, 10, 25, ...)
        assert [0.005, 0.01] == list(point.explicit_bounds[:2])
        assert 10 == point.explicit_bounds[-1]
    assert 1 == fill.count
    # bucket 1 is (0.005, 0.01]: a 7 ms fill (plus its Redis steps) lands there, or a
    # little above on a busy machine; recorded in milliseconds it would land above 5 s
    bucket = next(i for i, count in enumerate(fill.bucket_counts) if count)
    assert 1 <= bucket
    assert fill.explicit_bounds[bucket] <= 0.1


@pytest.mark.otel
async def test_every_instrument_names_its_server(
    redis_sync: object, sdk: tuple[Any, Any, Any, Any]
) -> None:
    """The refresh counters carry server.address and server.port like the others."""
    meters, reader, _, _ = sdk
    async with MRCClient(MYSQL_CONFIG, REDIS_URL, meter_provider=meters) as client:
        await client.query_with_cache("SELECT 1 AS one")
    found = points(reader)
    for name in ("mrc.cache.refreshes", "mrc.cache.refresh.errors", "mrc.cache.lookups"):
        for point in found[name]:
            assert {"server.address", "server.port"} <= set(point.attributes), name
