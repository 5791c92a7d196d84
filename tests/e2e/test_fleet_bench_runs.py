"""benchmarks/fleet_bench.py and benchmarks/device_rss_bench.py stay runnable: short runs
print sane JSON figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_fleet_bench_short_run(repo_root: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(repo_root / "benchmarks" / "fleet_bench.py"), "--count", "4",
         "--concurrency", "2", "--json"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert (figures["count"], figures["enrolled"], figures["configured"]) == (4, 4, 4)
    assert figures["failed"] == {}
    assert figures["read_back"] == figures["read_back_ok"] == 4
    assert 0 < figures["enroll_s"] <= figures["configure_s"]
    assert figures["single_enroll_s"] > 0 and figures["single_handoff_s"] >= 0
    assert figures["target_s"] == 60.0 * 4 / 1000
    assert {p["name"] for p in figures["processes"]} == {"masa", "registrar", "fleet"}
    assert all(p["cpu_seconds"] > 0 and p["peak_rss_mb"] > 10 for p in figures["processes"])


def test_device_rss_bench_run(repo_root: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(repo_root / "benchmarks" / "device_rss_bench.py"), "--json",
         "--requests", "2"],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    figures = json.loads(result.stdout)
    idle = figures["idle_rss_mib"]
    assert set(idle) == {"netconf-tls", "netconf-tls+restconf", "all (ssh, tls, restconf)"}
    assert figures["python_mib"] < min(idle.values())
    # asyncssh is loaded only with its listener, aiohttp only once RESTCONF has a client
    # (test_device_restconf_lazy.py): about 7 and 10 MiB
    assert idle["netconf-tls+restconf"] < idle["all (ssh, tls, restconf)"]
    # every TLS listener answered the operator's requests (else the run fails)
    assert figures["requests"] == 2
    served = figures["after_requests_rss_mib"]
    assert set(served) == set(idle)
    assert served["netconf-tls+restconf"] > idle["netconf-tls+restconf"]
