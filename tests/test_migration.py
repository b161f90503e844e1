"""What a user of the 0.x Python port meets on upgrading: clear refusals, opt-in `%s`."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

import mysql_redis_cache
from mysql_redis_cache import ConfigError, InvalidArgumentError, InvalidParamError, MRCClient

from ._node import run_node
from .conftest import MYSQL_CONFIG, REDIS_URL, stored_keys

# (0.x query with %s, the same query as Node writes it with ?)
FORMAT_PAIRS = {
    "one": ("SELECT * FROM t WHERE id = %s", "SELECT * FROM t WHERE id = ?"),
    "two": ("SELECT %s AS a, %s AS b", "SELECT ? AS a, ? AS b"),
    "like-escaped": (
        "SELECT * FROM t WHERE name LIKE 'ab%%' AND id = %s",
        "SELECT * FROM t WHERE name LIKE 'ab%' AND id = ?",
    ),
    "modulo": ("SELECT id %% 2 FROM t WHERE id = %s", "SELECT id % 2 FROM t WHERE id = ?"),
    "quoted-question": ("SELECT '?' AS q, %s AS n", "SELECT '?' AS q, ? AS n"),
    "date-format": (
        "SELECT DATE_FORMAT(NOW(), '%%Y') AS y, %s AS n",
        "SELECT DATE_FORMAT(NOW(), '%Y') AS y, ? AS n",
    ),
}


def test_version_is_1_x() -> None:
    """The package and the CLI report the same 1.x version (never 0.x: the keys changed)."""
    assert "1" == mysql_redis_cache.__version__.split(".")[0]
    out = subprocess.run(
        [sys.executable, "-m", "mysql_redis_cache", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"mrc {mysql_redis_cache.__version__}\n" == out.stdout


@pytest.mark.parametrize(
    "query",
    ["SELECT * FROM t WHERE id = %s", "SELECT * FROM t WHERE id = %(id)s AND x = %s"],
    ids=["format", "pyformat"],
)
async def test_percent_placeholders_refused_with_a_hint(client: MRCClient, query: str) -> None:
    """A %s query is refused before anything is sent, naming ? and paramstyle."""
    with pytest.raises(InvalidArgumentError, match=r"write \? for each value.*paramstyle"):
        await client.query_with_cache(query, [1], ["Id"])
    with pytest.raises(InvalidArgumentError, match=r"write \?"):
        await client.query_to_promise(query, [1])
    assert 0 == client.stats.misses


async def test_percent_in_quotes_or_without_params_is_sql(client: MRCClient) -> None:
    """%s inside quotes (DATE_FORMAT's seconds) and queries without params run as written."""
    rows = await client.query_with_cache(
        "SELECT DATE_FORMAT('2024-01-02 03:04:05', '%s') AS s, ? AS n", [1], ["N"]
    )
    assert [{"s": 5, "n": 1}] == rows
    assert [{"m": 1}] == await client.query_to_promise("SELECT 7 % 2 AS m")


async def test_dict_and_scalar_params_refused(client: MRCClient) -> None:
    """Params must be a list: a dict or a single value gets InvalidParamError, not a raw error."""
    with pytest.raises(InvalidParamError, match="not a dict"):
        await client.query_with_cache("SELECT ?", {"id": 1}, ["Id"])  # type: ignore[arg-type]
    with pytest.raises(InvalidParamError, match="list of values, got int"):
        await client.query_with_cache("SELECT ?", 1, ["Id"])  # type: ignore[arg-type]
    with pytest.raises(InvalidParamError, match="list of values, got str"):
        client.get_key_from_query("SELECT ?", "12", ["Id"])


@pytest.mark.interop
@pytest.mark.usefixtures("node")
@pytest.mark.parametrize("pair", FORMAT_PAIRS.values(), ids=FORMAT_PAIRS.keys())
async def test_format_paramstyle_shares_keys_and_sql_with_node(
    redis_sync: Any, pair: tuple[str, str]
) -> None:
    """paramstyle='format' keys and formats a %s query exactly as Node does its ? twin."""
    ours, nodes = pair
    params = [7, 8][: nodes.count("?") - nodes.count("'?'")]
    names = ["A", "B"][: len(params)]
    key, sql = run_node(
        [
            {"op": "key", "query": nodes, "params": params, "names": names},
            {"op": "format", "query": nodes, "params": params},
        ]
    )
    async with MRCClient(MYSQL_CONFIG, REDIS_URL, paramstyle="format") as client:
        assert key == client.get_key_from_query(ours, params, names)
        assert sql == client.format_query(ours, params)


@pytest.mark.interop
@pytest.mark.usefixtures("node")
async def test_format_paramstyle_reads_what_node_wrote(redis_sync: Any) -> None:
    """A migrated service keeping its %s SQL hits the entry Node cached for the ? query."""
    run_node(
        [
            {
                "op": "query_with_cache",
                "query": "SELECT ? AS n",
                "params": [5],
                "names": ["N"],
                "ttl": 60,
            }
        ],
        mysql={**MYSQL_CONFIG},
        redis_url=REDIS_URL,
    )
    async with MRCClient(MYSQL_CONFIG, REDIS_URL, paramstyle="format") as client:
        assert [{"n": 5}] == await client.query_with_cache("SELECT %s AS n", [5], ["N"])
    assert 1 == client.stats.hits


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELECT %s, ?", "also has a \\?"),
        ("SELECT %(id)s", "%\\(name\\)s is not supported"),
        ("SELECT %d", "not '%d'"),
        ("SELECT '%s', %s", "inside a quoted string"),
    ],
    ids=["mixed", "pyformat", "percent-d", "quoted-percent-s"],
)
async def test_format_paramstyle_refuses_what_pymysql_would_not_send(
    query: str, message: str
) -> None:
    """paramstyle='format' refuses queries whose meaning would change on the way to ?."""
    client = MRCClient(MYSQL_CONFIG, REDIS_URL, paramstyle="format")
    with pytest.raises(InvalidArgumentError, match=message):
        client.format_query(query, [1, 2])


def test_paramstyle_is_checked() -> None:
    """Only 'qmark' and 'format' are accepted."""
    with pytest.raises(ConfigError, match="paramstyle"):
        MRCClient(MYSQL_CONFIG, REDIS_URL, paramstyle="pyformat")


def test_minsize_is_refused_with_a_reason() -> None:
    """0.x's minsize gets a ConfigError that says what to do."""
    with pytest.raises(ConfigError, match=r"minsize is not supported.*remove minsize"):
        MRCClient({**MYSQL_CONFIG, "minsize": 1})


@pytest.mark.parametrize(
    "name",
    [
        "mysql_pool",
        "redis_client",
        "mysql_config",
        "redis_config",
        "_connect_mysql",
        "_connect_redis",
        "_normalize_row",
        "_parse_connection_string",
    ],
)
def test_removed_attributes_say_what_replaced_them(name: str) -> None:
    """Reading or assigning a 0.x attribute raises an AttributeError pointing at the guide."""
    client = MRCClient(MYSQL_CONFIG, REDIS_URL)
    with pytest.raises(AttributeError, match=r"removed in 1\.0.*migrating-from-0\.x"):
        getattr(client, name)
    with pytest.raises(AttributeError, match=r"removed in 1\.0"):
        setattr(client, name, object())


def test_dir_offers_no_removed_attribute() -> None:
    """dir() and so tab completion do not offer the 0.x attributes."""
    client = MRCClient(MYSQL_CONFIG, REDIS_URL)
    removed = {"mysql_pool", "redis_client", "mysql_config", "redis_config", "_connect_mysql"}
    assert set() == removed & set(dir(client))


NAME_LISTS = {
    "string": ("Id", "not a string"),
    "equals-sign": (["A=B"], "contains '='"),
    "int-name": ([1], "must be strings"),
    "none-name": ([None], "must be strings"),
    "bytes-name": ([b"Id"], "must be strings"),
    "none": (None, "list of names, got NoneType"),
    "int": (5, "list of names, got int"),
    "dict": ({"Id": 1}, "list of names, got dict"),
}


@pytest.mark.parametrize(("names", "message"), NAME_LISTS.values(), ids=NAME_LISTS.keys())
@pytest.mark.parametrize("params", [[1], None], ids=["params", "no-params"])
async def test_param_names_that_invalidation_cannot_reach_are_refused(
    client: MRCClient, redis_sync: Any, names: Any, message: str, params: Any
) -> None:
    """param_names must be a list of str without '=', as drop_outdated_cache takes them.

    Refused by every call, with or without params, before anything is sent or stored,
    also after the same names as a list built a key (a remembered key must not let
    "Id" pass as ["Id"]).
    """
    client.get_key_from_query("SELECT ?", [1], ["Id"])
    query = "SELECT ?" if params else "SELECT 1"
    with pytest.raises(InvalidArgumentError, match=message):
        client.get_key_from_query(query, params, names)
    with pytest.raises(InvalidArgumentError, match=message):
        await client.query_with_cache(query, params, names)
    with pytest.raises(InvalidArgumentError, match=message):
        await client.query_many_with_cache(query, [params or []], names)
    with pytest.raises(InvalidArgumentError, match=message):
        await client.with_cache(_one, query, params, names)
    with pytest.raises(InvalidArgumentError, match=message):
        await client.write_to_cache(query, [1], params, names)
    with pytest.raises(InvalidArgumentError, match=message):
        await client.read_from_cache(query, params, names)
    assert set() == stored_keys(redis_sync)


async def _one() -> int:
    return 1


@pytest.mark.parametrize("value", [float("nan"), float("inf"), [1.0, float("-inf")]])
async def test_non_finite_params_are_refused_for_sql(client: MRCClient, value: object) -> None:
    """NaN and Infinity have no SQL form: refused before anything is sent."""
    with pytest.raises(InvalidParamError, match="no SQL form"):
        await client.query_with_cache("SELECT ?", [value], ["V"])


async def test_huge_params_bypass_the_cache(client: MRCClient, redis_sync: Any) -> None:
    """A param that would make a key over 16 KiB runs uncached instead of storing that key."""
    big = "x" * 20_000
    rows = await client.query_with_cache("SELECT LENGTH(?) AS n", [big], ["Big"])
    assert [{"n": 20_000}] == rows
    assert 1 == client.stats.bypasses
    assert 0 == redis_sync.dbsize()
