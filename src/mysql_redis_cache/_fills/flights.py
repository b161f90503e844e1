"""Fills: one per key per event loop, admitted a bounded number at a time, stored only
if no invalidation overtook them."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
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

type Flight = asyncio.Future[tuple[Any, bytes | None]]


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
        self._in_flight: dict[str, Flight] = {}
        # the callers awaiting each fill, each on a future of its own
        self._waiters: dict[Flight, list[asyncio.Future[Any]]] = {}
        self._refreshing: dict[str, asyncio.Task[None]] = {}
        self._refresh_ahead = refresh_ahead  # told how long each fill took, what it stored
        self._on_fill = on_fill  # told each fill's outcome and duration (for metrics)
        self._failures = Occasional(
            "a refresh ahead of expiry failed (the entry stays until it expires)", "refresh_errors"
        )
        self.closing = False

    def __bool__(self) -> bool:
        """Whether any fill is running (in any loop): a hit may skip looking for one."""
        return bool(self._in_flight)

    def running(self, key: str) -> Flight | None:
        """The running fill for `key` in this event loop, if any."""
        flight = self._in_flight.get(key)
        if flight is not None and flight.get_loop() is not asyncio.get_running_loop():
            return None  # left over from an earlier loop: never awaited from this one
        return flight

    async def miss(
        self, key: str, fn: Callable[[], Awaitable[Any]], expiry: int, json_shaped: bool
    ) -> Any:
        """Join the fill of `key` running in this loop, or start one; its value.

        `expiry` is the entry's TTL in seconds, jitter applied; `json_shaped` says `fn`'s
        result is in its cached shape already (rows), else it is encoded and decoded.
        """
        flight = self.running(key)
        if flight is not None:
            self._stats.joins += 1
            value, payload = await self._join(flight)
            # a copy of its own: callers must not share one mutable result
            return value if payload is None else decode(payload)
        if self.closing:
            raise ClientClosedError("the client is closing")
        # The fill runs as its own task: a cancelled caller must not cancel the others.
        task = asyncio.ensure_future(self._fill(key, fn, expiry, json_shaped))
        self._in_flight[key] = task
        self._waiters[task] = []
        task.add_done_callback(functools.partial(self._landed, key))
        value, _ = await self._join(task)
        return value

    async def _join(self, flight: Flight) -> Any:
        """Await a fill with the other callers; the last one to give up cancels it."""
        waiter: asyncio.Future[Any] = flight.get_loop().create_future()
        waiters = self._waiters[flight]
        waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and not task.cancelling() and flight.cancelled():
                raise ClientClosedError("the client was closed while this call ran") from None
            if not flight.done():
                waiters.remove(waiter)
                if not waiters:
                    flight.cancel()  # nobody wants its result: free its connection
            raise

    def _landed(self, key: str, flight: Flight) -> None:
        """A fill ended: hand its outcome to each caller still waiting for it."""
        if self._in_flight.get(key) is flight:
            del self._in_flight[key]
        waiters = self._waiters.pop(flight, [])
        if flight.cancelled():
            for waiter in waiters:
                waiter.cancel()
            return
        exc = flight.exception()  # retrieved even when no caller waits any more
        for waiter in waiters:
            if waiter.done():
                continue
            if exc is not None:
                waiter.set_exception(exc)
            else:
                waiter.set_result(flight.result())

    async def _fill(
        self, key: str, fn: Callable[[], Awaitable[Any]], expiry: int, json_shaped: bool
    ) -> tuple[Any, bytes | None]:
        """Wait for admission, then compute the value for `key` and store it unless an
        invalidation overtook it. Returns the value and its encoded payload, from which
        joiners decode their copies."""
        async with self.admission:
            if self.closing:
                raise ClientClosedError("the client is closing")
            return await self._run(key, fn, expiry, json_shaped)

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
            running: list[asyncio.Future[Any]] = [*self._in_flight.values()]
            running += self._refreshing.values()
            fills = [f for f in running if f.get_loop() is loop]
            if fills:
                _, late = await asyncio.wait(fills, timeout=grace)
                for fill in late:
                    fill.cancel()
                await asyncio.gather(*late, return_exceptions=True)
        finally:
            self.closing = False
