"""The mrc command against the real MariaDB and Redis."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import urlsplit

import pymysql
import pytest
import redis

from mysql_redis_cache._cli import (
    DEMO_NAME,
    EXIT_INTERRUPTED,
    EXIT_OUTPUT,
    EXIT_TERMINATED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    main,
)

from ._redis_server import redis_server
from .conftest import MYSQL_CONFIG, MYSQL_URL, REDIS_URL, stored_keys

BASE = ["--redis-url", REDIS_URL, "--mysql-url", MYSQL_URL]
HOSTPORT = urlsplit(REDIS_URL).netloc  # the suite's own Redis


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
    assert (0, "deleted 1 cache entry\n") == run("invalidate", "StoreId=6")
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
    redis_sync.expire(key, 300)
    assert (0, f'key: {key}\nttl: 300 s\n[\n  {{\n    "a": 1\n  }}\n]\n') == run(
        "get", "SELECT ?", "-p", "StoreId=6"
    )


def test_demo_shows_miss_hit_invalidate_miss(redis_sync: redis.Redis) -> None:
    """demo runs cold, warm, invalidates, and misses again."""
    code, text = run("demo")
    outcomes = [line.split()[2] for line in text.splitlines() if "call:" in line]
    assert 0 == code
    assert ["MISS", "HIT", "MISS"] == outcomes
    assert f"invalidated {DEMO_NAME}=" in text
    assert f"MySQL: {MYSQL_URL}" in text


def demo_tables() -> set[str]:
    with (
        pymysql.connect(**MYSQL_CONFIG) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("SHOW TABLES LIKE 'mrc\\_demo%'")
        return {row[0] for row in cur.fetchall()}


@pytest.fixture
def unrelated(redis_sync: redis.Redis) -> Iterator[set[bytes]]:
    """Entries of another service that share the old demo's StoreId=6, and a table named
    as the old demo's: the demo must leave all of them alone."""
    keys = {f"StoreId=6_{n}_".encode() + b"b" * 40 for n in range(2)}
    for key in keys:
        redis_sync.set(key, b"[1]")
    with (
        pymysql.connect(**MYSQL_CONFIG) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("CREATE OR REPLACE TABLE mrc_demo (id INT)")
    yield keys
    with (
        pymysql.connect(**MYSQL_CONFIG) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("DROP TABLE IF EXISTS mrc_demo")


def test_demo_touches_only_its_own_data(redis_sync: redis.Redis, unrelated: set[bytes]) -> None:
    """demo leaves others' entries and tables as they were, and nothing of its own."""
    assert 0 == run("demo")[0]
    assert unrelated == stored_keys(redis_sync)
    assert {"mrc_demo"} == demo_tables()


@pytest.mark.parametrize(
    ("signal_number", "code"),
    [(signal.SIGINT, EXIT_INTERRUPTED), (signal.SIGTERM, EXIT_TERMINATED)],
    ids=["SIGINT", "SIGTERM"],
)
def test_an_interrupted_demo_cleans_up(
    redis_sync: redis.Redis, unrelated: set[bytes], signal_number: int, code: int
) -> None:
    """Interrupted after its first call, demo still removes its table and entry."""
    env = {**os.environ, "MRC_REDIS_URL": REDIS_URL, "MRC_MYSQL_URL": MYSQL_URL}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mysql_redis_cache", "demo", "--pause", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("1st call"):
            break
    assert len(stored_keys(redis_sync)) == len(unrelated) + 1  # the demo's entry
    proc.send_signal(signal_number)
    _, err = proc.communicate(timeout=30)
    assert code == proc.returncode, err
    assert 1 == len(err.splitlines()), err
    assert unrelated == stored_keys(redis_sync)
    assert {"mrc_demo"} == demo_tables()


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mysql_redis_cache", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


FAILURES = {
    "demo-mysql-down": (["--mysql-url", "mysql://root@127.0.0.1:1/test", "demo"], 3),
    "demo-bad-password": (["--mysql-url", "mysql://nobody:wrong@127.0.0.1/test", "demo"], 3),
    "demo-unknown-db": (["--mysql-url", "mysql://root@127.0.0.1/no_such_db_mrc", "demo"], 3),
    "demo-bad-scheme": (["--mysql-url", "mysql:/", "demo"], 2),
    "stats-redis-down": (["--redis-url", "redis://127.0.0.1:1/0", "stats"], 3),
    "stats-http-url": (["--redis-url", f"http://{HOSTPORT}", "stats"], 2),
    "stats-db-99": (["--redis-url", f"redis://{HOSTPORT}/99", "stats"], 3),
    "stats-bad-db": (["--redis-url", f"redis://{HOSTPORT}/abc", "stats"], 2),
    "stats-tls-to-plain": (["--redis-url", f"rediss://{HOSTPORT}/0", "stats"], 3),
    "stats-sample-0": (["stats", "--sample", "0"], 2),
    "stats-sample-negative": (["stats", "--sample", "-5"], 2),
    "get-placeholder-without-params": (["get", "SELECT ?"], 2),
    "stats-cluster-with-db": (["--redis-url", f"redis://{HOSTPORT}/9", "--cluster", "stats"], 2),
    "stats-cluster-after": (["stats", "--redis-url", f"redis://{HOSTPORT}/9", "--cluster"], 2),
    "stats-sample-abc": (["stats", "--sample", "abc"], 2),
    "get-redis-down": (
        ["get", "SELECT ?", "-p", "StoreId=6", "--redis-url", "redis://127.0.0.1:1/0"],
        3,
    ),
    "invalidate-redis-down": (
        ["invalidate", "StoreId=6", "--redis-url", "redis://127.0.0.1:1/0"],
        3,
    ),
}


@pytest.mark.parametrize(("argv", "code"), FAILURES.values(), ids=FAILURES.keys())
def test_failures_exit_2_or_3_without_traceback(argv: list[str], code: int) -> None:
    """Every failure is one line on stderr and exit 2 (bad input) or 3 (a server failed)."""
    proc = cli(*argv)
    assert code == proc.returncode, proc.stderr
    assert "Traceback" not in proc.stderr
    assert 1 == len(proc.stderr.strip().splitlines()), proc.stderr


OUTPUTS = {
    "version": ["--version"],
    "invalidate": [*BASE, "invalidate", "--dry-run", "NoSuchName=1"],
    "stats": [*BASE, "stats", "--sample", "5"],
    "get": [*BASE, "get", "SELECT 1"],
}


def cli_into(stdout: int, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mysql_redis_cache", *argv],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("argv", OUTPUTS.values(), ids=OUTPUTS.keys())
def test_full_disk_is_an_output_failure_not_an_outage(argv: list[str]) -> None:
    """Output into a full disk exits 1 with one line naming it, never 3 ("unreachable") or 0."""
    with open("/dev/full", "w") as full:
        proc = cli_into(full.fileno(), *argv)
    assert EXIT_OUTPUT == proc.returncode, proc.stderr
    assert ["mrc: cannot write the output: [Errno 28] No space left on device"] == (
        proc.stderr.splitlines()
    )


@pytest.mark.parametrize("argv", OUTPUTS.values(), ids=OUTPUTS.keys())
def test_closed_pipe_exits_1_quietly(argv: list[str]) -> None:
    """A reader that went away (`mrc stats | head -1`) gets no traceback and no message."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = cli_into(write_end, *argv)
    finally:
        os.close(write_end)
    assert (EXIT_OUTPUT, "") == (proc.returncode, proc.stderr)


def test_version() -> None:
    """mrc --version prints the package version."""
    from importlib.metadata import version

    assert f"mrc {version('actvalue.mysql-redis-cache')}\n" == cli("--version").stdout


def test_unreachable_service_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    """An unreachable Redis gives exit code 3 and a line naming the command and the server,
    not a command the user never ran."""
    code = main(["--redis-url", "redis://127.0.0.1:1/0", "invalidate", "A=1"], io.StringIO())
    assert EXIT_UNAVAILABLE == code
    err = capsys.readouterr().err
    assert err.startswith("mrc invalidate: Redis at redis://127.0.0.1:1/0 is unreachable:")
    assert "DBSIZE" not in err


def test_sample_must_be_a_positive_number(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["stats", "--sample", "abc"], io.StringIO())
    assert EXIT_USAGE == exit_.value.code
    assert "mrc: argument --sample: expected a positive whole number, got 'abc'" in (
        capsys.readouterr().err
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["stats", "--sample", "5", "--redis-url", REDIS_URL],
        ["invalidate", "X=1", "--dry-run", "--redis-url", REDIS_URL],
        ["get", "SELECT 1", "--redis-url", REDIS_URL, "--mysql-url", MYSQL_URL],
        ["demo", "--mysql-url", MYSQL_URL, "--redis-url", REDIS_URL],
    ],
    ids=["stats", "invalidate", "get", "demo"],
)
def test_connection_flags_after_the_command(redis_sync: redis.Redis, argv: list[str]) -> None:
    """--redis-url and --mysql-url work after the command as before it."""
    assert 0 == main(argv, io.StringIO())


DEAD_REDIS, DEAD_MYSQL = "redis://127.0.0.1:1/0", "mysql://root@127.0.0.1:1/test"


@pytest.mark.parametrize(
    "argv",
    [
        ["stats", "--redis-url", DEAD_REDIS],
        ["invalidate", "X=1", "--redis-url", DEAD_REDIS],
        ["get", "SELECT 1", "--redis-url", DEAD_REDIS],
        ["demo", "--mysql-url", DEAD_MYSQL],
    ],
    ids=["stats", "invalidate", "get", "demo"],
)
def test_flags_after_the_command_are_read(argv: list[str]) -> None:
    """A URL given after the command is the one used: a dead one fails the command (the
    defaults, which answer, would not)."""
    assert EXIT_UNAVAILABLE == main(argv, io.StringIO())


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


@pytest.mark.parametrize(
    ("redis_args", "url", "code"),
    [
        ((), "redis://127.0.0.1:1/0", EXIT_UNAVAILABLE),  # nothing listens there
        (("--requirepass", "right-pw"), "redis://:wrong-pw@127.0.0.1:{port}/0", EXIT_USAGE),
    ],
    ids=["unreachable", "wrong-password"],
)
def test_demo_removes_its_table_when_redis_fails(
    redis_args: tuple[str, ...], url: str, code: int
) -> None:
    """The demo drops its table even when Redis fails; a refused password is a
    configuration error (exit 2), not an outage."""
    before = demo_tables()
    with redis_server(*redis_args) as private:
        assert code == run("--redis-url", url.format(port=private.port), "demo")[0]
    assert before == demo_tables()


def test_every_password_is_masked(capsys: pytest.CaptureFixture[str]) -> None:
    """Passwords in the URLs' user info or as a password= parameter appear nowhere in what
    mrc prints, in the header or in the error."""
    with redis_server("--requirepass", "pw-in-param") as private:
        for redis_url, mysql_url in (
            (f"redis://:pw-in-userinfo@127.0.0.1:{private.port}/0", MYSQL_URL),
            (f"redis://127.0.0.1:{private.port}/0?password=pw-in-param", MYSQL_URL),
            (REDIS_URL, MYSQL_URL.replace("root:@", "root:pw-for-mysql@")),
        ):
            out = io.StringIO()
            main(["--redis-url", redis_url, "--mysql-url", mysql_url, "demo"], out)
            printed = out.getvalue() + capsys.readouterr().err
            assert "***" in printed
            for secret in ("pw-in-userinfo", "pw-in-param", "pw-for-mysql"):
                assert secret not in printed


def test_bad_url_is_refused_before_anything_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    """`mrc --mysql-url nope demo` prints no header and creates nothing."""
    out = io.StringIO()
    assert EXIT_USAGE == main(["--mysql-url", "nope", "demo"], out)
    assert "" == out.getvalue()
    assert "mysql" in capsys.readouterr().err.lower()


@pytest.mark.parametrize("pause", ["-1", "nan", "inf"])
def test_negative_pause_is_refused(pause: str) -> None:
    """--pause takes seconds, 0 or more: bad input exits 2 before anything runs."""
    with pytest.raises(SystemExit) as exited:
        run("demo", f"--pause={pause}")
    assert EXIT_USAGE == exited.value.code


def test_a_command_flag_before_the_command(redis_sync: redis.Redis) -> None:
    """`mrc --dry-run invalidate X=1` works as `mrc invalidate X=1 --dry-run`."""
    seed(redis_sync)
    assert (0, "would delete 1 cache entry\n") == run("--dry-run", "invalidate", "StoreId=6")
    assert (0, "would delete 3 cache entries\n") == run("--dry-run", "invalidate", "UserId=1")
    assert 4 == len(stored_keys(redis_sync))


def test_get_help_explains_query_and_params(capsys: pytest.CaptureFixture[str]) -> None:
    """`mrc get --help` says what the query and -p are."""
    with pytest.raises(SystemExit):
        main(["get", "--help"])
    text = capsys.readouterr().out
    assert "? placeholders" in text
    assert "Name=Value" in text
    assert "repeat" in text


def test_get_refuses_percent_placeholders(capsys: pytest.CaptureFixture[str]) -> None:
    """A %s query never has an entry (Node hashes the ? query): refused, not '(not cached)'."""
    assert EXIT_USAGE == run("get", "SELECT %s AS a", "-p", "A=1")[0]
    assert "%s" in capsys.readouterr().err
