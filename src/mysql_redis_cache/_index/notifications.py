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


async def node_state(command: Command) -> tuple[int, str, str]:
    """What must not change while a session trusts its view of a node: how many CONFIG
    SET calls it has counted (any may have switched notifications off and on again,
    losing writes in between), its role and its replication ID (a failover, or a full
    resync that loads keys without notifications)."""
    info = await command("INFO", "commandstats", "replication")
    if isinstance(info, bytes):
        info = info.decode()
    if isinstance(info, str):
        fields: dict[str, Any] = {}
        for line in info.splitlines():
            name, _, value = line.partition(":")
            fields[name] = value
        calls = 0
        for field in str(fields.get("cmdstat_config|set", "")).split(","):
            if field.startswith("calls="):
                calls = int(field.removeprefix("calls="))
        return calls, str(fields.get("role")), str(fields.get("master_replid"))
    stats = info.get("cmdstat_config|set") or {}
    calls = int(stats.get("calls", 0)) if isinstance(stats, dict) else 0
    return calls, str(info.get("role")), str(info.get("master_replid"))
