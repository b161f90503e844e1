"""A bound on the fills that run at once; the rest wait their turn in arrival order."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Protocol


class Turn(Protocol):
    """A place in the queue for admission."""

    def admit(self) -> bool:
        """Its turn has come: start, and say so; False if it is no longer wanted (the
        place passes to the next one)."""
        ...

    def reject(self, error: BaseException) -> None:
        """It will never be admitted (the client is closing)."""
        ...


class Admission:
    """At most `limit` holders at once, admitted first come, first served.

    A burst of ten thousand misses then runs a few dozen fills at a time instead of
    starting them all: the others hold nothing (no task, no connection, no marker) while
    they wait, and the event loop stays free to hear Redis. A turn is admitted by a call
    (`enter`), or awaited (`async with`). Per event loop: entered from a new loop, it
    forgets the holders and waiters of the old one.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._running = 0
        self._waiting: deque[Turn] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        """Turns queued, including any no longer wanted that wait to be skipped."""
        return len(self._waiting)

    def enter(self, turn: Turn, loop: asyncio.AbstractEventLoop) -> None:
        """Admit `turn` now (its `admit()` runs before this returns), or queue it until a
        holder leaves."""
        if loop is not self._loop:
            self._loop, self._running = loop, 0
            self._waiting.clear()
        if self._running < self.limit and not self._waiting:
            self._running += 1
            turn.admit()
        else:
            self._waiting.append(turn)

    def leave(self, loop: asyncio.AbstractEventLoop) -> None:
        """A holder is done: its place goes to the next turn still wanted."""
        if loop is not self._loop:
            return  # a holder of a loop forgotten since
        while self._waiting:
            if self._waiting.popleft().admit():
                return  # the place is handed over: _running stays as it is
        self._running -= 1

    async def __aenter__(self) -> None:
        loop = asyncio.get_running_loop()
        turn = _Awaited(loop.create_future())
        self.enter(turn, loop)
        try:
            await turn.future
        except asyncio.CancelledError:
            if turn.future.done() and not turn.future.cancelled():
                self.leave(loop)  # admitted, then cancelled before running: pass it on
            raise  # a cancelled turn stays queued, skipped when its time comes

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.leave(asyncio.get_running_loop())

    def reject(self, error: Callable[[], BaseException]) -> None:
        """Refuse every waiting turn, each with an `error()` of its own (the client is
        closing); holders keep their place."""
        waiting, self._waiting = self._waiting, deque()
        for turn in waiting:
            turn.reject(error())


class _Awaited:
    """A turn awaited by the task that wants it."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[None]) -> None:
        self.future = future

    def admit(self) -> bool:
        if self.future.done():
            return False  # its task was cancelled while it waited
        self.future.set_result(None)
        return True

    def reject(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)
