"""After `mkdocs build`: the API reference documents every name in `__all__`, and the sync
classes (part of `make docs`)."""

from __future__ import annotations

import sys
from pathlib import Path

import mysql_redis_cache

PAGE = Path(__file__).resolve().parent.parent / "site" / "reference" / "index.html"


def main() -> int:
    html = PAGE.read_text()
    wanted = [f"mysql_redis_cache.{name}" for name in mysql_redis_cache.__all__]
    wanted += ["mysql_redis_cache.sync.MRCClient", "mysql_redis_cache.sync.MRCServer"]
    missing = [path for path in wanted if f'id="{path}"' not in html and "__version__" not in path]
    for path in missing:
        print(f"the API reference does not document {path}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
