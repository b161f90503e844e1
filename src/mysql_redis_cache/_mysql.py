"""aiomysql connections that speak to the server the way mysql2 does, and a pool of them.

Two handshake details matter for identical results:
- MariaDB's extended column metadata, which mysql2 negotiates: it is the only way to see
  that a column is JSON (MariaDB sends JSON as LONGTEXT), and mysql2 parses those.
- No multi-statement queries unless asked for, as in mysql2.
"""

from __future__ import annotations

import asyncio
import collections
import struct
from dataclasses import dataclass
from typing import Any

import aiomysql
from pymysql.connections import FieldDescriptorPacket, MysqlPacket
from pymysql.constants import CLIENT, SERVER_STATUS

from ._errors import ClientClosedError

_MARIADB_CLIENT_EXTENDED_METADATA = 8


class _ExtendedFieldDescriptor(FieldDescriptorPacket):  # type: ignore[misc]
    """A column definition that carries MariaDB's extended metadata block."""

    ext_type_name: str | None = None
    ext_format: str | None = None
    _position: int

    def _parse_field_descriptor(self, encoding: str) -> None:
        self.catalog = self.read_length_coded_string()
        self.db = self.read_length_coded_string()
        self.table_name = self.read_length_coded_string().decode(encoding)
        self.org_table = self.read_length_coded_string().decode(encoding)
        self.name = self.read_length_coded_string().decode(encoding)
        self.org_name = self.read_length_coded_string().decode(encoding)
        block_length = self.read_length_encoded_integer() or 0
        block_end = self._position + block_length
        while self._position < block_end:
            key = self.read_uint8()
            value = self.read_length_coded_string().decode("ascii")
            if key == 0:
                self.ext_type_name = value
            elif key == 1:
                self.ext_format = value
        self._position = block_end
        (self.charsetnr, self.length, self.type_code, self.flags, self.scale) = self.read_struct(
            "<xHIBHBxx"
        )


class Connection(aiomysql.Connection):  # type: ignore[misc]
    """An aiomysql connection with mysql2's protocol choices (see the module docstring)."""

    def __init__(self, *args: Any, multiple_statements: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._mrc_multiple_statements = multiple_statements
        self._mrc_greeting: bytes | None = None
        self._mrc_capture_greeting = False
        self._mrc_patch_handshake = False
        self.extended_metadata = False

    async def _get_server_information(self) -> None:
        self._mrc_capture_greeting = True
        try:
            await super()._get_server_information()
        finally:
            self._mrc_capture_greeting = False

    def _mariadb_capabilities(self) -> int:
        data = self._mrc_greeting
        if not data or self.server_capabilities & CLIENT.LONG_PASSWORD:
            return 0  # a MySQL server: no MariaDB capability bytes
        # protocol(1) version\0 thread(4) salt(8) filler(1) caps(2) charset(1) status(2)
        # caps_high(2) salt_len(1) reserved(6) mariadb_caps(4)
        offset = data.index(b"\0", 1) + 1 + 4 + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 6
        if len(data) < offset + 4:
            return 0
        caps: int = struct.unpack_from("<I", data, offset)[0]
        return caps

    async def _request_authentication(self) -> None:
        self._mrc_patch_handshake = True
        try:
            await super()._request_authentication()
        finally:
            self._mrc_patch_handshake = False

    def write_packet(self, payload: bytes) -> None:
        if self._mrc_patch_handshake and len(payload) >= 32:
            flags = struct.unpack_from("<I", payload)[0]
            if flags == self.client_flag & 0xFFFFFFFF:
                payload = self._patched_handshake(flags, payload)
        super().write_packet(payload)

    def _patched_handshake(self, flags: int, payload: bytes) -> bytes:
        if not self._mrc_multiple_statements:
            flags &= ~CLIENT.MULTI_STATEMENTS
        mariadb_caps = 0
        if self._mariadb_capabilities() & _MARIADB_CLIENT_EXTENDED_METADATA:
            # MariaDB reads the client's extended capabilities only without CLIENT_MYSQL
            flags &= ~CLIENT.LONG_PASSWORD
            mariadb_caps = _MARIADB_CLIENT_EXTENDED_METADATA
            self.extended_metadata = True
        return (
            struct.pack("<I", flags)
            + payload[4:28]
            + struct.pack("<I", mariadb_caps)
            + payload[32:]
        )

    async def _read_packet(self, packet_type: type = MysqlPacket) -> Any:
        if packet_type is FieldDescriptorPacket and self.extended_metadata:
            packet_type = _ExtendedFieldDescriptor
        packet = await super()._read_packet(packet_type)
        if self._mrc_capture_greeting and self._mrc_greeting is None:
            self._mrc_greeting = packet.get_all_data()
        return packet


@dataclass(slots=True)
class RawResult:
    """One statement's result: column definitions and undecoded rows, or an OK packet."""

    fields: list[Any]
    rows: list[tuple[bytes | None, ...]]
    affected_rows: int = 0
    insert_id: int = 0
    server_status: int = 0
    warning_count: int = 0
    message: str = ""


async def run_raw(conn: Connection, sql: str) -> list[RawResult]:
    """Run `sql` and return every result set with values as the server sent them."""
    decoders, use_unicode = conn.decoders, conn.use_unicode
    # undecoded bytes: mysql2's casting is applied by the caller
    conn.decoders, conn.use_unicode = {}, False
    try:
        await conn.query(sql)
        results = [_raw(conn._result)]
        while conn._result is not None and conn._result.has_next:
            await conn.next_result()
            results.append(_raw(conn._result))
    finally:
        conn.decoders, conn.use_unicode = decoders, use_unicode
    return results


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


class Pool:
    """A small pool of `Connection`s with aiomysql's `acquire()` / `release()` interface."""

    def __init__(self, connect_kwargs: dict[str, Any], *, maxsize: int = 10) -> None:
        self._connect_kwargs = connect_kwargs
        self._maxsize = maxsize
        self._free: collections.deque[Connection] = collections.deque()
        self._used: set[Connection] = set()
        self._opening = 0
        self._cond: asyncio.Condition | None = None
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

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    async def _open(self) -> Connection:
        conn = Connection(**self._connect_kwargs)
        try:
            await conn._connect()
        except BaseException:
            conn.close()
            raise
        return conn

    async def _acquire(self) -> Connection:
        cond = self._condition()
        async with cond:
            while True:
                if self._closed:
                    raise ClientClosedError("the MySQL pool is closed")
                while self._free:
                    conn = self._free.popleft()
                    if conn.closed or conn._reader.at_eof():
                        conn.close()
                        continue
                    self._used.add(conn)
                    return conn
                if self.size < self._maxsize:
                    self._opening += 1
                    break
                await cond.wait()
        try:
            conn = await self._open()
        finally:
            self._opening -= 1
        self._used.add(conn)
        return conn

    def acquire(self) -> _AcquireContext:
        """Borrow a connection: `async with pool.acquire() as conn` or `await pool.acquire()`."""
        return _AcquireContext(self)

    async def release(self, conn: Connection) -> None:
        """Give a connection back; a broken or closed one is dropped."""
        self._used.discard(conn)
        if not self._closed and not conn.closed:
            if conn.server_status & SERVER_STATUS.SERVER_STATUS_IN_TRANS:
                try:
                    await conn.rollback()
                except Exception:
                    conn.close()
            if not conn.closed:
                self._free.append(conn)
        else:
            conn.close()
        cond = self._condition()
        async with cond:
            cond.notify()

    def close(self) -> None:
        """Close idle connections now; borrowed ones close when released."""
        self._closed = True
        while self._free:
            self._free.popleft().close()

    def terminate(self) -> None:
        """Close every connection, borrowed ones included."""
        self.close()
        for conn in list(self._used):
            conn.close()
        self._used.clear()

    async def wait_closed(self) -> None:
        """Wait until the pool holds no borrowed connections (after `close()`)."""
        while self._used:
            cond = self._condition()
            async with cond:
                await cond.wait()


class _AcquireContext:
    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._conn: Connection | None = None

    def __await__(self) -> Any:
        return self._pool._acquire().__await__()

    async def __aenter__(self) -> Connection:
        self._conn = await self._pool._acquire()
        return self._conn

    async def __aexit__(self, *exc: object) -> None:
        if self._conn is not None:
            await self._pool.release(self._conn)
            self._conn = None
