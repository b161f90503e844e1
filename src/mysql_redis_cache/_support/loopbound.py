"""Resources that belong to one event loop, remade when the running loop changes.

Connections from redis-py and aiomysql are tied to the loop that opened them. A client
made at module level (the AWS Lambda pattern) sees a new loop on every `asyncio.run()`,
so each resource is kept with its loop and closed inside that loop when it shuts down:
`asyncio.run()` finalizes async generators before closing the loop, and a suspended
sentinel generator per loop is the hook for that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable

logger = logging.getLogger("mysql_redis_cache")


class LoopBound[T]:
    """One `T` per running event loop, made by `factory` and closed by `closer`."""

    def __init__(self, factory: Callable[[], T], closer: Callable[[T], Awaitable[None]]) -> None:
        self._factory = factory
        self._closer = closer
        self._value: T | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sentinel: AsyncGenerator[None] | None = None

    @property
    def current(self) -> T | None:
        """The value for the running loop, if one was made (never makes one)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return self._value
        return self._value if loop is self._loop else None

    def get(self) -> T:
        """The value for the running loop, made on first use in that loop.

        Outside a running loop the value is made unbound; the first loop to use it
        adopts it (nothing in redis-py's client or our pool touches a loop before use).
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            if self._value is None:
                self._value = self._factory()
            return self._value
        if self._value is not None and self._loop is None:
            self._bind(self._value, loop)
        elif self._value is None or self._loop is not loop:
            if self._value is not None:
                # the loop that owned it is gone or elsewhere: never touch it from here
                logger.debug("event loop changed; dropping connections of the old loop")
            self._value = self._factory()
            self._bind(self._value, loop)
        return self._value

    def _bind(self, value: T, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._sentinel = self._watch(value)
        # Run the sentinel to its first yield right now, inside this loop, so the loop
        # registers it and finalizes it at shutdown (a task could be cancelled unstarted).
        step = self._sentinel.__anext__()
        with contextlib.suppress(StopIteration):
            step.send(None)

    async def _watch(self, value: T) -> AsyncGenerator[None]:
        try:
            yield
        finally:
            # runs in the owning loop when it shuts down (shutdown_asyncgens)
            if self._value is value:
                self._value = None
                self._loop = None
            await self._closer(value)

    async def close(self) -> None:
        """Close the value of the running loop now, if any."""
        value = self.current
        if value is None:
            return
        self._value = None
        self._loop = None
        sentinel, self._sentinel = self._sentinel, None
        if sentinel is not None:
            await sentinel.aclose()  # runs the closer
        else:  # pragma: no cover - a value always gets a sentinel
            await self._closer(value)


class Borrowed[T]:
    """A value the caller made and owns: the same interface as LoopBound, but it is never
    remade, and `close()` only runs `release` (e.g. giving back a borrowed connection)."""

    def __init__(self, value: T, release: Callable[[T], Awaitable[None]] | None = None) -> None:
        self._value = value
        self._release = release

    def get(self) -> T:
        return self._value

    @property
    def current(self) -> T:
        return self._value

    async def close(self) -> None:
        if self._release is not None:
            await self._release(self._value)
