"""Print one version's CHANGELOG.md section, the release notes: `changelog_section.py 1.1.0`."""

from __future__ import annotations

import re
import sys
from pathlib import Path

CHANGELOG = Path(__file__).resolve().parent.parent / "CHANGELOG.md"


def section(version: str, changelog: str) -> str:
    """The body of `## [version]` in `changelog`, up to the next version's heading."""
    heading = rf"^## \[{re.escape(version)}\][^\n]*\n"
    match = re.search(heading + r"(.*?)(?=^## \[|\Z)", changelog, re.M | re.S)
    if match is None:
        raise SystemExit(f"CHANGELOG.md has no section for {version}")
    return match.group(1).strip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(section(sys.argv[1], CHANGELOG.read_text()))
