"""query_many_with_cache: many lookups of one query read in one round trip, the misses filled
concurrently, each as a single call would fill it."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from typing import Any

from .._node.ttl import ttl_with_jitter
from .lookups import MISSING, Fn, Lookups, compute

# each item's (query text, key, whether the key is unambiguous)
type Items = list[tuple[str, str, bool]]


async def read_or_fill_many(
    lookups: Lookups, items: Items, fill_of: Callable[[int], Fn], ttl: int
) -> list[Any]:
    """Each item's cached value, or its fill's (`fill_of(index)` runs item `index`'s
    query), in the order of `items`. Each distinct entry is read and decoded once; a
    repeated key gets a copy; an ambiguous key runs uncached."""
    first: dict[str, int] = {}  # each distinct key's first index
    repeats: list[tuple[int, int]] = []  # (index, first index) of repeated keys
    bypassed = []
    for index, (_, key, unambiguous) in enumerate(items):
        if not unambiguous:
            bypassed.append(index)
        elif (at := first.setdefault(key, index)) != index:
            repeats.append((index, at))
    refresh = lookups.refresh
    ttl_keys = refresh.wanting_ttl(list(first)) if refresh is not None else set()
    values, raws = await lookups.read_many(list(first), ttl_keys)
    if ttl_keys:
        due = [(key, first[key]) for key, value in zip(first, values, strict=False)
               if value is not MISSING and key in ttl_keys]  # fmt: skip
        if due:
            lookups.refresh_due([key for key, _ in due], lambda i: fill_of(due[i][1]), True, ttl)
    if len(values) == len(items) and MISSING not in values:
        return values  # distinct keys, all cached (most batches): in order already
    results: list[Any] = [None] * len(items)
    again: dict[int, list[int]] = {}  # first index: the indexes repeating its key
    for index, at in repeats:
        again.setdefault(at, []).append(index)
    fills: list[tuple[list[int], str | None]] = []  # indexes to fill, and their key
    for (key, index), value in zip(first.items(), values, strict=True):
        if value is MISSING:
            fills.append(([index, *again.get(index, ())], key))
        else:
            results[index] = value
    if repeats:
        stats = lookups.stats
        read = dict(zip(first.values(), zip(values, raws, strict=True), strict=True))
        for index, at in repeats:
            value, raw = read[at]
            if value is MISSING:  # each repeat is a lookup of its own, as in gather
                stats.misses += 1
            else:  # a copy each: callers must not share one result
                stats.hits += 1
                key = items[at][1]
                results[index] = (
                    copy.deepcopy(value) if raw is None else lookups.decodes.value(key, raw)
                )
    for index in bypassed:
        lookups.bypass(items[index][1])
        fills.append(([index], None))  # uncached
    if fills:
        await asyncio.gather(
            *(_fill_into(lookups, results, at, fill_of(at[0]), key, ttl) for at, key in fills)
        )
    return results


async def _fill_into(
    lookups: Lookups,
    results: list[Any],
    at: list[int],
    run: Callable[[], Awaitable[Any]],
    key: str | None,
    ttl: int,
) -> None:
    """Run a batch item's query (through the fill of `key`, or uncached if None) and put
    a copy of its rows at each of `at`."""
    if key is None:
        value = await compute(run, True)
    else:
        value = await lookups.flights.miss(key, run, ttl_with_jitter(ttl), True)
    results[at[0]] = value
    for index in at[1:]:
        results[index] = copy.deepcopy(value)
