"""The `mrc` command: invalidate, inspect and demonstrate the cache from a shell.

Exit codes: 0 success, 1 the output could not be written (full disk, closed pipe),
2 bad usage or input, 3 MySQL or Redis unreachable or failing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any, NoReturn, TextIO
from urllib.parse import urlsplit

from ._client import MRCClient
from ._errors import CacheError, ConfigError, InvalidArgumentError, MRCError
from ._node.sql import format_query
from ._redis.config import check_redis_url
from ._redis.invalidate import param_part
from ._server import DropProgress, MRCServer

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_MYSQL_URL = "mysql://root:@127.0.0.1:3306/test"
EXIT_OUTPUT, EXIT_USAGE, EXIT_UNAVAILABLE = 1, 2, 3
_TTL_BUCKETS = (
    (60, "< 1 min"),
    (3600, "< 1 h"),
    (6 * 3600, "< 6 h"),
    (24 * 3600, "< 24 h"),
    (None, ">= 24 h"),
)


class UsageError(Exception):
    """Bad input on the command line."""


class OutputError(Exception):
    """Standard output could not be written; kept apart from servers failing."""


class _Output:
    """A text stream whose write errors are `OutputError`, not a server's `OSError`."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> None:
        try:
            self._stream.write(text)
        except OSError as exc:
            raise OutputError(exc) from exc

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise OutputError(exc) from exc


def _pairs(items: Sequence[str]) -> tuple[list[str], list[str]]:
    names, values = [], []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"expected Name=Value, got {item!r}")
        names.append(name)
        values.append(value)
    return names, values


class _ProgressBar:
    """A one-line progress bar on a terminal; silent elsewhere."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._enabled = stream.isatty()
        self._last = 0.0

    def __call__(self, progress: DropProgress) -> None:
        now = time.monotonic()
        if not self._enabled or now - self._last < 0.1:
            return
        self._last = now
        share = progress.examined / progress.total if progress.total else 1.0
        bar = "#" * int(share * 30)
        self._stream.write(
            f"\rscanning [{bar:<30}] {share:6.1%}  matched {progress.matched:,}"
            f"  deleted {progress.deleted:,}"
        )
        self._stream.flush()

    def done(self, progress: DropProgress | None = None) -> None:
        if self._enabled:
            if progress is not None:  # the last frame shows the scan complete
                self._stream.write(
                    f"\rscanning [{'#' * 30}] {1:6.1%}  matched {progress.matched:,}"
                    f"  deleted {progress.deleted:,}"
                )
            self._stream.write("\n")


async def _invalidate(args: argparse.Namespace, out: _Output) -> None:
    names, values = _pairs(args.pairs)
    progress = _ProgressBar(sys.stderr)
    last = DropProgress()

    def report(counts: DropProgress) -> None:
        nonlocal last
        last = counts
        progress(counts)

    async with MRCServer(_redis_config(args)) as server:
        count = await server.drop_outdated_cache(
            names, values, args.all, dry_run=args.dry_run, progress=report
        )
    progress.done(last)
    verb = "would delete" if args.dry_run else "deleted"
    out.write(f"{verb} {_entries(count)}\n")


async def _stats(args: argparse.Namespace, out: _Output) -> None:
    import redis.asyncio as aioredis
    from redis.exceptions import RedisClusterException, RedisError

    check_redis_url(args.redis_url)
    client: Any
    if args.cluster:
        client = aioredis.RedisCluster.from_url(args.redis_url, socket_connect_timeout=2)
    else:
        client = aioredis.Redis.from_url(args.redis_url, socket_connect_timeout=2)
    try:
        keys: list[bytes] = []
        async for key in client.scan_iter(count=1000):  # on a cluster: every primary
            keys.append(key)
            if len(keys) >= args.sample:
                break
        total = await client.dbsize(**({"target_nodes": "primaries"} if args.cluster else {}))
        total_keys = sum(total.values()) if isinstance(total, dict) else total
        cache_keys = [k for k in keys if param_part(k) is not None or _is_bare_hash(k)]
        sizes = [await client.strlen(key) for key in cache_keys] if args.cluster else []
        ttls = [await client.ttl(key) for key in cache_keys] if args.cluster else []
        if cache_keys and not args.cluster:
            pipe = client.pipeline(transaction=False)
            for key in cache_keys:
                pipe.strlen(key)
                pipe.ttl(key)
            replies = await pipe.execute()
            sizes, ttls = replies[0::2], replies[1::2]
    except (RedisError, RedisClusterException, OSError) as exc:
        raise CacheError(f"Redis failed: {exc}") from exc
    finally:
        await client.aclose()
    per_name: Counter[str] = Counter()
    for key in cache_keys:
        part = param_part(key)
        if part is not None:
            for segment in part.decode("utf-8", "replace").strip("_").split("_"):
                name, sep, _ = segment.partition("=")
                if sep:
                    per_name[name] += 1
    histogram: Counter[str] = Counter()
    for ttl in ttls:
        histogram[_ttl_bucket(ttl)] += 1
    out.write(f"sampled {len(keys):,} of {total_keys:,} keys (--sample {args.sample:,})\n")
    out.write(f"cache entries in the sample: {len(cache_keys):,}\n")  # no markers or stamps
    if cache_keys:
        out.write(f"value bytes: total {sum(sizes):,}, largest {max(sizes):,}\n")
    out.write("entries per param name:\n")
    for name, count in per_name.most_common():
        out.write(f"  {name:<24} {count:,}\n")
    out.write("TTL:\n")
    for _, label in _TTL_BUCKETS:
        out.write(f"  {label:<10} {histogram[label]:,}\n")
    if histogram["no expiry"]:
        out.write(f"  {'no expiry':<10} {histogram['no expiry']:,}\n")


def _entries(count: int) -> str:
    return f"{count:,} cache entr{'y' if count == 1 else 'ies'}"


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _redis_config(args: argparse.Namespace) -> Any:
    return {"url": args.redis_url, "cluster": True} if args.cluster else args.redis_url


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _is_bare_hash(key: bytes) -> bool:
    return len(key) == 40 and all(c in b"0123456789abcdef" for c in key)


def _ttl_bucket(ttl: int) -> str:
    if ttl < 0:
        return "no expiry"
    for limit, label in _TTL_BUCKETS:
        if limit is None or ttl < limit:
            return label
    raise AssertionError("unreachable")  # pragma: no cover


async def _get(args: argparse.Namespace, out: _Output) -> None:
    names, values = _pairs(args.param)
    if not values and format_query(args.query, [None]) != args.query:
        raise UsageError("the query has ? placeholders: give each value with -p Name=Value")
    async with MRCClient(args.mysql_url, _redis_config(args), fail_open=False) as client:
        key = client.get_key_from_query(args.query, values or None, names)
        value = await client.read_from_cache(args.query, values or None, names)
        ttl = await client._redis.ttl(key) if value is not None else None
    out.write(f"key: {key}\n")
    if value is None:
        out.write("(not cached)\n")
    else:
        out.write(f"ttl: {'none' if ttl is None or ttl < 0 else f'{ttl:,} s'}\n")
        out.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


DEMO_QUERY = "SELECT id, name, price FROM mrc_demo WHERE store_id = ? ORDER BY id"


async def _demo(args: argparse.Namespace, out: _Output) -> None:
    out.write(f"MySQL: {_without_password(args.mysql_url)}  Redis: {args.redis_url}\n")
    async with MRCClient(args.mysql_url, _redis_config(args), fail_open=False) as client:
        # plain DDL that MySQL 8 and MariaDB both take
        await client.query_to_promise("DROP TABLE IF EXISTS mrc_demo")
        await client.query_to_promise(
            "CREATE TABLE mrc_demo "
            "(id INT PRIMARY KEY, store_id INT, name VARCHAR(40), price DECIMAL(8,2))"
        )
        try:
            await client.query_to_promise(
                "INSERT INTO mrc_demo VALUES (1, 6, 'espresso', 1.20),"
                " (2, 6, 'cappuccino', 1.50), (3, 7, 'tea', 1.00)"
            )
            out.write(f"query: {DEMO_QUERY}  params: StoreId=6\n")
            async with MRCServer(_redis_config(args)) as server:
                await server.drop_outdated_cache(["StoreId"], [6])  # start cold
                await _demo_call(client, out, "1st call")
                await _demo_call(client, out, "2nd call")
                dropped = await server.drop_outdated_cache(["StoreId"], [6])
                out.write(f"invalidated StoreId=6: {_entries(dropped)} dropped\n")
                await _demo_call(client, out, "3rd call")
                key = client.get_key_from_query(DEMO_QUERY, [6], ["StoreId"])
                out.write(f"key: {key}\n")
                await server.drop_outdated_cache(["StoreId"], [6])  # leave no entry behind
        finally:
            await client.query_to_promise("DROP TABLE IF EXISTS mrc_demo")
    out.write("cleaned up: table mrc_demo and its cache entry removed\n")


async def _demo_call(client: MRCClient, out: _Output, label: str) -> None:
    hits = client.stats.hits
    start = time.perf_counter()
    rows = await client.query_with_cache(DEMO_QUERY, [6], ["StoreId"])
    elapsed = (time.perf_counter() - start) * 1000
    outcome = "HIT " if client.stats.hits > hits else "MISS"
    out.write(f"{label}: {outcome} {elapsed:7.2f} ms  {json.dumps(rows)}\n")


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (`mrc: ...`) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"mrc: {message} (see mrc --help)\n")

    def _print_message(self, message: str, file: Any = None) -> None:
        # argparse drops write errors; --version or --help into a full disk must not say 0
        if message:
            out = _Output(file or sys.stderr)
            out.write(message)
            out.flush()


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mrc", description="Inspect and invalidate the MySQL query cache in Redis."
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {version('actvalue.mysql-redis-cache')}"
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("MRC_REDIS_URL", DEFAULT_REDIS_URL),
        help="Redis URL (env MRC_REDIS_URL; default %(default)s)",
    )
    parser.add_argument(
        "--mysql-url",
        default=os.environ.get("MRC_MYSQL_URL", DEFAULT_MYSQL_URL),
        help="MySQL URL (env MRC_MYSQL_URL; default %(default)s)",
    )
    parser.add_argument(
        "--cluster", action="store_true", help="the Redis URL names a node of a Redis Cluster"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    invalidate = commands.add_parser("invalidate", help="drop the entries of param values")
    invalidate.add_argument("pairs", nargs="+", metavar="Name=Value")
    invalidate.add_argument(
        "--all", action="store_true", help="entries must match every pair (default: any)"
    )
    invalidate.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    stats = commands.add_parser("stats", help="summarize a sample of the cache")
    stats.add_argument("--sample", type=_positive, default=10_000, help="keys to sample")
    get = commands.add_parser("get", help="show the key and cached value of a query")
    get.add_argument("query")
    get.add_argument("-p", "--param", action="append", default=[], metavar="Name=Value")
    commands.add_parser("demo", help="see the cache work against local MariaDB and Redis")
    return parser


_COMMANDS = {"invalidate": _invalidate, "stats": _stats, "get": _get, "demo": _demo}


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the CLI; returns the exit code (0, 1 output failed, 2 bad input, 3 a server failed)."""
    stream = _Output(out or sys.stdout)
    try:
        args = _parser().parse_args(argv)
        asyncio.run(_COMMANDS[args.command](args, stream))
        stream.flush()
    except OutputError as exc:
        return _output_failed(exc, own_stdout=out is None)
    except (UsageError, InvalidArgumentError, ConfigError) as exc:
        sys.stderr.write(f"mrc: {exc}\n")
        return EXIT_USAGE
    except MRCError as exc:  # MySQL or Redis failed, or could not be reached
        sys.stderr.write(f"mrc: {exc}\n")
        return EXIT_UNAVAILABLE
    except OSError as exc:
        sys.stderr.write(f"mrc: {exc}\n")
        return EXIT_UNAVAILABLE
    return 0


def _output_failed(exc: OutputError, own_stdout: bool) -> int:
    if own_stdout:  # what is still buffered must not fail again when Python exits
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    if not isinstance(exc.__cause__, BrokenPipeError):  # a reader that left wants silence
        sys.stderr.write(f"mrc: cannot write the output: {exc}\n")
    return EXIT_OUTPUT


def run() -> Any:
    """Console-script entry point."""
    sys.exit(main())
