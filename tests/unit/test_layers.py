"""Imports point down the layers of docs/architecture.md: cli -> demo -> services -> store ->
roles -> device -> artifacts. A module may import its own layer, any layer below it, and the
shared modules every layer uses (errors, config, the small helpers); never a layer above."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "zerotouch_plugin"
ROOT = Path(__file__).resolve().parents[2] / PACKAGE
LAYERS = ("cli", "demo", "services", "store", "roles", "device", "artifacts")
SHARED = {"__init__", "errors", "config", "_text", "_checks", "_files"}
ENTRY = "__main__"  # python -m zerotouch_plugin: above every layer, it runs the CLI

def _part(module: str) -> str | None:
    """The layer or shared module that ``zerotouch_plugin.X...`` belongs to."""
    names = module.split(".")
    if names[0] != PACKAGE:
        return None
    return names[1] if len(names) > 1 else "__init__"


def _imported(path: Path) -> set[str]:
    """First-level parts of the package imported anywhere in ``path`` (also inside
    functions: a lazy import is an import all the same)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            modules = [node.module or ""]
            if node.module == PACKAGE:
                modules = [f"{PACKAGE}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(part for part in map(_part, modules) if part is not None)
    return found


def upward_imports(root: Path) -> set[tuple[str, str]]:
    """(module path under ``root``, layer it must not import) for every violation."""
    found: set[tuple[str, str]] = set()
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        layer = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        if layer == ENTRY:
            continue
        allowed = SHARED if layer in SHARED else set(LAYERS[LAYERS.index(layer) :]) | SHARED
        for part in _imported(path) - allowed:
            found.add((str(relative), part))
    return found


def test_every_package_folder_is_a_known_layer() -> None:
    folders = {p.name for p in ROOT.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(LAYERS)
    modules = {p.stem for p in ROOT.glob("*.py")}
    assert modules == SHARED | {ENTRY}


def test_imports_point_down_the_layers() -> None:
    assert upward_imports(ROOT) == set()


@pytest.mark.parametrize(
    ("source", "layer", "expected"),
    [
        ("from zerotouch_plugin.services.proxy import x\n", "artifacts", {"services"}),
        ("def f():\n    import zerotouch_plugin.cli\n", "device", {"cli"}),
        ("from zerotouch_plugin import store\n", "roles", {"store"}),
        ("from zerotouch_plugin.errors import NotFound\n", "artifacts", set()),
        ("from zerotouch_plugin.artifacts import cms\n", "services", set()),
    ],
)
def test_the_check_sees_an_upward_import(
    tmp_path: Path, source: str, layer: str, expected: set[str]
) -> None:
    (tmp_path / layer).mkdir()
    (tmp_path / layer / "module.py").write_text(source)
    assert {part for _, part in upward_imports(tmp_path)} == expected
