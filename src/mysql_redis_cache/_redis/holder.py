"""The Redis connection, opened lazily, with redis-py errors translated in one place."""

from __future__ import annotations

import asyncio
import logging
import secrets
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from .._errors import (
    CacheAuthError,
    CacheError,
    CacheUnavailableError,
    ConfigError,
    MRCError,
    config_errors,
)
from .._node.jsvalue import utf8
from .._stats import CacheStats
from .._support.loopbound import Borrowed, LoopBound
from .config import parse_redis_config
from .fills import STAMP_TTL_MS, stamp_of
from .local import ABSENT, LocalCache
from .markers import Arg, Markers, Send
from .pool import DEFAULT_MAX_CONNECTIONS, ClosingPool, fit_cluster, fit_pool, waiting_pool
from .reader import ClusterReader, CoalescingReader
from .writer import PipelinedWriter

logger = logging.getLogger("mysql_redis_cache")


# Redis cannot be reached. RedisClusterException ("cannot be connected", "slot not
# covered") is no RedisError, so it is named here explicitly.
_UNREACHABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.RedisClusterException,
    TimeoutError,
    OSError,
)
_FAILURES = (*_UNREACHABLE, redis.exceptions.RedisError)
_BATCH = 1000  # keys per UNLINK or EXISTS
# redis-py refusing a command because its pool has max_connections in use (older
# versions have no such error: their pools had no limit)
_POOL_FULL = getattr(redis.exceptions, "MaxConnectionsError", ())


def translate(exc: BaseException, action: str = "GET") -> BaseException:
    """What a failed Redis call raises: redis-py's error (or a socket error) as CacheError
    or, when Redis cannot be reached at all, CacheUnavailableError. Anything else that
    redis-py lets out (a TypeError from deep in its connect path, say) is a failure of
    Redis's client library: CacheUnavailableError too. Our own errors stay as they are."""
    error: CacheError
    if isinstance(exc, MRCError | asyncio.CancelledError):
        return exc
    if _refused_credentials(exc):
        error = CacheAuthError(
            f"Redis refused the client's credentials ({exc}): check the password and the "
            "ACL user in redis_config"
        )
    elif isinstance(exc, _POOL_FULL):  # the client's limit, not Redis failing: no breaker
        error = CacheError(f"Redis {action} failed: {exc} (the client's pool is full)")
    elif isinstance(exc, redis.exceptions.InvalidResponse):
        error = CacheUnavailableError(
            f"Redis {action} failed: the server does not speak RESP ({exc}): "
            "a wrong port, or TLS on one side only?"
        )
    elif isinstance(exc, _UNREACHABLE):
        error = CacheUnavailableError(f"Redis {action} failed: {exc}")
    elif isinstance(exc, redis.exceptions.RedisError):
        error = CacheError(f"Redis {action} failed: {exc}")
    else:
        error = CacheUnavailableError(f"Redis {action} failed in redis-py: {exc!r}")
    error.__cause__ = exc
    return error


def _refused_credentials(exc: BaseException) -> bool:
    """Whether Redis refused to authenticate the client (a wrong or missing password)."""
    if isinstance(
        exc,
        redis.exceptions.AuthenticationError
        | redis.exceptions.AuthenticationWrongNumberOfArgsError
        | redis.exceptions.AuthorizationError,
    ):
        return True
    # HELLO without the password a requirepass server wants comes back as a plain error
    return isinstance(exc, redis.exceptions.ResponseError) and str(exc).startswith(
        ("NOAUTH", "WRONGPASS")
    )


class redis_errors:  # lower case: used as `with redis_errors("GET"):`, like a function
    """Re-raise whatever a Redis call raises as `translate` gives it (a class: the hot
    path enters it twice a miss, and a generator-based context manager costs more)."""

    __slots__ = ("_action",)

    def __init__(self, action: str) -> None:
        self._action = action

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, Exception):
            error = translate(exc, self._action)
            if error is not exc:
                raise error from exc


# What an invalidation deletes of one SCAN page: entries (counted), other keys (not).
type Doomed = tuple[list[bytes], list[bytes]]

RedisConfig = Mapping[str, Any] | str | aioredis.Redis | aioredis.RedisCluster | None


class RedisHolder:
    """Owns a redis-py asyncio client per event loop, created on first use; or uses the
    caller's client as it is, never closing it."""

    def __init__(
        self,
        config: RedisConfig,
        defaults: Mapping[str, Any] | None = None,
        stats: CacheStats | None = None,
        local_cache: tuple[int, float, float] | None = None,
        scripts: bool = True,
    ) -> None:
        self._bound: LoopBound[_Handle] | Borrowed[_Handle]
        self._stats = stats
        self._local_cache = local_cache
        if isinstance(config, aioredis.Redis | aioredis.RedisCluster):
            self.where, self.address = server_of(config)
            self.markers = Markers(scripts, self.where)
            self._check_local_cache(isinstance(config, aioredis.RedisCluster))
            self._bound = Borrowed(lambda: self._handle_for(config), _release_reader)
            return
        with config_errors("redis_config"):
            self._url, self._options = parse_redis_config(config)
            self.where, self.address = server_of(self._url, self._options)
        self.markers = Markers(scripts, self.where)
        self._cluster = bool(self._options.pop("cluster", False))
        self._sentinel = self._options.pop("sentinel", None)
        if self._sentinel is not None and not (
            isinstance(self._sentinel, Mapping)
            and {"sentinels", "service_name"} <= self._sentinel.keys()
        ):
            raise ConfigError(
                "sentinel must be a dict with 'sentinels' (a list of (host, port)) and "
                f"'service_name', got {self._sentinel!r}"
            )
        # A command that found its pooled connection dead is sent once more on a new one;
        # a second failure, or a timeout, is an outage (for the client's breaker).
        retry = Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,))
        for name, value in {"retry": retry, **(defaults or {})}.items():
            if name == "retry" and self._cluster:
                continue  # RedisCluster retries per node: its own settings apply
            self._options.setdefault(name, value)  # the user's settings (and URL) win
        if not self._cluster and self._sentinel is None:
            self._options.setdefault("max_connections", DEFAULT_MAX_CONNECTIONS)
        self._check_local_cache(self._cluster)
        self._bound = LoopBound(self._make, _close_handle)

    def _check_local_cache(self, cluster: bool) -> None:
        if self._local_cache is not None and cluster:
            raise ConfigError(
                "local_cache needs one Redis server (or Sentinel): Redis Cluster tracks "
                "keys per node"
            )

    def _make(self) -> _Handle:
        client: aioredis.Redis | aioredis.RedisCluster
        if self._sentinel is not None:
            sentinel = dict(self._sentinel)
            manager = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
                sentinel.pop("sentinels"), **sentinel.pop("sentinel_kwargs", {})
            )
            master = manager.master_for(sentinel.pop("service_name"), **self._options, **sentinel)
            fit_pool(master.connection_pool)
            return self._handle_for(master, manager)
        elif self._cluster:
            if self._url is not None:
                client = aioredis.RedisCluster.from_url(self._url, **self._options)
            else:
                client = aioredis.RedisCluster(**self._options)
            fit_cluster(client)
        else:
            if self._url is not None:
                client = aioredis.Redis.from_url(self._url, **self._options)
            else:
                client = aioredis.Redis(**self._options)
            if not {"connection_pool", "single_connection_client"} & self._options.keys():
                client = waiting_pool(client)
        return self._handle_for(client)

    def _handle_for(
        self, client: aioredis.Redis | aioredis.RedisCluster, sentinel: Sentinel | None = None
    ) -> _Handle:
        if isinstance(client, aioredis.RedisCluster):
            reader: CoalescingReader = ClusterReader(client, translate, self._stats)
            return _Handle(client, reader, None, _cluster_send(client), sentinel)
        local, heartbeat = None, 0.0
        if self._local_cache is not None:
            max_bytes, max_age, heartbeat = self._local_cache
            local = LocalCache(max_bytes, max_age)
        reader = CoalescingReader(client, translate, self._stats, local, heartbeat)
        writer = PipelinedWriter(client, lambda exc: translate(exc, "write"))
        return _Handle(client, reader, writer, writer.many, sentinel)

    def client(self) -> Any:
        return self._bound.get().client

    def request(self, key: str, ttl: bool = False) -> Awaitable[bytes | None]:
        """Await it for the entry at `key`, read together with concurrent reads (`ttl`:
        its PTTL too, for `expiries`).

        Awaiting it raises CacheError (or CacheUnavailableError) when the read fails.
        """
        return self._bound.get().reader.request(utf8(key), ttl)

    async def request_many(
        self, keys: list[str], ttl_keys: list[str] | None = None
    ) -> list[bytes | None]:
        """The entries at `keys` (and the PTTLs of `ttl_keys`), read in one MGET (split
        per slot on Cluster).

        Raises CacheError (or CacheUnavailableError) when the read fails.
        """
        try:
            encoded = [key.encode() for key in keys]
        except UnicodeEncodeError:  # a lone surrogate, which utf8() writes as Node does
            encoded = [utf8(key) for key in keys]
        ttl_encoded = [utf8(key) for key in ttl_keys] if ttl_keys else None
        return await self._bound.get().reader.request_many(encoded, ttl_encoded)

    async def get(self, key: str) -> bytes | None:
        return await self.request(key)

    def reads_alone(self) -> bool:
        """Whether a read made now goes out alone (no read in flight to join)."""
        return not self._bound.get().reader.busy

    def expiries(self, keys: list[str]) -> list[float | None]:
        """When Redis expires each of `keys` (monotonic; inf: never), as their last read
        found (None: unknown)."""
        expiry = self._bound.get().reader.expiry
        return [expiry(utf8(key)) for key in keys]

    def local(self, key: str) -> Any:
        """A fresh copy of the value at `key` from the local cache, or ABSENT."""
        local = self._bound.get().reader.local
        return ABSENT if local is None else local.value(utf8(key))

    def _forget_locally(self, key: bytes) -> None:
        """Drop `key` from the local cache: our own writes are seen at once."""
        local = self._bound.get().reader.local
        if local is not None:
            local.invalidate([key])

    async def set(self, key: str, payload: bytes, expiry: int) -> None:
        raw = utf8(key)
        self._forget_locally(raw)
        handle = self._bound.get()
        with redis_errors("SET"):
            if handle.writer is None:
                await handle.client.set(raw, payload, ex=expiry)
            else:
                await handle.writer.call("SET", raw, payload, "EX", expiry)

    async def drop_connections(self) -> None:
        """Disconnect every pooled connection (after an outage they may all be dead)."""
        client = self._bound.get().client
        try:
            if isinstance(client, aioredis.RedisCluster):
                for node in client.get_nodes():
                    await node.disconnect()
            else:
                await client.connection_pool.disconnect()
        except _FAILURES as exc:
            logger.debug("dropping Redis connections failed: %s", exc)

    async def begin_fill(self, key: str, token: bytes, lock_ms: int | None) -> list[bytes] | None:
        """Set the fill marker of `key` and `token` (first taking its lock, with `lock_ms`).

        Returns the invalidation stamps as they are now, for `commit_fill`; None when
        another process holds the lock.
        """
        handle = self._bound.get()
        with redis_errors("fill marker"):
            return await self.markers.begin(
                handle.send, handle.writer is not None, utf8(key), token, lock_ms
            )

    async def commit_fill(
        self,
        key: str,
        token: bytes,
        payload: bytes | None,
        expiry: int,
        seen: list[bytes],
        locked: bool = True,
    ) -> bool:
        """Store `payload` if no invalidation overtook the fill; remove its marker (and its
        lock, if `locked`). `payload` None only removes them. Returns whether the entry
        was stored.
        """
        raw = utf8(key)
        self._forget_locally(raw)
        handle = self._bound.get()
        with redis_errors("SET"):
            return await self.markers.commit(
                handle.send, handle.writer is not None, raw, token, payload, expiry, seen, locked
            )

    async def stamp(self, tokens: list[bytes], renew: bool = False) -> None:
        """Give each invalidated token's stamp a fresh value, so fills running now see it
        (`renew`: only extend the stamps' life, while their scan runs)."""
        client = self.client()
        commands = [
            ("PEXPIRE", stamp_of(t), STAMP_TTL_MS)
            if renew
            else ("SET", stamp_of(t), secrets.token_bytes(8), "PX", STAMP_TTL_MS)
            for t in tokens
        ]
        with redis_errors("stamp"):
            if isinstance(client, aioredis.RedisCluster):
                await asyncio.gather(*(client.execute_command(*c) for c in commands))
                return
            async with client.pipeline(transaction=False) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                await pipe.execute()

    async def sweep(
        self,
        match: bytes | None,
        count: int,
        doomed: Callable[[list[bytes]], Doomed],
        dry_run: bool,
    ) -> AsyncIterator[tuple[int, int]]:
        """SCAN for `match` (None: every key) and UNLINK what `doomed` picks of each page.

        `doomed` returns the entries to delete and count, and other keys to delete
        uncounted (fill markers). Each page's UNLINKs ride in one pipeline with the next
        SCAN. Yields (entries picked, entries deleted) per page; memory stays one page.
        """
        client = self.client()
        if isinstance(client, aioredis.RedisCluster):
            async for counts in self._sweep_cluster(client, match, count, doomed, dry_run):
                yield counts
            return
        cursor, pending, extra = 0, list[bytes](), list[bytes]()
        while True:
            with redis_errors("SCAN/UNLINK"):
                async with client.pipeline(transaction=False) as pipe:
                    if pending:
                        pipe.unlink(*pending)
                    if extra:
                        pipe.unlink(*extra)
                    pipe.scan(cursor, match=match, count=count)
                    replies = await pipe.execute()
            deleted = replies[0] if pending else 0
            cursor, keys = replies[-1]
            picked, extra = doomed(cast(list[bytes], keys)) if keys else ([], [])
            pending = [] if dry_run else picked
            extra = [] if dry_run else extra
            yield len(picked), deleted
            if cursor == 0:
                break
        if pending or extra:
            with redis_errors("UNLINK"):
                deleted = await client.unlink(*pending) if pending else 0
                if extra:
                    await client.unlink(*extra)
            yield 0, deleted

    async def _sweep_cluster(
        self,
        client: aioredis.RedisCluster,
        match: bytes | None,
        count: int,
        doomed: Callable[[list[bytes]], Doomed],
        dry_run: bool,
    ) -> AsyncIterator[tuple[int, int]]:
        """`sweep` on a cluster: every primary scanned in turn, unlinks grouped per slot."""
        for node in client.get_primaries():
            cursor = 0
            while True:
                args: list[Any] = ["SCAN", cursor, "COUNT", count]
                if match is not None:
                    args += ["MATCH", match]
                with redis_errors("SCAN"):
                    # the cluster's SCAN reply maps the node's name to its cursor
                    cursors, keys = await client.execute_command(*args, target_nodes=node)
                cursor = next(iter(cursors.values()))
                picked, extra = doomed(cast(list[bytes], keys)) if keys else ([], [])
                deleted = 0
                if not dry_run:
                    with redis_errors("UNLINK"):
                        deleted = await _per_slot(client, "UNLINK", picked)
                        await _per_slot(client, "UNLINK", extra)
                yield len(picked), deleted
                if cursor == 0:
                    break

    async def unlink(self, keys: list[bytes], exists: bool = False) -> int:
        """UNLINK `keys` (`exists`: only count those that exist); how many there were."""
        client = self.client()
        command = "EXISTS" if exists else "UNLINK"
        with redis_errors(command):
            if isinstance(client, aioredis.RedisCluster):
                return await _per_slot(client, command, keys)
            count = 0
            for start in range(0, len(keys), _BATCH):
                count += await client.execute_command(command, *keys[start : start + _BATCH])
            return count

    async def ttl(self, key: str) -> int:
        with redis_errors("TTL"):
            return int(await self.client().ttl(utf8(key)))

    async def dbsize(self) -> int:
        client = self.client()
        with redis_errors("DBSIZE"):
            if isinstance(client, aioredis.RedisCluster):
                sizes = await client.dbsize(target_nodes=aioredis.RedisCluster.PRIMARIES)
                return int(sum(sizes.values()) if isinstance(sizes, dict) else sizes)
            return int(await client.dbsize())

    def loops(self) -> list[asyncio.AbstractEventLoop]:
        """The event loops that have connections of their own."""
        return self._bound.loops()

    async def close_current(self) -> None:
        """Close the running event loop's connections."""
        await self._bound.close_current()

    async def close(self) -> None:
        """Close every event loop's connections, each inside its own loop."""
        await self._bound.close()


async def _per_slot(client: aioredis.RedisCluster, command: str, keys: list[bytes]) -> int:
    """UNLINK (or EXISTS) `keys` on a cluster, one command per slot; the sum of replies."""
    by_slot: dict[int, list[bytes]] = {}
    for key in keys:
        by_slot.setdefault(client.keyslot(key), []).append(key)
    counts = await asyncio.gather(
        *(client.execute_command(command, *group) for group in by_slot.values())
    )
    return sum(counts)


def server_of(
    config: Any, options: Mapping[str, Any] | None = None
) -> tuple[str, tuple[str | None, int | None]]:
    """The Redis server a config or client names: how log lines name it (never with a
    password), and its (host, port) for metrics (None where unknown: Sentinel, a socket)."""
    options = options or {}
    kwargs: Mapping[str, Any]
    if isinstance(config, aioredis.RedisCluster):
        kind, kwargs = "cluster ", config.nodes_manager.connection_kwargs
    elif isinstance(config, aioredis.Redis):
        kind, kwargs = "", config.connection_pool.connection_kwargs
    else:
        if options.get("sentinel"):
            return f"Sentinel service {options['sentinel'].get('service_name')!r}", (None, None)
        kind, kwargs = "cluster " if options.get("cluster") else "", options
        if isinstance(config, str):
            parsed = urllib.parse.urlsplit(config)
            unix = parsed.scheme == "unix"
            kwargs = (
                {"path": parsed.path} if unix else {"host": parsed.hostname, "port": parsed.port}
            )
    if kwargs.get("path"):
        return kind + str(kwargs["path"]), (None, None)
    host, port = kwargs.get("host") or "localhost", int(kwargs.get("port") or 6379)
    return f"{kind}{host}:{port}", (host, port)


def _cluster_send(client: aioredis.RedisCluster) -> Send:
    """Commands to a cluster, each routed to its key's node, sent at once."""

    async def send(commands: Sequence[tuple[Arg, ...]]) -> list[Any]:
        return await asyncio.gather(
            *(client.execute_command(*command) for command in commands), return_exceptions=True
        )

    return send


@dataclass(slots=True)
class _Handle:
    client: Any  # aioredis.Redis or aioredis.RedisCluster
    reader: CoalescingReader
    writer: PipelinedWriter | None  # None on Cluster, whose client routes each key
    send: Send  # the fill steps' commands (scripts over several slots only with a writer)
    sentinel: Sentinel | None = None  # its connections to the sentinels close with us


async def _release_reader(handle: _Handle) -> None:
    """Close the connections the handle opened of its own (the reader's, the writer's)."""
    try:
        await handle.reader.close()
        if handle.writer is not None:
            await handle.writer.close()
    except Exception as exc:
        logger.debug("releasing the read and write connections failed: %s", exc)


async def _close_handle(handle: _Handle) -> None:
    pool = getattr(handle.client, "connection_pool", None)
    if isinstance(pool, ClosingPool):
        pool.closed = True
    await _release_reader(handle)
    try:
        await handle.client.aclose()
        for sentinel in handle.sentinel.sentinels if handle.sentinel else ():
            await sentinel.aclose()
    except _FAILURES as exc:
        logger.debug("closing the Redis client failed: %s", exc)
