"""When to refresh an entry ahead of its expiry: XFetch (Vattani, Chierichetti and
Lowenstein, PVLDB 8(8), 2015) over what this process knows, without changing what is
stored (Node reads the same bytes).

A hit refreshes its entry when δ·β·(-ln U) reaches the time left before it expires, with
δ the duration of the last fill of its query here and U uniform on (0, 1]. The hotter
the key, the earlier one of its many hits draws a large -ln U.

The time left comes from Redis (a PTTL read with the hit), but only where a refresh could
be near: this process remembers, per key, the latest expiry it learned (from a PTTL, or
from storing the entry itself). An expiry can only move later (a newer store), never
earlier (the library never shortens a TTL), so while the remembered one is more than
40·δ·β away (a draw past 40 has probability e^-40), the hit skips the PTTL and the draw.
"""

from __future__ import annotations

import math
import random
import time
from collections import OrderedDict

_HORIZON = 40.0  # in units of δ·β: beyond it, XFetch never fires (P = e^-40)
_REMEMBERED = 65_536  # keys whose latest known expiry is kept (least recent forgotten)
_QUERIES = 4_096  # query texts whose last fill duration is kept


class RefreshAhead:
    """XFetch's decision for one client, with β."""

    def __init__(self, beta: float) -> None:
        self.beta = beta
        self._deltas: OrderedDict[str, float] = OrderedDict()  # query's SHA-1: seconds
        self._expiries: OrderedDict[str, float] = OrderedDict()  # key: expiry (monotonic)

    def delta(self, key: str) -> float | None:
        """How long the last fill of `key`'s query text took here, in seconds (None: none
        yet). Keys of one query text share their last 40 characters, its SHA-1."""
        return self._deltas.get(key[-40:])

    def filled(self, key: str, seconds: float, stored_for: int | None) -> None:
        """A fill of `key` ran `seconds`, and stored its entry for `stored_for` seconds
        (None: it stored nothing)."""
        _remember(self._deltas, key[-40:], seconds, _QUERIES)
        if stored_for is not None:
            _remember(self._expiries, key, time.monotonic() + stored_for, _REMEMBERED)

    def wants_ttl(self, key: str) -> bool:
        """Whether a hit on `key` should read its PTTL: a refresh may be near, or its
        expiry is unknown (and a refresh possible: a fill of its query was timed)."""
        delta = self._deltas.get(key[-40:])
        if delta is None:
            return False
        known = self._expiries.get(key)
        return known is None or known - time.monotonic() < _HORIZON * delta * self.beta

    def wanting_ttl(self, keys: list[str]) -> set[str]:
        """`wants_ttl` for many keys of one query text at once."""
        delta = self._deltas.get(keys[0][-40:]) if keys else None
        if delta is None:
            return set()
        horizon = time.monotonic() + _HORIZON * delta * self.beta
        known = self._expiries
        return {key for key in keys if known.get(key, 0.0) < horizon}

    def due(self, key: str, expiry: float | None) -> bool:
        """Whether a hit whose entry expires at `expiry` (monotonic; inf: never; None:
        unknown) should refresh it now (a draw, per XFetch)."""
        delta = self._deltas.get(key[-40:])
        if delta is None or expiry is None or expiry == math.inf:
            return False
        _remember(self._expiries, key, expiry, _REMEMBERED)
        scale = delta * self.beta
        left = expiry - time.monotonic()
        return left <= _HORIZON * scale and scale * -math.log(1.0 - random.random()) >= left


def _remember(memory: OrderedDict[str, float], key: str, value: float, limit: int) -> None:
    memory[key] = value
    memory.move_to_end(key)
    if len(memory) > limit:
        memory.popitem(last=False)
