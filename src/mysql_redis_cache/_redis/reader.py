"""Cache reads over one dedicated redis-py connection, coalesced into MGETs.

A read while the connection is idle goes out at once as a GET, from the caller's task.
Reads that arrive while one is in flight queue (duplicates asked once) and go out
together as one MGET when it returns. After a batch the next one is sent only once the
callers its reply woke have run, so callers that wake together ride together instead of
one going out alone and the rest waiting behind it. No read ever waits for a batch to
fill.

Using the connection directly skips the pool checkout, retry wrapper and release that
redis-py's client does per command, and a queued read is a bare future for the caller
to await. Commands go out packed by hand, and the connection's timeout is enforced by
one timer per reader instead of the two timeout scopes redis-py opens per command:
together most of a cache hit's cost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.exceptions

from .._errors import CacheUnavailableError
from .._stats import CacheStats
from .breaker import BreakerOpen
from .local import LocalCache
from .replies import Replies, usable

logger = logging.getLogger("mysql_redis_cache")

INVALIDATE_CHANNEL = b"__redis__:invalidate"
# A connection the server closed or reset (restart, CLIENT KILL, idle timeout): the
# command may be sent again on a new one. Timeouts are not among them.
DEAD_CONNECTION = (redis.exceptions.ConnectionError, ConnectionError)

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
    ) -> None:
        self._client = client
        self._translate = translate
        self._stats = stats
        self.local = local  # filled from this connection's reads, emptied by its listener
        self._listener: asyncio.Task[None] | None = None
        self._listener_id = 0
        self._conn: Any = None  # the read connection, opened by the first read
        self._writer: asyncio.StreamWriter | None = None  # its stream, when writable directly
        self._replies: Replies | None = None  # its replies, when parsed as they arrive
        self._timeout: float | None = None  # the longest a request may take, from its settings
        self._started: float | None = None  # loop time the request in flight began
        self._arrived = 0.0  # loop time bytes last arrived on the read connection
        self._reading: asyncio.Task[Any] | None = None  # the task waiting for that request
        self._watch: asyncio.TimerHandle | None = None  # checks the request in flight
        self._expired: asyncio.Task[Any] | None = None  # cancelled by the timer, not its caller
        self._queue: Waiters = {}
        self._pending = False  # a flush is scheduled or a batch is in flight
        self._behind_failure = False  # the read just done failed: fail the queued ones too
        self._batch_task: asyncio.Task[None] | None = None  # keeps the running batch alive
        self.batches = 0  # round trips made, for tests

    def request(self, key: bytes) -> Awaitable[bytes | None]:
        """Await it for the value of `key` (None when absent)."""
        if not self._pending:
            return self._lone(key)
        return self._enqueue(key)

    async def request_many(self, keys: list[bytes]) -> list[bytes | None]:
        """The values of `keys`: one MGET from the caller's own task when the connection is
        idle, else places in the next batch."""
        if self._pending:
            return await asyncio.gather(*map(self._enqueue, keys))
        return await self._direct(keys)

    def _enqueue(self, key: bytes) -> asyncio.Future[bytes | None]:
        future = asyncio.get_running_loop().create_future()
        waiters = self._queue.get(key)
        if waiters is None:
            self._queue[key] = [future]
        else:
            waiters.append(future)
        return future

    async def _lone(self, key: bytes) -> bytes | None:
        """A read while the connection is idle: sent at once, from the caller's own task."""
        [value] = await self._direct([key])
        return value

    async def _direct(self, keys: list[bytes]) -> list[bytes | None]:
        """Read `keys` now, from the caller's own task (the connection is idle)."""
        self._pending = True
        try:
            values = await self._fetch(keys)
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
        self._batch_task = asyncio.get_running_loop().create_task(self._run(batch))

    async def _run(self, batch: Waiters) -> None:
        keys = list(batch)
        try:
            values = await self._fetch(keys)
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

    async def _fetch(self, keys: list[bytes]) -> list[bytes | None]:
        """The values of `keys` in one round trip, kept by the local cache if there is one."""
        self._behind_failure = False  # only a failure of this read fails those behind it
        local = self.local
        if local is None:
            if len(keys) == 1:
                return [await self._fetch_one(keys[0])]
            return await self._fetch_many(keys)
        local.begin_read()
        values, ttls = await self._fetch_with_ttls(keys)
        local.end_read(keys, values, ttls)
        return values

    async def _fetch_one(self, key: bytes) -> bytes | None:
        value: bytes | None = await self._call(
            b"*2\r\n$3\r\nGET\r\n$%d\r\n%b\r\n" % (len(key), key)
        )
        return value

    async def _fetch_many(self, keys: list[bytes]) -> list[bytes | None]:
        parts = [b"*%d\r\n$4\r\nMGET\r\n" % (len(keys) + 1)]
        parts += [b"$%d\r\n%b\r\n" % (len(key), key) for key in keys]
        values: list[bytes | None] = await self._call(b"".join(parts))
        return values

    async def _fetch_with_ttls(self, keys: list[bytes]) -> tuple[list[bytes | None], list[int]]:
        """The values of `keys` and their PTTLs, in one round trip (for the local cache)."""
        if len(keys) == 1:
            parts = [b"*2\r\n$3\r\nGET\r\n"]
        else:
            parts = [b"*%d\r\n$4\r\nMGET\r\n" % (len(keys) + 1)]
        parts += [b"$%d\r\n%b\r\n" % (len(key), key) for key in keys]
        parts += [b"*2\r\n$4\r\nPTTL\r\n$%d\r\n%b\r\n" % (len(key), key) for key in keys]
        replies = await self._call(b"".join(parts), 1 + len(keys))
        values = [replies[0]] if len(keys) == 1 else replies[0]
        return values, replies[1:]

    async def _call(self, command: bytes, replies: int = 1) -> Any:
        """Send packed commands and read their reply (a list of `replies` if more than one),
        within the connection's timeout; once more on a new connection if the one they
        went out on was found dead (reads are safe to repeat)."""
        task = asyncio.current_task()
        may_retry = self._conn is not None
        while True:
            conn = self._conn
            if conn is None:
                self._timeout = self._client.connection_pool.connection_kwargs.get("socket_timeout")
            if self._timeout is not None:
                self._arm(task)
            try:
                if conn is None:
                    # no per-command timeout on this connection: _arm's timer enforces it,
                    # where redis-py's two timeout scopes per command cost more than the GET
                    conn = self._conn = await self._open(socket_timeout=None)
                    self._writer = _plain_writer(conn)
                    self._replies = self._note_arrivals(conn)
                if self.local is not None and not self.local.active:
                    await self._track(conn)
                return await self._exchange(conn, command, replies)
            except BaseException as exc:
                self._started = None  # the request is over: its clean-up is not timed
                # a reply may be left unread (a cancellation, a timeout): never reuse it
                self._conn = self._writer = self._replies = None
                if self.local is not None:
                    self.local.deactivate()  # its tracking ends with the connection
                timed_out = self._expired is task and isinstance(exc, asyncio.CancelledError)
                if timed_out:
                    self._expired = None
                    timed_out = task is not None and task.uncancel() == 0
                if conn is not None:
                    await asyncio.shield(conn.disconnect())
                if timed_out:
                    raise TimeoutError(f"Redis did not answer within {self._timeout} s") from None
                if may_retry and isinstance(exc, DEAD_CONNECTION):
                    may_retry = False
                    logger.debug("Redis read connection was dead (%s): reading on a new one", exc)
                    continue
                raise
            finally:
                self._started = self._reading = None

    async def _exchange(self, conn: Any, command: bytes, replies: int) -> Any:
        """Send the packed `command` on `conn` and read its reply (a list of `replies` if
        more than one)."""
        writer, parsed = self._writer, self._replies
        if parsed is not None:
            assert writer is not None
            replied = parsed.expect(replies)
            writer.write(command)
            if writer.transport.get_write_buffer_size():
                await writer.drain()
            return await replied
        if writer is None:
            await conn.send_packed_command(command)
        else:
            writer.write(command)
            await writer.drain()
        if replies == 1:
            return await conn.read_response()
        return [await conn.read_response() for _ in range(replies)]

    def _arm(self, task: asyncio.Task[Any] | None) -> None:
        """Note when the request starts; one timer, re-armed as it goes, checks them all."""
        loop = asyncio.get_running_loop()
        self._started = loop.time()
        self._reading = task
        if self._watch is None:
            assert self._timeout is not None
            self._watch = loop.call_at(self._started + self._timeout, self._expire)

    def _note_arrivals(self, conn: Any) -> Replies | None:
        """Watch what arrives on `conn`: bytes (the timeout bounds silence, not a long
        reply), and its end (the local cache stops at once: tracking ended with it).

        Returns the Replies its bytes are parsed into from now on, when that is possible
        (else redis-py reads them, and None).
        """
        reader = getattr(conn, "_reader", None)
        if type(reader) is not asyncio.StreamReader:
            return None  # redis-py's internals changed: the timeout bounds the whole request
        loop = asyncio.get_running_loop()
        feed_eof, set_exception = reader.feed_eof, reader.set_exception
        feed_data: Callable[[bytes], None] = reader.feed_data
        replies = None
        if self._writer is not None and usable(conn):
            replies = Replies(type(conn._parser).parse_error)
            feed_data = replies.feed

        def on_data(data: bytes) -> None:
            self._arrived = loop.time()
            feed_data(data)

        def on_eof() -> None:
            self._lost(conn)
            if replies is not None:
                replies.end(redis.exceptions.ConnectionError("Connection closed by server."))
            feed_eof()

        def on_exception(exc: Exception) -> None:
            self._lost(conn)
            if replies is not None:
                replies.end(exc)
            set_exception(exc)

        # instance attributes of this one reader: asyncio's protocol calls them
        reader.feed_data = on_data  # type: ignore[method-assign,assignment]
        reader.feed_eof = on_eof  # type: ignore[method-assign]
        reader.set_exception = on_exception  # type: ignore[method-assign]
        return replies

    def _lost(self, conn: Any) -> None:
        """The read connection closed, even while idle: its tracking ended with it."""
        if conn is self._conn and self.local is not None:
            self.local.deactivate()

    def _expire(self) -> None:
        """Cancel the request in flight if Redis has been silent for the timeout (nothing
        since it was sent, or since its last bytes arrived); else check again later."""
        self._watch = None
        started, task, timeout = self._started, self._reading, self._timeout
        if started is None or task is None or timeout is None:
            return  # idle: the next request arms the timer again
        started = max(started, self._arrived)
        loop = task.get_loop()
        if loop.time() < started + timeout:
            self._watch = loop.call_at(started + timeout, self._expire)
            return
        self._expired = task
        task.cancel()

    async def _open(self, **overrides: Any) -> Any:
        """A new connection with the client's settings, `overrides` applied."""
        pool = self._client.connection_pool
        conn = pool.connection_class(**{**pool.connection_kwargs, **overrides})
        try:
            await conn.connect()
        except BaseException:
            await conn.disconnect()
            raise
        return conn

    async def _track(self, conn: Any) -> None:
        """Have Redis report changes to keys read on `conn`, then use the local cache."""
        assert self.local is not None
        listener_id = await self._listen()
        command = b"".join(conn.pack_command("CLIENT", "TRACKING", "ON", "REDIRECT", listener_id))
        try:
            await self._exchange(conn, command, 1)
        except redis.exceptions.ResponseError as exc:  # before Redis 6, or refused
            logger.warning("local cache off: Redis refused CLIENT TRACKING: %s", exc)
            self.local = None
            return
        self.local.active = True

    async def _listen(self) -> int:
        """The client id of the connection receiving invalidations, started if need be."""
        if self._listener is not None and not self._listener.done():
            return self._listener_id
        # RESP2, where published messages are plain replies to read (RESP3 would make them
        # pushes that redis-py hands elsewhere), and no timeout: it waits for messages.
        conn = await self._open(protocol=2, socket_timeout=None)
        try:
            await conn.send_command("CLIENT", "ID")
            listener_id = int(await conn.read_response())
            await conn.send_command("SUBSCRIBE", INVALIDATE_CHANNEL)
            await conn.read_response()
        except BaseException:
            await conn.disconnect()
            raise
        self._listener_id = listener_id
        self._listener = asyncio.get_running_loop().create_task(self._receive(conn))
        return listener_id

    async def _receive(self, conn: Any) -> None:
        local = self.local
        assert local is not None
        try:
            while True:
                message = await conn.read_response()
                if isinstance(message, list) and len(message) == 3 and message[0] == b"message":
                    local.invalidate(message[2])
        except Exception as exc:
            logger.debug("invalidation listener stopped: %s", exc)
        finally:
            local.deactivate()
            await conn.disconnect()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if conn is not None:
            await conn.disconnect()


def _plain_writer(conn: Any) -> asyncio.StreamWriter | None:
    """The stream under a redis-py connection, if commands may be written to it directly.

    send_packed_command() writes a list through writelines(), which asyncio sends with
    sendmsg() and extra bookkeeping: ~10 us more per GET than one write(). Not when
    redis-py must ping the connection first (health_check_interval), or if its
    internals change.
    """
    writer = getattr(conn, "_writer", None)
    if type(writer) is not asyncio.StreamWriter or conn.health_check_interval:
        return None
    return writer


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
