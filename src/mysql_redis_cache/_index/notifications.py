"""The keyspace notifications an indexer needs, and whether they could have changed.

Key-event notifications (`E`) for string writes (`$`: set, and the commands that create
strings) and generic ones (`g`: rename_to, copy_to, restore, move_to bring a key in
without a write); under an `allkeys-*` eviction policy also evictions (`e`), since the
index's own sets may then be evicted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import redis.exceptions

from .._errors import NotificationsOffError

EVENTS = (
    b"set", b"setrange", b"append", b"incrby", b"incrbyfloat",
    b"rename_to", b"copy_to", b"restore", b"move_to",
)  # fmt: skip
EVICTED = b"evicted"

type Command = Callable[..., Awaitable[Any]]


def missing(flags: str, evictions: bool) -> str:
    """The flags `flags` lacks for the indexer ('' when none)."""
    have = set(flags)
    if "A" in have:
        have |= set("g$lshzxetd")
    return "".join(f for f in "E$g" + ("e" if evictions else "") if f not in have)


async def _text(command: Command, *args: Any) -> Any:
    reply = await command(*args)
    return reply.decode() if isinstance(reply, bytes) else reply


async def ensure(command: Command, where: str) -> bool:
    """Make sure `command`'s node sends what the indexer needs, turning the flags on with
    CONFIG SET if they are not. Returns whether evictions must be followed.

    Raises:
        NotificationsOffError: the flags are missing and CONFIG SET was refused.
    """
    try:
        policy = dict(_pairs(await command("CONFIG", "GET", "maxmemory-policy")))
        flags = dict(_pairs(await command("CONFIG", "GET", "notify-keyspace-events")))
    except redis.exceptions.ResponseError:  # CONFIG renamed away: the probe will tell
        return False
    evictions = policy.get("maxmemory-policy", "").startswith("allkeys")
    current = flags.get("notify-keyspace-events", "")
    lacking = missing(current, evictions)
    if not lacking:
        return evictions
    wanted = current + lacking
    try:
        await command("CONFIG", "SET", "notify-keyspace-events", wanted)
    except redis.exceptions.ResponseError as exc:
        raise NotificationsOffError(
            f"Redis {where} has notify-keyspace-events={current!r}, and turning on "
            f"{lacking!r} failed ({exc}): set notify-keyspace-events to {wanted!r} "
            "(or 'KEA') in the server's configuration, then start the indexer again"
        ) from exc
    return evictions


def _pairs(reply: Any) -> list[tuple[str, str]]:
    """CONFIG GET's reply (a flat list, or a dict) as (name, value) text pairs."""
    if isinstance(reply, dict):
        items = list(reply.items())
    else:
        items = list(zip(reply[0::2], reply[1::2], strict=True))
    return [
        tuple(v.decode() if isinstance(v, bytes) else str(v) for v in item)  # type: ignore[misc]
        for item in items
    ]


async def config_changes(command: Command) -> int:
    """How many CONFIG SET calls the node has counted: any change since the index began
    may have switched notifications off and on again, losing writes in between."""
    info = await command("INFO", "commandstats")
    if isinstance(info, bytes):
        info = info.decode()
    if isinstance(info, dict):
        stats = info.get("cmdstat_config|set") or {}
        return int(stats.get("calls", 0)) if isinstance(stats, dict) else 0
    for line in str(info).splitlines():
        if line.startswith("cmdstat_config|set:"):
            for field in line.split(":", 1)[1].split(","):
                name, _, value = field.partition("=")
                if name == "calls":
                    return int(value)
    return 0
