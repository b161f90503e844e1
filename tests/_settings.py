"""Where the machine's MariaDB and Redis are (the MRC_TEST_* variables): no side effects,
so that benchmarks can import it too."""

from __future__ import annotations

import os
from typing import Any

MYSQL_SERVER: dict[str, Any] = {
    "host": os.environ.get("MRC_TEST_MYSQL_HOST", "127.0.0.1"),
    "port": int(os.environ.get("MRC_TEST_MYSQL_PORT", "3306")),
    "user": os.environ.get("MRC_TEST_MYSQL_USER", "root"),
    "password": os.environ.get("MRC_TEST_MYSQL_PASSWORD", ""),
}
# The machine's shared database and Redis: what the benchmarks use
MYSQL_CONFIG: dict[str, Any] = {
    **MYSQL_SERVER,
    "database": os.environ.get("MRC_TEST_MYSQL_DATABASE", "test"),
}
