"""Throwaway redis-server processes on loopback ports, stopped by PID."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisProcess:
    """One redis-server on a fixed loopback port that can be killed and started again."""

    def __init__(self, workdir: str, port: int | None = None, args: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._workdir = workdir
        self._args = args  # more redis-server settings, e.g. ("--maxmemory", "2mb")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self._workdir, *self._args],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_for_port(self.port)

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing is answered (a hung server)."""
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL, as a crash: no goodbye to the clients."""
        if self._proc is not None:
            os.kill(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=10)
            self._proc = None


@contextmanager
def redis_server(*args: str) -> Iterator[RedisProcess]:
    """Start a redis-server on a free port, with `args` for more settings; stop it by PID
    afterwards."""
    with tempfile.TemporaryDirectory() as workdir:
        server = RedisProcess(workdir, args=args)
        server.start()
        try:
            yield server
        finally:
            server.kill()


@contextmanager
def tls_redis_server() -> Iterator[str]:
    """A redis-server speaking only TLS, with a fresh self-signed certificate for
    127.0.0.1: yields the rediss:// URL that trusts it. Stopped by PID afterwards."""
    with tempfile.TemporaryDirectory() as workdir:
        cert, key = os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-keyout", key, "-out", cert, "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True,
        )  # fmt: skip
        port = free_port()
        proc = subprocess.Popen(
            ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
             "--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", cert,
             "--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", workdir],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait_for_port(port)
            yield f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}"
        finally:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def redis_cluster(masters: int = 3, replicas: int = 0) -> Iterator[list[int]]:
    """A real Redis Cluster of `masters` primaries (and `replicas` replicas each) on
    loopback ports; stopped by PID."""
    with tempfile.TemporaryDirectory() as workdir:
        procs: list[subprocess.Popen[bytes]] = []
        ports = [_free_cluster_port() for _ in range(masters * (1 + replicas))]
        try:
            for port in ports:
                command = [
                    "redis-server", "--port", str(port), "--bind", "127.0.0.1",
                    "--cluster-enabled", "yes", "--cluster-config-file",
                    f"{workdir}/nodes-{port}.conf", "--save", "", "--appendonly", "no",
                    "--dir", workdir,
                ]  # fmt: skip
                procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
            for port in ports:
                _wait_for_port(port)
            create = ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports)]
            create += ["--cluster-replicas", str(replicas), "--cluster-yes"]
            subprocess.run(create, check=True, capture_output=True, timeout=60)
            deadline = time.monotonic() + 30
            while not all("cluster_state:ok" in _cluster_info(p) for p in ports):
                if time.monotonic() > deadline:
                    raise RuntimeError("the test cluster did not reach cluster_state:ok")
                time.sleep(0.2)
            yield ports
        finally:
            for proc in procs:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def _cluster_info(port: int) -> str:
    info = subprocess.run(
        ["redis-cli", "-p", str(port), "cluster", "info"],
        capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip
    return info.stdout


def _free_cluster_port() -> int:
    """A free port whose cluster-bus port (port + 10000) is free and valid too."""
    for _ in range(200):
        port = random.randint(20_000, 45_000)
        try:
            for candidate in (port, port + 10_000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port}")


@contextmanager
def redis_sentinel(replica: bool = False) -> Iterator[tuple[int, int]]:
    """A Redis primary (with a replica of it, if asked) and one Sentinel watching it as
    `mymaster`; yields the primary's and the Sentinel's ports."""
    with tempfile.TemporaryDirectory() as workdir:
        primary = RedisProcess(workdir)
        primary.start()
        copy = RedisProcess(workdir, args=("--replicaof", "127.0.0.1", str(primary.port)))
        if replica:
            copy.start()
        sentinel_port = free_port()
        config = f"{workdir}/sentinel.conf"
        with open(config, "w") as handle:
            handle.write(
                f"port {sentinel_port}\nbind 127.0.0.1\ndir {workdir}\n"
                f"sentinel monitor mymaster 127.0.0.1 {primary.port} 1\n"
                "sentinel down-after-milliseconds mymaster 1000\n"
                "sentinel failover-timeout mymaster 5000\n"
            )
        proc = subprocess.Popen(["redis-server", config, "--sentinel"], stdout=subprocess.DEVNULL)
        try:
            _wait_for_port(sentinel_port)
            yield primary.port, sentinel_port
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            primary.kill()
            copy.kill()


def sentinel_failover(sentinel_port: int) -> None:
    """Have the Sentinel promote the replica (once it deems one fit) and wait until it
    names the new primary."""
    import redis

    with redis.Redis(port=sentinel_port) as sentinel:
        before = sentinel.sentinel_get_master_addr_by_name("mymaster")
        deadline = time.monotonic() + 20
        while True:
            try:
                sentinel.execute_command("SENTINEL", "FAILOVER", "mymaster")
                break
            except redis.exceptions.ResponseError:  # NOGOODSLAVE: not seen the replica yet
                assert time.monotonic() < deadline, "no replica to promote"
                time.sleep(0.2)
        while sentinel.sentinel_get_master_addr_by_name("mymaster") == before:
            assert time.monotonic() < deadline, "the failover did not finish"
            time.sleep(0.05)
