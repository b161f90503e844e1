"""The package's layers import each other in one direction only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "mysql_redis_cache"

# What each layer may import from the package (besides itself). The top-level public
# modules (_client, _server, _cli, __init__) may import anything.
ALLOWED: dict[str, set[str]] = {
    "_errors": set(),
    "_stats": set(),
    "_support": {"_errors"},
    "_node": {"_errors"},
    "_redis": {"_node", "_support", "_errors", "_stats"},
    "_mysql": {"_node", "_support", "_errors"},
    "_fills": {"_redis", "_node", "_support", "_errors", "_stats", "_telemetry"},
    "_telemetry": {"_errors", "_stats"},
    "_index": {"_redis", "_node", "_support", "_errors"},
}
# Third-party I/O packages a layer must not touch.
FORBIDDEN_THIRD_PARTY: dict[str, set[str]] = {
    "_node": {"redis", "aiomysql", "asyncmy", "asyncio", "socket", "hiredis"},
    "_support": {"redis", "aiomysql", "asyncmy", "pymysql"},
    "_redis": {"aiomysql", "asyncmy", "pymysql"},
    "_mysql": {"redis", "hiredis"},
    "_fills": {"redis", "hiredis", "aiomysql", "asyncmy", "pymysql"},
    "_telemetry": {"redis", "hiredis", "aiomysql", "asyncmy", "pymysql"},
    "_index": {"aiomysql", "asyncmy", "pymysql"},
}


def layer_of(path: Path) -> str | None:
    """The layer a module belongs to: its subpackage or its own name; None for top modules."""
    parts = path.relative_to(PACKAGE).parts
    name = parts[0].removesuffix(".py")
    return name if name in ALLOWED else None


def imported(source: str, depth: int) -> tuple[set[str], set[str]]:
    """(package layers, third-party packages) that a module `depth` folders down imports."""
    own, third = set[str](), set[str]()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").startswith("mysql_redis_cache"):
                # absolute: `from mysql_redis_cache._redis import x` names a layer; from
                # the package itself, its top (which no layer may import)
                parts = (node.module or "").split(".")
                own.add(parts[1] if len(parts) > 1 else "__init__")
            elif node.level == 0:
                third.add((node.module or "").split(".")[0])
            elif node.level > depth:  # leaves the module's folder: names a layer
                if node.module:
                    own.add(node.module.split(".")[0])
                else:
                    own.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "mysql_redis_cache":
                    own.add(parts[1] if len(parts) > 1 else "__init__")
                else:
                    third.add(parts[0])
    third.discard("mysql_redis_cache")
    return own, third


def depth_of(path: Path) -> int:
    """0 for a top module, 1 for one in a layer's folder."""
    return len(path.relative_to(PACKAGE).parts) - 1


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if layer_of(p) is not None)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_layer_imports_only_what_it_may(path: Path) -> None:
    """A module imports no layer above or beside its own."""
    layer = layer_of(path)
    assert layer is not None
    own, _ = imported(path.read_text(), depth_of(path))
    assert set() == own - ALLOWED[layer] - {layer}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_layer_keeps_off_other_io(path: Path) -> None:
    """The pure layer does no I/O; each side keeps to its own driver."""
    layer = layer_of(path)
    assert layer is not None
    _, third = imported(path.read_text(), depth_of(path))
    assert set() == third & FORBIDDEN_THIRD_PARTY.get(layer, set())


def test_checker_sees_an_absolute_import() -> None:
    """An absolute import of another layer, or of the package's top, is seen too."""
    planted = (
        "from mysql_redis_cache._redis.holder import RedisHolder\n"
        "import mysql_redis_cache._mysql.pool\n"
        "from mysql_redis_cache import MRCClient\n"
    )
    own, _ = imported(planted, depth_of(PACKAGE / "_node" / "sql.py"))
    assert {"_redis", "_mysql", "__init__"} == own - ALLOWED["_node"] - {"_node"}


def test_checker_sees_a_forbidden_import() -> None:
    """The checker reports the pure layer reaching for the Redis side and for redis-py."""
    planted = "from .._redis.holder import RedisHolder\nimport redis.asyncio\n"
    own, third = imported(planted, depth_of(PACKAGE / "_node" / "sql.py"))
    assert {"_redis"} == own - ALLOWED["_node"] - {"_node"}
    assert {"redis"} == third & FORBIDDEN_THIRD_PARTY["_node"]


def test_every_module_has_a_layer_or_is_public() -> None:
    """No stray private module outside the layers: new code lands in a layer's folder."""
    top = {p.name for p in PACKAGE.glob("*.py")}
    assert {
        "__init__.py",
        "__main__.py",
        "_cli.py",
        "_client.py",
        "_errors.py",
        "_options.py",
        "_server.py",
        "_stats.py",
        "sync.py",
    } == top
