"""The documentation holds together: every relative link of README.md and docs/ reaches a
file (and, with a #fragment, a heading of it), docs/ is reachable from the README, and no
file of the repository points to anything beside the checkout."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "zerotouch_plugin"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
OUTSIDE = ("../shared", "DESIGN.md")
# This file names what it looks for.
SELF = Path(__file__).resolve().relative_to(REPO).as_posix()


def _pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def _links(page: Path) -> list[str]:
    """Link targets outside code blocks (a code block's brackets are not links)."""
    return LINK.findall(FENCE.sub("", page.read_text()))


def _slug(heading: str) -> str:
    """The fragment a Markdown heading gets: lower case, punctuation dropped, spaces as -."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    return {_slug(m) for m in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


def broken_links(page: Path, root: Path = REPO) -> list[str]:
    broken = []
    for target in _links(page):
        if re.match(r"[a-z]+:", target):  # https:, mailto: ...
            continue
        path, _, fragment = target.partition("#")
        goal = (page.parent / path).resolve() if path else page
        if not goal.exists():
            broken.append(f"{target}: no such file")
        elif fragment and goal.suffix == ".md" and fragment not in _anchors(goal):
            broken.append(f"{target}: no heading #{fragment}")
        elif root not in goal.parents and goal != root:
            broken.append(f"{target}: outside the repository")
    return broken


@pytest.mark.parametrize("page", _pages(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    seen: set[Path] = set()
    todo = [REPO / "README.md"]
    while todo:
        page = todo.pop()
        if page in seen or page.suffix != ".md" or not page.exists():
            continue
        seen.add(page)
        for target in _links(page):
            path = target.partition("#")[0]
            if path and not re.match(r"[a-z]+:", path):
                todo.append((page.parent / path).resolve())
    assert set(_pages()) - seen == set()


def test_a_broken_link_and_a_missing_heading_are_seen(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## A section\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#a-section) [gone](missing.md) [no heading](other.md#nowhere)\n"
        "```\n[in code](not-a-link.md)\n```\n[web](https://example.org/x)\n"
    )
    assert broken_links(page, root=tmp_path) == [
        "missing.md: no such file",
        "other.md#nowhere: no heading #nowhere",
    ]


def test_every_module_path_named_in_the_docs_exists() -> None:
    """A `folder/module.py` in backticks names a file of the repository or of the package,
    so that moving a module without its documentation fails here."""
    missing = []
    for page in _pages():
        for name in re.findall(r"`([\w./-]+/[\w.-]+\.py)`", page.read_text()):
            if not any((base / name).is_file() for base in (REPO, REPO / PACKAGE)):
                missing.append(f"{page.relative_to(REPO)}: {name}")
    assert missing == []


# The netopeer2 stack build takes the four source releases from a folder beside the checkout
# when the machine has one, and downloads the same tags otherwise: it works without it.
MAY_LOOK_BESIDE = {"scripts/netopeer2-stack.sh": {"../shared"}}


def test_no_file_points_beside_the_checkout() -> None:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    found = []
    for name in listed:
        path = REPO / name
        if name == SELF or not path.is_file():
            continue
        data = path.read_bytes()
        allowed = MAY_LOOK_BESIDE.get(name, set())
        found += [
            f"{name}: {word}" for word in OUTSIDE if word.encode() in data and word not in allowed
        ]
    assert found == []
