"""A bound on the fills that run at once; the rest wait their turn in arrival order."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from types import TracebackType


class Admission:
    """At most `limit` holders at once, admitted first come, first served.

    A burst of ten thousand misses then runs a few dozen fills at a time instead of
    starting them all: the others hold nothing (no connection, no marker) while they
    wait, and the event loop stays free to hear Redis. Per event loop: entered from a new
    loop, it forgets the holders and waiters of the old one.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._running = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return sum(not future.done() for future in self._waiting)

    async def __aenter__(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop, self._running = loop, 0
            self._waiting.clear()
        if self._running < self.limit and not self._waiting:
            self._running += 1
            return
        turn = loop.create_future()
        self._waiting.append(turn)
        try:
            await turn  # a leaving holder hands its place over: _running stays as it is
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._leave()  # admitted, then cancelled before running: pass it on
            raise  # a cancelled turn stays queued, skipped when its time comes

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if asyncio.get_running_loop() is self._loop:
            self._leave()

    def _leave(self) -> None:
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self._running -= 1

    def reject(self, error: Callable[[], BaseException]) -> None:
        """Fail every waiter with an `error()` of its own (the client is closing); holders
        keep their place."""
        waiting, self._waiting = self._waiting, deque()
        for turn in waiting:
            if not turn.done():
                turn.set_exception(error())
