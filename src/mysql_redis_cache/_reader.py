"""Cache reads over one dedicated redis-py connection, coalescing concurrent GETs into MGET.

A lone read goes out at once as a GET. Reads that arrive while one is in flight wait
for it, then go out together as one MGET (duplicates asked once), and so on: under load
every round trip carries the whole queue, and no request ever waits for a batch to fill.
Using the connection directly skips the pool checkout, retry wrapper and release that
redis-py's client does per command, most of its per-call cost.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ._stats import CacheStats


class CoalescingReader:
    """GET/MGET through one connection of `client`'s pool, one request in flight.

    Subclasses change how a GET and an MGET reach Redis (`_fetch_one`, `_fetch_many`).
    """

    def __init__(self, client: Any, stats: CacheStats | None = None) -> None:
        self._client = client
        self._stats = stats
        self._conn: Any = None
        self._busy = False
        self._queue: dict[bytes, list[asyncio.Future[bytes | None]]] = {}
        self._batch_task: asyncio.Future[None] | None = None  # keeps the running MGET alive
        self.batches = 0  # MGETs sent, for tests and stats

    async def get(self, key: bytes) -> bytes | None:
        if self._busy:
            future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
            self._queue.setdefault(key, []).append(future)
            return await future
        self._busy = True
        try:
            value = await self._fetch_one(key)
        finally:
            self._busy = False
            if self._queue:
                self._start_batch()
        return value

    def _start_batch(self) -> None:
        self._busy = True
        batch, self._queue = self._queue, {}
        self._batch_task = asyncio.ensure_future(self._mget(batch))

    async def _mget(self, batch: dict[bytes, list[asyncio.Future[bytes | None]]]) -> None:
        keys = list(batch)
        try:
            values = await self._fetch_many(keys)
        except BaseException as exc:
            for futures in batch.values():
                for future in futures:
                    if future.done():
                        continue
                    if isinstance(exc, asyncio.CancelledError):
                        future.cancel()  # the loop is shutting down: so are its waiters
                    else:
                        future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            self.batches += 1
            if self._stats is not None:
                self._stats.coalesced += sum(len(futures) for futures in batch.values())
            for key, value in zip(keys, values, strict=True):
                for future in batch[key]:
                    if not future.done():
                        future.set_result(value)
        finally:
            self._busy = False
            if self._queue:
                self._start_batch()

    async def _fetch_one(self, key: bytes) -> bytes | None:
        value: bytes | None = await self._call("GET", key)
        return value

    async def _fetch_many(self, keys: list[bytes]) -> list[bytes | None]:
        values: list[bytes | None] = await self._call("MGET", *keys)
        return values

    async def _call(self, *args: Any) -> Any:
        if self._conn is None:
            pool: Any = self._client.connection_pool  # get_connection() is untyped
            self._conn = await pool.get_connection()
        conn = self._conn
        try:
            await conn.send_command(*args)
            return await conn.read_response()
        except BaseException:
            # a reply may be left unread (a cancellation, a timeout): never reuse it
            self._conn = None
            await asyncio.shield(self._drop(conn))
            raise

    async def _drop(self, conn: Any) -> None:
        await conn.disconnect()
        await self._client.connection_pool.release(conn)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._client.connection_pool.release(conn)


class ClusterReader(CoalescingReader):
    """The same coalescing for Redis Cluster: batches go out as MGETs split per slot."""

    async def _fetch_one(self, key: bytes) -> bytes | None:
        value: bytes | None = await self._client.get(key)
        return value

    async def _fetch_many(self, keys: list[bytes]) -> list[bytes | None]:
        values: list[bytes | None] = await self._client.mget_nonatomic(keys)
        return values

    async def close(self) -> None:
        pass  # holds no connection of its own
