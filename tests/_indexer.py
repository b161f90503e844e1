"""`mrc index` in a process of its own, and helpers to watch the index from outside."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from mysql_redis_cache._index.names import ALIVE

from ._threads import until


class IndexerProcess:
    """`mrc index` against one Redis URL, that can be paused, resumed and terminated."""

    def __init__(self, url: str) -> None:
        self.url = url
        # files, not pipes: nothing blocks on them; closed in kill()
        self._out = tempfile.TemporaryFile()  # noqa: SIM115
        self._err = tempfile.TemporaryFile()  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from mysql_redis_cache._cli import run; run()",
             "index", "--redis-url", url, "--verbose"],
            stdout=self._out, stderr=self._err,
        )  # fmt: skip

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def terminate(self) -> tuple[int, str, str]:
        """SIGTERM, then (exit code, stdout, stderr)."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        return code, self._read(self._out), self._read(self._err)

    @staticmethod
    def _read(file: Any) -> str:
        file.seek(0)
        return str(file.read().decode())

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._out.close()
        self._err.close()


@contextmanager
def indexer_process(url: str) -> Iterator[IndexerProcess]:
    """`mrc index` running against `url`, killed by PID afterwards."""
    indexer = IndexerProcess(url)
    try:
        yield indexer
    finally:
        indexer.kill()


def wait_alive(client: redis.Redis, seconds: float = 60.0) -> None:
    """Wait for an indexer's heartbeat (its index complete)."""
    assert until(lambda: client.exists(ALIVE) == 1, seconds), "no indexer became complete"


def cache_key(*segments: str, query: str = "SELECT 1") -> bytes:
    """A cache key as both libraries write it: `A=1_B=2_<sha1 of the query>`."""
    digest = hashlib.sha1(query.encode()).hexdigest()
    return "_".join([*segments, digest]).encode()
