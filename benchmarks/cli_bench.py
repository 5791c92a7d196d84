"""Start-up time of the ``zerotouch`` command against a bare interpreter of the same run.

Times, in fresh processes, the shortest wall time of several runs (the run least disturbed
by other work on the machine) of ``python -c pass`` (the baseline),
``zerotouch --help`` (the overview: no command group imported) and ``zerotouch GROUP
--help`` for the groups a device or an operator runs most (``pledge``, ``device``,
``registrar``), and a whole ``zerotouch pledge enroll`` against a real ``masa serve`` and
``registrar serve --auto-accept`` started on 127.0.0.1 (a new pledge folder each run), and
reports each as milliseconds and as a ratio to the baseline. Every command runs once untimed
first with the bytecode cache writable, so the timed runs find it as an installed package
has it (``PYTHONDONTWRITEBYTECODE`` is dropped for them). Targets: ``zerotouch --help``
within 0.25 s, ``pledge enroll`` within 0.4 s.

    .venv/bin/python benchmarks/cli_bench.py [--runs 7] [--json] [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

TARGETS_S = {"zerotouch --help": 0.25, "zerotouch pledge enroll": 0.4}
ROOT = Path(__file__).resolve().parents[1]
ZEROTOUCH = [sys.executable, "-m", "zerotouch_plugin"]
COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "zerotouch --help": [*ZEROTOUCH, "--help"],
    "zerotouch pledge --help": [*ZEROTOUCH, "pledge", "--help"],
    "zerotouch device --help": [*ZEROTOUCH, "device", "--help"],
    "zerotouch registrar --help": [*ZEROTOUCH, "registrar", "--help"],
}
# the environment of the timed commands: bytecode is cached, as after ``pip install``
ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def timed(argv: Sequence[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, env=ENV, capture_output=True, check=True, timeout=60)
    return time.perf_counter() - start


def wall_seconds(argv: Sequence[str], runs: int) -> float:
    """Shortest wall time of ``runs`` runs of ``argv`` (after one untimed run: a warm cache)."""
    return min([timed(argv) for _ in range(runs + 1)][1:])


async def enroll_seconds(runs: int) -> float:
    """Shortest wall time of ``runs`` ``pledge enroll`` commands (after an untimed one), each
    a new pledge of the vendor, against a MASA and a registrar started for them."""
    from zerotouch_plugin.demo.services import Services, free_port

    with tempfile.TemporaryDirectory(prefix="zt-cli-bench-") as tmp:
        root = Path(tmp)
        services = Services(root)
        port = free_port()
        vendor, domain = str(root / "V"), str(root / "R")
        await services.run("vendor", "init", "--dir", vendor, "--masa-url",
                           f"https://127.0.0.1:{port}")  # fmt: skip
        await services.run("registrar", "init", "--dir", domain, "--manufacturer-ca",
                           f"{vendor}/ca.pem", "--masa-trust", f"{vendor}/ca.pem")  # fmt: skip
        deadline = time.monotonic() + 120
        try:
            await services.serve("masa", "masa", "masa", "serve", "--dir", vendor, "--listen",
                                 f"127.0.0.1:{port}", deadline=deadline)  # fmt: skip
            _, url = await services.serve("registrar", "registrar", "registrar", "serve",
                                          "--dir", domain, "--listen", "127.0.0.1:0",
                                          "--auto-accept", deadline=deadline)  # fmt: skip
            times = []
            for n in range(runs + 1):
                pledge = str(root / f"P{n}")
                await services.run("vendor", "idevid", "--dir", vendor, "--serial",
                                   f"CLI-BENCH-{n}", "--out", pledge)  # fmt: skip
                times.append(timed([*ZEROTOUCH, "pledge", "enroll", "--dir", pledge,
                                    "--registrar", url]))  # fmt: skip
        finally:
            services.stop()
    return min(times[1:])


def report(seconds: Mapping[str, float]) -> dict[str, dict[str, float]]:
    base = seconds["python -c pass"]
    return {
        name: {"ms": value * 1000, "ratio_to_python": value / base}
        for name, value in seconds.items()
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each command")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    seconds = {name: wall_seconds(cmd, args.runs) for name, cmd in COMMANDS.items()}
    seconds["zerotouch pledge enroll"] = asyncio.run(enroll_seconds(args.runs))
    figures = report(seconds)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for name, f in figures.items():
            print(f"{name:<28}{f['ms']:8.1f} ms  {f['ratio_to_python']:6.1f} x python -c pass")
    missed = [name for name, target in TARGETS_S.items() if seconds[name] > target]
    for name in missed:
        print(f"missed: {name} over {TARGETS_S[name]} s", file=sys.stderr)
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
