"""Benchmarks run from a clone without the test suite: no module under benchmarks/ imports
tests/ (a helper they share lives in benchmarks/ itself)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def imports_of_tests(source: str) -> list[str]:
    """Modules of the ``tests`` package that ``source`` imports, also inside functions."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        found += [name for name in names if name == "tests" or name.startswith("tests.")]
    return found


def test_there_are_benchmarks_to_check() -> None:
    assert len(list(BENCHMARKS.glob("*_bench.py"))) >= 5


@pytest.mark.parametrize("path", sorted(BENCHMARKS.glob("*.py")), ids=lambda p: p.name)
def test_no_benchmark_imports_the_test_suite(path: Path) -> None:
    assert imports_of_tests(path.read_text()) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from tests.support.masa_world import World\n", ["tests.support.masa_world"]),
        ("import tests.support.masa_process as mp\n", ["tests.support.masa_process"]),
        ("def f() -> None:\n    from tests import conftest\n", ["tests"]),
        ("from testsuite import x\nimport pytest_tests\n", []),
        ("from zerotouch_plugin.demo.services import Services\n", []),
    ],
)
def test_the_check_sees_an_import_of_tests(source: str, expected: list[str]) -> None:
    assert imports_of_tests(source) == expected
