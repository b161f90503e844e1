"""Hash tags that place a key on a chosen Cluster primary."""

from __future__ import annotations

import itertools
from typing import Any


def tags_by_node(client: Any) -> dict[str, bytes]:
    """For each primary of the Cluster `client`, a hash tag of a slot it serves."""
    wanted = {node.name for node in client.get_primaries()}
    found: dict[str, bytes] = {}
    slots = client.nodes_manager.slots_cache
    for number in itertools.count():
        if len(found) == len(wanted) or number > 100_000:
            return found
        tag = str(number).encode()
        owners = slots.get(client.keyslot(b"{" + tag + b"}"))
        if owners and owners[0].name in wanted:
            found.setdefault(owners[0].name, tag)
    return found  # pragma: no cover  (count() never ends)
