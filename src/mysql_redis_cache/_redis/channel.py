"""One dedicated Redis connection for the cache path: packed commands in, replies out.

The connection is opened from the client's own settings on first use and used by one
request at a time. Using it directly skips the pool checkout, retry wrapper and release
that redis-py does per command. With hiredis, replies are parsed from the socket's bytes
as they arrive (`replies.py`). How long a request may take is bounded by Redis's
silence (`silence.py`), never by how busy our event loop is. A request whose connection
turns out dead (a restart, CLIENT KILL, an idle timeout) is sent once more on a new one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.exceptions

from .._errors import ClientClosedError
from .pool import abandon, unsent
from .replies import Replies, usable
from .silence import Silence

logger = logging.getLogger("mysql_redis_cache")

# A connection the server closed or reset (restart, CLIENT KILL, idle timeout): the
# command may be sent again on a new one. Timeouts are not among them.
DEAD_CONNECTION = (redis.exceptions.ConnectionError, ConnectionError)


class Channel:
    """A connection like `client`'s, used by one request at a time.

    `prepare(conn)` runs before each request (the read side turns tracking on there);
    `lost()` runs when the connection ends, even while idle.
    """

    def __init__(
        self,
        client: Any,
        prepare: Callable[[Any], Awaitable[None]] | None = None,
        lost: Callable[[], None] | None = None,
    ) -> None:
        self._client = client
        self._prepare = prepare
        self._on_lost = lost
        self.silence = Silence(None)  # its timeout is read from the settings on first open
        self._conn: Any = None
        self._retired = False  # replace the connection before the next request
        self._closed = False  # close() ran: it never connects again
        self.writer: asyncio.StreamWriter | None = None  # its stream, when writable directly
        self.replies: Replies | None = None  # its replies, when parsed as they arrive

    @property
    def open(self) -> bool:
        return self._conn is not None

    async def call(
        self, command: bytes | list[bytes], replies: int = 1, *, inline_errors: bool = False
    ) -> Any:
        """Send the packed `command` (a list: its buffers in turn) and return its reply
        (a list of `replies` if more than one; with `inline_errors`, error replies are in
        that list as exceptions instead of raised).

        Raises:
            TimeoutError: Redis was silent for the timeout.
            redis.exceptions.RedisError, OSError: what redis-py or the socket raised.
        """
        task = asyncio.current_task()
        if self._closed:
            raise ClientClosedError("the client was closed while this call ran")
        if self._retired:
            self._retired = False
            await self._drop()
        may_retry = self._conn is not None
        silence = self.silence
        while True:
            conn = self._conn
            if conn is None:
                silence.timeout = self._client.connection_pool.connection_kwargs.get(
                    "socket_timeout"
                )
            # a connect and its handshake, or a preparation, take several round trips
            stepped = conn is None or self._prepare is not None
            silence.start(task, self._unsent, steps=stepped)
            try:
                if conn is None:
                    # no timeouts of redis-py's own: the silence timer bounds the connect
                    # and every request, where a plain timeout counts our loop's backlog
                    conn = self._conn = await self.connect(
                        socket_timeout=None, socket_connect_timeout=None
                    )
                    if self._closed:  # while it connected
                        raise ClientClosedError("the client was closed while this call ran")
                    self.writer = _plain_writer(conn)
                    self.replies = self._note_arrivals(conn)
                if self._prepare is not None:
                    await self._prepare(conn)
                if stepped:
                    silence.start(task, self._unsent)  # the request itself: one step
                return await self.exchange(conn, command, replies, inline_errors)
            except BaseException as exc:
                silence.stop()
                # a reply may be left unread (a cancellation, a timeout): never reuse it
                self._conn = self.writer = self.replies = None
                if self._on_lost is not None:
                    self._on_lost()
                timed_out = isinstance(exc, asyncio.CancelledError) and silence.expired(task)
                if conn is not None:
                    await asyncio.shield(abandon(conn))
                if timed_out:
                    raise TimeoutError(f"Redis was silent for {silence.timeout} s") from None
                if self._closed:  # close() cut it short: not Redis failing, and no retry
                    raise ClientClosedError("the client was closed while this call ran") from exc
                if may_retry and isinstance(exc, DEAD_CONNECTION):
                    may_retry = False
                    logger.debug("Redis connection was dead (%s): sending on a new one", exc)
                    continue
                raise
            finally:
                silence.stop()

    async def exchange(
        self, conn: Any, command: bytes | list[bytes], replies: int, inline_errors: bool
    ) -> Any:
        """Send the packed `command` on `conn` and read its reply (a list of `replies` if
        more than one)."""
        writer, parsed = self.writer, self.replies
        if parsed is not None:
            assert writer is not None
            replied = parsed.expect(replies, inline_errors)
            if isinstance(command, bytes):
                writer.write(command)
            else:
                writer.writelines(command)
            self.silence.wrote()
            if writer.transport.get_write_buffer_size():
                await writer.drain()
            return await replied
        if writer is None:
            await conn.send_packed_command(command)
        else:
            if isinstance(command, bytes):
                writer.write(command)
            else:
                writer.writelines(command)
            self.silence.wrote()
            await writer.drain()
        if replies == 1 and not inline_errors:
            return await conn.read_response()
        got: list[Any] = []
        for _ in range(replies):
            try:
                got.append(await conn.read_response())
            except redis.exceptions.ResponseError as exc:
                if not inline_errors:
                    raise
                got.append(exc)
        return got

    def retire(self) -> None:
        """Open a new connection for the next request (this one reaches the wrong server)."""
        self._retired = True

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self.writer = self.replies = None
        if conn is not None:
            if self._on_lost is not None:
                self._on_lost()
            await asyncio.shield(abandon(conn))

    def _unsent(self) -> int:
        """Bytes written to the connection that have yet to leave for Redis."""
        return unsent(self._conn)

    def _note_arrivals(self, conn: Any) -> Replies | None:
        """Watch what arrives on `conn`: bytes (the timeout bounds silence, not a long
        reply), and its end (`lost` runs at once).

        Returns the Replies its bytes are parsed into from now on, when that is possible
        (else redis-py reads them, and None).
        """
        reader = getattr(conn, "_reader", None)
        if type(reader) is not asyncio.StreamReader:
            return None  # redis-py's internals changed: bytes arriving go unnoticed
        loop = asyncio.get_running_loop()
        feed_eof, set_exception = reader.feed_eof, reader.set_exception
        feed_data: Callable[[bytes], None] = reader.feed_data
        replies = None
        if self.writer is not None and usable(conn):
            replies = Replies(type(conn._parser).parse_error)
            feed_data = replies.feed
        heard = self.silence.heard

        def on_data(data: bytes) -> None:
            heard(loop.time())
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
        """`conn` closed, even while idle."""
        if conn is self._conn and self._on_lost is not None:
            self._on_lost()

    async def connect(self, **overrides: Any) -> Any:
        """A new connection with the client's settings, `overrides` applied."""
        pool = self._client.connection_pool
        conn = pool.connection_class(**{**pool.connection_kwargs, **overrides})
        try:
            await conn.connect()
        except BaseException:
            await asyncio.shield(abandon(conn))
            raise
        return conn

    async def close(self) -> None:
        """Disconnect for good: requests in flight or made later get ClientClosedError."""
        self._closed = True
        conn, self._conn = self._conn, None
        self.writer = self.replies = None
        self.silence.cancel()
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
