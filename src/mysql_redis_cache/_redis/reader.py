"""Cache reads over one dedicated connection (`channel.py`), coalesced into MGETs.

A read while the connection is idle goes out at once as a GET, from the caller's task.
Reads that arrive while one is in flight queue (duplicates asked once) and go out
together as one MGET when it returns. After a batch the next one is sent only once the
callers its reply woke have run, so callers that wake together ride together instead of
one going out alone and the rest waiting behind it. No read ever waits for a batch to
fill. A queued read is a bare future for the caller to await, and commands go out
packed by hand: together with the channel's direct use of its connection, most of a
cache hit's cost.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.exceptions

from .._errors import CacheUnavailableError
from .._stats import CacheStats
from .breaker import BreakerOpen
from .channel import Channel
from .local import LocalCache
from .pool import abandon
from .replies import Messages, usable
from .silence import Silence

logger = logging.getLogger("mysql_redis_cache")

INVALIDATE_CHANNEL = b"__redis__:invalidate"

type Waiters = dict[bytes, list[asyncio.Future[bytes | None]]]


class CoalescingReader:
    """GET/MGET through one connection of `client`'s pool, one batch in flight.

    `translate` turns a redis-py error into the error the callers receive. Subclasses
    change how a GET and an MGET reach Redis (`_fetch_one`, `_fetch_many`).
    """

    def __init__(
        self,
        client: Any,
        translate: Callable[[BaseException], BaseException],
        stats: CacheStats | None = None,
        local: LocalCache | None = None,
        heartbeat: float = 0.0,
    ) -> None:
        self._client = client
        self._translate = translate
        self._stats = stats
        self.local = local  # filled from this connection's reads, emptied by its listener
        self._listener: asyncio.Task[None] | None = None
        self._listener_id = 0
        self._heartbeat = heartbeat  # seconds between PINGs to the listener (0: none)
        self._beating: asyncio.Task[None] | None = None
        self._pong: asyncio.Future[None] | None = None
        self._lost_heartbeat = False
        # Keys whose PTTL the next read asks too (refresh-ahead), and `_ttls`: the PTTLs the
        # last read returned, read at `_read_at`, kept until the next read ends. The
        # callers a read wakes run before the next read is sent, so each finds its own.
        self._ttl_keys: set[bytes] = set()
        self._ttls: dict[bytes, int] = {}
        self._read_at = 0.0
        # the read connection, opened by the first read; with a local cache, tracking is
        # turned on before each read that finds it off, and ends with the connection
        self.channel = Channel(client, self._prepare if local is not None else None, self._lost)
        self._queue: Waiters = {}
        self._pending = False  # a flush is scheduled or a batch is in flight
        self._behind_failure = False  # the read just done failed: fail the queued ones too
        self._batch_task: asyncio.Task[None] | None = None  # keeps the running batch alive
        self.batches = 0  # round trips made, for tests

    @property
    def busy(self) -> bool:
        """Whether a read is in flight (a new one joins the next batch)."""
        return self._pending

    def request(self, key: bytes, ttl: bool = False) -> Awaitable[bytes | None]:
        """Await it for the value of `key` (None when absent); `ttl`: read its PTTL with it
        (then `expiry(key)` tells when it expires)."""
        if not self._pending:
            return self._lone(key, ttl)
        if ttl:
            self._ttl_keys.add(key)
        return self._enqueue(key)

    async def request_many(
        self, keys: list[bytes], ttl_keys: list[bytes] | None = None
    ) -> list[bytes | None]:
        """The values of `keys` (and the PTTLs of `ttl_keys` among them): one MGET from
        the caller's own task when the connection is idle, else places in the next batch."""
        if self._pending:
            self._ttl_keys.update(ttl_keys or ())
            return await asyncio.gather(*map(self._enqueue, keys))
        return await self._direct(keys, ttl_keys or [])

    def _enqueue(self, key: bytes) -> asyncio.Future[bytes | None]:
        future = asyncio.get_running_loop().create_future()
        waiters = self._queue.get(key)
        if waiters is None:
            self._queue[key] = [future]
        else:
            waiters.append(future)
        return future

    async def _lone(self, key: bytes, ttl: bool) -> bytes | None:
        """A read while the connection is idle: sent at once, from the caller's own task."""
        [value] = await self._direct([key], [key] if ttl else [])
        return value

    async def _direct(self, keys: list[bytes], ttl_keys: list[bytes]) -> list[bytes | None]:
        """Read `keys` now, from the caller's own task (the connection is idle)."""
        self._pending = True
        try:
            values = await self._fetch(keys, ttl_keys)
        except Exception as exc:
            error = self._failed(exc)
            if error is exc:
                raise
            raise error from exc
        finally:
            if self._queue:  # send what queued behind this read
                asyncio.get_running_loop().call_soon(self._flush)
            else:
                self._pending = False
        self.batches += 1
        return values

    def _failed(self, exc: Exception) -> BaseException:
        """The error a read's callers get; reads queued behind an outage fail fast too."""
        error = self._translate(exc)
        self._behind_failure = isinstance(error, CacheUnavailableError)
        return error

    def _flush(self) -> None:
        if not self._queue:
            self._pending = False
            return
        batch, self._queue = self._queue, {}
        ttl_keys, self._ttl_keys = list(self._ttl_keys), set()
        if self._behind_failure:
            # Redis just failed the read ahead: these fail fast instead of waiting out
            # the timeout again on a new connection (the caller's breaker is open now)
            self._behind_failure = False
            for futures in batch.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(BreakerOpen("Redis failed the read ahead"))
            self._pending = False
            return
        self._batch_task = asyncio.get_running_loop().create_task(self._run(batch, ttl_keys))

    async def _run(self, batch: Waiters, ttl_keys: list[bytes]) -> None:
        keys = list(batch)
        try:
            values = await self._fetch(keys, ttl_keys)
        except BaseException as exc:
            error = self._failed(exc) if isinstance(exc, Exception) else None
            for futures in batch.values():
                for future in futures:
                    if future.done():
                        continue
                    if error is None:
                        future.cancel()  # the loop is shutting down: so are its waiters
                    else:
                        future.set_exception(error)
            if error is None:
                raise
        else:
            self.batches += 1
            if self._stats is not None:
                served = sum(len(futures) for futures in batch.values())
                if served > 1:
                    self._stats.coalesced += served
            for key, value in zip(keys, values, strict=True):
                for future in batch[key]:
                    if not future.done():
                        future.set_result(value)
        finally:
            # Not at once: first the callers just woken run, and those that read again
            # ride in the next batch together instead of one of them going out alone.
            asyncio.get_running_loop().call_soon(self._flush)

    async def _fetch(self, keys: list[bytes], ttl_keys: list[bytes]) -> list[bytes | None]:
        """The values of `keys` in one round trip, with the PTTLs of `ttl_keys` (all of
        them for the local cache, which keeps them)."""
        self._behind_failure = False  # only a failure of this read fails those behind it
        local = self.local
        if local is None:
            if not ttl_keys:
                if len(keys) == 1:
                    return [await self._fetch_one(keys[0])]
                return await self._fetch_many(keys)
            values, ttls = await self._fetch_with_ttls(keys, ttl_keys)
        else:
            local.begin_read()
            values, ttls = await self._fetch_with_ttls(keys, keys)
            local.end_read(keys, values, ttls)
        if ttl_keys:  # kept for `expiry()` only when a caller asked (refresh-ahead)
            self._ttls = dict(zip(keys if local is not None else ttl_keys, ttls, strict=True))
            self._read_at = time.monotonic()
        return values

    def expiry(self, key: bytes) -> float | None:
        """When Redis expires `key` (monotonic; inf: never), as the read that just
        returned it (or the local cache holding it) found; None if unknown."""
        local = self.local
        if local is not None and local.active:
            expiry = local.expiry(key)
            if expiry is not None:
                return expiry
        ttl = self._ttls.get(key)
        if ttl is None or ttl < 0:
            return None if ttl is None else math.inf
        return self._read_at + ttl / 1000

    async def _fetch_one(self, key: bytes) -> bytes | None:
        value: bytes | None = await self.channel.call(
            b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(key), key)
        )
        return value

    async def _fetch_many(self, keys: list[bytes]) -> list[bytes | None]:
        parts = [b"*%d\r\n$4\r\nMGET\r\n" % (len(keys) + 1)]
        parts += [b"$%d\r\n%b\r\n" % (len(key), key) for key in keys]
        values: list[bytes | None] = await self.channel.call(b"".join(parts))
        return values

    async def _fetch_with_ttls(
        self, keys: list[bytes], ttl_keys: list[bytes]
    ) -> tuple[list[bytes | None], list[int]]:
        """The values of `keys` and the PTTLs of `ttl_keys`, in one round trip."""
        if len(keys) == 1:
            parts = [b"*2\r\n$3\r\nGET\r\n"]
        else:
            parts = [b"*%d\r\n$4\r\nMGET\r\n" % (len(keys) + 1)]
        parts += [b"$%d\r\n%b\r\n" % (len(key), key) for key in keys]
        parts += [b"*2\r\n$4\r\nPTTL\r\n$%d\r\n%b\r\n" % (len(key), key) for key in ttl_keys]
        replies = await self.channel.call(b"".join(parts), 1 + len(ttl_keys))
        values = [replies[0]] if len(keys) == 1 else replies[0]
        return values, replies[1:]

    def _lost(self) -> None:
        """The read connection closed, even while idle: its tracking ended with it."""
        if self.local is not None:
            self.local.deactivate()

    async def _prepare(self, conn: Any) -> None:
        if self.local is not None and not self.local.active:
            await self._track(conn)

    async def _track(self, conn: Any) -> None:
        """Have Redis report changes to keys read on `conn`, then use the local cache."""
        assert self.local is not None
        listener_id = await self._listen()
        command = b"".join(conn.pack_command("CLIENT", "TRACKING", "ON", "REDIRECT", listener_id))
        try:
            await self.channel.exchange(conn, command, 1, False)
        except redis.exceptions.ResponseError as exc:  # before Redis 6, or refused
            logger.warning("local cache off: Redis refused CLIENT TRACKING: %s", exc)
            self.local = None
            return
        self.local.active = True
        if self._lost_heartbeat:
            self._lost_heartbeat = False
            logger.warning("Redis answers the local cache's heartbeat again: local cache in use")

    async def _listen(self) -> int:
        """The client id of the connection receiving invalidations, started if need be."""
        if self._listener is not None and not self._listener.done():
            return self._listener_id
        # RESP2, where published messages are plain replies to read (RESP3 would make them
        # pushes that redis-py hands elsewhere), and no timeout: it waits for messages.
        conn = await self.channel.connect(
            protocol=2, socket_timeout=None, socket_connect_timeout=None
        )
        try:
            await conn.send_command("CLIENT", "ID")
            listener_id = int(await conn.read_response())
            await conn.send_command("SUBSCRIBE", INVALIDATE_CHANNEL)
            await conn.read_response()
        except BaseException:
            await asyncio.shield(abandon(conn))
            raise
        self._listener_id = listener_id
        loop = asyncio.get_running_loop()
        silence = Silence(self._heartbeat) if self._heartbeat else None
        direct = self._hear_reports(conn, silence)
        self._listener = loop.create_task(self._receive(conn, direct))
        if silence is not None:
            self._beating = loop.create_task(self._beat(conn, self._listener, silence))
        return listener_id

    def _hear_reports(self, conn: Any, silence: Silence | None) -> bool:
        """Watch the listener's bytes: any counts for the heartbeat, and with hiredis the
        reports are parsed and applied as they arrive. Returns whether they are (else
        `_receive` reads them through redis-py)."""
        reader = getattr(conn, "_reader", None)
        if type(reader) is not asyncio.StreamReader:
            return False  # redis-py's internals changed: reports read through it
        loop = asyncio.get_running_loop()
        feed: Callable[[bytes], None] = reader.feed_data
        direct = usable(conn)
        if direct:
            feed = Messages(self._report, reader.set_exception).feed
        if silence is not None or direct:
            heard = silence.heard if silence is not None else None

            def on_data(data: bytes) -> None:
                if heard is not None:
                    heard(loop.time())
                feed(data)

            reader.feed_data = on_data  # type: ignore[method-assign,assignment]
        return direct

    def _report(self, message: Any) -> None:
        """A message on the listener: a change report, or the heartbeat's answer."""
        if isinstance(message, list) and len(message) == 3 and message[0] == b"message":
            if self.local is not None:
                self.local.invalidate(message[2])
        elif message == [b"pong", b""] and self._pong is not None and not self._pong.done():
            self._pong.set_result(None)

    async def _beat(self, conn: Any, listener: asyncio.Task[None], silence: Silence) -> None:
        """PING the listener every `heartbeat` seconds. A reply that does not come within
        as long (Redis silent: a partition that sent no FIN) means reports may be lost:
        the local cache is emptied and the listener stopped, until Redis answers again."""
        writer = getattr(conn, "_writer", None)
        if type(writer) is not asyncio.StreamWriter:
            return  # redis-py's internals changed: no heartbeat
        loop = asyncio.get_running_loop()
        try:
            while not listener.done():
                await asyncio.sleep(self._heartbeat)
                self._pong = loop.create_future()
                writer.write(b"*1\r\n$4\r\nPING\r\n")
                await silence.bound(self._pong)
        except TimeoutError:
            logger.warning(
                "Redis did not answer the local cache's heartbeat within %.2g s: local "
                "cache emptied, and unused until Redis answers again",
                self._heartbeat,
            )
            self._lost_heartbeat = True
            listener.cancel()
            if self.local is not None:
                self.local.deactivate()
        finally:
            silence.cancel()

    async def _receive(self, conn: Any, direct: bool) -> None:
        """Read the listener's reports through redis-py (or, when they are applied as
        they arrive, just wait for its end); the local cache ends with it."""
        local = self.local
        assert local is not None
        try:
            while True:
                message = await conn.read_response()  # only its end, when `direct`
                if not direct:
                    self._report(message)
        except Exception as exc:
            logger.debug("invalidation listener stopped: %s", exc)
        finally:
            local.deactivate()
            await asyncio.shield(abandon(conn))

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        beating, self._beating = self._beating, None
        for task in (listener, beating):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.channel.close()


class ClusterReader(CoalescingReader):
    """The same coalescing for Redis Cluster: batches go out as MGETs split per slot."""

    async def _fetch_one(self, key: bytes) -> bytes | None:
        value: bytes | None = await self._client.get(key)
        return value

    async def _fetch_many(self, keys: list[bytes]) -> list[bytes | None]:
        values: list[bytes | None] = await self._client.mget_nonatomic(keys)
        return values

    async def _fetch_with_ttls(
        self, keys: list[bytes], ttl_keys: list[bytes]
    ) -> tuple[list[bytes | None], list[int]]:
        values, *ttls = await asyncio.gather(
            self._fetch_many(keys), *(self._client.pttl(key) for key in ttl_keys)
        )
        return values, ttls

    async def close(self) -> None:
        pass  # holds no connection of its own
