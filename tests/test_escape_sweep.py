"""Nothing but an MRCError escapes the public API, whatever it is given: a sweep of
generated hostile inputs through every public method of MRCClient, MRCServer and mrc."""

from __future__ import annotations

import contextlib
import datetime
import decimal
import io
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from mysql_redis_cache import MRCClient, MRCError, MRCServer
from mysql_redis_cache._cli import main

from .conftest import MYSQL_CONFIG, REDIS_URL

pytestmark = pytest.mark.usefixtures("redis_sync")


class BadStr(str):
    def __str__(self) -> str:
        raise RuntimeError("__str__ of a str subclass")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("__eq__ of a str subclass")

    __hash__ = str.__hash__


class BadInt(int):
    def __str__(self) -> str:
        raise RuntimeError("__str__ of an int subclass")

    def __repr__(self) -> str:
        raise RuntimeError("__repr__ of an int subclass")

    def __index__(self) -> int:
        raise RuntimeError("__index__ of an int subclass")


class BadObject:
    def __str__(self) -> str:
        raise RuntimeError("__str__ of an object")

    def __iter__(self) -> Any:
        raise RuntimeError("__iter__ of an object")


def deep(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


HOSTILE: list[Any] = [
    10**5000, -(10**5000), 2**64, -(2**63) - 1, BadInt(7), BadStr("x"), BadObject(),
    float("nan"), float("inf"), -0.0, 1e300, "\ud800", "a\udfffb", "x" * 300_000,
    b"\xff\xfe", bytearray(b"\x00"), memoryview(b"ab"), deep(5000), {1: 2}, {"k": BadObject()},
    {1, 2}, frozenset(), complex(1, 2), decimal.Decimal("NaN"), decimal.Decimal("1e9999"),
    datetime.date.max, datetime.datetime.min, datetime.timedelta(days=1), type, print,
    iter(()), object(), None, True, [None, [1, "\ud800"]], (1, (2, (3,))), "",
]  # fmt: skip
CONTAINERS: list[Any] = [
    None, "abc", b"abc", {"a": 1}, {1, 2}, 7, BadObject(), iter([1]), [], [[[]]],
]  # fmt: skip
NAMES: list[Any] = [
    None,
    "Id",
    [1],
    [None],
    [BadStr("Id")],
    ["A=B"],
    ["Id", "Id"],
    [""],
    ["\ud800"],
]


def cases(seed: int, count: int) -> list[tuple[Any, Any, Any]]:
    """(query, params, names) triples: hostile values in each place, in random mixes."""
    rng = random.Random(seed)
    found: list[tuple[Any, Any, Any]] = [("SELECT ?", [value], ["V"]) for value in HOSTILE]
    found += [("SELECT ?", params, ["V"]) for params in CONTAINERS]
    found += [("SELECT ?", [1], names) for names in NAMES]
    found += [(query, [1], ["V"]) for query in (None, 7, b"SELECT ?", BadStr("SELECT ?"), "\ud800")]
    for _ in range(count):
        params = rng.sample(HOSTILE, rng.randint(0, 3))
        query = "SELECT " + ", ".join("?" for _ in params) if params else "SELECT 1"
        names = rng.choice([[f"N{i}" for i in range(len(params))], *NAMES])
        found.append((query, params, names))
    return found


async def outcome(call: Callable[[], Awaitable[Any]]) -> str | None:
    """None when `call` returned or raised an MRCError; else what escaped."""
    try:
        await call()
    except MRCError:
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None


def shown(value: Any) -> str:
    """A short repr that cannot fail itself."""
    try:
        return repr(value)[:50]
    except Exception:
        return f"<{type(value).__name__}>"


async def returned(fn: Callable[[], Any]) -> Any:
    """`fn()` as an awaitable (for the methods that do no I/O)."""
    return fn()


def calls_of(
    client: MRCClient, server: MRCServer, query: Any, params: Any, names: Any
) -> dict[str, Callable[[], Awaitable[Any]]]:
    """Each public method called with `query`, `params` and `names` (and `params` as a
    value to store or a function's result)."""

    async def result() -> Any:
        return params

    return {
        "get_key_from_query": lambda: returned(
            lambda: client.get_key_from_query(query, params, names)
        ),
        "format_query": lambda: returned(lambda: client.format_query(query, params)),
        "query_with_cache": lambda: client.query_with_cache(query, params, names),
        "query_to_promise": lambda: client.query_to_promise(query, params),
        "read_from_cache": lambda: client.read_from_cache(query, params, names),
        "write_to_cache": lambda: client.write_to_cache("q", params, [1], ["Id"]),
        "with_cache": lambda: client.with_cache(result, "w", [1], ["Id"]),
        "with_cache(plain fn)": lambda: client.with_cache(lambda: params, "w", [2], ["Id"]),
        "query_many_with_cache": lambda: client.query_many_with_cache(
            query, [params, params], names
        ),
        "drop_outdated_cache": lambda: server.drop_outdated_cache(names, params, dry_run=True),
    }


async def test_client_and_server_raise_only_mrc_errors() -> None:
    """Every public method of MRCClient and MRCServer, over generated hostile inputs."""
    escaped: list[str] = []
    async with MRCClient(MYSQL_CONFIG, REDIS_URL) as client, MRCServer(REDIS_URL) as server:
        for query, params, names in cases(seed=20261207, count=150):
            for method, call in calls_of(client, server, query, params, names).items():
                escape = await outcome(call)
                if escape is not None:
                    escaped.append(
                        f"{method}({shown(query)}, {shown(params)}, {shown(names)}): {escape}"
                    )
    assert [] == escaped


CONFIGS: list[Any] = [
    "redis://[::1", "mysql://[::1/db", "redis://h:99999999/0", "mysql://h:x/db", "\ud800",
    "redis://:\ud800@h/0", {"host": BadStr("h")}, {"port": BadInt(1)}, {"url": 7}, 7, [],
    {"connectionLimit": 10**5000}, {"sentinel": "x"}, {"cluster": "yes"}, b"redis://h",
    {"url": "redis://h/0", "decode_responses": True}, {"timezone": "\ud800"}, BadObject(),
]  # fmt: skip


@pytest.mark.parametrize("config", CONFIGS, ids=shown)
def test_configs_raise_only_mrc_errors(config: Any) -> None:
    """A bad MySQL or Redis config, for either class, is refused with an MRCError."""
    for make in (
        lambda: MRCClient(config, None),
        lambda: MRCClient(None, config),
        lambda: MRCServer(config),
    ):
        with contextlib.suppress(MRCError):
            make()


@pytest.mark.parametrize(
    "argv",
    [
        ["get", "SELECT ?", "-p", "A=\udcff"],
        ["get", "\udcff", "-p", "A=1"],
        ["get", "SELECT " + "?," * 3000 + "?", "-p", "A=1"],
        ["invalidate", "A=" + "9" * 5000],
        ["invalidate", "=", "A="],
        ["stats", "--sample", "99999999999999999999999"],
        ["--redis-url", "redis://[::1", "stats"],
        ["--mysql-url", "mysql://%zz@h/d", "demo"],
    ],
    ids=lambda argv: " ".join(a[:12] for a in argv)[:50],
)
def test_cli_exits_with_a_code_not_a_traceback(argv: list[str]) -> None:
    """mrc, given hostile input, exits with one of its codes: no exception escapes."""
    base = ["--redis-url", REDIS_URL]
    try:
        code = main([*base, *argv], io.StringIO())
    except SystemExit as exit_:  # argparse refusing the command line
        code = exit_.code if isinstance(exit_.code, int) else 2
    assert code in (0, 2, 3)


@pytest.mark.interop
def test_huge_ints_key_and_format_as_node_does(node: None) -> None:
    """An int of 5,000 digits keys and formats as Node's String() of the BigInt: exact."""
    from ._node import run_node, tag

    huge = -(10**5000) - 7
    client = MRCClient(MYSQL_CONFIG)
    node_key, node_sql = run_node(
        [
            {"op": "key", "query": "SELECT ?", "params": [tag(huge)], "names": ["N"]},
            {"op": "format", "query": "SELECT ?", "params": [tag(huge)]},
        ],
        mysql=MYSQL_CONFIG,
    )
    assert node_key == client.get_key_from_query("SELECT ?", [huge], ["N"])
    assert node_sql == client.format_query("SELECT ?", [huge])
