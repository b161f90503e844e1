"""The public API against the 1.0.0 release: `make api-check` (in `make check`).

griffe lists what changed in `mysql_redis_cache` since the commit that released 1.0.0 and
would break code written for it: a removed name, a renamed or reordered parameter, a
parameter made required, a changed default. A 1.x release must not break; a break made on
purpose is recorded in ACCEPTED with its reason, so that it is visible, never accidental.
Exits 1, printing each unrecorded break, if there is any.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

import griffe

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "mysql_redis_cache"
# The commit of the 1.0.0 release: its CHANGELOG section, dated 2026-12-01 (no tag v1.0.0 in
# the repository)
RELEASE_1_0 = "5723c7a0d41267ee3a58a64dd404881df019b34f"

# (object path, kind of break) that were made on purpose, and why
ACCEPTED: dict[tuple[str, str], str] = {
    (f"{PACKAGE}.{module}.{cls}", "Base class was removed"): (
        "the private base _support.closing.AsyncClosing (only __aenter__/__aexit__) was "
        "folded into the class, so that help() names no private module; every method stays"
    )
    for module, cls in (("_client", "MRCClient"), ("_server", "MRCServer"))
}


def breaking(
    old: griffe.Object | griffe.Alias, new: griffe.Object | griffe.Alias
) -> list[tuple[str, str, str]]:
    """Each break of `old`'s public API in `new`: (object path where it is defined, kind,
    explanation)."""
    found = []
    for breakage in griffe.find_breaking_changes(old, new):
        found.append((breakage.obj.path, breakage.kind.value, breakage.explain()))
    return found


def unaccepted(breaks: Iterable[tuple[str, str, str]]) -> list[str]:
    return [text for path, kind, text in breaks if (path, kind) not in ACCEPTED]


def main() -> int:
    old = griffe.load_git(PACKAGE, ref=RELEASE_1_0, repo=ROOT, search_paths=["src"])
    new = griffe.load(PACKAGE, search_paths=[str(ROOT / "src")])
    problems = unaccepted(breaking(old, new))
    for problem in problems:
        print(problem)
    if problems:
        print(
            f"{len(problems)} breaking change(s) since 1.0.0 ({RELEASE_1_0[:12]}): keep the "
            "API compatible, or record a deliberate break in scripts/api_check.py"
        )
        return 1
    print(f"public API compatible with 1.0.0 ({RELEASE_1_0[:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
