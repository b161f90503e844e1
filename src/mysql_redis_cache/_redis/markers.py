"""A fill's two Redis steps, marking before its query and storing after it (`fills.py`
says why), as one script each where they can run, else as plain commands.

Scripts cannot run across a Cluster's slots, nor for a Redis user whose ACL forbids them
(`-@scripting`, common on managed and locked-down servers). The first refusal switches
the client to plain commands for good, with one WARNING naming the guarantee this costs.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.exceptions

from .fills import BEGIN, COMMIT, FILL_WINDOW_MS, lock_of, marker_of, stamps_for
from .states import scripts_refused

logger = logging.getLogger("mysql_redis_cache")

type Arg = bytes | str | int
# Sends commands together; returns their replies, error replies as exceptions in place.
type Send = Callable[[Sequence[tuple[Arg, ...]]], Awaitable[list[Any]]]

# Compare-and-delete: remove a lock only while it still holds our token.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_SHA1 = {source: hashlib.sha1(source.encode()).hexdigest() for source in (BEGIN, COMMIT, RELEASE)}


class Markers:
    """The fill steps of one client. `scripts` False stores with plain commands from the
    start (`MRCClient(..., scripts=False)`); `where` names the server in log lines."""

    def __init__(self, scripts: bool, where: str) -> None:
        self.scripts = scripts
        self.where = where

    async def begin(
        self, send: Send, spans: bool, key: bytes, token: bytes, lock_ms: int | None
    ) -> list[bytes] | None:
        """Set the fill's marker (first taking the lock, with `lock_ms`) and read the
        invalidation stamps. `spans`: a script may use keys of several slots (not on
        Cluster). Returns the stamps as seen, or None when another process holds the lock.
        """
        stamps, marker, lock = stamps_for(key), marker_of(key, token), lock_of(key)
        if spans and self.scripts:
            try:
                seen = await self._script(
                    send,
                    BEGIN,
                    [marker, lock, *stamps],
                    [token, FILL_WINDOW_MS, "" if lock_ms is None else lock_ms],
                )
                return None if seen is None else list(seen)
            except redis.exceptions.ResponseError as exc:
                self._refused(exc)
        if lock_ms is not None:
            [taken] = _raised(await send([("SET", lock, token, "NX", "PX", lock_ms)]))
            if taken is None and _raised(await send([("GET", lock)]))[0] != token:
                return None  # held by another (ours already when this is a retry)
        marked = [("SET", marker, b"1", "PX", FILL_WINDOW_MS), *(("GET", s) for s in stamps)]
        return [value or b"" for value in _raised(await send(marked))[1:]]

    async def commit(
        self,
        send: Send,
        spans: bool,
        key: bytes,
        token: bytes,
        payload: bytes | None,
        expiry: int,
        seen: list[bytes],
        locked: bool,
    ) -> bool:
        """Store `payload` for `expiry` seconds unless an invalidation overtook the fill
        (its marker gone, a stamp changed); remove the marker and the lock, if `locked`.
        `payload` None only removes them. Returns whether the entry was stored."""
        stamps, marker, lock = stamps_for(key), marker_of(key, token), lock_of(key)
        if spans and self.scripts:
            try:
                stored = await self._script(
                    send,
                    COMMIT,
                    [key, marker, lock, *stamps],
                    [token, payload or b"", "" if payload is None else expiry, *seen],
                )
                return bool(stored)
            except redis.exceptions.ResponseError as exc:
                self._refused(exc)
        # As plain commands: check, store, check again and undo the store if overtaken.
        # Not atomic: an invalidation that deletes the entry between the store and the
        # second check, and the marker after it, leaves the entry.

        async def intact() -> bool:
            ours, *now = _raised(await send([("EXISTS", marker), *(("GET", s) for s in stamps)]))
            return bool(ours) and [value or b"" for value in now] == seen

        stored = False
        if payload is not None and await intact():
            _raised(await send([("SET", key, payload, "EX", expiry)]))
            stored = await intact()
            if not stored:
                _raised(await send([("DEL", key)]))
        _raised(await send([("DEL", marker)]))
        if locked and self.scripts:  # one key: a script runs on a Cluster too
            await self._script(send, RELEASE, [lock], [token])
        elif locked and _raised(await send([("GET", lock)]))[0] == token:
            _raised(await send([("DEL", lock)]))  # may race a new holder: the lock only saves work
        return stored

    async def _script(self, send: Send, source: str, keys: list[bytes], args: list[Arg]) -> Any:
        """EVALSHA `source`, loading it on a NOSCRIPT; its reply, raising an error reply."""
        [reply] = await send([("EVALSHA", _SHA1[source], len(keys), *keys, *args)])
        if isinstance(reply, redis.exceptions.NoScriptError):
            [reply] = await send([("EVAL", source, len(keys), *keys, *args)])
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def _refused(self, exc: redis.exceptions.ResponseError) -> None:
        """Re-raise `exc` unless it says scripts may not run; then switch to plain commands."""
        if not scripts_refused(exc):
            raise exc
        if not self.scripts:
            return  # fills that sent theirs before the first refusal came back
        self.scripts = False
        logger.warning(
            "Redis at %s refuses scripts (%s): fills are stored with plain commands from "
            "now on, so a fill that an invalidation overtakes within one round trip may "
            "store rows read before it, as in Node (MRCClient(..., scripts=False) chooses "
            "this from the start)",
            self.where,
            exc,
        )


def _raised(replies: list[Any]) -> list[Any]:
    """`replies`, raising the first error reply among them."""
    for reply in replies:
        if isinstance(reply, BaseException):
            raise reply
    return replies
