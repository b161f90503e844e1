"""The Node library's TTLs: a positive int of seconds, stored with ±10 % jitter."""

from __future__ import annotations

import math
import random

from .._errors import InvalidArgumentError

DEFAULT_TTL = 86400  # a day, the Node library's default


def check_ttl(ttl: object) -> None:
    """Refuse a ttl that is not a positive int (InvalidArgumentError)."""
    if type(ttl) is not int or ttl <= 0:  # bool is an int subclass: refused too
        raise InvalidArgumentError(f"ttl must be a positive int of seconds, got {ttl!r}")


def ttl_with_jitter(ttl: int) -> int:
    """The Node library's expiry: ttl ± 10 %, rounded as JS Math.round does."""
    check_ttl(ttl)
    return max(1, ttl + math.floor(ttl * (random.random() * 0.2 - 0.1) + 0.5))
