"""A virtual fleet enrolled and configured at once: ``zerotouch fleet`` against a real MASA
and registrar on 127.0.0.1.

Starts ``zerotouch masa serve`` and ``zerotouch registrar serve --auto-accept`` with one
day-0 configuration for every device (``registrar day0 --default``), issues the IDevIDs
before the timed part (``zerotouch fleet --vendor --prepare-only``), then, as baselines of
the same run, a fleet of one device (one enrollment alone, one hand-off alone), and the
fleet of ``--count`` devices (``--concurrency`` bootstrapping at once) held open after its
summary. The fleet's own summary gives the time until every device was enrolled and until
every one was configured by the hand-off; a sample of devices is then read back over
NETCONF/TLS (ncclient with an NMS certificate of the domain) to check that the day-0
hostname is in running and startup. CPU seconds and peak RSS of the three processes are
read from /proc.

    .venv/bin/python benchmarks/fleet_bench.py [--count 1000] [--concurrency 50] [--json]
        [--check]

Target of the issue (pledges and servers on the same 2 CPUs): 1,000 devices enrolled and
configured by the day-0 hand-off in at most 60 s, no failure; ``--check`` exits 1 when it is
missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from enroll_bench import ProcessUse, exit_status, process_use  # noqa: E402

from zerotouch_plugin.demo import nms  # noqa: E402
from zerotouch_plugin.demo.services import Service, Services, free_port  # noqa: E402

TARGET_SECONDS = 60.0  # for 1,000 devices
TARGET_COUNT = 1000
HOSTNAME = "fleet-bench"
SAMPLE = 10  # devices read back over NETCONF
LOOPBACK_CONNECTIONS = 5000  # every device and the registrar come from 127.0.0.1


@dataclass
class Report:
    cpus: int
    count: int
    concurrency: int
    single_enroll_s: float
    single_handoff_s: float
    setup_s: float
    enrolled: int
    configured: int
    failed: dict[str, int]
    enroll_s: float | None
    configure_s: float | None
    enroll_per_s: float | None
    configure_per_s: float | None
    enroll_latency: dict[str, float]
    read_back: int
    read_back_ok: int
    processes: list[ProcessUse] = field(default_factory=list)

    @property
    def target_s(self) -> float:
        """The issue's 60 s for 1,000 devices, in proportion for another count."""
        return TARGET_SECONDS * self.count / TARGET_COUNT

    def missed(self) -> list[str]:
        checks = [
            (not self.failed, f"failures {self.failed}"),
            (self.enrolled == self.count, f"{self.enrolled}/{self.count} enrolled"),
            (self.configured == self.count, f"{self.configured}/{self.count} configured"),
            (self.read_back_ok == self.read_back, f"{self.read_back_ok}/{self.read_back} read"),
            (
                self.configure_s is not None and self.configure_s <= self.target_s,
                f"all configured after {self.configure_s} s > {self.target_s:g} s",
            ),
        ]
        return [text for ok, text in checks if not ok]


async def fleet_summary(service: Service, services: Services, deadline: float) -> dict[str, Any]:
    line = await service.wait_line(lambda t: t.startswith("{"), "summary", deadline, services)
    summary: dict[str, Any] = json.loads(line)
    return summary


async def read_back(ports: list[int], client: nms.ClientFiles) -> int:
    """Devices whose running and startup hold the day-0 hostname and whose agent is enrolled."""
    views = await asyncio.gather(
        *(asyncio.to_thread(nms.read_device, port, client) for port in ports)
    )
    wanted = (HOSTNAME, HOSTNAME, "enrolled")
    return sum(1 for v in views if (v.running_hostname, v.startup_hostname, v.phase) == wanted)


async def measure(root: Path, args: argparse.Namespace) -> Report:
    services = Services(root)
    deadline = time.monotonic() + 120 + args.timeout
    masa_port = free_port()
    vendor, domain = str(root / "V"), str(root / "R")
    await services.run("vendor", "init", "--dir", vendor, "--masa-url",
                       f"https://127.0.0.1:{masa_port}")  # fmt: skip
    await services.run("registrar", "init", "--dir", domain, "--manufacturer-ca",
                       f"{vendor}/ca.pem", "--masa-trust", f"{vendor}/ca.pem")  # fmt: skip
    for config_file in (root / "V" / "masa.toml", root / "R" / "registrar.toml"):
        with config_file.open("a", encoding="utf-8") as fh:
            fh.write(f"\n[limits]\nmax_connections_per_ip = {LOOPBACK_CONNECTIONS}\n")
    day0 = root / "day0.json"
    day0.write_text(json.dumps({"ietf-system:system": {"hostname": HOSTNAME}}))
    await services.run("registrar", "day0", "--dir", domain, "--default", "--file", str(day0))
    await services.run("registrar", "issue-client-cert", "--dir", domain, "--name", "nms",
                       "--out", str(root / "nms"))  # fmt: skip
    client = nms.ClientFiles(root / "nms/cert.pem", root / "nms/key.pem", root / "R/ca.pem")
    prepare = ("fleet", "--vendor", vendor, "--prepare-only")
    await services.run(*prepare, "--count", "1", "--idevids", str(root / "alone"),
                       "--serial-prefix", "ALONE-")  # fmt: skip
    await services.run(*prepare, "--count", str(args.count), "--idevids", str(root / "ids"),
                       timeout=600)  # fmt: skip
    try:
        masa, _ = await services.serve("masa", "masa", "masa", "serve", "--dir", vendor,
                                       "--listen", f"127.0.0.1:{masa_port}",
                                       deadline=deadline)  # fmt: skip
        registrar, url = await services.serve("registrar", "registrar", "registrar", "serve",
                                              "--dir", domain, "--listen", "127.0.0.1:0",
                                              "--auto-accept", deadline=deadline)  # fmt: skip
        run = ("fleet", "--registrar", url, "--json", "--hold", "--handoff-wait",
               str(args.handoff_wait), "--timeout", str(args.timeout))  # fmt: skip
        alone = services.start("alone", *run, "--count", "1", "--idevids", str(root / "alone"))
        single = await fleet_summary(alone, services, deadline)
        services.running.remove(alone)
        alone.popen.terminate()
        alone.popen.wait(30)
        size = ("--count", str(args.count), "--concurrency", str(args.concurrency))
        fleet = services.start("fleet", *run, *size, "--idevids", str(root / "ids"))
        summary = await fleet_summary(fleet, services, deadline)
        ports = list(summary["devices"].values())
        sample = ports[:: max(1, len(ports) // SAMPLE)][:SAMPLE]
        read_ok = await read_back(sample, client)
        use = [process_use(s) for s in (masa, registrar, fleet)]
    finally:
        services.stop()
    return Report(
        cpus=os.cpu_count() or 1,
        count=args.count,
        concurrency=args.concurrency,
        single_enroll_s=single["enroll_seconds"] or 0.0,
        single_handoff_s=(single["configure_seconds"] or 0.0) - (single["enroll_seconds"] or 0.0),
        setup_s=summary["setup_seconds"],
        enrolled=summary["enrolled"],
        configured=summary["configured"],
        failed=summary["failed"],
        enroll_s=summary["enroll_seconds"],
        configure_s=summary["configure_seconds"],
        enroll_per_s=summary["enroll_per_second"],
        configure_per_s=summary["configure_per_second"],
        enroll_latency=summary["enroll_latency"],
        read_back=len(sample),
        read_back_ok=read_ok,
        processes=use,
    )


def show(r: Report) -> None:
    print(f"fleet_bench on {r.cpus} CPU(s), loopback: {r.count} virtual devices, "
          f"{r.concurrency} bootstrapping at once")  # fmt: skip
    print(f"  baseline, one device alone: enrollment {r.single_enroll_s:.2f} s, "
          f"hand-off {r.single_handoff_s:.2f} s")  # fmt: skip
    print(f"  fleet set-up (devices built, listeners open): {r.setup_s:.1f} s")
    if r.enroll_s is not None:
        serial = r.count * r.single_enroll_s
        print(f"  all {r.enrolled} enrolled after {r.enroll_s:.1f} s ({r.enroll_per_s:.1f}/s; "
              f"{serial / r.enroll_s:.1f} x one after the other)")  # fmt: skip
    if r.configure_s is not None:
        print(f"  all {r.configured} configured after {r.configure_s:.1f} s "
              f"({r.configure_per_s:.1f}/s; target {r.target_s:g} s)")  # fmt: skip
    if r.enroll_latency:
        lat = r.enroll_latency
        print(f"  one enrollment in the fleet: p50 {lat['p50']:.2f} s, p95 {lat['p95']:.2f} s "
              f"= {lat['p50'] / max(r.single_enroll_s, 1e-9):.1f} x alone")  # fmt: skip
    print(f"  read back over NETCONF/TLS: {r.read_back_ok}/{r.read_back} with the day-0 hostname")
    for use in r.processes:
        per_device = 1000 * use.cpu_seconds / r.count
        print(f"  {use.name:10s} CPU {use.cpu_seconds:7.2f} s ({per_device:5.1f} ms per device), "
              f"peak RSS {use.peak_rss_mb:6.1f} MB")  # fmt: skip
    print(f"  failures: {sum(r.failed.values())} {r.failed or ''}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--count", type=int, default=1000, help="virtual devices")
    parser.add_argument("--concurrency", type=int, default=50, help="bootstrapping at once")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to enroll all")
    parser.add_argument("--handoff-wait", type=float, default=120.0, help="then to configure")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args()
    if min(args.count, args.concurrency) < 1:
        parser.error("--count and --concurrency must be at least 1")
    with tempfile.TemporaryDirectory(prefix="zt-fleet-bench-") as tmp:
        report = asyncio.run(measure(Path(tmp), args))
    if args.json:
        print(json.dumps({**asdict(report), "target_s": report.target_s}, indent=2))
    else:
        show(report)
    return exit_status(args.check, report.missed(), bool(report.failed))


if __name__ == "__main__":
    sys.exit(main())
