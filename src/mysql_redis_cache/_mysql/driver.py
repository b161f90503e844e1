"""aiomysql and asyncmy connections that speak to the server the way mysql2 does.

Handshake details that matter for identical results:
- MariaDB's extended column metadata, which mysql2 negotiates: it is the only way to see
  that a column is JSON (MariaDB sends JSON as LONGTEXT), and mysql2 parses those.
- mysql2's collation (utf8mb4_unicode_ci) and its FOUND_ROWS and IGNORE_SPACE flags.
- No multi-statement queries unless asked for, as in mysql2.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
import os
import select
import struct
from collections.abc import Awaitable
from typing import Any

import aiomysql
import pymysql
from pymysql.connections import FieldDescriptorPacket, MysqlPacket
from pymysql.constants import COMMAND, FIELD_TYPE, SERVER_STATUS

from .._errors import ConfigError
from .._node.jsvalue import utf8
from .._node.rows import RawResult

logger = logging.getLogger("mysql_redis_cache")

_MARIADB_CLIENT_EXTENDED_METADATA = 8
_CLIENT_MYSQL = 1  # CLIENT_LONG_PASSWORD in MySQL; MariaDB reads it as "not MariaDB-aware"
_CLIENT_MULTI_STATEMENTS = 1 << 16
# Flags mysql2 sends that change results: FOUND_ROWS (affectedRows counts matched rows)
# and IGNORE_SPACE (`COUNT (*)` parses).
_MYSQL2_FLAGS = 2 | 256
_UTF8MB4_UNICODE_CI = 224  # mysql2's charset number: ß = ss, as in Node
_UTF8MB4_IDS = frozenset({45, 46, 255})  # utf8mb4_general_ci, _bin, _0900_ai_ci


def patch_handshake(
    payload: bytes, server_mariadb_caps: int, multiple_statements: bool
) -> tuple[bytes, bool]:
    """Rewrite a HandshakeResponse as mysql2 would send it: its client flags and utf8mb4
    collation, no multi-statements unless asked, and MariaDB's extended metadata
    requested when offered. Returns the payload and whether extended metadata is on."""
    flags: int = struct.unpack_from("<I", payload)[0]
    caps: int = struct.unpack_from("<I", payload, 28)[0]
    if not multiple_statements:
        flags &= ~_CLIENT_MULTI_STATEMENTS
    flags |= _MYSQL2_FLAGS
    if payload[8] in _UTF8MB4_IDS:  # mysql2's default collation, not the server's
        payload = payload[:8] + bytes([_UTF8MB4_UNICODE_CI]) + payload[9:]
    extended = bool(server_mariadb_caps & _MARIADB_CLIENT_EXTENDED_METADATA)
    if extended:
        # MariaDB reads the client's extended capabilities only without CLIENT_MYSQL
        flags &= ~_CLIENT_MYSQL
        caps |= _MARIADB_CLIENT_EXTENDED_METADATA
    patched = struct.pack("<I", flags) + payload[4:28] + struct.pack("<I", caps) + payload[32:]
    return patched, extended


def _is_handshake(authenticating: bool, payload: bytes, client_flag: int) -> bool:
    """Whether a packet written while authenticating is the HandshakeResponse (or the SSL
    request that precedes it): both start with the client flags."""
    return (
        authenticating
        and len(payload) >= 32
        and struct.unpack_from("<I", payload)[0] == client_flag & 0xFFFFFFFF
    )


def mariadb_caps_from_greeting(data: bytes) -> int:
    """MariaDB's extended capabilities from a server greeting (0 for MySQL servers)."""
    # protocol(1) version\0 thread(4) salt(8) filler(1) caps(2) charset(1) status(2)
    # caps_high(2) salt_len(1) reserved(6) mariadb_caps(4)
    offset = data.index(b"\0", 1) + 1 + 4 + 8 + 1
    caps_low: int = struct.unpack_from("<H", data, offset)[0]
    offset += 2 + 1 + 2 + 2 + 1 + 6
    if caps_low & _CLIENT_MYSQL or len(data) < offset + 4:
        return 0
    caps: int = struct.unpack_from("<I", data, offset)[0]
    return caps


def _lenenc(data: bytes, pos: int) -> tuple[int, int]:
    first = data[pos]
    if first < 0xFB:
        return first, pos + 1
    size = {0xFC: 2, 0xFD: 3, 0xFE: 8}[first]
    return int.from_bytes(data[pos + 1 : pos + 1 + size], "little"), pos + 1 + size


def split_extended_metadata(data: bytes) -> tuple[bytes, str | None]:
    """Cut MariaDB's extended metadata block out of a column definition packet.

    Returns the packet as a driver without the extension parses it, and the column's
    extended format ('json' for JSON columns) if any.
    """
    pos = 0
    for _ in range(6):  # catalog, schema, table, org_table, name, org_name
        length, pos = _lenenc(data, pos)
        pos += length
    block_length, block_start = _lenenc(data, pos)
    block_end = block_start + block_length
    ext_format = None
    cursor = block_start
    while cursor < block_end:
        key = data[cursor]
        length, cursor = _lenenc(data, cursor + 1)
        if key == 1:
            ext_format = data[cursor : cursor + length].decode("ascii")
        cursor += length
    return data[:pos] + data[block_end:], ext_format


class _Mysql2Handshake:
    """Mixed into a driver's connection class: the HandshakeResponse as mysql2 sends it.

    The driver class supplies `_mrc_client_flag()` and `_mrc_mariadb_caps()`.
    """

    extended_metadata = False
    _mrc_authenticating = False
    _mrc_multiple_statements = False

    def _mrc_client_flag(self) -> int:
        raise NotImplementedError

    def _mrc_mariadb_caps(self) -> int:
        raise NotImplementedError

    async def _request_authentication(self) -> None:
        self._mrc_authenticating = True
        try:
            await super()._request_authentication()  # type: ignore[misc]
        finally:
            self._mrc_authenticating = False

    def write_packet(self, payload: bytes) -> None:
        if _is_handshake(self._mrc_authenticating, payload, self._mrc_client_flag()):
            payload, self.extended_metadata = patch_handshake(
                payload, self._mrc_mariadb_caps(), self._mrc_multiple_statements
            )
        super().write_packet(payload)  # type: ignore[misc]


# Column definitions as parsed, by their bytes: the same query sends the same ones each
# time. The drivers only read a parsed column definition.
_FIELDS: dict[tuple[type, bytes, str], Any] = {}
_MAX_FIELDS = 4096


def _field_without_extension(field_class: type, data: bytes, encoding: str) -> Any:
    field = _FIELDS.get((field_class, data, encoding))
    if field is None:
        stripped, ext_format = split_extended_metadata(data)
        field = field_class(stripped, encoding)
        field.ext_format = ext_format
        if len(_FIELDS) >= _MAX_FIELDS:
            _FIELDS.clear()
        _FIELDS[field_class, data, encoding] = field
    return field


class _AioField(FieldDescriptorPacket):  # type: ignore[misc]
    ext_format: str | None = None


class Connection(_Mysql2Handshake, aiomysql.Connection):  # type: ignore[misc]
    """An aiomysql connection with mysql2's protocol choices (see the module docstring)."""

    def __init__(self, *args: Any, multiple_statements: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._mrc_multiple_statements = multiple_statements
        self._mrc_server_caps: int | None = None

    def _mrc_client_flag(self) -> int:
        return int(self.client_flag)

    def _mrc_mariadb_caps(self) -> int:
        return self._mrc_server_caps or 0

    async def _read_packet(self, packet_type: type = MysqlPacket) -> Any:
        if packet_type is FieldDescriptorPacket and self.extended_metadata:
            raw = await super()._read_packet(MysqlPacket)
            return _field_without_extension(_AioField, raw.get_all_data(), self.encoding)
        packet = await super()._read_packet(packet_type)
        if self._mrc_server_caps is None:  # the first packet is the server greeting
            self._mrc_server_caps = mariadb_caps_from_greeting(packet.get_all_data())
        return packet


@functools.cache
def asyncmy_connection_class() -> type:
    """asyncmy's Connection with the same protocol choices (imported on first use)."""
    import asyncmy.connection
    import asyncmy.protocol

    class AsyncmyField(asyncmy.protocol.FieldDescriptorPacket):  # type: ignore[misc]
        ext_format: str | None = None

    class AsyncmyConnection(_Mysql2Handshake, asyncmy.connection.Connection):  # type: ignore[misc]
        def __init__(self, *args: Any, multiple_statements: bool = False, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self._mrc_multiple_statements = multiple_statements

        def _mrc_client_flag(self) -> int:
            return int(self._client_flag)

        def _mrc_mariadb_caps(self) -> int:
            return int(self._mariadb_ext_caps)  # asyncmy reads them from the greeting

        def read_packet(self, packet_type: type = asyncmy.protocol.MysqlPacket) -> Awaitable[Any]:
            # not a coroutine of its own: every packet of every result is read through it
            if packet_type is asyncmy.protocol.FieldDescriptorPacket and self.extended_metadata:
                return self._mrc_read_field()
            return super().read_packet(packet_type)  # type: ignore[no-any-return]

        async def _mrc_read_field(self) -> Any:
            raw = await super().read_packet(asyncmy.protocol.MysqlPacket)
            return _field_without_extension(AsyncmyField, raw.get_all_data(), self._encoding)

    return AsyncmyConnection


# Server errors after which MariaDB/MySQL close the connection (packet too large, net
# read/write errors and timeouts).
_SERVER_HANGS_UP = frozenset({1153, 1154, 1155, 1156, 1157, 1158, 1159, 1160, 1161})

_INT_DECODERS = dict.fromkeys(
    (FIELD_TYPE.TINY, FIELD_TYPE.SHORT, FIELD_TYPE.LONG, FIELD_TYPE.INT24, FIELD_TYPE.YEAR,
     FIELD_TYPE.LONGLONG),
    int,
)  # fmt: skip


class Driver:
    """What the pool and the client need from a MySQL driver; one subclass per driver."""

    name: str
    # where the driver keeps its type decoders and its use_unicode flag on a connection
    _decoders_attr: str
    _unicode_attr: str

    def connection_class(self) -> type:
        raise NotImplementedError

    async def _connect(self, conn: Any) -> None:
        raise NotImplementedError

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """The driver's own exception base classes (plus socket errors)."""
        raise NotImplementedError

    def connect_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """aiomysql-style keywords in this driver's spelling."""
        return kwargs

    def is_closed(self, conn: Any) -> bool:
        raise NotImplementedError

    def _transport(self, conn: Any) -> asyncio.BaseTransport | None:
        raise NotImplementedError

    def is_usable(self, conn: Any) -> bool:
        """Whether an idle connection may be handed out: open, and nothing waiting to be
        read on it (an idle MySQL connection is sent nothing but its end)."""
        if self.is_closed(conn):
            return False
        transport = self._transport(conn)
        if transport is None or transport.is_closing():
            return False
        sock = transport.get_extra_info("socket")
        if sock is None:
            return True
        try:
            readable, _, _ = select.select([sock.fileno()], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def breaks_connection(self, exc: BaseException) -> bool:
        """Whether `exc` leaves its connection unfit for another statement.

        Server errors about the statement (codes below 2000) leave it fine, but for the
        packet and network ones after which the server hangs up; client-side errors
        (2000 and up), socket errors and anything else (a cancellation mid-result) do not.
        """
        code = error_code(exc)
        return code is None or code >= 2000 or code in _SERVER_HANGS_UP

    @staticmethod
    def escapes_unsafe(conn: Any) -> bool:
        """Whether the session has NO_BACKSLASH_ESCAPES (then a backslash-escaped value
        could end its string literal). The server reports it in the status flags of the
        handshake and of every OK packet, so this is current for each connection."""
        status = getattr(conn, "server_status", 0) or 0
        return bool(status & SERVER_STATUS.SERVER_STATUS_NO_BACKSLASH_ESCAPES)

    def thread_id(self, conn: Any) -> int:
        raise NotImplementedError

    async def open(self, kwargs: dict[str, Any]) -> Any:
        conn = self.connection_class()(**kwargs)
        try:
            await self._connect(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def send_query(self, conn: Any, sql: str) -> bool:
        """Send `sql` as the driver's `query()` does, without reading its result (read it
        with `run_raw(conn, sql, sent=True)`). False when it could not go out at once:
        the connection still had results to read, and it must not be used again.

        Raises:
            the driver's errors: the connection is gone (nothing was sent).
        """
        pending = conn._result
        if pending is not None and (pending.has_next or pending.unbuffered_active):
            return False
        # the driver's own command writer: it writes, then returns without awaiting
        command = conn._execute_command(COMMAND.COM_QUERY, utf8(sql))
        try:
            command.send(None)
        except StopIteration:
            return True
        command.close()
        return False

    async def run_raw(self, conn: Any, sql: str, sent: bool = False) -> list[RawResult]:
        """Run `sql` (or, when `sent`, read its result) and return every result set with
        values as the server sent them."""
        decoders = getattr(conn, self._decoders_attr)
        use_unicode = getattr(conn, self._unicode_attr)
        # undecoded bytes, but integers, which the driver parses in C: mysql2's casting
        # is applied by the caller
        setattr(conn, self._decoders_attr, _INT_DECODERS)
        setattr(conn, self._unicode_attr, False)
        try:
            if sent:
                await conn._read_query_result()
            else:
                await conn.query(utf8(sql))  # as mysql2 sends it (connections are UTF-8)
            results = [_raw(conn._result)]
            while conn._result is not None and conn._result.has_next:
                await conn.next_result()
                results.append(_raw(conn._result))
        finally:
            setattr(conn, self._decoders_attr, decoders)
            setattr(conn, self._unicode_attr, use_unicode)
        return results


class _Aiomysql(Driver):
    name = "aiomysql"
    _decoders_attr, _unicode_attr = "decoders", "use_unicode"

    def connection_class(self) -> type:
        return Connection

    async def _connect(self, conn: Any) -> None:
        await conn._connect()

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        return (pymysql.err.Error, OSError)

    def is_closed(self, conn: Any) -> bool:
        return bool(conn.closed) or conn._reader is None or conn._reader.at_eof()

    def _transport(self, conn: Any) -> asyncio.BaseTransport | None:
        writer = conn._writer
        return None if writer is None else writer.transport

    def thread_id(self, conn: Any) -> int:
        return int(conn.server_thread_id[0])


class _Asyncmy(Driver):
    name = "asyncmy"
    _decoders_attr, _unicode_attr = "_decoders", "_use_unicode"

    def connection_class(self) -> type:
        return asyncmy_connection_class()

    async def _connect(self, conn: Any) -> None:
        await conn.connect()

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        import asyncmy.errors

        return (asyncmy.errors.Error, OSError)

    def connect_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        renames = {"db": "database", "cursorclass": "cursor_cls"}
        return {renames.get(key, key): value for key, value in kwargs.items()}

    def is_closed(self, conn: Any) -> bool:
        # asyncmy keeps `connected` true after the server hangs up; these say it
        return not conn.connected or bool(getattr(conn, "_stream_broken", False))

    def _transport(self, conn: Any) -> asyncio.BaseTransport | None:
        return getattr(conn, "_transport", None)

    def thread_id(self, conn: Any) -> int:
        thread = conn.server_thread_id
        return int(thread[0] if isinstance(thread, tuple) else thread)


AIOMYSQL: Driver = _Aiomysql()
ASYNCMY: Driver = _Asyncmy()


def pick_driver(name: str) -> Driver:
    """'aiomysql', 'asyncmy', or 'auto': asyncmy when installed (MRC_MYSQL_DRIVER may
    name one instead of 'auto').

    Raises:
        ConfigError: an unknown name, or asyncmy asked for but not installed.
    """
    if name == "auto":
        name = os.environ.get("MRC_MYSQL_DRIVER", "") or (
            "asyncmy" if importlib.util.find_spec("asyncmy") is not None else "aiomysql"
        )
    if name == "aiomysql":
        return AIOMYSQL
    if name == "asyncmy":
        if importlib.util.find_spec("asyncmy") is None:
            raise ConfigError("mysql_driver='asyncmy' but asyncmy is not installed")
        return ASYNCMY
    raise ConfigError(f"mysql_driver must be 'auto', 'aiomysql' or 'asyncmy', got {name!r}")


def _raw(result: Any) -> RawResult:
    message = result.message or b""
    if message and message[0] == len(message) - 1:
        message = message[1:]  # MariaDB sends the info text length-prefixed; PyMySQL keeps it
    return RawResult(
        fields=list(getattr(result, "fields", None) or ()),
        rows=list(result.rows or ()),
        affected_rows=result.affected_rows or 0,
        insert_id=result.insert_id or 0,
        server_status=result.server_status or 0,
        warning_count=result.warning_count or 0,
        message=message.decode("utf-8", "replace") if isinstance(message, bytes) else message,
    )


def error_code(exc: BaseException) -> int | None:
    """The MySQL error number of a driver exception, if it has one."""
    return exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
