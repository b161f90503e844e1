"""Cache writes (fill markers, stores) pipelined over one dedicated connection.

The write side of what `reader.py` does for reads. A command while the connection is
idle goes out at once from the caller's task; commands issued while a round trip is in
flight queue and go out together, pipelined, when it returns. A burst of misses thus
sets its fill markers and stores its entries in a few round trips instead of one pool
checkout and round trip each, and, like reads, is timed by Redis's silence
(`channel.py`), never by the backlog of our own event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.exceptions

from .._errors import CacheUnavailableError
from .breaker import BreakerOpen
from .channel import Channel

type Arg = bytes | str | int
type Packed = bytes | list[bytes]  # a list is written with writelines(), without a copy

_LARGE = 4096  # bytes: an argument this long is joined, not copied into its header first


_HEADS = [b"$%d\r\n" % n for n in range(256)]  # the length lines of short arguments


def pack(args: tuple[Arg, ...]) -> Packed:
    """One command in RESP, its arguments bytes, str (UTF-8) or int: one buffer, or a
    list of buffers when an argument is large (a payload is sent as it is, not copied)."""
    parts = [b"*%d\r\n" % len(args)]
    large = False
    for arg in args:
        if type(arg) is not bytes:
            if isinstance(arg, str):
                arg = arg.encode()
            elif isinstance(arg, int):
                arg = b"%d" % arg
        size = len(arg)
        if size < 256:  # most are keys and tokens: no formatting
            parts += (_HEADS[size], arg, b"\r\n")
        elif size < _LARGE:
            parts.append(b"$%d\r\n%b\r\n" % (size, arg))
        else:
            parts += (b"$%d\r\n" % size, arg, b"\r\n")
            large = True
    return parts if large else b"".join(parts)


def joined(commands: list[Packed]) -> Packed:
    """Packed commands as one request: one buffer, unless one of them carries a payload."""
    parts: list[bytes] = []
    large = False
    for command in commands:
        if isinstance(command, bytes):
            parts.append(command)
        else:
            parts += command
            large = True
    if large:
        return parts
    return parts[0] if len(parts) == 1 else b"".join(parts)


class PipelinedWriter:
    """Commands through one connection of `client`'s kind, one round trip in flight.

    A command's error reply is raised to its own caller only. A failure of the round
    trip (the connection, a timeout) is raised to every caller in it, as `translate`
    gives it; commands queued behind an outage fail at once instead of waiting out the
    timeout again.
    """

    def __init__(self, client: Any, translate: Callable[[BaseException], BaseException]) -> None:
        self.channel = Channel(client)
        self._translate = translate
        self._queue: list[tuple[list[Packed], asyncio.Future[list[Any]]]] = []
        self._pending = False  # a round trip is in flight or a flush is scheduled
        self._behind_failure = False
        self._batch_task: asyncio.Task[None] | None = None
        self.batches = 0  # round trips made, for tests

    async def call(self, *args: Arg) -> Any:
        """Send one command and return its reply.

        Raises:
            redis.exceptions.ResponseError: Redis replied with an error.
            CacheError: the round trip failed (as `translate` gives it).
        """
        [reply] = await self.many([args])
        if isinstance(reply, Exception):
            raise reply
        return reply

    def many(self, commands: Sequence[tuple[Arg, ...]]) -> Awaitable[list[Any]]:
        """Await it to send `commands` in one round trip (with any others queued); their
        replies, an error reply as the exception in its place.

        Raises:
            CacheError: the round trip failed (as `translate` gives it).
        """
        packed = [pack(command) for command in commands]
        if self._pending:  # a bare future: no coroutine for a command that waits its turn
            future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
            self._queue.append((packed, future))
            return future
        self._pending = True
        return self._direct(packed)

    async def _direct(self, packed: list[Packed]) -> list[Any]:
        """Send now, from the caller's own task (nothing is in flight)."""
        try:
            return await self._send(packed)
        finally:
            self._after()

    async def _send(self, commands: list[Packed]) -> list[Any]:
        self._behind_failure = False
        try:
            request = joined(commands)
            replies: list[Any] = await self.channel.call(request, len(commands), inline_errors=True)
        except Exception as exc:
            error = self._translate(exc)
            self._behind_failure = isinstance(error, CacheUnavailableError)
            if error is exc:
                raise
            raise error from exc
        self.batches += 1
        if any(isinstance(reply, redis.exceptions.ReadOnlyError) for reply in replies):
            # the connection reaches a replica (a failover demoted its primary): the next
            # round trip connects anew, and through Sentinel finds the current primary
            self.channel.retire()
        return replies

    def _after(self) -> None:
        """Send what queued behind the round trip just done, once its callers have run."""
        if self._queue:
            asyncio.get_running_loop().call_soon(self._flush)
        else:
            self._pending = False

    def _flush(self) -> None:
        queued = [(packed, future) for packed, future in self._queue if not future.done()]
        self._queue = []
        if not queued:
            self._pending = False
            return
        if self._behind_failure:
            self._behind_failure = False
            for _, future in queued:
                future.set_exception(BreakerOpen("Redis failed the write ahead"))
            self._pending = False
            return
        self._batch_task = asyncio.get_running_loop().create_task(self._run(queued))

    async def _run(self, queued: list[tuple[list[Packed], asyncio.Future[list[Any]]]]) -> None:
        try:
            replies = await self._send([command for packed, _ in queued for command in packed])
        except BaseException as exc:
            for _, future in queued:
                if future.done():
                    continue
                if isinstance(exc, Exception):
                    future.set_exception(exc)
                else:
                    future.cancel()  # the loop is shutting down: so are its waiters
            if not isinstance(exc, Exception):
                raise
        else:
            at = 0
            for packed, future in queued:
                if not future.done():
                    future.set_result(replies[at : at + len(packed)])
                at += len(packed)
        finally:
            self._after()

    async def close(self) -> None:
        await self.channel.close()
