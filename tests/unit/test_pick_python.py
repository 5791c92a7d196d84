"""scripts/pick-python.sh, the interpreter `make venv` builds the venv with: the
distribution's python3 first (PGO and LTO builds, docs/benchmarks.md), then python3 on PATH,
each only when it is 3.11 or newer and can make a venv with pip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pick-python.sh"


def pick(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def usable(python: str) -> bool:
    check = "import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))"
    return subprocess.run([python, "-c", check], capture_output=True, check=False).returncode == 0


def fake_python(folder: Path, name: str = "python3") -> Path:
    """An interpreter that fails every check (as a 3.9 or one without venv would)."""
    path = folder / name
    path.write_text("#!/bin/sh\nexit 1\n")
    path.chmod(0o755)
    return path


def test_the_distributions_python_comes_first() -> None:
    result = pick(dict(os.environ))
    assert result.returncode == 0, result.stderr
    chosen = result.stdout.strip()
    assert usable(chosen)
    if usable("/usr/bin/python3"):
        assert chosen == "/usr/bin/python3"


def test_python3_on_path_when_the_distributions_is_missing(tmp_path: Path) -> None:
    (tmp_path / "python3").symlink_to(sys.executable)
    env = {"PATH": str(tmp_path), "ZEROTOUCH_SYSTEM_PYTHON": str(tmp_path / "absent")}
    result = pick(env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "python3")


def test_an_unusable_distribution_python_is_passed_over(tmp_path: Path) -> None:
    (tmp_path / "python3").symlink_to(sys.executable)
    old = fake_python(tmp_path, "old-python3")
    result = pick({"PATH": str(tmp_path), "ZEROTOUCH_SYSTEM_PYTHON": str(old)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "python3")


def test_no_usable_interpreter_is_an_error_that_says_so(tmp_path: Path) -> None:
    fake_python(tmp_path)
    result = pick({"PATH": str(tmp_path), "ZEROTOUCH_SYSTEM_PYTHON": str(tmp_path / "absent")})
    assert result.returncode == 1
    assert result.stdout == ""
    assert "no python3 3.11 or newer with venv and ensurepip" in result.stderr
