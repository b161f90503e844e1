"""scripts/api_check.py: griffe's comparison finds a break of the public API."""

from __future__ import annotations

import sys
from pathlib import Path

import griffe
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import api_check  # a script, not a package


def load(tmp_path: Path, version: str, source: str) -> griffe.Object | griffe.Alias:
    root = tmp_path / version
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text(source)
    return griffe.load("pkg", search_paths=[str(root)])


@pytest.mark.parametrize(
    ("new", "kind"),
    [
        ("def query(sql, params=None, *, ttl=60): ...", "Parameter was removed"),  # renamed
        ("def query(sql, names=(), *, ttl=60): ...", "Parameter was removed"),
        ("def query(sql, param_names=(), *, ttl=30): ...", "Parameter default was changed"),
    ],
    ids=["renamed", "renamed-again", "default"],
)
def test_a_changed_public_parameter_is_a_break(tmp_path: Path, new: str, kind: str) -> None:
    """Renaming a public parameter (or changing its default) is reported, and is not
    among the recorded, accepted breaks."""
    old = load(tmp_path, "old", "def query(sql, param_names=(), *, ttl=60): ...")
    found = api_check.breaking(old, load(tmp_path, "new", new))
    assert kind in {k for _, k, _ in found}
    assert api_check.unaccepted(found)


def test_an_unchanged_api_has_no_break(tmp_path: Path) -> None:
    """The same API twice: nothing reported."""
    source = "def query(sql, param_names=(), *, ttl=60): ...\nclass Client: ..."
    assert [] == api_check.breaking(load(tmp_path, "old", source), load(tmp_path, "new", source))
