"""The invalidation's side of the index: prove it is current, then read it.

The proof is a barrier: a key written now, whose notification an indexer can see only
after the notifications of every earlier write to its node. An indexer acknowledges it
(a list beside it) only when its view of the node is complete and it has indexed
everything before the barrier. On a Cluster every primary gets a barrier of its own.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Sequence
from typing import Any

import redis.asyncio as aioredis

from .names import ALIVE, ack_of, barrier, set_for_token
from .tags import tags_by_node

BARRIER_TTL_MS = 10_000
ZSCAN_COUNT = 1000


async def prove(client: Any, wait: float) -> str | None:
    """None when a live indexer holds every key written before this call; else why not.

    Raises what redis-py raises.
    """
    if await client.get(ALIVE) is None:
        return "no indexer is running"
    nonce = secrets.token_hex(8).encode()
    if isinstance(client, aioredis.RedisCluster):
        barriers = [barrier(nonce, tag) for tag in tags_by_node(client).values()]
    else:
        barriers = [barrier(nonce)]
    await asyncio.gather(*(client.set(key, b"", px=BARRIER_TTL_MS) for key in barriers))
    acks = [ack_of(key) for key in barriers]
    try:
        loop = asyncio.get_running_loop()
        deadline, pause = loop.time() + wait, 0.0005
        while True:
            found = await asyncio.gather(*(client.exists(ack) for ack in acks))
            if all(found):
                return None
            if loop.time() >= deadline:
                return f"no indexer acknowledged within {wait:g} s"
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.02)
    finally:
        await asyncio.gather(*(client.unlink(*pair) for pair in zip(barriers, acks, strict=True)))


async def members(
    client: Any, tokens: Sequence[bytes], require_all: bool
) -> AsyncIterator[list[bytes]]:
    """Pages of the keys that may hold the tokens: every key that holds them is among
    them (when the index is complete), and others may be too."""
    sets = _sets(tokens)
    if require_all and len(sets) > 1:  # every match is in each set: read the smallest
        sizes = await asyncio.gather(*(client.zcard(name) for name in sets))
        sets = [min(zip(sizes, sets, strict=True))[1]]
    for name in sets:
        cursor = 0
        while True:
            cursor, pairs = await client.zscan(name, cursor, count=ZSCAN_COUNT)
            if pairs:
                yield [member for member, _ in pairs]
            if cursor == 0:
                break


async def size(client: Any, tokens: Sequence[bytes]) -> int:
    """How many members the sets of `tokens` hold (for progress reports)."""
    return sum(await asyncio.gather(*(client.zcard(name) for name in _sets(tokens))))


def _sets(tokens: Sequence[bytes]) -> list[bytes]:
    """The index sets of `tokens`, each once."""
    return list(dict.fromkeys(set_for_token(token) for token in tokens))
