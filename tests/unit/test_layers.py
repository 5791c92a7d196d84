"""The import contracts of pyproject.toml ([tool.importlinter]) hold for the package, and each
one breaks when a copy of the package makes the import it forbids: imports point down the
layers of docs/architecture.md (cli -> demo -> services -> store -> roles -> device ->
artifacts -> the shared modules), roles are sans-IO, and the plugin host interface loads no
datastore."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "zerotouch_plugin"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CONTRACTS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"][
    "contracts"
]
NAMES = {contract["id"]: contract["name"] for contract in CONTRACTS}


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` over the package and pyproject.toml found in ``root``, importing the
    package from there rather than from the editable install."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def broken(output: str) -> set[str]:
    """Ids of the contracts the report calls broken."""
    return {id_ for id_, name in NAMES.items() if f"{name} BROKEN" in " ".join(output.split())}


def test_the_package_keeps_every_import_contract() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in result.stdout


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        (
            "artifacts/cms.py",
            "from zerotouch_plugin.services import proxy\n",
            {"layers", "sans-io-roles"},  # roles import cms, so now aiohttp too
        ),
        ("device/edit.py", "def f() -> None:\n    import zerotouch_plugin.cli\n", {"layers"}),
        (
            "roles/masa.py",
            "from zerotouch_plugin.store import masa as _store\n",
            {"layers", "sans-io-roles"},  # and SQLAlchemy through the store
        ),
        ("errors.py", "from zerotouch_plugin.artifacts import cms\n", {"layers"}),
        ("roles/backoff.py", "import asyncio\n", {"sans-io-roles"}),
        ("roles/grasp.py", "from sqlalchemy import select\n", {"sans-io-roles"}),
        ("roles/proxy.py", "from aiohttp import web\n", {"sans-io-roles"}),
        ("roles/discovery.py", "import asyncssh\n", {"sans-io-roles"}),
        ("device/host.py", "from zerotouch_plugin.device import datastore\n", {"plugin-host"}),
        ("device/types.py", "import sqlalchemy\n", {"plugin-host"}),
        ("services/proxy.py", "from zerotouch_plugin.artifacts import cms\n", set()),
        ("roles/backoff.py", "from zerotouch_plugin.errors import NotFound\n", set()),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, module: str, source: str, expected: set[str]
) -> None:
    shutil.copytree(REPO / PACKAGE, tmp_path / PACKAGE, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    with (tmp_path / PACKAGE / module).open("a") as file:
        file.write(source)
    result = lint_imports(tmp_path)
    assert broken(result.stdout) == expected, result.stdout + result.stderr
    assert result.returncode == (1 if expected else 0)


def test_a_folder_outside_the_layers_breaks_the_layers_contract(tmp_path: Path) -> None:
    shutil.copytree(REPO / PACKAGE, tmp_path / PACKAGE, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    (tmp_path / PACKAGE / "plugins").mkdir()
    (tmp_path / PACKAGE / "plugins" / "__init__.py").write_text("")
    result = lint_imports(tmp_path)
    assert result.returncode == 1
    assert "plugins" in result.stdout, result.stdout + result.stderr
