"""Timeouts that measure Redis's silence, not our own event loop's backlog.

A plain timeout (redis-py's, asyncio's) counts every second since a command went out.
When the loop is busy, say with thousands of callers waking at once, a reply that Redis
sent in microseconds sits in the socket until the loop next polls, and the timeout fires
first: the cache reads its own backlog as a Redis outage. Worse, asyncio runs a timer
due in the same loop iteration as the reply's arrival before the task the reply woke,
so even a reply that did arrive in time is lost to the timer.

`Silence` counts a request as timed out only when, at a check that runs after the loop
polled its sockets since the timeout ran out, for the whole timeout:
- no bytes arrived on the connection (`heard`, called from its data callback);
- the bytes we had yet to send did not shrink (Redis reads nothing: it is stuck too);
- the waiting task was blocked on a future not yet done (a connect that completed, or a
  reply that was parsed, leaves the task runnable: that is progress, not silence), and,
  in a request of several steps (a connect and its handshake), on the same one.
So a busy loop only delays the verdict; it never produces one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

_UNKNOWN = object()  # a task type without asyncio's `_fut_waiter`: time and bytes decide
_FRESH = object()  # no wait of the request seen yet


class Silence:
    """Bounds how long Redis may stay silent while one task at a time waits on a connection.

    One timer serves every request: it is re-armed as it goes instead of being made and
    cancelled per request (a timer per request costs as much as a cached GET's parse).
    """

    __slots__ = (
        "_arrived",
        "_expired",
        "_seen",
        "_sent",
        "_started",
        "_steps",
        "_task",
        "_unsent",
        "_watch",
        "timeout",
    )

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self._started = 0.0  # loop time the request in flight began, or last made progress
        self._arrived = 0.0  # loop time bytes last arrived
        self._task: asyncio.Task[Any] | None = None  # the task waiting on the request
        self._unsent: Callable[[], int] | None = None  # bytes we have yet to send
        self._sent = 0  # what _unsent said at the last look
        self._seen: object = _FRESH  # the future the task waited on at the last look
        self._steps = False  # the request awaits one future after another
        self._watch: asyncio.TimerHandle | None = None
        self._expired: asyncio.Task[Any] | None = None  # cancelled by the timer, not its caller

    def heard(self, now: float) -> None:
        """Bytes arrived at loop time `now`: Redis is not silent (call from the
        connection's data callback)."""
        self._arrived = now

    async def bound[T](
        self,
        request: Awaitable[T],
        unsent: Callable[[], int] | None = None,
        *,
        steps: bool = False,
    ) -> T:
        """Await `request` in the current task, raising TimeoutError if Redis stays silent
        for the timeout. `unsent` gives the bytes still queued to send, if any; `steps`
        says the request is several round trips (each new wait is progress).

        Raises:
            TimeoutError: Redis was silent for the timeout.
        """
        if self.timeout is None:
            return await request
        task = asyncio.current_task()
        self.start(task, unsent, steps=steps)
        try:
            return await request
        except asyncio.CancelledError:
            if self.expired(task):
                raise TimeoutError(f"Redis was silent for {self.timeout} s") from None
            raise
        finally:
            self.stop()

    def start(
        self,
        task: asyncio.Task[Any] | None,
        unsent: Callable[[], int] | None,
        *,
        steps: bool = False,
    ) -> None:
        """A request (or its next phase) begins in `task`, for callers that manage the
        request themselves."""
        if self.timeout is None or task is None:
            return
        loop = task.get_loop()
        self._started = loop.time()
        self._task = task
        self._unsent = unsent
        self._sent = 0  # `wrote()` reads it once the request is handed over
        self._seen = _FRESH
        self._steps = steps
        if self._watch is None:
            self._watch = loop.call_at(self._started + self.timeout, self._check)

    def wrote(self) -> None:
        """The request was handed to the transport: what it has yet to send from now on
        is the measure of our sending progress."""
        if self._unsent is not None:
            self._sent = self._unsent()

    def stop(self) -> None:
        """The request is over; its clean-up is not timed."""
        self._task = None
        self._unsent = None

    def expired(self, task: asyncio.Task[Any] | None) -> bool:
        """Whether `task`'s CancelledError came from this timer (and from nothing else)."""
        if task is None or self._expired is not task:
            return False
        self._expired = None
        return task.uncancel() == 0

    def cancel(self) -> None:
        """Stop the timer (the connection is closing)."""
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def _check(self) -> None:
        """The timer: Redis looks silent for the timeout unless the request progressed."""
        self._watch = None
        task = self._task
        if task is None or self.timeout is None:
            return  # idle: the next request arms the timer again
        if not self._silent(task):
            return
        # Silent so far, but the loop may not have polled since the request went out: one
        # long iteration can send it and then run this overdue timer. Look again after the
        # next poll: two hops through the ready queue always straddle one, in asyncio's
        # loop (I/O callbacks run after the callbacks already queued) as in uvloop's
        # (timers, then queued callbacks, then the poll).
        loop = task.get_loop()
        loop.call_soon(loop.call_soon, self._confirm, task)

    def _confirm(self, task: asyncio.Task[Any]) -> None:
        """After a poll: cancel the waiting task if Redis is still silent."""
        if task is not self._task or not self._silent(task):
            return
        self._expired = task
        task.cancel()

    def _silent(self, task: asyncio.Task[Any]) -> bool:
        """Whether Redis has been silent on `task`'s request for the timeout; if not, the
        timer is armed for when it would have been."""
        assert self.timeout is not None
        loop = task.get_loop()
        now = loop.time()
        if self._progressed(task):
            self._started = now
        since = max(self._started, self._arrived)
        if now >= since + self.timeout:
            return True
        if self._watch is None:
            self._watch = loop.call_at(since + self.timeout, self._check)
        return False

    def _progressed(self, task: asyncio.Task[Any]) -> bool:
        """Whether the request moved since it began or was last checked, other than by
        bytes arriving: our unsent bytes shrank, the task can run, or (in a request of
        several steps) it waits on something new."""
        moved = False
        unsent = self._unsent
        if unsent is not None:
            left = unsent()
            if left != self._sent:
                self._sent = left
                moved = True
        waiter: Any = getattr(task, "_fut_waiter", _UNKNOWN)
        if waiter is _UNKNOWN:
            return moved
        if waiter is None or waiter.done():
            return True
        if waiter is not self._seen:
            # the first wait seen of a one-step request is the one it began with
            moved = moved or self._steps or self._seen is not _FRESH
            self._seen = waiter
        return moved
