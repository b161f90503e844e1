"""The `mrc` command: invalidate, inspect and demonstrate the cache from a shell.

Exit codes: 0 success, 1 the output could not be written (full disk, closed pipe),
2 bad usage or input, 3 MySQL or Redis unreachable or failing, 130 interrupted (Ctrl-C),
143 terminated (SIGTERM, where the command cleans up first: `demo`). `index` runs until
SIGINT or SIGTERM, its normal stop, and then exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import secrets
import signal
import sys
import time
from collections import Counter
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any, NoReturn, TextIO
from urllib.parse import urlsplit

from ._client import MRCClient
from ._errors import (
    CacheError,
    CacheUnavailableError,
    ConfigError,
    InvalidArgumentError,
    MRCError,
    QueryError,
)
from ._index.indexer import MRCIndexer
from ._node.paramstyle import refuse_percent_placeholders
from ._node.sql import format_query
from ._redis.config import check_redis_url, parse_redis_config
from ._redis.invalidate import param_part
from ._server import DropProgress, MRCServer

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_MYSQL_URL = "mysql://root:@127.0.0.1:3306/test"
EXIT_OUTPUT, EXIT_USAGE, EXIT_UNAVAILABLE = 1, 2, 3
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # as shells report SIGINT and SIGTERM
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
    parse_redis_config(_redis_config(args))  # a cluster with a database number, say
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
    """`url` with its password, in the user info or as a `password=` parameter, masked."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL we can take apart: show none of it
        return "(an unreadable URL)"
    if password:
        parts = parts._replace(netloc=parts.netloc.replace(f":{password}@", ":***@", 1))
    query = _PASSWORD_PARAMETER.sub(r"\1***", parts.query)
    return parts._replace(query=query).geturl()


_PASSWORD_PARAMETER = re.compile(r"((?:^|&)(?:password|passwd|pwd)=)[^&]*", re.IGNORECASE)


def _redis_config(args: argparse.Namespace) -> Any:
    return {"url": args.redis_url, "cluster": True} if args.cluster else args.redis_url


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def _not_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected seconds, 0 or more, got {text!r}")
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
    if values:  # a %s query never has an entry: Node hashes the ? query
        refuse_percent_placeholders(args.query)
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


DEMO_NAME = "DemoRun"  # the param name of the demo's entries; the value is the run's id


async def _index(args: argparse.Namespace, out: _Output) -> None:
    """Keep the invalidation index until SIGINT or SIGTERM; then stop and say so."""
    indexer = MRCIndexer(_redis_config(args))
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    stopping = False

    def stop() -> None:
        nonlocal stopping
        stopping = True
        task.cancel()

    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop)
    out.write(f"indexing {_without_password(args.redis_url)}; stop with Ctrl-C or SIGTERM\n")
    out.flush()
    try:
        await indexer.run()
    except asyncio.CancelledError:
        if not stopping:
            raise
    finally:
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(number)
    out.write(f"stopped: {indexer.indexed} keys indexed, {indexer.acks} invalidations served\n")


async def _demo(args: argparse.Namespace, out: _Output) -> None:
    run_id = secrets.token_hex(4)
    table = f"mrc_demo_{run_id}"
    query = f"SELECT id, name, price FROM {table} WHERE demo_run = ? ORDER BY id"
    # made first, so that a bad URL is refused before anything is printed or created
    client = MRCClient(args.mysql_url, _redis_config(args), fail_open=False)
    server = MRCServer(_redis_config(args))
    mysql, redis_url = _without_password(args.mysql_url), _without_password(args.redis_url)
    out.write(f"MySQL: {mysql}  Redis: {redis_url}\n")
    out.write(
        f"this run creates table {table} and cache entries named {DEMO_NAME}={run_id}, "
        "and removes exactly those (also when interrupted)\n"
    )
    out.flush()
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    async with client, server:
        try:
            # plain DDL that MySQL 8 and MariaDB both take; the name is this run's own
            await client.query_to_promise(
                f"CREATE TABLE {table} (id INT PRIMARY KEY, demo_run CHAR(8),"
                " name VARCHAR(40), price DECIMAL(8,2))"
            )
            await client.query_to_promise(
                f"INSERT INTO {table} VALUES (1, ?, 'espresso', 1.20), (2, ?, 'cappuccino', 1.50)",
                [run_id, run_id],
            )
            out.write(f"query: {query}  params: {DEMO_NAME}={run_id}\n")
            for label in ("1st call", "2nd call"):
                await _demo_call(client, out, label, query, run_id, args.pause)
            dropped = await server.drop_outdated_cache([DEMO_NAME], [run_id])
            out.write(f"invalidated {DEMO_NAME}={run_id}: {_entries(dropped)} dropped\n")
            await _demo_call(client, out, "3rd call", query, run_id, args.pause)
            out.write(f"key: {client.get_key_from_query(query, [run_id], [DEMO_NAME])}\n")
        finally:
            try:  # the table goes even when Redis failed: its entries expire on their own
                await server.drop_outdated_cache([DEMO_NAME], [run_id])
            finally:
                await client.query_to_promise(f"DROP TABLE IF EXISTS {table}")
                loop.remove_signal_handler(signal.SIGTERM)
    out.write(f"cleaned up: table {table} and its cache entry removed\n")


async def _demo_call(
    client: MRCClient, out: _Output, label: str, query: str, run_id: str, pause: float
) -> None:
    hits = client.stats.hits
    start = time.perf_counter()
    rows = await client.query_with_cache(query, [run_id], [DEMO_NAME])
    elapsed = (time.perf_counter() - start) * 1000
    outcome = "HIT " if client.stats.hits > hits else "MISS"
    out.write(f"{label}: {outcome} {elapsed:7.2f} ms  {json.dumps(rows)}\n")
    out.flush()
    await asyncio.sleep(pause)


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


def _connection_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """The options every command takes, before or after its name: with `defaults` on the
    main parser; without on each command's, so that one not given there leaves the main
    parser's value (argparse.SUPPRESS)."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    redis_url = os.environ.get("MRC_REDIS_URL", DEFAULT_REDIS_URL)
    mysql_url = os.environ.get("MRC_MYSQL_URL", DEFAULT_MYSQL_URL)
    parser.add_argument(
        "--redis-url",
        default=default(redis_url),
        help=f"Redis URL (env MRC_REDIS_URL; default {DEFAULT_REDIS_URL})",
    )
    parser.add_argument(
        "--mysql-url",
        default=default(mysql_url),
        help=f"MySQL URL (env MRC_MYSQL_URL; default {DEFAULT_MYSQL_URL})",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        default=default(False),
        help="the Redis URL names a node of a Redis Cluster",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default(False),
        help="also print the library's log messages (Redis outages and the like)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mrc", description="Inspect and invalidate the MySQL query cache in Redis."
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {version('actvalue.mysql-redis-cache')}"
    )
    _connection_options(parser, defaults=True)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        _connection_options(sub, defaults=False)
        return sub

    invalidate = command("invalidate", "drop the entries of param values")
    invalidate.add_argument("pairs", nargs="+", metavar="Name=Value")
    invalidate.add_argument(
        "--all", action="store_true", help="entries must match every pair (default: any)"
    )
    invalidate.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    stats = command("stats", "summarize a sample of the cache")
    stats.add_argument("--sample", type=_positive, default=10_000, help="keys to sample")
    get = command("get", "show the key and cached value of a query")
    get.add_argument("query", help="the query as the services send it, with ? placeholders")
    get.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="Name=Value",
        help="a param's name and value, in the order of the placeholders (repeat for each)",
    )
    command("index", "keep the invalidation index (runs until Ctrl-C or SIGTERM)")
    demo = command("demo", "see the cache work on a table and entries of its own, then remove them")
    demo.add_argument(
        "--pause",
        type=_not_negative,
        default=0.0,
        metavar="SECONDS",
        help="wait between the calls",
    )
    return parser


_COMMANDS = {
    "invalidate": _invalidate,
    "stats": _stats,
    "get": _get,
    "index": _index,
    "demo": _demo,
}


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the CLI; returns the exit code (0, 1 output failed, 2 bad input, 3 a server failed)."""
    stream = _Output(out or sys.stdout)
    logger = logging.getLogger("mysql_redis_cache")
    handler = _LineHandler()
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False  # the command reports failures
    level = logger.level
    try:
        parser = _parser()
        args = parser.parse_args(_flags_after_command(parser, argv))
        # `index` runs until stopped: what it does is its output
        if args.verbose or args.command == "index":
            handler.setLevel(logging.INFO)
            logger.setLevel(min(level or logging.INFO, logging.INFO))
        else:
            handler.setLevel(logging.CRITICAL + 1)
        asyncio.run(_COMMANDS[args.command](args, stream))
        stream.flush()
    except OutputError as exc:
        return _output_failed(exc, own_stdout=out is None)
    except (UsageError, InvalidArgumentError, ConfigError) as exc:
        sys.stderr.write(f"mrc: {exc}\n")
        return EXIT_USAGE
    except (MRCError, OSError) as exc:  # MySQL or Redis failed, or could not be reached
        sys.stderr.write(f"mrc {args.command}: {_failure(exc, args)}\n")
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        sys.stderr.write("mrc: interrupted\n")
        return EXIT_INTERRUPTED
    except asyncio.CancelledError:  # SIGTERM, where a command handles it
        sys.stderr.write("mrc: terminated\n")
        return EXIT_TERMINATED
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
        logger.setLevel(level)
    return 0


def _flags_after_command(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> list[str]:
    """`argv` with a command's own flags given before the command moved after it
    (`mrc --dry-run invalidate X=1`), so flags are taken anywhere."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    at = next((i for i, arg in enumerate(argv) if arg in commands), None)
    if at is None:
        return argv
    own = {
        option: action.nargs != 0
        for action in commands[argv[at]]._actions
        for option in action.option_strings
        if option not in parser._option_string_actions
    }
    before, moved, index = [], [], 0
    while index < at:
        arg = argv[index]
        name = arg.split("=", 1)[0]
        if name in own:
            takes_value = own[name] and "=" not in arg and index + 1 < at
            moved += argv[index : index + 1 + takes_value]
            index += 1 + takes_value
        else:
            before.append(arg)
            index += 1
    return [*before, argv[at], *moved, *argv[at + 1 :]]


class _LineHandler(logging.Handler):
    """The library's log records as `mrc: ...` lines on stderr (with --verbose)."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(f"mrc: {record.levelname.lower()}: {record.getMessage()}\n")


def _failure(exc: BaseException, args: argparse.Namespace) -> str:
    """What failed, in terms of what the user asked for: the server and its root cause."""
    cause: BaseException = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    reason = str(cause) or type(cause).__name__
    if isinstance(exc, CacheUnavailableError):
        return f"Redis at {_without_password(args.redis_url)} is unreachable: {reason}"
    if isinstance(exc, CacheError):
        return f"Redis at {_without_password(args.redis_url)} failed: {reason}"
    if isinstance(exc, QueryError):
        return f"MySQL at {_without_password(args.mysql_url)} failed: {reason}"
    return reason


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
