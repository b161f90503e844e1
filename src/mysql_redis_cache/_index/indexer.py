"""MRCIndexer: keeps the invalidation index complete, for Node's writes as well."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Coroutine
from typing import Any, Self, cast

import redis.asyncio as aioredis
import redis.exceptions

from .._errors import ConfigError
from .._redis.holder import RedisConfig, RedisHolder, translate
from .follower import SCAN_COUNT, Follower, SessionEnded
from .store import IndexStore
from .tags import tags_by_node

logger = logging.getLogger("mysql_redis_cache")

BEAT_EVERY = 1.0  # seconds between heartbeats
BEAT_TTL_MS = 3_000
PRUNE_EVERY = 1.0
TOPOLOGY_EVERY = 10.0  # seconds between looks at a Cluster's primaries
MAX_BACKOFF = 2.0


class MRCIndexer:
    """Keeps an index of the cache entries by their `Name=value` segments, so that
    `MRCServer.drop_outdated_cache` deletes what it drops without scanning every key.

    It follows Redis's keyspace notifications (turning them on with CONFIG SET where
    needed), so it indexes entries written by Node as well as by this library; it
    backfills with one SCAN when it starts and after every reconnect. An invalidation
    trusts the index only after this indexer acknowledges a barrier key written behind
    every earlier write; otherwise it scans, as without an index. Run one per Redis
    database (or Cluster): `mrc index`, or this class inside an app.

    Args:
        redis_config: as for MRCClient.

    Raises:
        ConfigError: a bad Redis config.
    """

    def __init__(self, redis_config: RedisConfig = None) -> None:
        self._redis = RedisHolder(redis_config)
        self._who = secrets.token_hex(8).encode()
        self._followers: list[Follower] = []
        self._task: asyncio.Task[None] | None = None
        self.rebuilds = 0  # sessions ended and started again
        self.beating = False  # the heartbeat is written: invalidations ask this indexer

    @property
    def complete(self) -> bool:
        """Whether the index holds every cache key now (all nodes followed, backfilled)."""
        return bool(self._followers) and all(f.complete for f in self._followers)

    @property
    def indexed(self) -> int:
        """Keys indexed so far, by notifications and backfills."""
        return sum(f.indexed for f in self._followers)

    @property
    def acks(self) -> int:
        """Invalidations that this indexer let use the index."""
        return sum(f.acks for f in self._followers)

    async def run(self) -> None:
        """Follow Redis until cancelled, rebuilding the index after every reconnect.

        Raises:
            NotificationsOffError: Redis sends no keyspace notifications and refused to
                turn them on; the message says what to set.
            CacheAuthError: Redis refused the credentials.
        """
        backoff = 0.1
        try:
            while True:
                try:
                    await self._session()
                except Exception as exc:
                    error = _first(exc)
                    if isinstance(error, ConfigError):
                        raise error from None
                    was_complete = self.complete
                    self._followers = []
                    self.rebuilds += 1
                    level = logging.WARNING if was_complete or backoff == 0.1 else logging.DEBUG
                    logger.log(level, "the invalidation index is rebuilt: %s", error)
                await self._quiet()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                if self.complete:
                    backoff = 0.1
        finally:
            self._followers = []
            await asyncio.shield(self._close())

    async def _session(self) -> None:
        """Follow every primary until one of them fails."""
        client = self._redis.client()
        store = IndexStore(client)
        await store.check()
        if not isinstance(client, aioredis.RedisCluster):
            self._followers = [_follower(client, store, self._who, self._redis.where)]
            await self._follow(store)
            return
        nodes: list[Any] = []
        try:
            await client.initialize()
            nodes = client.get_primaries()
            self._followers = _cluster_followers(client, store, self._who)
            await self._follow(store, _watch_topology(client))
        finally:
            # A topology refresh drops nodes from the client's cache without closing
            # connections in use at the time: close what this session used, then start
            # the next one on a fresh client.
            await asyncio.gather(*(node.disconnect() for node in nodes), return_exceptions=True)
            await self._redis.close_current()

    async def _follow(self, store: IndexStore, *more: Coroutine[Any, Any, None]) -> None:
        async with asyncio.TaskGroup() as group:
            for follower in self._followers:
                group.create_task(follower.follow())
            group.create_task(self._beat(store))
            group.create_task(self._prune(store))
            for extra in more:
                group.create_task(extra)

    async def _beat(self, store: IndexStore) -> None:
        """Renew the heartbeat while complete (first written as soon as complete)."""
        while True:
            if self.complete:
                await store.beat(self._who, BEAT_TTL_MS)
                self.beating = True
                await asyncio.sleep(BEAT_EVERY)
            else:
                await asyncio.sleep(0.01)

    async def _prune(self, store: IndexStore) -> None:
        while True:
            await asyncio.sleep(PRUNE_EVERY)
            while await store.prune():
                pass

    async def _quiet(self) -> None:
        """Withdraw the heartbeat, so invalidations stop waiting for this indexer."""
        self.beating = False
        try:
            await IndexStore(self._redis.client()).quiet(self._who)
        except Exception as exc:
            logger.debug("withdrawing the indexer's heartbeat failed: %s", exc)

    async def _close(self) -> None:
        await self._quiet()
        await self._redis.close()

    async def start(self) -> None:
        """Run in a background task; return once the index is complete (bound the wait
        with `asyncio.timeout` if needed).

        Raises:
            NotificationsOffError, CacheAuthError: as `run`.
        """
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run())
        while not self.beating:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop following and withdraw the heartbeat; the index is then not trusted."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


def _first(exc: Exception) -> BaseException:
    """The error that ended a session, as the library would raise it: a configuration
    error (notifications off, refused credentials) before anything else."""
    errors = list(exc.exceptions) if isinstance(exc, ExceptionGroup) else [exc]
    found = [_first(e) if isinstance(e, ExceptionGroup) else _error_of(e) for e in errors]
    return next((e for e in found if isinstance(e, ConfigError)), found[0])


def _error_of(exc: Exception) -> BaseException:
    if isinstance(exc, SessionEnded):
        return exc
    if isinstance(exc, redis.exceptions.NoPermissionError):
        error = ConfigError(
            f"Redis refused the indexer a command ({exc}): its user needs SUBSCRIBE, "
            "EVALSHA and EVAL, SCAN, PTTL, INFO, CONFIG GET, SET, GET, UNLINK, RPUSH, "
            "PEXPIRE, TIME and the ZSET reads, on every key and channel"
        )
        error.__cause__ = exc
        return error
    return translate(exc, "index")


def _follower(client: aioredis.Redis, store: IndexStore, who: bytes, where: str) -> Follower:
    pool = client.connection_pool

    async def connect() -> Any:
        conn = pool.make_connection()  # type: ignore[no-untyped-call]
        await conn.connect()
        return conn

    async def scan(cursor: int) -> tuple[int, list[bytes]]:
        found, keys = await client.scan(cursor, count=SCAN_COUNT)
        return found, cast(list[bytes], keys)

    db = int(pool.connection_kwargs.get("db") or 0)
    return Follower(where, connect, client.execute_command, scan, store, who, db)


def _cluster_followers(
    client: aioredis.RedisCluster, store: IndexStore, who: bytes
) -> list[Follower]:
    tags = tags_by_node(client)
    followers = []
    for node in client.get_primaries():

        async def connect(node: Any = node) -> Any:
            conn = node.connection_class(**node.connection_kwargs)
            await conn.connect()
            return conn

        async def command(*args: Any, node: Any = node) -> Any:
            return await client.execute_command(*args, target_nodes=node)

        async def scan(cursor: int, node: Any = node) -> tuple[int, list[bytes]]:
            cursors, keys = await client.execute_command(
                "SCAN", cursor, "COUNT", SCAN_COUNT, target_nodes=node
            )
            return next(iter(cursors.values())), keys

        followers.append(
            Follower(
                f"cluster node {node.name}", connect, command, scan, store, who, 0, tags[node.name]
            )
        )
    return followers


async def _watch_topology(client: aioredis.RedisCluster) -> None:
    """End the session when the Cluster's primaries change (a failover, a new shard)."""
    before = sorted(node.name for node in client.get_primaries())
    while True:
        await asyncio.sleep(TOPOLOGY_EVERY)
        await client.nodes_manager.initialize()
        now = sorted(node.name for node in client.get_primaries())
        if now != before:
            raise SessionEnded(f"the Cluster's primaries changed: {before} -> {now}")
