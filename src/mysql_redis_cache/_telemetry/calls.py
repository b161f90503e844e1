"""What a traced call found, noted where the library learns it: plain Python, so the
client imports it whether or not opentelemetry is installed."""

from __future__ import annotations

import contextvars


class Call:
    """One traced call's outcome: the first one other than a hit wins."""

    __slots__ = ("result",)

    def __init__(self) -> None:
        self.result = "hit"


CALL: contextvars.ContextVar[Call | None] = contextvars.ContextVar("mrc_call", default=None)


def note(result: str) -> None:
    """Record a traced call's outcome (a no-op outside one): bypass, local_hit, miss,
    skipped, error."""
    call = CALL.get()
    if call is not None and call.result == "hit":
        call.result = result
