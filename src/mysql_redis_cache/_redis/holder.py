"""The Redis connection, opened lazily, with redis-py errors translated in one place."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.sentinel import Sentinel

from .._errors import CacheError, CacheUnavailableError, ConfigError
from .._node.jsvalue import utf8
from .._stats import CacheStats
from .._support.loopbound import Borrowed, LoopBound
from .config import parse_redis_config
from .local import ABSENT, LocalCache
from .reader import ClusterReader, CoalescingReader

logger = logging.getLogger("mysql_redis_cache")


# Compare-and-delete: release a lock only while it still holds our token.
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


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


def translate(exc: BaseException, action: str = "GET") -> BaseException:
    """redis-py's error (or a socket error) as CacheError or, when Redis cannot be reached
    at all, CacheUnavailableError; any other exception as it is."""
    error: CacheError
    if isinstance(exc, _UNREACHABLE):
        error = CacheUnavailableError(f"Redis {action} failed: {exc}")
    elif isinstance(exc, redis.exceptions.RedisError):
        error = CacheError(f"Redis {action} failed: {exc}")
    else:
        return exc
    error.__cause__ = exc
    return error


@contextmanager
def redis_errors(action: str) -> Iterator[None]:
    """Re-raise redis-py's errors as `translate` gives them."""
    try:
        yield
    except _FAILURES as exc:
        raise translate(exc, action) from exc


RedisConfig = Mapping[str, Any] | str | aioredis.Redis | aioredis.RedisCluster | None


class RedisHolder:
    """Owns a redis-py asyncio client per event loop, created on first use; or uses the
    caller's client as it is, never closing it."""

    def __init__(
        self,
        config: RedisConfig,
        defaults: Mapping[str, Any] | None = None,
        stats: CacheStats | None = None,
        local_cache: tuple[int, float] | None = None,
    ) -> None:
        self._bound: LoopBound[_Handle] | Borrowed[_Handle]
        self._stats = stats
        self._local_cache = local_cache
        if isinstance(config, aioredis.Redis | aioredis.RedisCluster):
            self._check_local_cache(isinstance(config, aioredis.RedisCluster))
            self._bound = Borrowed(self._handle_for(config), _release_reader)
            return
        self._url, self._options = parse_redis_config(config)
        self._cluster = bool(self._options.pop("cluster", False))
        self._sentinel = self._options.pop("sentinel", None)
        for name, value in (defaults or {}).items():
            if name == "retry" and self._cluster:
                continue  # RedisCluster retries per node: its own settings apply
            self._options.setdefault(name, value)  # the user's settings (and URL) win
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
            client = manager.master_for(sentinel.pop("service_name"), **self._options, **sentinel)
            return self._handle_for(client, manager)
        elif self._cluster:
            if self._url is not None:
                client = aioredis.RedisCluster.from_url(self._url, **self._options)
            else:
                client = aioredis.RedisCluster(**self._options)
        elif self._url is not None:
            client = aioredis.Redis.from_url(self._url, **self._options)
        else:
            client = aioredis.Redis(**self._options)
        return self._handle_for(client)

    def _handle_for(
        self, client: aioredis.Redis | aioredis.RedisCluster, sentinel: Sentinel | None = None
    ) -> _Handle:
        if isinstance(client, aioredis.RedisCluster):
            return _Handle(client, ClusterReader(client, translate, self._stats), sentinel)
        local = None if self._local_cache is None else LocalCache(*self._local_cache)
        return _Handle(client, CoalescingReader(client, translate, self._stats, local), sentinel)

    def client(self) -> Any:
        return self._bound.get().client

    def request(self, key: str) -> Awaitable[bytes | None]:
        """Await it for the entry at `key`, read together with concurrent reads.

        Awaiting it raises CacheError (or CacheUnavailableError) when the read fails.
        """
        return self._bound.get().reader.request(utf8(key))

    async def get(self, key: str) -> bytes | None:
        return await self.request(key)

    def local(self, key: str) -> Any:
        """A fresh copy of the value at `key` from the local cache, or ABSENT."""
        local = self._bound.get().reader.local
        return ABSENT if local is None else local.value(utf8(key))

    async def set(self, key: str, payload: bytes, expiry: int) -> None:
        local = self._bound.get().reader.local
        if local is not None:
            local.invalidate([utf8(key)])  # our own writes are seen at once
        with redis_errors("SET"):
            await self.client().set(utf8(key), payload, ex=expiry)

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

    async def try_lock(self, key: str, token: bytes, ttl_ms: int) -> bool:
        """SET key token NX PX ttl: whether this caller now holds the lock."""
        with redis_errors("SET NX"):
            return bool(await self.client().set(utf8(key), token, nx=True, px=ttl_ms))

    async def release_lock(self, key: str, token: bytes) -> None:
        with redis_errors("lock release"):
            await cast(Awaitable[object], self.client().eval(_RELEASE_LOCK, 1, utf8(key), token))

    async def sweep(
        self,
        match: bytes | None,
        count: int,
        doomed: Callable[[list[bytes]], list[bytes]],
        dry_run: bool,
    ) -> AsyncIterator[tuple[int, int]]:
        """SCAN for `match` (None: every key) and UNLINK what `doomed` picks of each page.

        Each page's UNLINK rides in one pipeline with the next SCAN. Yields
        (keys picked, keys deleted) per page; memory stays one page.
        """
        client = self.client()
        if isinstance(client, aioredis.RedisCluster):
            async for counts in self._sweep_cluster(client, match, count, doomed, dry_run):
                yield counts
            return
        cursor, pending = 0, list[bytes]()
        while True:
            with redis_errors("SCAN/UNLINK"):
                async with client.pipeline(transaction=False) as pipe:
                    if pending:
                        pipe.unlink(*pending)
                    pipe.scan(cursor, match=match, count=count)
                    replies = await pipe.execute()
            deleted = replies[0] if pending else 0
            cursor, keys = replies[-1]
            picked = doomed(cast(list[bytes], keys)) if keys else []
            pending = [] if dry_run else picked
            yield len(picked), deleted
            if cursor == 0:
                break
        if pending:
            with redis_errors("UNLINK"):
                yield 0, await client.unlink(*pending)

    async def _sweep_cluster(
        self,
        client: aioredis.RedisCluster,
        match: bytes | None,
        count: int,
        doomed: Callable[[list[bytes]], list[bytes]],
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
                picked = doomed(cast(list[bytes], keys)) if keys else []
                deleted = 0
                if picked and not dry_run:
                    by_slot: dict[int, list[bytes]] = {}
                    for key in picked:
                        by_slot.setdefault(client.keyslot(key), []).append(key)
                    with redis_errors("UNLINK"):
                        counts = await asyncio.gather(
                            *(client.unlink(*group) for group in by_slot.values())
                        )
                    deleted = sum(counts)
                yield len(picked), deleted
                if cursor == 0:
                    break

    async def dbsize(self) -> int:
        client = self.client()
        with redis_errors("DBSIZE"):
            if isinstance(client, aioredis.RedisCluster):
                sizes = await client.dbsize(target_nodes=aioredis.RedisCluster.PRIMARIES)
                return int(sum(sizes.values()) if isinstance(sizes, dict) else sizes)
            return int(await client.dbsize())

    async def close(self) -> None:
        await self._bound.close()


@dataclass(slots=True)
class _Handle:
    client: Any  # aioredis.Redis or aioredis.RedisCluster
    reader: CoalescingReader
    sentinel: Sentinel | None = None  # its connections to the sentinels close with us


async def _release_reader(handle: _Handle) -> None:
    try:
        await handle.reader.close()
    except _FAILURES as exc:
        logger.debug("releasing the read connection failed: %s", exc)


async def _close_handle(handle: _Handle) -> None:
    await _release_reader(handle)
    try:
        await handle.client.aclose()
        for sentinel in handle.sentinel.sentinels if handle.sentinel else ():
            await sentinel.aclose()
    except _FAILURES as exc:
        logger.debug("closing the Redis client failed: %s", exc)
