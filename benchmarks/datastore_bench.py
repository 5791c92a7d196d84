"""NETCONF get-config and edit-config on a device datastore of 100, 1,000 and 10,000
``ietf-interfaces`` entries.

The device's own NETCONF server code (RPC parsing, the operation, subtree filtering, edit,
validation, reply) answers each RPC in this process, without a transport, so the figures
are what the datastore costs: ``get-config`` of one entry by subtree filter and
``edit-config`` merging one leaf of one entry (its description), alternating, on entries
spread over the list, so no reply comes from the cache of an unchanged datastore. Reported:
p50/p95 milliseconds per size and the ratio of each to the 100-entry baseline of the same
run. Targets at 10,000 entries: get-config p50 <= 2 ms, edit-config p50 <= 3 ms, and neither
more than 3 times its 100-entry baseline (cost grows with the edit, not the datastore).

    .venv/bin/python benchmarks/datastore_bench.py [--rounds 200] [--json] [--check]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from zerotouch_plugin.config import NetconfLimits
from zerotouch_plugin.device.datastore import STARTUP_FILE, Datastores
from zerotouch_plugin.device.schema import DeviceSchema, load_device_schema
from zerotouch_plugin.services.netconf.protocol import NetconfSession, SessionInfo
from zerotouch_plugin.services.netconf.server import build_netconf_server

SIZES = (100, 1_000, 10_000)
TARGET_GET_MS = 2.0
TARGET_EDIT_MS = 3.0
TARGET_RATIO = 3.0
IF_NS = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
RPC = '<rpc xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="{id}">{op}</rpc>'
GET = (
    '<get-config><source><running/></source><filter type="subtree">'
    f'<interfaces xmlns="{IF_NS}"><interface><name>{{name}}</name></interface></interfaces>'
    "</filter></get-config>"
)
EDIT = (
    "<edit-config><target><running/></target><config>"
    f'<interfaces xmlns="{IF_NS}"><interface><name>{{name}}</name>'
    "<description>{text}</description></interface></interfaces></config></edit-config>"
)


@dataclass(frozen=True)
class SizeFigures:
    entries: int
    get_p50_ms: float
    get_p95_ms: float
    edit_p50_ms: float
    edit_p95_ms: float
    get_ratio: float  # p50 over the 100-entry p50 of the same run
    edit_ratio: float


def interfaces(count: int) -> dict[str, object]:
    return {
        "ietf-interfaces:interfaces": {
            "interface": [
                {"name": f"eth{i}", "type": "iana-if-type:ethernetCsmacd", "enabled": True}
                for i in range(count)
            ]
        }
    }


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _timed(session: NetconfSession, op: str, number: int, expect: str) -> float:
    message = RPC.format(id=number, op=op).encode()
    start = time.perf_counter()
    reply = await session.handle_rpc(message)
    spent = time.perf_counter() - start
    if expect.encode() not in reply:
        raise SystemExit(f"unexpected reply: {reply[:300]!r}")
    return spent * 1000


async def measure_size(schema: DeviceSchema, entries: int, rounds: int) -> tuple[list[float], ...]:
    """get-config and edit-config milliseconds, ``rounds`` of each, on ``entries`` entries."""
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, STARTUP_FILE).write_text(json.dumps(interfaces(entries)))
        stores = Datastores(schema, Path(folder), edit_budget=2 * entries + 100)
        server = build_netconf_server(stores, NetconfLimits())
        session = NetconfSession(
            server,
            1,
            SessionInfo("bench", "netconf-tls", "127.0.0.1"),
            lambda _m: None,
            lambda: None,
        )
        gets: list[float] = []
        edits: list[float] = []
        step = max(1, entries // 97)
        for n in range(rounds):
            name = f"eth{(n * step) % entries}"
            edits.append(await _timed(session, EDIT.format(name=name, text=f"r{n}"), n, "<ok/>"))
            other = f"eth{(n * step + entries // 2) % entries}"
            gets.append(await _timed(session, GET.format(name=other), n, f"<name>{other}</name>"))
        server.close_all()
        return gets, edits


def measure(rounds: int) -> list[SizeFigures]:
    schema = load_device_schema()
    raw = {size: asyncio.run(measure_size(schema, size, rounds)) for size in SIZES}
    base_get = statistics.median(raw[SIZES[0]][0])
    base_edit = statistics.median(raw[SIZES[0]][1])
    figures = []
    for size, (gets, edits) in raw.items():
        get50, edit50 = statistics.median(gets), statistics.median(edits)
        figures.append(
            SizeFigures(
                size,
                get50,
                percentile(gets, 0.95),
                edit50,
                percentile(edits, 0.95),
                get50 / base_get,
                edit50 / base_edit,
            )
        )
    return figures


def missed(figures: Sequence[SizeFigures]) -> list[str]:
    largest = figures[-1]
    out = []
    if largest.get_p50_ms > TARGET_GET_MS:
        out.append(f"get-config p50 {largest.get_p50_ms:.2f} ms > {TARGET_GET_MS} ms")
    if largest.edit_p50_ms > TARGET_EDIT_MS:
        out.append(f"edit-config p50 {largest.edit_p50_ms:.2f} ms > {TARGET_EDIT_MS} ms")
    for what, ratio in (("get-config", largest.get_ratio), ("edit-config", largest.edit_ratio)):
        if ratio > TARGET_RATIO:
            out.append(f"{what} ratio {ratio:.2f} > {TARGET_RATIO}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200, help="RPCs of each kind per size")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    figures = measure(args.rounds)
    if args.json:
        print(json.dumps([asdict(f) for f in figures], indent=2))
    else:
        print("entries  get p50/p95 ms (ratio)    edit p50/p95 ms (ratio)")
        for f in figures:
            print(
                f"{f.entries:>7}  {f.get_p50_ms:6.2f} / {f.get_p95_ms:6.2f} ({f.get_ratio:4.2f})"
                f"    {f.edit_p50_ms:6.2f} / {f.edit_p95_ms:6.2f} ({f.edit_ratio:4.2f})"
            )
    problems = missed(figures)
    for problem in problems:
        print(f"missed: {problem}", file=sys.stderr)
    return 1 if args.check and problems else 0


if __name__ == "__main__":
    sys.exit(main())
