"""What discovery costs: a device told nothing against the same device told where to go.

In one run, on the same links (those of ``zerotouch demo --discovery``: devices -- join
proxy -- registrar + MASA, network namespaces, IPv6 link-local only), each of N fresh
devices is timed from the start of ``zerotouch device run`` to its ``enrolled SERIAL`` line:

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
import asyncio
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from zerotouch_plugin.demo.discovery import (  # noqa: E402
    BRIDGE,
    DISCOVERY_STEPS,
    PROXY_HOST,
    DiscoveryDemo,
)
from zerotouch_plugin.demo.flow import Device, StepResult  # noqa: E402
from zerotouch_plugin.demo.services import StepFailed  # noqa: E402

TARGET_SECONDS = 1.0
ENROLL_SECONDS = 60.0
# The discovery demo up to a running, announcing join proxy; the devices are the benchmark's.
SETUP = ("manufacturer-pki", "idevids", "network", "domain-pki", "policy", "masa", "registrar",
         "proxy")  # fmt: skip


def device_args(folder: str, kind: str, proxy_url: str) -> list[str]:
    """``zerotouch device run`` for ``folder``: found by GRASP, or given the proxy's URL."""
    how = {
        "grasp": ["--discovery", "grasp", "--interface", "eth0"],
        "registrar": ["--registrar", proxy_url],
    }[kind]
    return ["device", "run", "--dir", folder, "--netconf-tls", "127.0.0.1:0", *how]


def proxy_url(demo: DiscoveryDemo) -> str:
    """The join proxy as a device reaches it: link-local on the bridge, zone = its eth0."""
    proxy = next(s for s in demo.services.running if s.name == "proxy")
    line = next(text for text in proxy.lines() if text.startswith("listening proxy "))
    port = line.rstrip("/").rsplit(":", 1)[1]
    return f"https://[{demo.network.link_local(PROXY_HOST, BRIDGE)}%25eth0]:{port}"


async def time_to_enrolled(demo: DiscoveryDemo, device: Device, kind: str, url: str) -> float:
    """Seconds from starting the device in its namespace to its ``enrolled SERIAL`` line."""
    began = time.monotonic()
    service = demo.services.start(
        f"{device.name}-{kind}",
        *device_args(device.folder, kind, url),
        prefix=demo.network.prefix(device.name),
    )
    expected = f"enrolled {device.serial}"
    await service.wait_line(
        lambda text: text.strip() == expected, expected, began + ENROLL_SECONDS, demo.services
    )
    elapsed = time.monotonic() - began
    service.popen.terminate()
    await asyncio.to_thread(service.popen.wait, 10)
    demo.services.running.remove(service)  # ended on purpose: no longer watched for dying
    service.pid_file.unlink(missing_ok=True)
    return elapsed


async def timed_runs(demo: DiscoveryDemo, runs: int) -> tuple[dict[str, list[float]], str]:
    demo.steps = tuple(step for step in DISCOVERY_STEPS if step.name in SETUP)
    if not await demo.run():
        failed = next(r for r in demo.results if not r.ok)
        raise SystemExit(f"discovery_bench: {failed.title}: {failed.detail}")
    url = await asyncio.to_thread(proxy_url, demo)
    times: dict[str, list[float]] = {"grasp": [], "registrar": []}
    devices = iter(demo.devices)
    for index in range(runs):
        for kind in ("grasp", "registrar") if index % 2 == 0 else ("registrar", "grasp"):
            try:
                seconds = await time_to_enrolled(demo, next(devices), kind, url)
            except StepFailed as exc:
                raise SystemExit(f"discovery_bench: {kind}: {exc.message}") from None
            times[kind].append(seconds)
    return times, url


def measure(runs: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="zt-discovery-bench-") as tmp:
        demo = DiscoveryDemo(Path(tmp), 2 * runs, keep=False, report=_quiet)
        try:
            times, url = asyncio.run(timed_runs(demo, runs))
        finally:
            demo.finish(False)
    commands = {kind: shlex.join(["zerotouch", *device_args("P", kind, url)]) for kind in times}
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


def _quiet(_result: StepResult) -> None:
    """The demo's steps are set-up here; only the figures are printed."""


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
