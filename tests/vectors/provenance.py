"""Reads the file table of tests/vectors/data/PROVENANCE.md (one row per kept file)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
PROVENANCE = DATA / "PROVENANCE.md"

_SECTION = re.compile(r"### `(examples/[^`]+/)` — (\S+) @ `([0-9a-f]{40})`(?: \(([\d-]+)\))?")


@dataclass(frozen=True)
class Row:
    """One kept file: ``path`` relative to data/, its kind, what it is, what the tests expect."""

    path: str
    kind: str
    what: str
    expect: str
    repository: str
    commit: str


def _cells(line: str) -> list[str]:
    """The cells of a Markdown table row (``\\|`` inside a cell is not a separator)."""
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]


@cache
def rows() -> tuple[Row, ...]:
    found: list[Row] = []
    section: re.Match[str] | None = None
    for line in PROVENANCE.read_text(encoding="utf-8").splitlines():
        if line.startswith("### "):
            section = _SECTION.fullmatch(line)
            assert section, f"PROVENANCE.md: malformed section heading {line!r}"
        elif section and line.startswith("| `"):
            name, kind, what, expect = _cells(line)
            found.append(
                Row(
                    section.group(1) + name.strip("`"),
                    kind,
                    what,
                    expect,
                    section.group(2),
                    section.group(3),
                )
            )
    return tuple(found)


def of_kind(*kinds: str) -> set[str]:
    """Paths (relative to data/) of the rows of the given kinds."""
    return {row.path for row in rows() if row.kind in kinds}
