"""scripts/release_check.py: what it finds wrong before publishing."""

from __future__ import annotations

import email.parser
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "release_check.py"
PROJECT = {
    "name": "actvalue.mysql-redis-cache",
    "version": "1.0.0",
    "requires-python": ">=3.13",
    "dependencies": ["aiomysql>=0.2", "redis>=5.0"],
}


@pytest.fixture(scope="module")
def check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("release_check", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CHANGELOGS = {
    "ready": ("## [Unreleased]\n\n## [1.0.0] - 2026-12-06\n- x\n", []),
    "unreleased-entries": (
        "## [Unreleased]\n### Fixed\n- y\n\n## [1.0.0] - 2026-12-06\n- x\n",
        ["the Unreleased section has entries"],
    ),
    "older-version": ("## [0.9.0] - 2026-01-01\n- x\n", ["the newest version is 0.9.0"]),
}


@pytest.mark.parametrize(("text", "found"), CHANGELOGS.values(), ids=CHANGELOGS.keys())
def test_changelog(check: ModuleType, text: str, found: list[str]) -> None:
    problems = check.changelog_problems("1.0.0", text)
    assert len(found) == len(problems), problems
    for expected, problem in zip(found, problems, strict=True):
        assert expected in problem


def test_tag(check: ModuleType) -> None:
    assert [] == check.tag_problems("1.0.0", "a" * 40, "a" * 40)
    assert "points at aaaaaaaaaaaa, not HEAD" in check.tag_problems("1.0.0", "a" * 40, "b" * 40)[0]
    assert "no tag v1.0.0 yet" in check.tag_problems("1.0.0", None, "b" * 40)[0]


METADATA = (
    "Metadata-Version: 2.4\nName: actvalue.mysql-redis-cache\nVersion: 1.0.0\n"
    "Requires-Python: >=3.13\nRequires-Dist: aiomysql>=0.2\nRequires-Dist: redis>=5.0\n"
    "Provides-Extra: fast\n\n# actvalue.mysql-redis-cache\n"
)


def test_metadata(check: ModuleType) -> None:
    parse = email.parser.Parser().parsestr
    assert [] == check.metadata_problems("wheel", parse(METADATA), PROJECT)
    broken = METADATA.replace("Version: 1.0.0", "Version: 0.4.0").replace(
        "Provides-Extra: fast\n", ""
    )
    problems = check.metadata_problems("wheel", parse(broken), PROJECT)
    assert ["wheel: Version is '0.4.0', not '1.0.0'", "wheel: the `fast` extra is missing"] == (
        problems
    )
