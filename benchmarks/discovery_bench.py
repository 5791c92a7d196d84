"""What discovery costs: a device told nothing against the same device told where to go.

In one run, on the same links (tests/support/discovery_lab.py: pledge -- join proxy --
registrar + MASA, network namespaces, IPv6 link-local only), each of N fresh devices is timed
from the start of ``zerotouch device run`` to its ``enrolled SERIAL`` line:

(a) ``--discovery grasp --interface eth0``: it finds the proxy by GRASP (the proxy floods
    AN_Proxy every 0.5 s, RFC 8995 §4.1.1) and enrolls through it;
(b) ``--registrar https://[PROXY%25eth0]:PORT``: the proxy's URL given.

The two kinds alternate so that drift hits both alike; medians, their difference and ratio
are printed. Target: discovery adds under 1 s, the announcement interval included.
Needs root (network namespaces); without it says so and exits 0 (``--check``: 1).

    sudo .venv/bin/python benchmarks/discovery_bench.py [--runs 5] [--json] [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.discovery_lab import DiscoveryLab, discovery_lab  # noqa: E402

TARGET_SECONDS = 1.0


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def device_argv(lab: DiscoveryLab, folder: Path, kind: str) -> list[str]:
    """``zerotouch device run`` for ``folder``: found by GRASP, or given the proxy's URL."""
    how = {
        "grasp": ["--discovery", "grasp", "--interface", lab.pledge_if],
        "registrar": ["--registrar", lab.proxy_url],
    }[kind]
    return [
        sys.executable, "-m", "zerotouch_plugin", "device", "run", "--dir", str(folder),
        "--netconf-tls", "127.0.0.1:0", *how,
    ]  # fmt: skip


def time_to_enrolled(lab: DiscoveryLab, folder: Path, serial: str, kind: str) -> float:
    """Seconds from starting the device to its ``enrolled SERIAL`` line."""
    with tempfile.TemporaryFile() as log:
        began = time.monotonic()
        proc = subprocess.Popen(
            lab.pledge.prefix(device_argv(lab, folder, kind)),
            stdout=subprocess.PIPE, stderr=log, text=True, env=_env(),
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            deadline = began + 60
            with selectors.DefaultSelector() as selector:
                selector.register(proc.stdout, selectors.EVENT_READ)
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not selector.select(remaining):
                        log.seek(0)
                        raise SystemExit(f"{kind}: not enrolled in 60 s:\n{log.read().decode()}")
                    line = proc.stdout.readline()
                    if not line:
                        log.seek(0)
                        raise SystemExit(f"{kind}: device exited:\n{log.read().decode()}")
                    if line.strip() == f"enrolled {serial}":
                        return time.monotonic() - began
        finally:
            proc.terminate()
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()


def measure(runs: int) -> dict[str, object]:
    with (
        tempfile.TemporaryDirectory(prefix="zt-discovery-bench-") as tmp,
        discovery_lab(Path(tmp), proxy_announce="grasp") as lab,
    ):
        times: dict[str, list[float]] = {"grasp": [], "registrar": []}
        for index in range(runs):
            for kind in ("grasp", "registrar") if index % 2 == 0 else ("registrar", "grasp"):
                serial, folder = lab.new_pledge()
                times[kind].append(time_to_enrolled(lab, folder, serial, kind))
        commands = {
            kind: shlex.join(device_argv(lab, Path("P"), kind)[1:]).replace(
                "-m zerotouch_plugin", "zerotouch", 1
            )
            for kind in times
        }
    grasp, given = statistics.median(times["grasp"]), statistics.median(times["registrar"])
    return {
        "runs": runs,
        "grasp_median_s": round(grasp, 3),
        "registrar_median_s": round(given, 3),
        "added_by_discovery_s": round(grasp - given, 3),
        "ratio": round(grasp / given, 3),
        "grasp_s": [round(t, 3) for t in times["grasp"]],
        "registrar_s": [round(t, 3) for t in times["registrar"]],
        "commands": commands,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="devices of each kind (default 5)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--check", action="store_true", help=f"exit 1 unless discovery adds < {TARGET_SECONDS} s"
    )
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if os.geteuid() != 0:
        print("discovery_bench: skipped: network namespaces need root (sudo)", file=sys.stderr)
        return 1 if args.check else 0
    figures = measure(args.runs)
    added = float(str(figures["added_by_discovery_s"]))
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        commands = figures["commands"]
        assert isinstance(commands, dict)
        print(f"discovery: time from device start to enrolled, median of {args.runs} each")
        print(f"  found by GRASP:      {figures['grasp_median_s']:.3f} s  ({commands['grasp']})")
        print(
            f"  given --registrar:  {figures['registrar_median_s']:.3f} s  "
            f"({commands['registrar']})"
        )
        print(
            f"  discovery adds {added:.3f} s (ratio {figures['ratio']:.2f}); "
            f"target < {TARGET_SECONDS:.1f} s: {'met' if added < TARGET_SECONDS else 'MISSED'}"
        )
    return 1 if args.check and added >= TARGET_SECONDS else 0


if __name__ == "__main__":
    sys.exit(main())
