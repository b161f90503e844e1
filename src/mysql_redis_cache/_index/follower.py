"""One Redis node's key-event notifications, followed into the index.

A session subscribes, then proves notifications flow (a probe key it writes must come
back), then backfills with one SCAN while it keeps following. Within one connection,
notifications arrive in order and none is lost unless the connection closes, so the
node's part of the index is complete from the moment the backfill ends and the probe
came back, until the session ends. A session ends on any failure, and the index is then
rebuilt by the next one. Only a complete session acknowledges barriers.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from .._errors import NotificationsOffError
from .names import PREFIX, barrier, is_barrier, segments_of
from .notifications import EVENTS, EVICTED, Command, ensure, node_state
from .store import IndexStore

logger = logging.getLogger("mysql_redis_cache")

BATCH = 2000  # notifications applied at once
IDLE = 5.0  # seconds without a message before a PING; as long again without one fails
SCAN_COUNT = 1000

type Scan = Callable[[int], Awaitable[tuple[int, list[bytes]]]]


class SessionEnded(Exception):
    """The follower's view can no longer be trusted: start again (never escapes)."""


class Follower:
    """Follows one node: `complete` while its session holds every key of the node."""

    def __init__(
        self,
        where: str,
        connect: Callable[[], Awaitable[Any]],
        command: Command,
        scan: Scan,
        store: IndexStore,
        who: bytes,
        db: int,
        tag: bytes | None = None,
    ) -> None:
        self.where = where
        self._connect = connect
        self._command = command
        self._scan = scan
        self._store = store
        self._who = who
        self._db = db
        self._tag = tag  # a hash tag of a slot this node serves (Cluster)
        self._probed = False  # our probe came back: notifications flow
        self._filled = False  # the backfill ended
        self.indexed = 0
        self.acks = 0

    @property
    def complete(self) -> bool:
        """Whether every key of the node is in the index, as of the last notification."""
        return self._probed and self._filled

    async def follow(self) -> None:
        """One session; returns only by raising (the session ended)."""
        self._probed = self._filled = False
        evictions = await ensure(self._command, self.where)
        state = await node_state(self._command)
        conn = await self._connect()
        tasks: list[asyncio.Task[None]] = []
        try:
            channels = [b"__keyevent@%d__:%s" % (self._db, e) for e in EVENTS]
            if evictions:
                channels.append(b"__keyevent@%d__:%s" % (self._db, EVICTED))
            await conn.send_command("SUBSCRIBE", *channels)
            for _ in channels:
                reply = await conn.read_response(timeout=IDLE, push_request=True)
                if not reply or reply[0] != b"subscribe":
                    raise SessionEnded(f"SUBSCRIBE answered {reply!r}")
            probe = barrier(b"probe:" + secrets.token_hex(8).encode(), self._tag)
            await self._command("SET", probe, b"", "PX", 60_000)
            consume = asyncio.create_task(self._consume(conn, probe, state))
            backfill = asyncio.create_task(self._backfill())
            tasks += (consume, backfill)
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            if backfill in done and backfill.exception() is None:
                await consume  # returns only by raising
            for task in done:
                task.result()
        finally:
            self._probed = self._filled = False
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await conn.disconnect()

    async def _backfill(self) -> None:
        cursor = 0
        while True:
            cursor, keys = await self._scan(cursor)
            await self._flush([(key, held) for key in keys if (held := segments_of(key))])
            if cursor == 0:
                break
        self._filled = True
        logger.info("the invalidation index holds every key of %s", self.where)

    async def _consume(self, conn: Any, probe: bytes, state: tuple[int, str, str]) -> None:
        pinged = False
        while True:
            message = await conn.read_response(timeout=IDLE, push_request=True)
            if message is None:
                if not self._probed:
                    raise NotificationsOffError(
                        f"Redis {self.where} sent no notification for a key written "
                        "just now: set notify-keyspace-events to include 'E$g' (or "
                        "'KEA'), then start the indexer again"
                    )
                if pinged:
                    raise SessionEnded(f"Redis {self.where} did not answer a PING")
                await conn.send_command("PING")
                pinged = True
                continue
            pinged = False
            batch = [message]
            while len(batch) < BATCH:
                more = await conn.read_response(timeout=0, push_request=True)
                if more is None:
                    break
                batch.append(more)
            await self._apply(batch, probe, state)

    async def _apply(self, batch: list[Any], probe: bytes, state: tuple[int, str, str]) -> None:
        """Index what the notifications name, then acknowledge the batch's barriers: each
        acknowledgement follows the indexing of every write before its barrier."""
        pending: list[tuple[bytes, list[bytes]]] = []
        barriers: list[bytes] = []
        for message in batch:
            if not isinstance(message, list) or len(message) < 3 or message[0] != b"message":
                continue  # a PING's answer
            channel, key = message[1], message[2]
            if channel.endswith(EVICTED):
                if key.startswith(PREFIX):
                    raise SessionEnded(f"Redis evicted the index's {key!r}")
            elif key == probe:
                self._probed = True
                await self._command("UNLINK", probe)
            elif is_barrier(key):
                barriers.append(key)
            elif held := segments_of(key):
                pending.append((key, held))
        await self._flush(pending)
        if barriers and self.complete:
            # one look covers every barrier received: a change before any of them shows
            if (now := await node_state(self._command)) != state:
                raise SessionEnded(
                    f"{self.where} changed ({state} -> {now}: CONFIG SET ran, or a "
                    "failover): writes may have gone unnotified"
                )
            await self._store.ack(barriers, self._who)
            self.acks += len(barriers)

    async def _flush(self, keys: list[tuple[bytes, list[bytes]]]) -> None:
        """Index `keys`, each with its segments."""
        if keys:
            self.indexed += await self._store.add(keys)
