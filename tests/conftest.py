"""Fixtures shared by every test suite."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def vectors_dir() -> Path:
    """``../shared/vectors`` beside the checkout (DESIGN.md: read, never copy)."""
    path = SHARED / "vectors"
    if not path.is_dir():
        pytest.skip(f"test vectors not present at {path}")
    return path


@pytest.fixture(scope="session")
def official_yang_dir() -> Path:
    path = SHARED / "yang"
    if not path.is_dir():
        pytest.skip(f"official YANG modules not present at {path}")
    return path
