"""The public surface is small, explicit and versioned."""

from __future__ import annotations

from importlib.metadata import version

import mysql_redis_cache


def test_all_lists_exactly_the_public_names() -> None:
    """__all__ equals the set of public names the package exports (its public submodule
    `sync` aside, which lists its own)."""
    import mysql_redis_cache.sync

    public = {name for name in dir(mysql_redis_cache) if not name.startswith("_")}
    assert public - {"sync"} == set(mysql_redis_cache.__all__) - {"__version__"}
    sync_public = {
        name
        for name, value in vars(mysql_redis_cache.sync).items()
        if not name.startswith("_")
        and getattr(value, "__module__", None) == "mysql_redis_cache.sync"
    }
    assert sync_public == set(mysql_redis_cache.sync.__all__)


def test_version_comes_from_metadata() -> None:
    """__version__ is the installed distribution's version."""
    assert version("actvalue.mysql-redis-cache") == mysql_redis_cache.__version__


def test_every_error_derives_from_mrc_error() -> None:
    """One error tree: every exported exception is an MRCError."""
    errors = [
        getattr(mysql_redis_cache, n) for n in mysql_redis_cache.__all__ if n.endswith("Error")
    ]
    assert all(issubclass(e, mysql_redis_cache.MRCError) for e in errors)
    assert issubclass(mysql_redis_cache.InvalidArgumentError, ValueError)


def test_import_loads_no_cli_and_no_optional_driver() -> None:
    """`import mysql_redis_cache` loads neither the CLI nor asyncmy / orjson."""
    import subprocess
    import sys

    probe = (
        "import sys, mysql_redis_cache; "
        "print(sorted(m for m in ('asyncmy', 'orjson', 'mysql_redis_cache._cli', 'argparse')"
        " if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert "[]" == result.stdout.strip()


def test_help_shows_no_private_module() -> None:
    """help(MRCClient) / help(MRCServer) name no private base class or module."""
    import pydoc

    import mysql_redis_cache.sync as mrc_sync

    public = (mysql_redis_cache.MRCClient, mysql_redis_cache.MRCServer)
    for cls in (*public, mrc_sync.MRCClient, mrc_sync.MRCServer):
        assert [cls, object] == list(cls.__mro__)
        text = pydoc.plain(pydoc.render_doc(cls))
        assert "_support" not in text
        assert "Initialize self" not in text
    for cls in public:
        text = pydoc.plain(pydoc.render_doc(cls))
        assert "async __aenter__" in text
