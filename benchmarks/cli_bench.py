"""Start-up time of the ``zerotouch`` command against a bare interpreter of the same run.

Times, in fresh processes, the shortest wall time of several runs (the run least disturbed
by other work on the machine) of ``python -c pass`` (the baseline),
``zerotouch --help`` (the overview: no command group imported) and ``zerotouch GROUP
--help`` for the groups a device or an operator runs most (``pledge``: the imports of
``pledge enroll``; ``device``; ``registrar``), and reports each as milliseconds and as a
ratio to the baseline. A whole ``pledge enroll`` against a registrar is timed by
``enroll_bench.py``. Target: ``zerotouch --help`` within 0.25 s.

    .venv/bin/python benchmarks/cli_bench.py [--runs 7] [--json] [--check]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

TARGET_HELP_S = 0.25
ROOT = Path(__file__).resolve().parents[1]
COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "zerotouch --help": [sys.executable, "-m", "zerotouch_plugin", "--help"],
    "zerotouch pledge --help": [sys.executable, "-m", "zerotouch_plugin", "pledge", "--help"],
    "zerotouch device --help": [sys.executable, "-m", "zerotouch_plugin", "device", "--help"],
    "zerotouch registrar --help": [
        sys.executable, "-m", "zerotouch_plugin", "registrar", "--help",
    ],
}  # fmt: skip


def wall_seconds(argv: Sequence[str], runs: int) -> float:
    """Shortest wall time of ``runs`` runs of ``argv`` (after one untimed run: a warm cache)."""
    times = []
    for n in range(runs + 1):
        start = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, capture_output=True, check=True, timeout=60)
        if n:
            times.append(time.perf_counter() - start)
    return min(times)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each command")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 if the target is missed")
    args = parser.parse_args(argv)
    seconds = {name: wall_seconds(cmd, args.runs) for name, cmd in COMMANDS.items()}
    base = seconds["python -c pass"]
    figures = {
        name: {"ms": value * 1000, "ratio_to_python": value / base}
        for name, value in seconds.items()
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for name, f in figures.items():
            print(f"{name:<28}{f['ms']:8.1f} ms  {f['ratio_to_python']:6.1f} x python -c pass")
    if seconds["zerotouch --help"] > TARGET_HELP_S:
        print(f"missed: zerotouch --help over {TARGET_HELP_S} s", file=sys.stderr)
        return 1 if args.check else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
