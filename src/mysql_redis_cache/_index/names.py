"""The index's key names, and which index sets a key belongs to.

A token `Name=value` matches a cache key when `_Name=value_` is a run of the key's
`_`-separated segments. The token's first `_`-separated piece that holds '=' (names may
hold `_`, never '=') is then one whole segment of the key, so the index keeps, per
segment that holds '=', the set of keys having it. An invalidation reads the set of that
piece of each token and checks every member with the same `matches` as the SCAN path:
the index only narrows the keys to check, it never decides a match.

Every index key shares the hash tag `{mrc:idx}`, so on a Cluster the scripts that update
several sets at once run in one slot.
"""

from __future__ import annotations

import functools
import hashlib

from .._redis.fills import guarded_entry
from .._redis.invalidate import param_part

PREFIX = b"{mrc:idx}:"
SET_PREFIX = PREFIX + b"t:"  # + sha1 of the segment
DUE = PREFIX + b"due"  # each set, scored by its earliest member's recheck time
ALIVE = PREFIX + b"alive"  # an indexer's heartbeat while it holds a complete index
BARRIER_PREFIX = b"mrc:idx:barrier:"
ACK_INFIX = b":ack"


def segments_of(key: bytes) -> list[bytes]:
    """The index segments of `key`: those of its entry for a fill marker, none for a key
    that is neither a cache key nor a marker."""
    params = param_part(guarded_entry(key) or key)
    if params is None:
        return []
    found: list[bytes] = []
    for segment in params[1:-1].split(b"_"):
        if b"=" in segment and segment not in found:
            found.append(segment)
    return found


@functools.lru_cache(maxsize=65_536)  # segments repeat: StoreId=6 in every key of a store
def set_of(segment: bytes) -> bytes:
    """The index set of the keys holding `segment`."""
    return SET_PREFIX + hashlib.sha1(segment).hexdigest().encode()


def set_for_token(token: bytes) -> bytes:
    """The index set holding every key that `token` (`Name=value`) can match."""
    return set_of(next(piece for piece in token.split(b"_") if b"=" in piece))


def barrier(nonce: bytes, tag: bytes | None = None) -> bytes:
    """A barrier key; `tag` places it on a chosen Cluster node."""
    slot = b"{" + tag + b"}:" if tag is not None else b""
    return BARRIER_PREFIX + slot + nonce


def ack_of(barrier_key: bytes) -> bytes:
    """The list an indexer pushes to when it has seen `barrier_key` (same slot)."""
    return barrier_key + ACK_INFIX


def is_barrier(key: bytes) -> bool:
    return key.startswith(BARRIER_PREFIX) and not key.endswith(ACK_INFIX)
