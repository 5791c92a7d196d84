"""benchmarks/enroll_bench.py stays runnable: a short run prints the simulated pledges' CPU,
the servers' CPU of the timed burst alone (start-up and the untimed runs apart) and, with
--trace, the timeline of one enrollment, each step with its figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

STEPS = [
    "TLS handshake (provisional)",
    "requestvoucher (registrar -> MASA voucher)",
    "voucher_status",
    "cacerts",
    "csrattrs",
    "simpleenroll",
    "pledge: install the LDevID (files written, fsync)",
    "enrollstatus",
]


def test_enroll_bench_short_run_with_trace(repo_root: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(repo_root / "benchmarks" / "enroll_bench.py"), "--pledges", "4",
         "--concurrency", "2", "--singles", "2", "--trace", "--pledge-dir", str(tmp_path),
         "--json"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["failures"] == {}
    assert figures["pledge_dir"] == str(tmp_path)
    # which interpreter ran it: an unoptimised build of the same release is slower
    version, path = figures["python"].split(" ", 1)
    assert version == ".".join(map(str, sys.version_info[:3]))
    assert path == os.path.realpath(sys.executable)
    assert figures["pledge_cpu_ms"] > 0 and figures["single_pledge_cpu_ms"] > 0
    # the first 2 pledges start together, the other 2 as those finish (the split itself:
    # tests/unit/test_enroll_bench_waves.py)
    assert figures["first_wave_max_ms"] > 0 and figures["after_first_wave_p99_ms"] > 0
    trace = figures["trace"]
    names = [step["step"] for step in trace]
    assert [name for name in names if name in STEPS] == STEPS
    by_name = {step["step"]: step for step in trace}
    assert all(by_name[name]["network"] for name in STEPS if not name.startswith("pledge:"))
    assert not by_name["pledge: install the LDevID (files written, fsync)"]["network"]
    # the registrar calls the MASA for the voucher: both servers worked in that step
    voucher = by_name["requestvoucher (registrar -> MASA voucher)"]["server_cpu_ms"]
    assert set(voucher) == {"masa", "registrar0"} and min(voucher.values()) > 0
    assert all(step["wall_ms"] >= 0 and step["pledge_cpu_ms"] >= 0 for step in trace)
    # each server's start-up (imports, keys) and the untimed runs (singles, trace, CLI) are
    # measured apart, so the per-enrollment figure is the burst's alone
    assert "start-up" in figures["server_cpu"] and "subtracted" in figures["server_cpu"]
    assert [use["name"] for use in figures["processes"]] == ["masa", "registrar0"]
    for use in figures["processes"]:
        assert use["startup_cpu_seconds"] > 0 and use["untimed_cpu_seconds"] > 0
        assert use["cpu_seconds"] >= 0
        assert use["cpu_ms_per_enrollment"] == use["cpu_seconds"] / 4 * 1000
    assert list(tmp_path.iterdir()) == []  # the pledges' folder is removed after the run


def test_enroll_bench_shares_the_pledges_among_processes(repo_root: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(repo_root / "benchmarks" / "enroll_bench.py"), "--pledges", "6",
         "--concurrency", "4", "--singles", "1", "--pledge-processes", "2", "--pledge-dir",
         str(tmp_path), "--json"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["failures"] == {}
    assert round(figures["enrollments_per_s"] * figures["elapsed_s"]) == 6
    assert figures["pledge_processes"] == 2
    # both processes enrolled pledges, and the report counts the CPU of both
    by_process = figures["pledge_cpu_ms_by_process"]
    assert len(by_process) == 2 and min(by_process) > 0
    assert figures["pledge_cpu_ms"] == pytest.approx(sum(by_process))
    assert figures["first_wave_max_ms"] > 0 and figures["after_first_wave_p99_ms"] > 0
