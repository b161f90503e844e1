"""The suite's own servers: a redis-server on a free loopback port and a MariaDB database
made for this run, so that nothing else on the machine can disturb the tests (another
suite, an app flushing its Redis) and the tests disturb nothing of anyone else's.

MRC_TEST_REDIS_URL or MRC_TEST_MYSQL_DATABASE name ones to use instead (never flushed or
dropped by the suite's teardown: flushed by its tests, as before).
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import tempfile

import pymysql

from ._redis_server import RedisProcess
from ._settings import MYSQL_SERVER


class SuiteServers:
    """Started once per test run, stopped by PID (and the database dropped) at its end."""

    def __init__(self) -> None:
        self.redis_url = os.environ.get("MRC_TEST_REDIS_URL", "")
        self.database = os.environ.get("MRC_TEST_MYSQL_DATABASE", "")
        self._redis: RedisProcess | None = None
        self._workdir: str | None = None
        self._own_database = False
        if not self.redis_url:
            self._workdir = tempfile.mkdtemp(prefix="mrc-test-redis-")
            self._redis = RedisProcess(self._workdir)
            self._redis.start()
            self.redis_url = f"redis://127.0.0.1:{self._redis.port}/9"
        if not self.database:
            self.database = f"mrc_test_{os.getpid()}_{secrets.token_hex(3)}"
            with pymysql.connect(**MYSQL_SERVER, autocommit=True) as conn, conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE `{self.database}`")
            self._own_database = True
        atexit.register(self.stop)  # also when the run ends without pytest's teardown

    def stop(self) -> None:
        if self._redis is not None:
            self._redis.kill()
            self._redis = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        if self._own_database:
            self._own_database = False
            with pymysql.connect(**MYSQL_SERVER, autocommit=True) as conn, conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{self.database}`")
