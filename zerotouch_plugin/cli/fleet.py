"""``zerotouch fleet``: N virtual devices in one process, each with the real pledge agent and
a NETCONF/TLS listener that takes the day-0 hand-off; progress, then a summary."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from zerotouch_plugin.cli.device import add_discovery_options
from zerotouch_plugin.config import DeviceConfig
from zerotouch_plugin.errors import ConfigError

if TYPE_CHECKING:
    from zerotouch_plugin.services.fleet import Fleet

__all__ = ["HELP", "register"]

HELP = "virtual fleet: N devices in one process enroll by BRSKI and take the day-0 hand-off"
_HOST = "127.0.0.1"
_PROGRESS_EVERY = 2.0  # seconds between progress lines


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return value


def _not_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=_positive_int, required=True, help="devices to run")
    parser.add_argument(
        "--idevids",
        type=Path,
        required=True,
        metavar="DIR",
        help="one folder per device, SERIAL/idevid.pem, idevid.key and masa-ca.pem (what "
        "'zerotouch vendor idevid' writes); the first --count by name are used",
    )
    parser.add_argument(
        "--vendor",
        type=Path,
        metavar="VENDOR_DIR",
        help="issue the missing IDevIDs into --idevids from this vendor folder first "
        "('zerotouch vendor init'), serials PREFIX00001 ...",
    )
    parser.add_argument(
        "--serial-prefix", default="FLEET-", help="serial prefix of issued IDevIDs (FLEET-)"
    )
    parser.add_argument(
        "--prepare-only",
        action="store_true",
        help="issue the IDevIDs (with --vendor) and stop; no device runs",
    )
    parser.add_argument(
        "--registrar",
        metavar="URL",
        action="append",
        help="registrar https://HOST:PORT (repeatable, tried in order)",
    )
    add_discovery_options(parser)
    parser.add_argument(
        "--workdir",
        type=Path,
        metavar="W",
        help="device folders go here, kept (default: a temporary folder, removed at the end)",
    )
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=50,
        help="devices bootstrapping at once (50)",
    )
    parser.add_argument(
        "--rounds",
        type=_positive_int,
        default=3,
        help="rounds through the registrars before a device gives up (3)",
    )
    parser.add_argument(
        "--retry-delay",
        type=_positive,
        default=1.0,
        help="seconds before a failed registrar is tried again, doubled each round (1)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive,
        default=600.0,
        help="seconds until every device must have enrolled or failed (600)",
    )
    parser.add_argument(
        "--handoff-wait",
        type=_not_negative,
        default=60.0,
        help="seconds to wait after the enrollments for the day-0 hand-offs; 0: do not wait (60)",
    )
    parser.add_argument(
        "--allow-nonceless",
        action="store_true",
        help="accept a voucher without nonce whose expires-on is in the future (RFC 8995 §7.2)",
    )
    parser.add_argument(
        "--hold",
        action="store_true",
        help="after the summary keep the devices listening until SIGINT/SIGTERM",
    )
    parser.add_argument(
        "--json", action="store_true", help="the summary as one JSON line; progress to stderr"
    )
    parser.set_defaults(func=cmd_fleet)


def _prepare(args: argparse.Namespace) -> None:
    """Issue the IDevIDs missing for ``--count`` devices, loading the vendor CA once."""
    from zerotouch_plugin.cli.vendor import IdevidIssuer
    from zerotouch_plugin.services.fleet import FACTORY_FILES

    folder: Path = args.idevids
    issuer = IdevidIssuer.load(args.vendor)
    issued = 0
    for index in range(1, args.count + 1):
        serial = f"{args.serial_prefix}{index:05d}"
        if all((folder / serial / name).is_file() for name in FACTORY_FILES):
            continue
        issuer.issue(serial, folder / serial)
        issued += 1
    print(f"IDevIDs: {issued} issued into {folder}", file=sys.stderr, flush=True)


def cmd_fleet(args: argparse.Namespace) -> int:
    if args.vendor is not None:
        _prepare(args)
    if args.prepare_only:
        if args.vendor is None:
            raise ConfigError("--prepare-only needs --vendor")
        return 0
    if not args.registrar and not args.discovery:
        raise ConfigError("give --registrar URL or --discovery METHOD,...")
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        return asyncio.run(_run(args, args.workdir))
    with tempfile.TemporaryDirectory(prefix="zerotouch-fleet-") as work:
        return asyncio.run(_run(args, Path(work)))


def _config(args: argparse.Namespace) -> DeviceConfig:
    try:
        return DeviceConfig(
            netconf_tls=f"{_HOST}:0",
            registrars=tuple(args.registrar or ()),
            discovery=tuple(args.discovery or ()),
            interface=args.interface,
            vendor_registrar=args.vendor_registrar,
            bootstrap_rounds=args.rounds,
            bootstrap_retry_delay=args.retry_delay,
            bootstrap_max_delay=max(args.retry_delay, 10 * args.retry_delay),
            nonceless_allowed=args.allow_nonceless,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"fleet: {exc}") from exc


async def _run(args: argparse.Namespace, workdir: Path) -> int:
    from zerotouch_plugin.services.fleet import Fleet, find_idevids

    out = sys.stderr if args.json else sys.stdout
    sources = find_idevids(args.idevids, args.count)
    fleet = Fleet(sources, workdir, _config(args), concurrency=args.concurrency)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    began = time.monotonic()
    try:
        await fleet.start()
        print(
            f"fleet: {len(fleet.devices)} devices listening in {time.monotonic() - began:.1f} s "
            f"(workdir {workdir})",
            file=out,
            flush=True,
        )
        ticker = asyncio.create_task(_ticker(fleet, out))
        running = asyncio.create_task(
            fleet.run(timeout=args.timeout, handoff_wait=args.handoff_wait)
        )
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        ticker.cancel()
        if not running.done():
            running.cancel()
            print("fleet: interrupted", file=sys.stderr, flush=True)
            summary = fleet.summary()
        else:
            summary = running.result()
        if args.json:
            print(json.dumps(summary.to_json()), flush=True)
        else:
            print("\n".join(summary.lines()), flush=True)
        if args.hold and not stop.is_set():
            print("fleet: holding the devices until SIGINT/SIGTERM", file=sys.stderr, flush=True)
            await stopping
        stopping.cancel()
        configured = args.handoff_wait == 0 or summary.configured == summary.enrolled
        return 0 if summary.ok and configured else 1
    finally:
        await fleet.close()


async def _ticker(fleet: Fleet, out: TextIO) -> None:
    """A progress line every few seconds."""
    while True:
        await asyncio.sleep(_PROGRESS_EVERY)
        print(f"fleet: {fleet.progress()}", file=out, flush=True)
