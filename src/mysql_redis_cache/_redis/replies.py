"""Replies parsed from a connection's bytes as they arrive, handed to the waiting request.

redis-py reads a reply through five coroutine frames (connection, parser, socket read,
stream read, its wait), resumed for every chunk. Here the bytes go straight from the
socket's protocol into hiredis' parser, and a reply resolves one future: a single
wake-up for the caller. Used only where redis-py chose hiredis itself, on the reader's
own connection, with one request in flight at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import redis.exceptions

logger = logging.getLogger("mysql_redis_cache")

try:
    import hiredis
except ImportError:  # pragma: no cover - hiredis comes with the `fast` extra
    hiredis = None  # type: ignore[assignment]

_INCOMPLETE = object()  # what the parser returns until a whole reply has arrived


def usable(conn: Any) -> bool:
    """Whether replies on redis-py connection `conn` may be parsed here: redis-py parses
    with hiredis (so hiredis is installed and the user did not pick a parser)."""
    if hiredis is None:
        return False
    from redis._parsers import _AsyncHiredisParser

    return type(getattr(conn, "_parser", None)) is _AsyncHiredisParser


class Replies:
    """The replies to one connection's requests, parsed from its bytes by `feed`.

    `expect(n)` before sending a request: its future gets the reply (a list of `n` for
    more than one), or the error Redis replied (`inline_errors`: errors stay in the
    list), or ConnectionError if the connection ends first or sends what is not RESP.
    """

    __slots__ = ("_count", "_got", "_inline", "_parser", "_waiting", "lost")

    def __init__(self, parse_error: Callable[[str], Exception]) -> None:
        assert hiredis is not None
        self._parser = hiredis.Reader(
            protocolError=redis.exceptions.InvalidResponse,
            replyError=parse_error,
            notEnoughData=_INCOMPLETE,
        )
        self._waiting: asyncio.Future[Any] | None = None
        self._count = 0
        self._inline = False
        self._got: list[Any] = []
        self.lost: BaseException | None = None  # why the connection ended, once it has

    def expect(self, count: int = 1, inline_errors: bool = False) -> asyncio.Future[Any]:
        """The future of the next request's reply, or `count` replies as a list (error
        replies in it as exceptions with `inline_errors`, else raised)."""
        if self.lost is not None:
            raise redis.exceptions.ConnectionError(f"Redis connection lost: {self.lost}")
        if self._waiting is not None and not self._waiting.done():
            # never, with one request at a time; if it did, its replies could be mixed up
            raise redis.exceptions.ConnectionError("a reply is still awaited on this connection")
        self._waiting = asyncio.get_running_loop().create_future()
        self._count = count
        self._inline = inline_errors
        self._got = []
        return self._waiting

    def feed(self, data: bytes) -> None:
        """Parse `data`, and resolve the waiting future once its replies are complete."""
        parser = self._parser
        parser.feed(data)
        while True:
            try:
                reply = parser.gets()
            except redis.exceptions.InvalidResponse as exc:
                self.end(redis.exceptions.ConnectionError(f"Redis sent no valid reply: {exc}"))
                return
            if reply is _INCOMPLETE:
                return
            if isinstance(reply, hiredis.PushNotification):
                logger.debug("ignored a push message on the read connection: %r", reply)
                continue
            waiting = self._waiting
            if waiting is None or waiting.done():
                # a reply nobody asked for: the replies after it would go to the wrong
                # requests, so the connection must not be used again
                self.end(redis.exceptions.ConnectionError("Redis sent an unrequested reply"))
                return
            if self._count > 1 or self._inline:
                self._got.append(reply)
                if len(self._got) < self._count:
                    continue
                result: Any = self._got
                error = None
                if not self._inline:
                    error = next((r for r in result if isinstance(r, Exception)), None)
            else:
                result = reply
                error = reply if isinstance(reply, Exception) else None
            self._waiting = None
            if error is not None:
                waiting.set_exception(error)
            else:
                waiting.set_result(result)

    def end(self, exc: BaseException) -> None:
        """The connection ended (or must not be used): fail the waiting request."""
        if self.lost is None:
            self.lost = exc
        waiting, self._waiting = self._waiting, None
        if waiting is not None and not waiting.done():
            waiting.set_exception(
                exc
                if isinstance(exc, redis.exceptions.ConnectionError)
                else redis.exceptions.ConnectionError(f"Redis connection lost: {exc}")
            )


class Messages:
    """Messages pushed on a subscribed connection (RESP2), parsed from its bytes as they
    arrive and handed to `on_message` in the same callback: a change report acts before
    any task the same poll woke, instead of waiting for a listening task's turn."""

    __slots__ = ("_on_error", "_on_message", "_parser")

    def __init__(
        self, on_message: Callable[[Any], None], on_error: Callable[[Exception], None]
    ) -> None:
        assert hiredis is not None
        self._parser = hiredis.Reader(
            protocolError=redis.exceptions.InvalidResponse, notEnoughData=_INCOMPLETE
        )
        self._on_message = on_message
        self._on_error = on_error

    def feed(self, data: bytes) -> None:
        parser = self._parser
        parser.feed(data)
        while True:
            try:
                message = parser.gets()
            except redis.exceptions.InvalidResponse as exc:
                self._on_error(
                    redis.exceptions.ConnectionError(f"Redis sent no valid reply: {exc}")
                )
                return
            if message is _INCOMPLETE:
                return
            self._on_message(message)
