"""benchmarks/discovery_bench.py stays runnable: one device of each kind enrolls and the
figures are sane (needs root for the namespaces, as the benchmark does)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def test_discovery_bench_one_run(repo_root: Path) -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        message = "discovery_bench needs root and iproute2"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [sys.executable, str(repo_root / "benchmarks" / "discovery_bench.py"), "--runs", "1",
         "--json"],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["runs"] == 1
    assert 0 < figures["registrar_median_s"] < 60 and 0 < figures["grasp_median_s"] < 60
    added = figures["grasp_median_s"] - figures["registrar_median_s"]
    assert abs(figures["added_by_discovery_s"] - added) < 0.002
    assert "--discovery grasp --interface eth0" in figures["commands"]["grasp"]
    assert "--registrar 'https://[fe80::" in figures["commands"]["registrar"]
