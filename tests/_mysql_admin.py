"""A blocking admin connection to the test MariaDB: what runs there, and KILL."""

from __future__ import annotations

from typing import Any

import pymysql

from .conftest import MYSQL_CONFIG


def admin() -> pymysql.connections.Connection[Any]:
    return pymysql.connect(
        host=MYSQL_CONFIG["host"],
        port=MYSQL_CONFIG["port"],
        user=MYSQL_CONFIG["user"],
        password=MYSQL_CONFIG["password"],
        autocommit=True,
    )


def kill(thread_ids: list[int]) -> None:
    with admin() as conn, conn.cursor() as cur:
        for thread_id in thread_ids:
            cur.execute(f"KILL {thread_id}")


def running(marker: str, database: str | None = None) -> int:
    """This run's statements (on its database, or `database`) whose text holds `marker`,
    besides this look-up: another user's statement of the same text is not counted."""
    with admin() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
            "WHERE INFO LIKE %s AND DB = %s AND ID != CONNECTION_ID()",
            (f"%{marker}%", database or MYSQL_CONFIG["database"]),
        )
        row = cur.fetchone()
        assert row is not None
        return int(row[0])
