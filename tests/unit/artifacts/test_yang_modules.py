"""The YANG modules in yang/: IETF ones match the official schema tree, all pass pyang."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from zerotouch_plugin.artifacts.yang import pyang_module_dirs, yang_dir

PYANG = [sys.executable, "-m", "pyang"]
# Print yang-data structures, sx:structures and groupings too: the voucher modules hold no
# datastore nodes, so a plain tree would compare two empty outputs.
TREE = ["-f", "tree", "--tree-print-yang-data", "--tree-print-structures", "--tree-print-groupings"]
MODULES = sorted(yang_dir().glob("*.yang"))
IETF_MODULES = [m for m in MODULES if m.name.startswith(("ietf-", "iana-"))]


def _search_path(*first: Path) -> list[str]:
    dirs = [*first, *pyang_module_dirs()]
    return ["-p", ":".join(str(d) for d in dirs)]


def _pyang(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PYANG, *args], capture_output=True, text=True, timeout=120)


def test_project_ships_the_voucher_modules() -> None:
    names = {m.name for m in MODULES}
    assert {
        "ietf-voucher@2018-05-09.yang",
        "ietf-voucher-request@2021-05-20.yang",
        "zerotouch-voucher-validation@2026-11-26.yang",
    } <= names


@pytest.mark.parametrize("module", IETF_MODULES, ids=lambda p: p.name)
def test_ietf_module_has_the_official_schema_tree(module: Path, official_yang_dir: Path) -> None:
    official = official_yang_dir / "rfc" / module.name
    if not official.is_file():
        official = official_yang_dir / "draft" / module.name
    assert official.is_file(), f"no official copy of {module.name} in {official_yang_dir}"
    ours = _pyang(*TREE, *_search_path(yang_dir()), str(module))
    theirs = _pyang(*TREE, *_search_path(official.parent), str(official))
    assert ours.returncode == 0, ours.stderr
    assert theirs.returncode == 0, theirs.stderr
    assert ours.stdout.strip(), f"empty tree for {module.name}"
    assert ours.stdout == theirs.stdout


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_module_passes_pyang_lint(module: Path) -> None:
    mode = "--ietf" if module in IETF_MODULES else "--strict"
    result = _pyang(mode, *_search_path(yang_dir()), str(module))
    assert result.returncode == 0, result.stderr
    assert not re.search(r"error|warning", result.stderr, re.IGNORECASE), result.stderr


def test_file_name_matches_module_revision() -> None:
    for module in MODULES:
        text = module.read_text()
        name = re.search(r"^(?:module|submodule)\s+([\w.-]+)", text, re.MULTILINE)
        revision = re.search(r"^\s*revision\s+\"?(\d{4}-\d{2}-\d{2})", text, re.MULTILINE)
        assert name and revision, module.name
        assert module.name == f"{name.group(1)}@{revision.group(1)}.yang"
