"""Resources that belong to one event loop: one per running loop, however many run at once.

Connections from redis-py and the MySQL drivers are tied to the loop that opened them. A
client made at module level sees a new loop on every `asyncio.run()` (AWS Lambda, Celery
tasks), and several loops at once when threads run their own (Django's `async_to_sync`
under a threaded WSGI server). So each resource is kept with its loop, never touched
from another thread, and closed inside its loop: when the loop shuts down
(`asyncio.run()` finalizes async generators before closing the loop, and a suspended
sentinel generator per loop is the hook for that), or when `close()` asks that loop to.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from typing import Any

logger = logging.getLogger("mysql_redis_cache")

_running_loop = asyncio._get_running_loop  # None outside a loop; no exception to catch


class _Slot[T]:
    __slots__ = ("closed", "loop", "sentinel", "value")

    def __init__(self, loop: asyncio.AbstractEventLoop, value: T) -> None:
        self.loop = loop
        self.value = value
        self.sentinel: AsyncGenerator[None] | None = None
        self.closed = False  # its closer ran, or runs now


class LoopBound[T]:
    """One `T` per running event loop, made by `factory` and closed by `closer` in its loop.

    Safe from any thread: a loop only ever sees its own value.
    """

    def __init__(self, factory: Callable[[], T], closer: Callable[[T], Awaitable[None]]) -> None:
        self._factory = factory
        self._closer = closer
        self._lock = threading.Lock()
        self._slots: dict[asyncio.AbstractEventLoop, _Slot[T]] = {}
        self._unbound: T | None = None  # made outside any loop, for the first loop to adopt

    @property
    def current(self) -> T | None:
        """The value for the running loop, if one was made (never makes one)."""
        loop = _running_loop()
        if loop is None:
            return self._unbound
        slot = self._slots.get(loop)
        return None if slot is None else slot.value

    def get(self) -> T:
        """The value for the running loop, made on first use in that loop.

        Outside a running loop the value is made unbound; the first loop to use it
        adopts it (nothing in redis-py's client or our pool touches a loop before use).
        """
        loop = _running_loop()
        if loop is not None:
            slot = self._slots.get(loop)
            return self._bind(loop) if slot is None else slot.value
        with self._lock:
            if self._unbound is None:
                self._unbound = self._factory()
            return self._unbound

    def loops(self) -> list[asyncio.AbstractEventLoop]:
        """The loops that hold a value now."""
        with self._lock:
            return list(self._slots)

    def _bind(self, loop: asyncio.AbstractEventLoop) -> T:
        with self._lock:
            for gone in [other for other in self._slots if other.is_closed()]:
                # closed without finalizing its async generators (a bare loop.close()):
                # nothing can run there any more, so its connections are only dropped
                logger.debug("dropping the connections of an event loop closed unfinalized")
                del self._slots[gone]
            value, self._unbound = self._unbound, None
            slot = _Slot(loop, self._factory() if value is None else value)
            self._slots[loop] = slot
        slot.sentinel = sentinel = self._watch(slot)
        # Run the sentinel to its first yield right now, inside this loop, so the loop
        # registers it and finalizes it at shutdown (a task could be cancelled unstarted).
        with contextlib.suppress(StopIteration):
            sentinel.__anext__().send(None)
        return slot.value

    def _forget(self, slot: _Slot[T]) -> None:
        """Take `slot` off its loop: a later get() there makes a new value."""
        with self._lock:
            if self._slots.get(slot.loop) is slot:
                del self._slots[slot.loop]

    async def _watch(self, slot: _Slot[T]) -> AsyncGenerator[None]:
        try:
            yield
        finally:
            # runs in the owning loop when it shuts down (shutdown_asyncgens)
            self._forget(slot)
            if not slot.closed:
                slot.closed = True
                await self._closer(slot.value)

    async def _close(self, slot: _Slot[T]) -> None:
        """Close `slot`'s value now, inside its loop."""
        self._forget(slot)
        if slot.closed:
            return
        slot.closed = True
        try:
            await self._closer(slot.value)
        except BaseException:
            slot.closed = False  # cut short (its loop is shutting down): the sentinel closes it
            raise
        if slot.sentinel is not None:
            await slot.sentinel.aclose()  # finished: its loop no longer finalizes it

    async def close_current(self) -> None:
        """Close the value of the running loop now, if any."""
        slot = self._slots.get(asyncio.get_running_loop())
        if slot is not None:
            await self._close(slot)

    async def close(self, wait: float = 5.0) -> None:
        """Close the values of every loop: this loop's here, each other one inside its
        own loop (waiting up to `wait` seconds for those)."""
        with self._lock:
            slots = list(self._slots.values())
        await asyncio.gather(
            *(run_in(slot.loop, functools.partial(self._close, slot), wait) for slot in slots)
        )


async def run_in(
    loop: asyncio.AbstractEventLoop,
    work: Callable[[], Coroutine[Any, Any, None]],
    wait: float,
) -> None:
    """Run `work()` in `loop`: here if it is the running loop; else handed to that loop's
    thread and awaited up to `wait` seconds; or, for a loop that is not running, left
    to run when it next does. A loop that is closed has nothing left to run it."""
    if loop is asyncio.get_running_loop():
        await work()
        return
    if loop.is_closed():
        return
    coro = work()
    try:
        future = asyncio.run_coroutine_threadsafe(coro, loop)
    except RuntimeError:  # closed meanwhile
        coro.close()
        return
    if not loop.is_running():
        return
    done, _ = await asyncio.wait([asyncio.wrap_future(future)], timeout=wait)
    for outcome in done:
        if not outcome.cancelled() and outcome.exception() is not None:
            logger.debug("closing in another event loop failed: %r", outcome.exception())


class Borrowed[T]:
    """Made of something the caller owns: the same interface as LoopBound, with one value
    for every loop; `close()` runs `release` on it (giving back what it opened of its
    own) and the next `get()` makes it anew."""

    def __init__(
        self, make: Callable[[], T], release: Callable[[T], Awaitable[None]] | None = None
    ) -> None:
        self._make = make
        self._release = release
        self._value: T | None = None

    def get(self) -> T:
        if self._value is None:
            self._value = self._make()
        return self._value

    @property
    def current(self) -> T:
        return self.get()

    def loops(self) -> list[asyncio.AbstractEventLoop]:
        return []

    async def close_current(self) -> None:
        await self.close()

    async def close(self, wait: float = 5.0) -> None:
        value, self._value = self._value, None
        if value is not None and self._release is not None:
            await self._release(value)
