"""Runs interop/harness.js, the real npm package, on a batch of operations."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from datetime import date
from pathlib import Path
from typing import Any

from mysql_redis_cache._node.jsvalue import instant_ms, int_text

INTEROP_DIR = Path(__file__).resolve().parent.parent / "interop"
HARNESS = INTEROP_DIR / "harness.js"


class NodeError(Exception):
    """An operation failed inside Node."""


def tag(value: object) -> object:
    """Encode a Python value so the harness rebuilds its JavaScript counterpart."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value if abs(value) <= 2**53 else {"$": "bigint", "v": int_text(value)}
    if isinstance(value, float):
        if math.isnan(value):
            return {"$": "num", "v": "NaN"}
        if math.isinf(value):
            return {"$": "num", "v": "Infinity" if value > 0 else "-Infinity"}
        if value == 0 and math.copysign(1, value) < 0:
            return {"$": "num", "v": "-0"}
        return value
    if isinstance(value, bytes):
        return {"$": "buf", "v": value.hex()}
    if isinstance(value, date):  # also instants in years 0 and 10000, which JS holds
        return {"$": "date", "v": instant_ms(value)}
    if isinstance(value, list | tuple):
        return [tag(v) for v in value]
    if isinstance(value, dict):
        return {k: tag(v) for k, v in value.items()}
    raise TypeError(f"cannot send {type(value).__name__} to Node")


def node_available() -> bool:
    return shutil.which("node") is not None and (INTEROP_DIR / "node_modules").is_dir()


def run_node(
    ops: list[dict[str, Any]],
    *,
    mysql: dict[str, Any] | None = None,
    redis_url: str | None = None,
    tz: str | None = None,
) -> list[Any]:
    """Run `ops` in one Node process; return each op's result, raising on the first error."""
    request = {"mysql": mysql, "redis": {"url": redis_url} if redis_url else None, "ops": ops}
    env = dict(os.environ)
    if tz is not None:
        env["TZ"] = tz
    proc = subprocess.run(
        ["node", str(HARNESS)],
        input=json.dumps(request).encode(),
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise NodeError(proc.stderr.decode(errors="replace"))
    results = []
    for op, outcome in zip(ops, json.loads(proc.stdout), strict=True):
        if "error" in outcome:
            raise NodeError(f"{op['op']}: {outcome['error']}")
        results.append(outcome["ok"])
    return results
