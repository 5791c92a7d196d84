"""benchmarks/voucher_bench.py stays runnable: a short run prints sane JSON figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_voucher_bench_short_run(repo_root: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(repo_root / "benchmarks" / "voucher_bench.py"),
            "--seconds",
            "0.4",
            "--json",
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    figures = json.loads(result.stdout)
    for name in (
        "voucher_sign_per_s",
        "voucher_verify_per_s",
        "raw_sign_per_s",
        "raw_verify_per_s",
    ):
        assert figures[name] > 0
    assert figures["sign_ratio"] == figures["voucher_sign_per_s"] / figures["raw_sign_per_s"]
    assert figures["cms_bytes"] > figures["payload_bytes"] > 500
