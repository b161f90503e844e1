"""Check that a release is ready to publish: `make release-check`.

Builds the sdist and the wheel into dist/, reads their metadata back, and checks that the
version in pyproject.toml, the newest version in CHANGELOG.md and the git tag agree:

- the wheel and the sdist carry the project's name and version, Python >= 3.13, the
  runtime dependencies and the `fast` extra, and the README as their description;
- CHANGELOG.md's newest `## [x.y.z]` heading is that version and its Unreleased section
  is empty (its entries belong under the version being published);
- the tag `v<version>`, if it exists, points at HEAD (else: "tag HEAD as v<version>").

Prints each problem and exits 1 if there is any, else prints the files to upload.
"""

from __future__ import annotations

import email.message
import email.parser
import os
import re
import shlex
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_HEADING = re.compile(r"^## \[([^\]]+)\]", re.MULTILINE)


def changelog_problems(version: str, changelog: str) -> list[str]:
    """What in CHANGELOG.md disagrees with releasing `version`."""
    headings = _HEADING.findall(changelog)
    problems = []
    released = [h for h in headings if h.lower() != "unreleased"]
    if not released or released[0] != version:
        newest = released[0] if released else "none"
        problems.append(f"CHANGELOG.md: the newest version is {newest}, not {version}")
    if headings and headings[0].lower() == "unreleased":
        start = changelog.index("## [", changelog.lower().index("## [unreleased]") + 1)
        section = changelog[changelog.lower().index("## [unreleased]") : start]
        if re.search(r"^- ", section, re.MULTILINE):
            problems.append(
                "CHANGELOG.md: the Unreleased section has entries; move them under "
                f"## [{version}] with today's date"
            )
    return problems


def tag_problems(version: str, tag_commit: str | None, head: str) -> list[str]:
    """What about the tag `v<version>` disagrees with publishing HEAD."""
    if tag_commit is None:
        return [f"git: no tag v{version} yet: tag HEAD as v{version} when the rest passes"]
    if tag_commit != head:
        return [f"git: tag v{version} points at {tag_commit[:12]}, not HEAD ({head[:12]})"]
    return []


def metadata_problems(
    label: str, metadata: email.message.Message, project: dict[str, object]
) -> list[str]:
    """What in a built file's metadata disagrees with pyproject.toml's [project]."""
    problems = []
    for field, expected in (("Name", project["name"]), ("Version", project["version"])):
        if metadata.get(field) != expected:
            problems.append(f"{label}: {field} is {metadata.get(field)!r}, not {expected!r}")
    if metadata.get("Requires-Python") != project["requires-python"]:
        problems.append(f"{label}: Requires-Python is {metadata.get('Requires-Python')!r}")
    requires = " ".join(metadata.get_all("Requires-Dist") or [])
    for dependency in project["dependencies"]:  # type: ignore[attr-defined]
        if re.split(r"[<>=!~ ]", dependency)[0] not in requires:
            problems.append(f"{label}: Requires-Dist lacks {dependency}")
    if "fast" not in (metadata.get_all("Provides-Extra") or []):
        problems.append(f"{label}: the `fast` extra is missing")
    if "# actvalue.mysql-redis-cache" not in (metadata.get_payload() or ""):
        problems.append(f"{label}: the README is not the long description")
    return problems


def _built(dist: Path, project: dict[str, object]) -> tuple[list[Path], list[str]]:
    """Build into `dist` (emptied first) and check both files' metadata."""
    for old in dist.glob("*"):
        old.unlink()
    uv = shlex.split(os.environ.get("UV", "uv"))  # the Makefile passes the uv it runs
    subprocess.run([*uv, "build", "--out-dir", str(dist)], cwd=ROOT, check=True)
    stem = f"{str(project['name']).replace('.', '_').replace('-', '_')}-{project['version']}"
    wheel, sdist = dist / f"{stem}-py3-none-any.whl", dist / f"{stem}.tar.gz"
    problems = [f"dist: {path.name} was not built" for path in (wheel, sdist) if not path.exists()]
    if problems:
        return [], problems
    parser = email.parser.Parser()
    with zipfile.ZipFile(wheel) as archive:
        text = archive.read(f"{stem}.dist-info/METADATA").decode()
    problems += metadata_problems(wheel.name, parser.parsestr(text), project)
    with tarfile.open(sdist) as archive:
        member = archive.extractfile(f"{stem}/PKG-INFO")
        assert member is not None
        problems += metadata_problems(sdist.name, parser.parsestr(member.read().decode()), project)
    return [wheel, sdist], problems


def _git(*args: str) -> str | None:
    proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def main() -> int:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    version = str(project["version"])
    files, problems = _built(ROOT / "dist", project)
    problems += changelog_problems(version, (ROOT / "CHANGELOG.md").read_text())
    head = _git("rev-parse", "HEAD") or "?"
    problems += tag_problems(version, _git("rev-list", "-n", "1", f"v{version}"), head)
    for problem in problems:
        print(f"release-check: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"ready to publish {project['name']} {version}: uv publish " + " ".join(map(str, files)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
