"""Fills: one per key per event loop, admitted a bounded number at a time, stored only
if no invalidation overtook them."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from .._errors import ClientClosedError
from .._node.json import decode, encode, encode_rows
from .._redis.breaker import Guard
from .._redis.fills import tokens
from .._redis.holder import RedisHolder
from .._redis.states import Occasional
from .._stats import CacheStats
from .admission import Admission
from .refresh import RefreshAhead

logger = logging.getLogger("mysql_redis_cache")

_LOCK_POLL = 0.05  # seconds between checks for another process's result


class Fill:
    """The fill of a key in one event loop: the callers awaiting it, each on a future of
    its own, and, once admitted, the task that runs it. Until then it is only a place
    in the admission queue: a burst's waiting misses hold no task and no coroutine."""

    __slots__ = (
        "_flights", "callers", "done", "expiry", "fn", "json_shaped", "key", "loop", "starter",
        "task",
    )  # fmt: skip

    def __init__(
        self,
        flights: Flights,
        key: str,
        loop: asyncio.AbstractEventLoop,
        fn: Callable[[], Awaitable[Any]],
        expiry: int,
        json_shaped: bool,
    ) -> None:
        self.key = key
        self.loop = loop
        self.callers: list[asyncio.Future[tuple[Any, bytes | None]]] = []
        self.task: asyncio.Task[tuple[Any, bytes | None]] | None = None
        # while queued: the task of its first caller, in whose context it runs (that
        # context as it was, once that caller gave up)
        self.starter: asyncio.Task[Any] | contextvars.Context | None = None
        self.done = False  # its outcome was handed out, or it was abandoned or refused
        self._flights = flights
        self.fn, self.expiry, self.json_shaped = fn, expiry, json_shaped

    def admit(self) -> bool:
        """Start the fill, unless every caller gave up while it waited. The task starts
        eagerly: its fill marker is on its way before this returns."""
        if self.done:
            return False
        # A copy of its first caller's context, taken now: that caller still awaits this
        # fill (so its context is as it was), or it runs this itself (admitted at once).
        starter, self.starter = self.starter, None
        if starter is None:
            context = contextvars.copy_context()
        elif isinstance(starter, contextvars.Context):
            context = starter
        else:
            context = starter.get_context().copy()
        coro = self._flights._run(self.key, self.fn, self.expiry, self.json_shaped)
        self.task = task = asyncio.eager_task_factory(self.loop, coro, context=context)
        task.add_done_callback(functools.partial(self._flights._landed, self))
        return True

    def reject(self, error: BaseException) -> None:
        """The client is closing before the fill's turn came."""
        self._flights._forget(self)
        for caller in self.callers:
            if not caller.done():
                caller.set_exception(error)


class Flights:
    """The fills of one client.

    A miss joins the fill of its key already running in this event loop, or starts one.
    A fill waits its turn for admission (at most `max_fills` run at once), sets the fill
    marker (and, with `lock_timeout`, takes the cross-process lock or awaits another
    holder's entry), runs its function, and stores the result unless an invalidation
    overtook it or it passes `max_entry_bytes`.
    """

    def __init__(
        self,
        redis: RedisHolder,
        guard: Guard,
        stats: CacheStats,
        *,
        max_fills: int,
        lock_timeout: float | None,
        max_entry_bytes: int | None,
        refresh_ahead: RefreshAhead | None = None,
        on_fill: Callable[[str, float], None] | None = None,
    ) -> None:
        self._redis = redis
        self._guard = guard
        self._stats = stats
        self._lock_timeout = lock_timeout
        self._max_entry_bytes = max_entry_bytes
        self.admission = Admission(max_fills)
        self._in_flight: dict[str, Fill] = {}
        self._refreshing: dict[str, asyncio.Task[None]] = {}
        self._refresh_ahead = refresh_ahead  # told how long each fill took, what it stored
        self._on_fill = on_fill  # told each fill's outcome and duration (for metrics)
        self._failures = Occasional(
            "a refresh ahead of expiry failed (the entry stays until it expires)", "refresh_errors"
        )
        self.closing = False

    def __bool__(self) -> bool:
        """Whether any fill is running or queued (in any loop): a hit may skip looking
        for one."""
        return bool(self._in_flight)

    def running(self, key: str) -> Fill | None:
        """The fill of `key` running or queued in this event loop, if any."""
        fill = self._in_flight.get(key)
        if fill is not None and fill.loop is not asyncio.get_running_loop():
            return None  # left over from an earlier loop: never awaited from this one
        return fill

    def miss(
        self, key: str, fn: Callable[[], Awaitable[Any]], expiry: int, json_shaped: bool
    ) -> Coroutine[Any, Any, Any]:
        """Await it to join the fill of `key` running in this loop, or to start one; its
        value.

        `expiry` is the entry's TTL in seconds, jitter applied; `json_shaped` says `fn`'s
        result is in its cached shape already (rows), else it is encoded and decoded.
        """
        fill = self.running(key)
        if fill is not None:
            self._stats.joins += 1
            return self._join(fill)
        if self.closing:
            raise ClientClosedError("the client is closing")
        # The fill runs as a task of its own (a cancelled caller must not cancel the
        # others), created once admitted.
        fill = Fill(self, key, asyncio.get_running_loop(), fn, expiry, json_shaped)
        self._in_flight[key] = fill
        return self._join(fill, first=True)

    async def _join(self, fill: Fill, first: bool = False) -> Any:
        """Await `fill`'s value with its other callers (`first`: queue it for admission);
        the last one to give up cancels it."""
        caller: asyncio.Future[Any] = fill.loop.create_future()
        fill.callers.append(caller)
        if first:
            self.admission.enter(fill, fill.loop)
            if fill.task is None:  # it waits its turn
                fill.starter = asyncio.current_task()
        try:
            value, payload = await caller
        except asyncio.CancelledError:
            if not fill.done:
                fill.callers.remove(caller)
                if not fill.callers:  # nobody wants its result: free its place or connection
                    if fill.task is not None:
                        fill.task.cancel()
                    else:
                        self._forget(fill)
                elif first and fill.starter is not None:
                    # it waits on for the others: in this caller's context as it is now,
                    # before this caller moves on
                    fill.starter = contextvars.copy_context()
            raise
        # the first caller takes the fill's own value; the others a copy each: callers
        # must not share one mutable result
        return value if first or payload is None else decode(payload)

    def _forget(self, fill: Fill) -> None:
        """`fill` will hand out nothing: a new miss of its key starts a fill of its own."""
        fill.done = True
        if self._in_flight.get(fill.key) is fill:
            del self._in_flight[fill.key]

    def _landed(self, fill: Fill, task: asyncio.Task[tuple[Any, bytes | None]]) -> None:
        """A fill ended: its place goes to the next one, and its outcome to each caller
        still waiting for it."""
        self._forget(fill)
        self.admission.leave(fill.loop)
        if task.cancelled():  # close() cut it short (or every caller gave up)
            for caller in fill.callers:
                if not caller.done():
                    caller.set_exception(
                        ClientClosedError("the client was closed while this call ran")
                    )
            return
        exc = task.exception()  # retrieved even when no caller waits any more
        for caller in fill.callers:
            if caller.done():
                continue
            if exc is not None:
                caller.set_exception(exc)
            else:
                caller.set_result(task.result())

    def refresh(
        self, key: str, fn: Callable[[], Awaitable[Any]], expiry: int, json_shaped: bool
    ) -> None:
        """Refresh the entry at `key` in the background, unless a fill or a refresh of it
        runs here already. It waits its turn like a fill, and runs only if it can claim
        the key's lock (no other process fills or refreshes it)."""
        if self.closing or key in self._refreshing or self.running(key) is not None:
            return
        task = asyncio.ensure_future(self._refresh(key, fn, expiry, json_shaped))
        self._refreshing[key] = task
        task.add_done_callback(lambda _: self._refreshing.pop(key, None))

    async def _refresh(
        self, key: str, fn: Callable[[], Awaitable[Any]], expiry: int, json_shaped: bool
    ) -> None:
        try:
            async with self.admission:
                if not self.closing:
                    delta = self._refresh_ahead.delta(key) if self._refresh_ahead else None
                    claim = max(1.0, 4 * (delta or 0.0))  # outlives the refresh
                    await self._run(key, fn, expiry, json_shaped, refresh_claim=claim)
        except ClientClosedError:
            pass  # the client closed before its turn
        except Exception as exc:  # the entry stays until it expires; a later hit tries again
            self._stats.refresh_errors += 1
            self._failures.failed(exc)

    async def _run(
        self,
        key: str,
        fn: Callable[[], Awaitable[Any]],
        expiry: int,
        json_shaped: bool,
        refresh_claim: float | None = None,
    ) -> tuple[Any, bytes | None]:
        """Set the fill marker (and, with lock_timeout, take the lock, or await another
        holder's entry instead), run `fn`, and store its result.

        A refresh (`refresh_claim` seconds to hold the lock for) runs only if it takes
        the lock and Redis took its marker; else it returns (None, None) at once.
        """
        op, redis = self._guard.op, self._redis
        began = time.monotonic()
        token = tokens.next()
        unmarked: list[bytes] = []  # a fallback no reply can be: Redis failed, no marker set
        lock_ms = None if self._lock_timeout is None else max(1, round(self._lock_timeout * 1000))
        if refresh_claim is not None:
            lock_ms = round(refresh_claim * 1000)
        seen = await op(redis.begin_fill(key, token, lock_ms), unmarked, write=True)
        if refresh_claim is not None and (seen is None or seen is unmarked):
            return None, None  # another process fills it, or Redis would not take it
        if refresh_claim is not None:
            self._stats.refreshes += 1
        if seen is None:  # another process holds the lock
            waited = await self._wait_for_entry(key)
            if waited is not None:
                self._stats.lock_waits += 1
                return waited
            lock_ms = None
            seen = await op(redis.begin_fill(key, token, None), unmarked, write=True)
        locked = lock_ms is not None
        marked = seen is not unmarked
        started = time.monotonic()
        try:
            result = await fn()
            payload = encode_rows(result) if json_shaped else encode(result)
        except BaseException as exc:
            if marked:
                await self._release(key, token, expiry, locked)
            if self._on_fill is not None and not isinstance(exc, asyncio.CancelledError):
                self._on_fill("error", time.monotonic() - began)
            raise
        took = time.monotonic() - started
        value = result if json_shaped else decode(payload)
        stored = False
        outcome = "error"  # Redis took no marker, or failed the store
        if self._max_entry_bytes is not None and len(payload) > self._max_entry_bytes:
            self._oversized(key, len(payload))
            if marked:
                await self._release(key, token, expiry, locked)
            outcome = "oversized"
        elif marked:
            commit = redis.commit_fill(key, token, payload, expiry, seen or [], locked)
            stored = await op(commit, True, write=True)
            if self._guard.missed is None:
                outcome = "stored" if stored else "refused"
            if not stored:
                self._stats.refused += 1
                logger.debug("not caching %s: an invalidation overtook it", key)
        if self._refresh_ahead is not None:
            self._refresh_ahead.filled(key, took, expiry if stored else None)
        if self._on_fill is not None:
            self._on_fill(outcome, time.monotonic() - began)
        return value, payload

    async def _release(self, key: str, token: bytes, expiry: int, locked: bool) -> None:
        """Remove a fill's marker (and its lock, if `locked`) without storing anything."""
        await self._guard.op(self._redis.commit_fill(key, token, None, expiry, [], locked), False)

    def _oversized(self, key: str, size: int) -> None:
        self._stats.oversized += 1
        level = logging.DEBUG if self._stats.oversized > 1 else logging.INFO
        logger.log(
            level,
            "not caching %s: its %d bytes of JSON pass max_entry_bytes (%d); "
            "further ones are logged at DEBUG",
            key,
            size,
            self._max_entry_bytes,
        )

    async def _wait_for_entry(self, key: str) -> tuple[Any, bytes] | None:
        """Poll for another process's entry for up to lock_timeout: (value, bytes), or None."""
        assert self._lock_timeout is not None
        deadline = time.monotonic() + self._lock_timeout
        while time.monotonic() < deadline:
            await asyncio.sleep(min(_LOCK_POLL, max(0.0, deadline - time.monotonic())))
            raw = await self._guard.op(self._redis.get(key), None)
            if raw:
                try:
                    return decode(raw), raw
                except ValueError:
                    continue  # not a usable entry: keep waiting, then compute
        return None

    async def close(self, grace: float) -> None:
        """Turn away the fills (and refreshes) still waiting for admission, give the
        running ones `grace` seconds, then cancel them (their callers get
        ClientClosedError)."""
        self.closing = True
        try:
            self.admission.reject(lambda: ClientClosedError("the client is closing"))
            loop = asyncio.get_running_loop()
            running: list[asyncio.Task[Any]] = [*self._refreshing.values()]
            running += [fill.task for fill in self._in_flight.values() if fill.task is not None]
            tasks = [task for task in running if task.get_loop() is loop]
            if tasks:
                _, late = await asyncio.wait(tasks, timeout=grace)
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
        finally:
            self.closing = False
