"""benchmarks/voucher_bench.py --softhsm: voucher signing with the key in a SoftHSM2 token."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def test_voucher_bench_reports_token_signing(repo_root: Path) -> None:
    if shutil.which("softhsm2-util") is None:
        reason = "SoftHSM2 is not installed (scripts/setup-system.sh installs softhsm2)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    result = subprocess.run(
        [sys.executable, str(repo_root / "benchmarks" / "voucher_bench.py"),
         "--seconds", "0.5", "--json", "--softhsm"],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    figures = json.loads(result.stdout)
    assert figures["token_sign_per_s"] > 0
    assert figures["voucher_sign_per_s"] > 0
