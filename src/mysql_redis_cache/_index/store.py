"""Writes to the index: adding keys, acknowledging barriers, pruning gone keys."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from .._redis.fills import guarded_entry
from .names import ALIVE, DUE, ack_of, set_of
from .scripts import ADD, PRUNE

MARKER_RECHECK_MS = 10_000  # fill markers live as long as their fill: look again soon
ACK_TTL_MS = 10_000
PRUNE_SETS = 100  # sets looked at per prune round
PRUNE_MEMBERS = 500  # members looked at per set per round


class IndexStore:
    """The index in Redis, written through one redis-py client (a Cluster client routes
    each key; every index key is in the `{mrc:idx}` slot)."""

    def __init__(self, client: aioredis.Redis | aioredis.RedisCluster) -> None:
        self._client = client
        self._cluster = isinstance(client, aioredis.RedisCluster)
        self._add = client.register_script(ADD)
        self._prune = client.register_script(PRUNE)

    async def _ttls(self, keys: Sequence[bytes]) -> list[Any]:
        async with self._client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.pttl(key)
            return list(await pipe.execute(raise_on_error=False))

    async def add(self, keys: Sequence[tuple[bytes, list[bytes]]]) -> int:
        """Index `keys` (cache keys and fill markers, each with its `segments_of`) with
        their TTLs as they are now; keys already gone are left out. Returns how many
        were indexed."""
        # A single server lets the script read each TTL; a Cluster's keys are elsewhere.
        ttls: list[Any] = (
            await self._ttls([key for key, _ in keys]) if self._cluster else [b"?"] * len(keys)
        )
        sets: dict[bytes, bytes] = {DUE: b"1"}
        args: list[bytes] = []
        for (key, held), ttl in zip(keys, ttls, strict=True):
            if isinstance(ttl, Exception):  # moved mid-reshard, say: look again soon
                ttl = MARKER_RECHECK_MS
            elif ttl == -2:
                continue
            indexes = b",".join(sets.setdefault(set_of(s), b"%d" % (len(sets) + 1)) for s in held)
            ttl = ttl if ttl == b"?" else b"%d" % ttl
            args += (key, b"%s %s %s" % (ttl, _recheck(key), indexes))
        if not args:
            return 0
        return int(await self._add(keys=list(sets), args=args))

    async def check(self) -> None:
        """Run the add script with nothing to add: refused scripts show at once."""
        await self._add(keys=[DUE], args=[])

    async def ack(self, barriers: Sequence[bytes], who: bytes) -> None:
        """Tell the invalidations that wrote `barriers` that the index holds every key
        written before them."""
        async with self._client.pipeline(transaction=False) as pipe:
            for barrier in barriers:
                pipe.rpush(ack_of(barrier), who)
                pipe.pexpire(ack_of(barrier), ACK_TTL_MS)
            await pipe.execute()

    async def prune(self) -> int:
        """Look again at members whose recheck time has come: drop those whose key is
        gone, rescore the rest. Returns the members dropped in this round."""
        seconds, micros = await self._client.time()
        now = seconds * 1000 + micros // 1000
        due = await self._client.execute_command(
            "ZRANGEBYSCORE", DUE, "-inf", now, "LIMIT", 0, PRUNE_SETS
        )
        removed = 0
        for index_set in due:
            pairs = await self._client.execute_command(
                "ZRANGEBYSCORE", index_set, "-inf", now, "WITHSCORES", "LIMIT", 0, PRUNE_MEMBERS
            )
            if pairs and isinstance(pairs[0], list):  # RESP3: [member, score] pairs
                pairs = [item for pair in pairs for item in pair]
            members = pairs[0::2]
            scores = [int(float(score)) for score in pairs[1::2]]  # whole milliseconds
            ttls = await self._ttls(members) if members else []
            args: list[bytes | int] = []
            for member, score, ttl in zip(members, scores, ttls, strict=True):
                if isinstance(ttl, Exception):
                    ttl = MARKER_RECHECK_MS
                args += [member, score, ttl, _recheck(member)]
            removed += await self._prune(keys=[DUE, index_set], args=args)
        return removed

    async def beat(self, who: bytes, ttl_ms: int) -> None:
        """Say an indexer with a complete index runs, for `ttl_ms`."""
        await self._client.set(ALIVE, who, px=ttl_ms)

    async def quiet(self, who: bytes) -> None:
        """Withdraw `who`'s heartbeat (another indexer's stays)."""
        if await self._client.get(ALIVE) == who:
            await self._client.delete(ALIVE)


def _recheck(key: bytes) -> bytes:
    """How soon to look at `key` again, for the scripts: fill markers rarely outlive
    their fill; anything else at its expiry ('-')."""
    return b"%d" % MARKER_RECHECK_MS if guarded_entry(key) is not None else b"-"
