"""The mrc command against the real MariaDB and Redis."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
import redis

from mysql_redis_cache._cli import DEMO_QUERY, EXIT_UNAVAILABLE, EXIT_USAGE, main

from .conftest import REDIS_URL, stored_keys

MYSQL_URL = "mysql://root:@127.0.0.1:3306/test"
BASE = ["--redis-url", REDIS_URL, "--mysql-url", MYSQL_URL]


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main([*BASE, *argv], out)
    return code, out.getvalue()


def seed(redis_sync: redis.Redis) -> None:
    for store in (6, 60, 7):
        redis_sync.set(f"StoreId={store}_UserId=1_" + "a" * 40, b"[1]", ex=3600)
    redis_sync.set("cfg:StoreId=6:flags", b"keep")


def test_invalidate_drops_and_counts(redis_sync: redis.Redis) -> None:
    """invalidate drops exactly the matching entries and prints the count."""
    seed(redis_sync)
    assert (0, "deleted 1 cache entries\n") == run("invalidate", "StoreId=6")
    assert 3 == len(stored_keys(redis_sync))


def test_invalidate_dry_run_and_all(redis_sync: redis.Redis) -> None:
    """--dry-run deletes nothing; --all requires every pair."""
    seed(redis_sync)
    assert (0, "would delete 3 cache entries\n") == run("invalidate", "UserId=1", "--dry-run")
    assert (0, "would delete 0 cache entries\n") == run(
        "invalidate", "StoreId=6", "UserId=2", "--all", "--dry-run"
    )
    assert 4 == len(stored_keys(redis_sync))


def test_stats_reports_the_sample(redis_sync: redis.Redis) -> None:
    """stats counts entries, names, sizes and TTLs of a bounded sample."""
    seed(redis_sync)
    code, text = run("stats", "--sample", "100")
    assert 0 == code
    assert "sampled 4 of 4 keys (--sample 100)" in text
    assert "cache entries in the sample: 3" in text
    assert "value bytes: total 9, largest 3" in text
    assert "StoreId                  3" in text
    assert "< 6 h      3" in text


def test_get_shows_key_and_value(redis_sync: redis.Redis) -> None:
    """get prints the key and the pretty-printed cached value, or that it is not cached."""
    code, text = run("get", "SELECT ?", "-p", "StoreId=6")
    assert (0, "(not cached)") == (code, text.splitlines()[-1])
    key = text.splitlines()[0].removeprefix("key: ")
    redis_sync.set(key, b'[{"a":1}]')
    assert (0, f'key: {key}\n[\n  {{\n    "a": 1\n  }}\n]\n') == run(
        "get", "SELECT ?", "-p", "StoreId=6"
    )


def test_demo_shows_miss_hit_invalidate_miss(redis_sync: redis.Redis) -> None:
    """demo runs cold, warm, invalidates, and misses again."""
    code, text = run("demo")
    outcomes = [line.split()[2] for line in text.splitlines() if "call:" in line]
    assert 0 == code
    assert ["MISS", "HIT", "MISS"] == outcomes
    assert "invalidated StoreId=6: 1 entry dropped" in text
    assert DEMO_QUERY in text


def test_unreachable_service_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    """An unreachable Redis gives exit code 3 and a one-line message."""
    code = main(["--redis-url", "redis://127.0.0.1:1/0", "invalidate", "A=1"], io.StringIO())
    assert EXIT_UNAVAILABLE == code
    assert capsys.readouterr().err.startswith("mrc: Redis")


@pytest.mark.parametrize(
    "argv", [["invalidate", "NoEquals"], ["invalidate", "=6"], ["get", "q", "-p", "x"]]
)
def test_bad_input_exit_code(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Malformed Name=Value pairs give exit code 2."""
    assert EXIT_USAGE == main([*BASE, *argv], io.StringIO())
    assert "expected Name=Value" in capsys.readouterr().err


def test_module_entry_point(redis_sync: redis.Redis) -> None:
    """`python -m mysql_redis_cache` runs the same CLI in a fresh process."""
    proc = subprocess.run(
        [sys.executable, "-m", "mysql_redis_cache", *BASE, "invalidate", "X=1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (0, "deleted 0 cache entries\n") == (proc.returncode, proc.stdout)
