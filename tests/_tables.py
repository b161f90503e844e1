"""Test tables, created through the library's own pool."""

from __future__ import annotations

import warnings

from mysql_redis_cache import MRCClient

ALL_TYPES_DDL = """
CREATE TABLE mrc_all_types (
  id INT PRIMARY KEY,
  i INT, bi BIGINT, bu BIGINT UNSIGNED, dec_col DECIMAL(20,6), f FLOAT, d DOUBLE,
  vs VARCHAR(64), tx TEXT, ch CHAR(8),
  dt3 DATETIME(3), dt6 DATETIME(6), ts TIMESTAMP NULL DEFAULT NULL, da DATE, tm TIME(2), yr YEAR,
  js JSON, en ENUM('small','large'), st SET('a','b','c'), bt BIT(12),
  vb VARBINARY(16), bl BLOB, nul INT NULL, uni VARCHAR(64)
) CHARACTER SET utf8mb4
"""

ALL_TYPES_ROWS = [
    """(1, -5, 9007199254740993, 18446744073709551615, 12.500000, 1.1, 0.1,
        '00123', 'hello', 'ab', '2024-03-31 02:30:00.123', '2024-01-15 10:30:05.987654',
        '2024-01-01 00:00:00', '2024-02-29', '-838:59:59.50', 2024,
        '{"b":1,"2":[1.0,2e400,12345678901234567890],"1":null,"s":"x"}', 'large', 'a,c',
        b'101010101010', 0x00ff10, 'blob\\0x', NULL, 'héllo 😀 \\\\ "q"')""",
    """(2, 0, -9223372036854775808, 0, -0.000000, -3.4e38, 1e-7,
        '1.', 'TEXT with\\nnewline', '', '0000-00-00 00:00:00', '1970-01-01 00:00:00',
        NULL, '0000-00-00', '00:00:00', 1901, '[1, "2", {"k": "00123"}]', NULL, '',
        b'0', '', '', NULL, '')""",
    """(3, 2147483647, 123, 9007199254740992, 99999999999999.999999, 3.4e38, 1.7976931348623157e308,
        '-12.50', '12e3', '0x1A', '9999-12-31 23:59:59.999', '1000-01-01 00:00:00.000001',
        '2038-01-19 03:14:07', '1000-01-01', '838:59:59', 2155, '"123"', 'small', 'b',
        b'111111111111', X'', 0x00, NULL, '١٢٣')""",
    """(4, NULL, NULL, NULL, NULL, NULL, 0.30000000000000004,
        '007', ' 12', '-0', '2024-10-27 02:30:00', '2024-06-30 12:00:00.5',
        '2024-10-27 01:30:00', '2024-10-27', '-00:00:01', NULL, 'null', NULL, NULL,
        NULL, NULL, NULL, NULL, '12\\n')""",
]


async def create_all_types(client: MRCClient) -> None:
    """(Re)create mrc_all_types with rows that stress every cast rule."""
    # aiomysql turns server notes (e.g. the zero dates) into Python warnings
    with warnings.catch_warnings(action="ignore"):
        await _create(client)


async def _create(client: MRCClient) -> None:
    async with client.get_mysql_pool().acquire() as conn, conn.cursor() as cur:
        await cur.execute("SET SESSION sql_mode = ''")  # allow zero dates
        await cur.execute("SET SESSION time_zone = '+00:00'")
        await cur.execute("DROP TABLE IF EXISTS mrc_all_types")
        await cur.execute(ALL_TYPES_DDL)
        await cur.execute("INSERT INTO mrc_all_types VALUES " + ",".join(ALL_TYPES_ROWS))
        await cur.execute("SET SESSION sql_mode = DEFAULT")
        await cur.execute("SET SESSION time_zone = DEFAULT")
