"""Cache hits, misses, memory and stampedes: this library vs Node 4.1.0 vs raw floors.

    uv run python -m benchmarks.cache [--repeat 5] [--only "query_many"]

Both libraries run against the same MariaDB and Redis in one run, each scenario's runs
alternating between Node and Python so that the machine's drift hits both; Node is
timed inside Node (a fresh process per run). Each side times its second pass of a run,
after V8's JIT has compiled the hot path and the CPU has woken from idle. Hits are
measured twice: with the default client, and with `local_cache` on (hits answered in
process). Floors: redis-py GET + json.loads for hits, a plain fetch
with the same driver for misses, the same queries run at once without the cache for the
cold burst. Prints the median of each scenario and the ratios, then what options
(refresh-ahead, OpenTelemetry) cost on hits, against the default client in alternating
runs.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import statistics
import subprocess
import time
import tracemalloc
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

from mysql_redis_cache import MRCClient
from mysql_redis_cache._node.json import _orjson
from tests._node import INTEROP_DIR
from tests._settings import MYSQL_CONFIG

REDIS_URL = "redis://127.0.0.1:6379/10"
ONE_ROW = ("SELECT * FROM mrc_bench WHERE id = ?", [1], ["Id"])
HUNDRED_ROWS = ("SELECT * FROM mrc_bench WHERE id <= ?", [100], ["MaxId"])
WINDOWS = ("SELECT * FROM mrc_bench WHERE id > ? LIMIT 100", [0], ["After"])  # + step per key
TEN_K_ROWS = ("SELECT * FROM mrc_bench WHERE id <= ?", [10_000], ["MaxId"])
# each miss of a cold burst holds one of the 10 MySQL connections for 2 ms
BURST = ("SELECT ? AS v, SLEEP(0.002) AS s", [1_000_000], ["Id"])
BURST_SIZE = 3_000
LOCAL_CACHE = 64 * 2**20  # bytes, for the client with the local cache on


def scenarios(ops: int) -> list[dict[str, Any]]:
    def hits(
        name: str, spec: tuple[str, list[int], list[str]], conc: int, keys: int = 1, step: int = 0
    ) -> dict[str, Any]:
        query, params, names = spec
        return {"name": name, "kind": "hits", "query": query, "params": params, "names": names,
                "concurrency": conc, "ops": ops if conc == 1 else ops * 4, "keys": keys,
                "step": step}  # fmt: skip

    def fanout(name: str, batch: bool) -> dict[str, Any]:
        # 64 different keys a round, all at once; Node's counterpart is always Promise.all
        query, params, names = ONE_ROW
        return {"name": name, "kind": "fanout", "query": query, "params": params,
                "names": names, "ops": ops * 16, "keys": 64, "step": 1, "batch": batch}  # fmt: skip

    query, params, names = TEN_K_ROWS
    return [
        hits("hit 1 row, sequential", ONE_ROW, 1),
        hits("hit 1 row, 64 concurrent", ONE_ROW, 64),
        hits("hit 1 row, 64 concurrent, 64 keys", ONE_ROW, 64, keys=64, step=1),
        fanout("hit 1 row, gather of 64 fresh calls", batch=False),
        fanout("hit 1 row, query_many of 64 keys", batch=True),
        hits("hit 100 rows, sequential", HUNDRED_ROWS, 1),
        hits("hit 100 rows, sequential, 64 keys", WINDOWS, 1, keys=64, step=100),
        hits("hit 100 rows, 64 concurrent", HUNDRED_ROWS, 64),
        {"name": "miss 10k rows x 8 cols", "kind": "miss", "query": query, "params": params,
         "names": names},
        {"name": f"cold burst: {BURST_SIZE:,} concurrent misses", "kind": "burst",
         "query": BURST[0], "params": BURST[1], "names": BURST[2], "keys": BURST_SIZE},
        {"name": "stampede: executions for 100 callers", "kind": "stampede",
         "query": "stampede", "params": [1], "names": ["K"], "concurrency": 100},
    ]  # fmt: skip


async def create_table() -> None:
    with warnings.catch_warnings(action="ignore"):  # CREATE OR REPLACE notes from the server
        await _create_table()


async def _create_table() -> None:
    async with MRCClient(MYSQL_CONFIG) as client:
        pool = client.get_mysql_pool()
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(
                "CREATE OR REPLACE TABLE mrc_bench (id INT PRIMARY KEY, qty INT, name VARCHAR(40),"
                " price DECIMAL(10,2), created DATETIME, score DOUBLE, note TEXT, big BIGINT)"
            )
            await cur.execute(
                "INSERT INTO mrc_bench SELECT seq, seq % 97, CONCAT('item-', seq),"
                " ROUND(seq / 7, 2), '2024-01-01' + INTERVAL seq MINUTE, seq / 3,"
                " REPEAT('x', seq % 20), seq * 1000"
                " FROM seq_1_to_10000"
            )


async def run_python(scenario: dict[str, Any], client: MRCClient) -> float:
    query, params, names = scenario["query"], scenario["params"], scenario["names"]
    if scenario["kind"] == "hits":
        calls = hit_calls(scenario)
        for call in calls:
            await client.query_with_cache(*call)
        return await ops_per_second(
            client.query_with_cache, calls, scenario["ops"], scenario["concurrency"]
        )
    if scenario["kind"] == "fanout":
        calls = hit_calls(scenario)
        for call in calls:
            await client.query_with_cache(*call)
        return await fanout_per_second(client, calls, scenario["ops"], scenario["batch"])
    if scenario["kind"] == "miss":
        await client._redis.client().delete(client.get_key_from_query(query, params, names))
        start = time.perf_counter()
        await client.query_with_cache(query, params, names)
        return time.perf_counter() - start
    if scenario["kind"] == "burst":
        calls = hit_calls({**scenario, "step": 1})
        await client._redis.client().delete(*(client.get_key_from_query(*call) for call in calls))
        start = time.perf_counter()
        await asyncio.gather(*(client.query_with_cache(*call) for call in calls))
        return time.perf_counter() - start
    runs = 0

    async def fn() -> list[int]:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.02)
        return [runs]

    await client._redis.client().delete(client.get_key_from_query(query, params, names))
    await asyncio.gather(*(client.with_cache(fn, query, params, names) for _ in range(100)))
    return runs


def hit_calls(scenario: dict[str, Any]) -> list[tuple[str, list[int], list[str]]]:
    """(query, params, names) per key: the first param grows by `step` from key to key."""
    query, (first,), names = scenario["query"], scenario["params"], scenario["names"]
    return [(query, [first + k * scenario["step"]], names) for k in range(scenario["keys"])]


async def ops_per_second(
    fn: Callable[..., Awaitable[object]], calls: list[Any], ops: int, concurrency: int
) -> float:
    """Calls of fn(*call) a second from `concurrency` workers, as bench.js does for Node.

    Worker w's i-th call uses calls[(w + i) % len(calls)]: with as many keys as workers,
    the reads in flight together are all for different keys.
    """

    async def worker(w: int) -> None:
        for i in range(ops // concurrency):
            await fn(*calls[(w + i) % len(calls)])

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return ops / (time.perf_counter() - start)


async def fanout_per_second(
    client: MRCClient, calls: list[tuple[str, list[int], list[str]]], ops: int, batch: bool
) -> float:
    """Entries a second read in rounds of len(calls) at once: asyncio.gather over fresh
    query_with_cache calls, as users write it, or one query_many_with_cache."""
    query, _, names = calls[0]
    params_list = [params for _, params, _ in calls]
    rounds = ops // len(calls)
    start = time.perf_counter()
    for _ in range(rounds):
        if batch:
            await client.query_many_with_cache(query, params_list, names)
        else:
            await asyncio.gather(*(client.query_with_cache(*call) for call in calls))
    return rounds * len(calls) / (time.perf_counter() - start)


async def floors(scenario: dict[str, Any], client: MRCClient) -> float | None:
    """The raw floor for a scenario: redis-py GET + json.loads, or a plain aiomysql fetch."""
    query, params = scenario["query"], scenario["params"]
    if scenario["kind"] == "hits":
        keys = [(client.get_key_from_query(*call),) for call in hit_calls(scenario)]
        raw = aioredis.Redis.from_url(REDIS_URL)

        async def one(key: str) -> object:
            return json.loads(await raw.get(key))  # type: ignore[arg-type]

        result = await ops_per_second(one, keys, scenario["ops"], scenario["concurrency"])
        await raw.aclose()
        return result
    if scenario["kind"] == "miss":
        # the same driver the client uses, with its own C/Python type conversion
        driver = client.get_mysql_pool().driver
        conn = await driver.open(
            driver.connect_kwargs(
                {"host": MYSQL_CONFIG["host"], "user": MYSQL_CONFIG["user"],
                 "db": MYSQL_CONFIG["database"]}
            )
        )  # fmt: skip
        start = time.perf_counter()
        async with conn.cursor() as cur:
            await cur.execute(client.format_query(query, params))
            await cur.fetchall()
        elapsed = time.perf_counter() - start
        conn.close()
        return elapsed
    if scenario["kind"] == "burst":  # the same queries at once, without the cache
        calls = hit_calls({**scenario, "step": 1})
        start = time.perf_counter()
        await asyncio.gather(*(client.query_to_promise(query, call[1]) for call in calls))
        return time.perf_counter() - start
    return None


async def miss_memory(client: MRCClient) -> tuple[int, int, int]:
    """(peak traced bytes during a 10k-row miss, bytes kept in the result, encoded size)."""
    query, params, names = TEN_K_ROWS
    key = client.get_key_from_query(query, params, names)
    await client._redis.client().delete(key)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    result = await client.query_with_cache(query, params, names)
    kept, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    encoded = await client._redis.client().strlen(key)
    del result
    return peak - before, kept - before, int(encoded)


def run_node(repeat: int, specs: list[dict[str, Any]]) -> dict[str, list[float]]:
    request = {
        "mysql": MYSQL_CONFIG,
        "redis": {"url": REDIS_URL},
        "repeat": repeat,
        "scenarios": specs,
    }
    proc = subprocess.run(
        ["node", str(INTEROP_DIR / "bench.js")],
        input=json.dumps(request).encode(),
        capture_output=True,
        check=True,
        timeout=1200,
    )
    results: dict[str, list[float]] = json.loads(proc.stdout)
    return results


def fmt(kind: str, value: float | None) -> str:
    if value is None:
        return "-"
    if kind in ("hits", "fanout"):
        return f"{value / 1000:.1f}k ops/s"
    if kind in ("miss", "burst"):
        return f"{value * 1000:.1f} ms"
    return f"{value:.0f}"


async def main_async(repeat: int, ops: int, only: str | None) -> None:
    await create_table()
    specs = [spec for spec in scenarios(ops) if only is None or only in spec["name"]]
    node: dict[str, list[float]] = {spec["name"]: [] for spec in specs}
    ours: dict[str, list[float]] = {}
    local: dict[str, list[float]] = {}
    floor: dict[str, list[float]] = {}
    async with MRCClient(MYSQL_CONFIG, REDIS_URL) as client:
        await client.query_with_cache("SELECT 1")  # connect before timing
        for spec in specs:
            ours[spec["name"]], floor[spec["name"]] = [], []
            for _ in range(repeat):  # interleaved, so drift in the machine hits all alike
                # each side times its second pass: V8's JIT and this VM's idle CPU both
                # need one to warm up (a first pass here runs up to 1.5x slower)
                node[spec["name"]].append(run_node(2, [spec])[spec["name"]][-1])
                await run_python(spec, client)
                ours[spec["name"]].append(await run_python(spec, client))
                value = await floors(spec, client)
                if value is not None:
                    floor[spec["name"]].append(value)
        peak, kept, encoded = await miss_memory(client)
    async with MRCClient(MYSQL_CONFIG, REDIS_URL, local_cache=LOCAL_CACHE) as client:
        for spec in specs:
            if spec["kind"] in ("hits", "fanout"):  # 10x the calls: each takes microseconds
                longer = {**spec, "ops": spec["ops"] * 10}
                local[spec["name"]] = [await run_python(longer, client) for _ in range(repeat)]
    json_name = "orjson" if _orjson() else "stdlib"
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(f"MySQL driver: {client.get_mysql_pool().driver.name}; JSON: {json_name}; "
          f"local cache: {LOCAL_CACHE >> 20} MiB; event loop: {loop}")  # fmt: skip
    print(f"{'scenario':<38} {'ours':>13} {'ours, local':>13} {'Node 4.1.0':>13} "
          f"{'raw floor':>13} {'ours/Node':>10} {'local/Node':>10} {'ours/floor':>10}")  # fmt: skip
    for spec in specs:
        name, kind = spec["name"], spec["kind"]
        o, n = statistics.median(ours[name]), statistics.median(node[name])
        f = statistics.median(floor[name]) if floor[name] else None
        loc = statistics.median(local[name]) if name in local else None
        vs_local = "-"
        if kind in ("hits", "fanout"):
            vs_node, vs_floor = f"{o / n:.2f}x", f"{o / f:.2f}x" if f else "-"
            vs_local = f"{loc / n:.2f}x" if loc else "-"
        elif kind in ("miss", "burst"):
            vs_node = f"{o / n:.2f}x time"
            vs_floor = f"{o / f:.2f}x time" if f else "-"
        else:
            vs_node = vs_floor = "-"
        print(f"{name:<38} {fmt(kind, o):>13} {fmt(kind, loc):>13} {fmt(kind, n):>13} "
              f"{fmt(kind, f):>13} {vs_node:>10} {vs_local:>10} {vs_floor:>10}")  # fmt: skip
    print(
        f"10k-row miss memory: peak {peak / 1e6:.1f} MB traced, {kept / 1e6:.1f} MB kept in the "
        f"result, encoded value {encoded / 1e6:.2f} MB; peak beyond the result = "
        f"{(peak - kept) / encoded:.2f}x the encoded size"
    )
    await compare_options(specs, repeat)


# Options whose cost on a hit is measured against the default client, runs alternating.
OPTIONS: dict[str, dict[str, Any]] = {"refresh_ahead=True": {"refresh_ahead": True}}
OPTION_SCENARIOS = ("hit 1 row, sequential", "hit 1 row, 64 concurrent", "query_many of 64")


def variants() -> dict[str, Callable[[], MRCClient]]:
    """The clients compared with the default one: refresh-ahead on; OpenTelemetry's SDK
    recording the metrics, with no traces, 1 % of them or all (spans dropped at export);
    no OpenTelemetry at all, as without the otel extra (the default client has the API
    but no SDK configured)."""
    made: dict[str, Callable[[], MRCClient]] = {
        label: functools.partial(MRCClient, MYSQL_CONFIG, REDIS_URL, **options)
        for label, options in OPTIONS.items()
    }
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    except ImportError:
        print("(no OpenTelemetry SDK: run with the otel extra and the otel-sdk group)")
        return made

    class Dropped(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    def with_sdk(traced: float | None) -> Callable[[], MRCClient]:
        """Metrics recorded; `traced`, the share of traces sampled (None: no tracer SDK)."""

        def make() -> MRCClient:
            meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
            tracers = None
            if traced is not None:
                tracers = TracerProvider(sampler=ParentBased(TraceIdRatioBased(traced)))
                tracers.add_span_processor(BatchSpanProcessor(Dropped()))
            return MRCClient(
                MYSQL_CONFIG, REDIS_URL, meter_provider=meters, tracer_provider=tracers
            )

        return make

    def without() -> MRCClient:
        client = MRCClient(MYSQL_CONFIG, REDIS_URL)
        client._telemetry = None  # what the client is when opentelemetry is not installed
        return client

    made["OTel SDK, metrics only"] = with_sdk(None)
    made["OTel SDK, 1 % traced"] = with_sdk(0.01)
    made["OTel SDK, all traced"] = with_sdk(1.0)
    made["no OpenTelemetry"] = without
    return made


async def compare_options(specs: list[dict[str, Any]], repeat: int) -> None:
    """Hits with each of OPTIONS on ÷ the default client's, in alternating runs."""
    chosen = [s for s in specs if any(name in s["name"] for name in OPTION_SCENARIOS)]
    if not chosen:
        return
    print(f"\n{'option (cost on hits)':<24} {'scenario':<38} {'default':>13} "
          f"{'option':>13} {'ratio':>7}")  # fmt: skip
    for label, make in variants().items():
        async with MRCClient(MYSQL_CONFIG, REDIS_URL) as plain, make() as varied:
            for spec in chosen:
                # the option's client fills the entries itself, as a process does before
                # it reads them (refresh-ahead knows a query's fill time only then)
                keys = [varied.get_key_from_query(*call) for call in hit_calls(spec)]
                await varied._redis.client().delete(*keys)
                off, on = [], []
                for _ in range(repeat):
                    await run_python(spec, plain)
                    off.append(await run_python(spec, plain))
                    await run_python(spec, varied)
                    on.append(await run_python(spec, varied))
                a, b = statistics.median(off), statistics.median(on)
                print(f"{label:<24} {spec['name']:<38} {fmt(spec['kind'], a):>13} "
                      f"{fmt(spec['kind'], b):>13} {b / a:>6.2f}x")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per scenario (median)")
    parser.add_argument("--ops", type=int, default=2000, help="sequential hit operations a run")
    parser.add_argument("--only", help="run the scenarios whose name contains this text")
    parser.add_argument(
        "--uvloop", action="store_true", help="run this side on uvloop (as uvicorn does)"
    )
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.run(main_async(args.repeat, args.ops, args.only))
    else:
        asyncio.run(main_async(args.repeat, args.ops, args.only))


if __name__ == "__main__":
    main()
