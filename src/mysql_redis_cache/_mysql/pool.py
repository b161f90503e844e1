"""The pool of connections the client runs its statements on."""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any

from pymysql.constants import SERVER_STATUS

from .._errors import ClientClosedError, ConfigError
from .driver import AIOMYSQL, ASYNCMY, Driver, error_code

logger = logging.getLogger("mysql_redis_cache")

TOO_MANY_CONNECTIONS = 1040
# After "too many connections", how long callers wait for a pooled connection instead.
REFUSED_WAIT = 10.0
_KILL_TIMEOUT = 2.0


def driver_of_pool(pool: object) -> Driver:
    """The driver behind a pool the caller passed in (aiomysql's or asyncmy's)."""
    if isinstance(pool, Pool):
        return pool.driver
    module = type(pool).__module__
    if module.startswith("asyncmy"):
        return ASYNCMY
    if module.startswith("aiomysql"):
        return AIOMYSQL
    raise ConfigError(f"unsupported MySQL pool type {type(pool).__qualname__}")


# A borrower's wait ends with None (look again: a slot is free, or the pool closed) or with
# a connection handed over, and whether the borrower's statement was sent on it.
_Handed = tuple[Any, bool] | None


class Pool:
    """A small pool of connections with aiomysql's `acquire()` / `release()` interface.

    Idle connections are checked before they are handed out; callers wait in turn for a
    free one, and a released connection goes straight to the first of them.
    `close()` wakes every waiting caller with ClientClosedError at once.
    """

    def __init__(
        self, connect_kwargs: dict[str, Any], *, maxsize: int = 10, driver: Driver = AIOMYSQL
    ) -> None:
        self.driver = driver
        self._connect_kwargs = connect_kwargs
        self._maxsize = maxsize
        self._free: collections.deque[Any] = collections.deque()
        self._used: set[Any] = set()
        self._opening = 0
        # (future, statement to send on the connection handed over, if any)
        self._waiters: collections.deque[tuple[asyncio.Future[_Handed], str | None]] = (
            collections.deque()
        )
        self._drained: list[asyncio.Future[None]] = []  # wait_closed() callers
        self._cap: tuple[int, float] | None = None  # (size, until): the server refused more
        self._closed = False

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @property
    def size(self) -> int:
        return len(self._free) + len(self._used) + self._opening

    @property
    def freesize(self) -> int:
        return len(self._free)

    @property
    def closed(self) -> bool:
        return self._closed

    def _room(self) -> bool:
        """Whether another connection may be opened now."""
        limit = self._maxsize
        if self._cap is not None:
            size, until = self._cap
            if time.monotonic() < until:
                limit = min(limit, size)
            else:
                self._cap = None
        return self.size < limit

    async def checkout(self, statement: str | None = None) -> tuple[Any, bool]:
        """Borrow a connection, and whether `statement` was already sent on it.

        A caller that has to wait may give the statement it will run: the release that
        frees a connection for it then sends it at once, so the server starts on it a
        loop turn or more before this caller runs again. The caller then reads its
        result (`Driver.run_raw(..., sent=True)`). Otherwise nothing is sent (False).
        """
        deadline: float | None = None
        refused: BaseException | None = None
        while True:
            while True:
                if self._closed:
                    raise ClientClosedError("the MySQL pool is closed")
                while self._free:
                    conn = self._free.popleft()
                    if self.driver.is_usable(conn):
                        self._used.add(conn)
                        return conn, False
                    conn.close()
                if self._room():
                    break
                handed = await self._wait(statement, deadline, refused)
                if handed is not None:
                    return handed
            self._opening += 1
            try:
                conn = await self.driver.open(self.driver.connect_kwargs(self._connect_kwargs))
            except BaseException as exc:
                self._opening -= 1
                self._wake()  # the slot is free again: a waiting borrower may try it
                if error_code(exc) != TOO_MANY_CONNECTIONS or not self.size or self._closed:
                    raise
                # The server is full: wait for one of ours to come back instead of failing.
                self._cap = (self.size, time.monotonic() + REFUSED_WAIT)
                refused = exc
                if deadline is None:
                    deadline = time.monotonic() + REFUSED_WAIT
                continue
            self._opening -= 1
            self._used.add(conn)
            return conn, False

    async def _wait(
        self, statement: str | None, deadline: float | None, refused: BaseException | None
    ) -> _Handed:
        """Wait for a released connection (until `deadline`, then raise `refused`)."""
        future: asyncio.Future[_Handed] = asyncio.get_running_loop().create_future()
        self._waiters.append((future, statement))
        try:
            if deadline is None:
                return await future
            return await asyncio.wait_for(future, max(0.0, deadline - time.monotonic()))
        except BaseException as exc:
            woken = future.done() and not future.cancelled()
            handed = future.result() if woken else None
            if handed is not None and isinstance(exc, TimeoutError):
                return handed  # the connection came as the time ran out
            if handed is not None:  # handed over, then cancelled: it is nobody's
                await self._abandon(*handed)
            elif woken:
                self._wake()  # woken, then cancelled: hand the wake-up on
            if isinstance(exc, TimeoutError):
                assert refused is not None
                raise refused from None
            raise

    async def _abandon(self, conn: Any, sent: bool) -> None:
        """Take back a connection handed to a borrower that gave up before using it."""
        if not sent:
            await self.release(conn)
            return
        self._used.discard(conn)
        try:
            await self.kill([conn])  # its statement runs for nobody
        finally:
            conn.close()
            self._wake()
            self._note_drained()

    def _wake(self, everyone: bool = False) -> None:
        while self._waiters:
            future, _ = self._waiters.popleft()
            if not future.done():
                future.set_result(None)
                if not everyone:
                    return

    def _hand_over(self, conn: Any) -> None:
        """Give an open, idle borrowed connection to the first waiting borrower, with its
        statement sent; with none waiting, pool it."""
        if not self.driver.is_usable(conn):
            self._drop(conn)
            return
        while self._waiters:
            future, statement = self._waiters.popleft()
            if future.done():
                continue
            if statement is None or self.driver.escapes_unsafe(conn):
                future.set_result((conn, False))  # the borrower checks and sends itself
                return
            try:
                sent = self.driver.send_query(conn, statement)
            except Exception as exc:  # the waiting borrower's to meet, not this releaser's
                logger.debug("could not send a statement on a released connection: %r", exc)
                sent = False
            if sent:
                future.set_result((conn, True))
            else:  # nothing went out: the borrower looks again, with this slot free
                self._used.discard(conn)
                conn.close()
                future.set_result(None)
            return
        self._used.discard(conn)
        self._free.append(conn)

    def acquire(self) -> _AcquireContext:
        """Borrow a connection: `async with pool.acquire() as conn` or `await pool.acquire()`."""
        return _AcquireContext(self)

    async def release(self, conn: Any, discard: bool = False) -> None:
        """Give a connection back; a broken, closed or `discard`ed one is closed."""
        keep = self._keeps(conn, discard)
        if keep and conn.server_status & SERVER_STATUS.SERVER_STATUS_IN_TRANS:
            try:
                await conn.rollback()
            except Exception:
                conn.close()
            keep = self._keeps(conn, discard)
        if keep:
            self._hand_over(conn)
        else:
            self._drop(conn)
        self._note_drained()

    def _drop(self, conn: Any) -> None:
        """Close a borrowed connection; its slot goes to the next waiting borrower."""
        self._used.discard(conn)
        conn.close()
        self._wake()

    def _keeps(self, conn: Any, discard: bool) -> bool:
        return not (discard or self._closed or self.driver.is_closed(conn))

    def _note_drained(self) -> None:
        if not self._used:
            for future in self._drained:
                if not future.done():
                    future.set_result(None)

    def close(self) -> None:
        """Close idle connections now and turn waiting borrowers away with
        ClientClosedError; borrowed connections close when released."""
        self._closed = True
        while self._free:
            self._free.popleft().close()
        self._wake(everyone=True)

    def terminate(self) -> None:
        """Close every connection, borrowed ones included."""
        self.close()
        for conn in list(self._used):
            conn.close()
        self._used.clear()

    async def wait_closed(self, grace: float | None = None) -> None:
        """Wait until no connection is borrowed (after `close()`). Past `grace` seconds,
        kill the statements still running on them and close them."""
        if self._used:
            future = asyncio.get_running_loop().create_future()
            self._drained.append(future)
            try:
                await asyncio.wait_for(future, grace)
            except TimeoutError:
                busy = list(self._used)
                await self.kill(busy)
                for conn in busy:
                    conn.close()
            finally:
                self._drained.remove(future)

    async def kill(self, conns: list[Any]) -> None:
        """Stop the server-side work of `conns` (KILL over a connection of its own): the
        server goes on running a statement whose client has gone."""
        if not conns:
            return
        failures: tuple[type[BaseException], ...] = (TimeoutError, *self.driver.errors)
        try:
            async with asyncio.timeout(_KILL_TIMEOUT):
                killer = await self.driver.open(self.driver.connect_kwargs(self._connect_kwargs))
                try:
                    for conn in conns:
                        await killer.query(f"KILL {self.driver.thread_id(conn)}")
                finally:
                    killer.close()
        except failures as exc:
            logger.debug("could not kill abandoned MySQL statements: %s", exc)


class _AcquireContext:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._conn: Any = None

    def __await__(self) -> Any:
        return self._borrow().__await__()

    async def _borrow(self) -> Any:
        conn, _ = await self._pool.checkout()
        return conn

    async def __aenter__(self) -> Any:
        self._conn = await self._borrow()
        return self._conn

    async def __aexit__(self, *exc: object) -> None:
        if self._conn is not None:
            await self._pool.release(self._conn)
            self._conn = None
