"""Fills that an invalidation overtakes are not stored.

A fill (a miss computing its entry) sets a marker of its own, `<key>:fill:<token>`,
before its query runs, and stores the entry only if its marker is still there, in the
same script that removes it. An invalidation deletes the markers of the keys it matches
(Node's `dropOutdatedCache` does too: it deletes every key containing `Name=value`), so
a fill that read its rows before the invalidation finds its marker gone. Fills of one
key in several processes each have their own marker and so never refuse each other:
each stores, and the later one wins.

A SCAN can miss a key written while it runs, so a fill that stored its entry during a
long invalidation scan, behind the scan's cursor, would escape. `MRCServer` therefore
also stamps each `Name=value` it invalidates (`mrc:inv:<sha1>`, a fresh random value)
before it scans, and keeps the stamps alive until the scan ends; a fill reads the stamps
of every token its key could be invalidated by when it sets its marker, and stores
nothing if one changed. A fill that stores after the scan ended needs no stamp: the scan
deleted its marker.

A marker expires FILL_WINDOW after its fill began (a fill still running then is not
stored), a stamp STAMP_TTL after its scan. Nothing ever waits on a marker.

Where scripts cannot run (Redis Cluster, whose marker, entry and stamps live in different
slots; a user whose ACL forbids scripts), the same steps go as plain commands: the
marker is set and the stamps read before the query; the store is checked, made, checked
again and undone if overtaken, which leaves a window of about one round trip.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import os

FILL_WINDOW_MS = 3_600_000  # a fill slower than this is returned but not stored
STAMP_TTL_MS = 60_000
STAMP_REFRESH = 20.0  # seconds between renewals of the stamps while a scan runs
MARKER_INFIX = b":fill:"  # <key>:fill:<token in hex>
LOCK_SUFFIX = b":lock"
STAMP_PREFIX = b"mrc:inv:"
_MAX_SEGMENTS = 16  # past this, a key's stamps are not read (the marker still guards it)

# KEYS: marker, lock, stamps...; ARGV: token, marker ttl ms, lock ttl ms or ''.
# Returns nil when another process holds the lock, else the stamps as seen ('' if none).
BEGIN = """
if ARGV[3] ~= '' and not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[3])
    and redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return false  -- held by another (ours already when this is a retry on a new connection)
end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
local seen = {}
for i = 3, #KEYS do seen[#seen + 1] = redis.call('GET', KEYS[i]) or '' end
return seen
"""

# KEYS: entry, marker, lock, stamps...; ARGV: token, payload, expiry s ('' to store
# nothing), stamps as BEGIN saw them. Removes our marker and lock; returns 1 if stored.
# A marker already gone is an invalidation, or a retry whose first attempt stored: then
# the entry holds our payload.
COMMIT = """
local ours = redis.call('DEL', KEYS[2]) == 1
if redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
if ARGV[3] == '' then return 0 end
if not ours then
  if redis.call('GET', KEYS[1]) == ARGV[2] then return 1 end
  return 0
end
for i = 4, #KEYS do
  if (redis.call('GET', KEYS[i]) or '') ~= ARGV[i] then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""


def marker_of(key: bytes, token: bytes) -> bytes:
    """The marker of the fill of `key` holding `token`."""
    return key + MARKER_INFIX + token.hex().encode()


def guarded_entry(key: bytes) -> bytes | None:
    """The entry a fill marker guards, or None when `key` is no fill marker."""
    at = len(key) - len(MARKER_INFIX) - 2 * TOKEN_BYTES
    if at <= 0 or key[at : at + len(MARKER_INFIX)] != MARKER_INFIX:
        return None
    return key[:at]


def lock_of(key: bytes) -> bytes:
    return key + LOCK_SUFFIX


def stamp_of(token: bytes) -> bytes:
    """The stamp key of an invalidation token `Name=value` (hashed: values can be long)."""
    return STAMP_PREFIX + hashlib.sha1(token).hexdigest().encode()


@functools.lru_cache(maxsize=4096)  # a fill asks twice: when it begins and when it stores
def stamps_for(key: bytes) -> tuple[bytes, ...]:
    """The stamp keys of every token that could invalidate `key`.

    An invalidation token matches when `_token_` is a run of the key's `_`-separated
    segments, and values may hold `_`, so every run that starts with `Name=` counts.
    """
    if len(key) <= 41 or b"=" not in key:
        return ()
    segments = key[:-41].split(b"_")
    if len(segments) > _MAX_SEGMENTS:
        return ()
    stamps = []
    for start, first in enumerate(segments):
        if first.find(b"=") <= 0:
            continue
        for end in range(start + 1, len(segments) + 1):
            stamps.append(stamp_of(b"_".join(segments[start:end])))
    return tuple(stamps)


TOKEN_BYTES = 16


class Tokens:
    """Fill tokens unique across processes and time: a random prefix per process (drawn
    again in a forked child) and a counter. Cheaper than 16 random bytes a fill, which
    cost a system call each."""

    def __init__(self) -> None:
        self._reseed()
        os.register_at_fork(after_in_child=self._reseed)

    def _reseed(self) -> None:
        self._prefix = os.urandom(8)
        self._count = itertools.count()

    def next(self) -> bytes:
        return self._prefix + next(self._count).to_bytes(8, "big")


tokens = Tokens()
