"""A client's SQL: its pool (one per event loop, or the caller's), and running statements."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

from .._errors import ClientClosedError, ConfigError, QueryError, config_errors
from .._node.jsvalue import utf8
from .._node.rows import CastOptions, RawResult, shape
from .._support.loopbound import Borrowed, LoopBound
from .config import NO_BACKSLASH_ESCAPES, MySQLSettings, parse_mysql_config
from .driver import pick_driver
from .pool import Pool, driver_of_pool

DEFAULT_CLOSE_GRACE = 5.0  # seconds close() lets queries in flight finish
# Errors of the connect and its handshake, before any statement ran: unknown host, refused,
# access denied, unknown database, host not allowed, too many connections.
_CONNECT_REFUSALS = frozenset({1040, 1044, 1045, 1049, 1130, 2002, 2003, 2005})

# times a statement (OpenTelemetry's db.client.operation.duration), when metrics are on
type Timer = Callable[[str], contextlib.AbstractContextManager[None]]


class Statements:
    """Runs a client's statements on its MySQL pool and shapes their results as mysql2.

    `mysql_config` is a config (dict or URL), or a pool the caller owns (used as is, its
    driver's own handshake and settings applying, never closed).
    """

    def __init__(self, mysql_config: object, mysql_driver: str, normalize_numbers: bool) -> None:
        self.pool: LoopBound[Pool] | Borrowed[Any]
        self.borrowed = is_pool(mysql_config)
        if self.borrowed:
            settings = parse_mysql_config({})
            self.driver = driver_of_pool(mysql_config)
            self.pool = Borrowed(lambda: mysql_config)
        else:
            with config_errors("mysql_config"):
                settings = parse_mysql_config(mysql_config or {})  # type: ignore[arg-type]
            self.driver = pick_driver(mysql_driver)
            self.pool = LoopBound(self._make_pool, self._close_pool)
        self.settings: MySQLSettings = settings
        self.cast: CastOptions = dataclasses.replace(
            settings.cast, normalize_numbers=normalize_numbers
        )
        self.timer: Timer | None = None
        self.closing = False  # close() runs: new statements are turned away
        self.closes = 0  # close() calls begun: a statement that saw one is cut short by it
        self.deadline: float | None = None  # when close()'s grace ends
        self._max_packet: int | None = None  # the server's max_allowed_packet, once read

    @property
    def address(self) -> tuple[str | None, int | None] | None:
        """The MySQL server's (host, port) for metrics (None parts on a socket; None for
        a borrowed pool, whose server is its own business)."""
        if self.borrowed:
            return None
        kwargs = self.settings.connect_kwargs
        if kwargs.get("unix_socket"):
            return None, None
        return kwargs.get("host") or "localhost", int(kwargs.get("port") or 3306)

    def pool_size(self) -> int:
        """The pool's connection limit (a borrowed pool's own, when it says)."""
        size = getattr(self.pool.current, "maxsize", None) if self.borrowed else None
        return size if type(size) is int and size > 0 else self.settings.pool_size

    def grace_left(self) -> float:
        """Seconds close() has left; the default grace when a loop's shutdown closes."""
        if self.deadline is None:
            return DEFAULT_CLOSE_GRACE
        return max(0.0, self.deadline - time.monotonic())

    def _make_pool(self) -> Pool:
        settings = self.settings
        return Pool(
            {**settings.connect_kwargs, "multiple_statements": settings.multiple_statements},
            maxsize=settings.pool_size,
            driver=self.driver,
        )

    async def _close_pool(self, pool: Pool) -> None:
        pool.close()
        await pool.wait_closed(self.grace_left())

    def turn_away(self) -> None:
        """Calls waiting for a connection of this loop's pool get ClientClosedError now."""
        pool = self.pool.current
        if isinstance(pool, Pool):
            pool.close()

    async def run(self, sql: str) -> Any:
        """Run `sql` on a pooled connection and shape its results.

        A connection that a statement broke (lost, packet errors, a cancellation mid-result)
        is closed, never pooled again; a cancelled statement is also killed on the server,
        which would otherwise run it to the end.

        Raises:
            QueryError: MySQL failed (the driver error is the cause).
            ClientClosedError: close() runs.
        """
        if self.closing:
            raise ClientClosedError("the client is closing")
        closes = self.closes
        pool = self.pool.get()
        try:
            if isinstance(pool, Pool) and self._max_packet is not None:
                self._refuse_oversized(sql)
                # when it has to wait, the release that frees a connection sends it
                conn, sent = await pool.checkout(sql)
                try:
                    results = await self._execute(pool, conn, sql, sent)
                finally:
                    await pool.release(conn)
            else:
                async with pool.acquire() as conn:
                    results = await self._execute(pool, conn, sql, False)
        except self.driver.errors as exc:
            if self.closes != closes:  # close() cut it short (killed it): not MySQL failing
                raise ClientClosedError("the client was closed while this call ran") from exc
            code = exc.args[0] if exc.args else None
            if code in _CONNECT_REFUSALS:
                raise QueryError(f"MySQL refused the connection: {exc}") from exc
            raise QueryError(f"MySQL query failed: {exc}") from exc
        return shape(results, self.cast)

    async def _execute(self, pool: Any, conn: Any, sql: str, sent: bool) -> list[RawResult]:
        """Run `sql` on `conn` (or read its result, when the pool `sent` it)."""
        if not sent:
            await self._check_packet(conn, sql)  # a refusal here sent nothing: no kill
        driver = self.driver
        try:
            if self.timer is None:
                results = await driver.run_raw(conn, sql, sent)
            else:
                with self.timer(sql):
                    results = await driver.run_raw(conn, sql, sent)
        except driver.errors as exc:
            if driver.breaks_connection(exc):
                conn.close()
            raise
        except BaseException:
            try:
                if isinstance(pool, Pool):
                    await pool.kill([conn])
            finally:
                conn.close()
            raise
        if driver.escapes_unsafe(conn):  # the statement set that sql_mode
            conn.close()
        return results

    async def _check_packet(self, conn: Any, sql: str) -> None:
        """Refuse a statement larger than the server's max_allowed_packet before sending it
        (the server would hang up mid-packet, with an error that does not say why), and
        any statement on a connection whose sql_mode makes backslash escaping unsafe."""
        if self.driver.escapes_unsafe(conn):
            conn.close()
            raise ConfigError(NO_BACKSLASH_ESCAPES + " (the server's sql_mode has it)")
        if self._max_packet is None:
            [result] = await self.driver.run_raw(conn, "SELECT @@max_allowed_packet")
            self._max_packet = int(result.rows[0][0])  # type: ignore[arg-type]
        self._refuse_oversized(sql)

    def _refuse_oversized(self, sql: str) -> None:
        assert self._max_packet is not None
        if len(sql) * 4 >= self._max_packet and len(utf8(sql)) >= self._max_packet:
            raise QueryError(
                f"the query is {len(utf8(sql)):,} bytes, more than the server's "
                f"max_allowed_packet ({self._max_packet:,}): nothing was sent; send large "
                "values another way or raise max_allowed_packet"
            )


def is_pool(config: object) -> bool:
    """Whether `config` is a pool the caller made (anything with `acquire`)."""
    return (
        config is not None and not isinstance(config, Mapping | str) and hasattr(config, "acquire")
    )
