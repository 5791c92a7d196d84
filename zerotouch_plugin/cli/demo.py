"""``zerotouch demo``: the whole zero-touch flow on 127.0.0.1, one line per step.

Manufacturer and domain PKI, MASA, registrar and devices as real ``zerotouch`` processes;
every device enrolls (BRSKI), the registrar hands off its day-0 configuration, and the
owner's NMS reads it back over NETCONF/TLS while foreign clients are refused. Exits 0 only
if every step held; stops everything it started unless ``--keep`` succeeded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zerotouch_plugin.config import DEFAULT_DEVICE_DOMAIN
from zerotouch_plugin.errors import ConfigError
from zerotouch_plugin.roles.registrar import device_dns_name

if TYPE_CHECKING:
    from zerotouch_plugin.demo.flow import Demo, StepResult

__all__ = ["HELP", "register"]

HELP = "run MASA, registrar and devices on 127.0.0.1: enroll, day-0 hand-off, NMS checks"
MAX_DEVICES = 20
SUMMARY = "summary.json"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workdir",
        type=Path,
        metavar="DIR",
        help="new or empty folder for every file (default: a temp one)",
    )
    parser.add_argument(
        "--devices",
        type=int,
        default=1,
        metavar="N",
        help=f"how many devices (1..{MAX_DEVICES}, default 1)",
    )
    parser.add_argument("--json", action="store_true", help="print only a JSON summary")
    parser.add_argument(
        "--keep", action="store_true", help="leave the services running when every step held"
    )
    parser.add_argument(
        "--stop", action="store_true", help="stop the services a --keep run left in --workdir"
    )
    parser.add_argument(
        "--discovery",
        action="store_true",
        help="each device in its own network namespace behind a join proxy it finds by GRASP, "
        "no --registrar (needs root; no hand-off, the registrar cannot reach the devices)",
    )
    parser.add_argument(
        "--masa-gone",
        action="store_true",
        help="the registrar fetches nonceless vouchers ahead from the MASA (claims mode), the "
        "MASA is stopped for good, and the devices enroll with the vouchers held in escrow",
    )
    parser.set_defaults(func=_demo)


def _folder(workdir: Path | None) -> Path:
    if workdir is None:
        return Path(tempfile.mkdtemp(prefix="zerotouch-demo-"))
    if workdir.exists() and (not workdir.is_dir() or any(workdir.iterdir())):
        raise ConfigError(f"--workdir {workdir} is not an empty folder; the demo needs a fresh one")
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir.resolve()


def _print_result(number: int, result: StepResult) -> None:
    """One progress line per step (and the log tails of a failed one)."""
    status = "ok" if result.ok else "FAIL"
    print(
        f"{number:3d} {result.at:6.2f}s  {status:4s} {result.seconds * 1000:6.0f} ms  "
        f"{result.title}: {result.detail}",
        flush=True,
    )
    for path, lines in result.log_tail:
        print(f"      --- last lines of {path} ---")
        for line in lines:
            print(f"      | {line}")


def _keep_help(folder: Path, endpoints: dict[str, Any]) -> str:
    """How to reach the kept services and how to stop them."""
    registrar = endpoints["registrar"]
    first = endpoints["devices"][0]
    tls_port = first["netconf-tls"].rsplit(":", 1)[1]
    restconf_port = first["restconf"].rsplit(":", 1)[1]
    name = device_dns_name(first["serial"], DEFAULT_DEVICE_DOMAIN)
    ncclient = (
        "import ssl; from ncclient import manager; "
        f'm = manager.connect_tls(host="127.0.0.1", port={tls_port}, '
        'certfile="nms/cert.pem", keyfile="nms/key.pem", ca_certs="registrar/ca.pem", '
        "protocol=ssl.PROTOCOL_TLS_CLIENT, check_hostname=False); "
        'print(m.get_config("running").data_xml); m.close_session()'
    )
    lines = [
        "services left running:",
        f"  MASA       {endpoints['masa']}",
        f"  registrar  {registrar}",
    ]
    for device in endpoints["devices"]:
        lines.append(
            f"  {device['name']:10s} {device['serial']}  NETCONF/TLS {device['netconf-tls']}"
            f"  RESTCONF https://{device['restconf']}"
        )
    lines += [
        "reach them (from the work folder):",
        f"  cd {shlex.quote(str(folder))}",
        "  curl --cacert registrar/ca.pem --cert admin/cert.pem --key admin/key.pem "
        f"{registrar}/admin/devices",
        "  # the LDevID names the device <serial>.<device_domain>; curl checks that name (no -k)"
        " and is told where it is:",
        "  curl --cacert registrar/ca.pem --cert nms/cert.pem --key nms/key.pem "
        f"--resolve {name}:{restconf_port}:127.0.0.1 "
        f"https://{name}:{restconf_port}/restconf/data/ietf-system:system",
        f"  {shlex.quote(sys.executable)} -c {shlex.quote(ncclient)}",
        "stop them:",
        f"  zerotouch demo --stop --workdir {shlex.quote(str(folder))}",
    ]
    return "\n".join(lines)


async def _run(demo: Demo, received: list[int]) -> bool:
    """The flow, then stop (or keep) the services, also when cancelled (Ctrl-C, SIGTERM:
    its number goes to ``received``)."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()

    def cancel(sig: int) -> None:
        received.append(sig)
        task.cancel()

    for sig in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, cancel, sig)
    ok = False
    try:
        ok = await demo.run()
    finally:
        demo.finish(ok)
    return ok and all(result.ok for result in demo.results)


def _stop(args: argparse.Namespace) -> int:
    from zerotouch_plugin.demo.services import stop_kept

    if args.workdir is None:
        raise ConfigError("--stop needs --workdir: the folder of the --keep run")
    stopped = stop_kept(args.workdir)
    print(f"stopped {', '.join(stopped)}" if stopped else f"nothing running in {args.workdir}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    if args.stop:
        return _stop(args)
    if not 1 <= args.devices <= MAX_DEVICES:
        raise ConfigError(f"--devices must be 1..{MAX_DEVICES}")
    if args.discovery:
        from zerotouch_plugin.demo.netns import missing

        if args.keep:
            raise ConfigError("--keep is not offered with --discovery (its namespaces go away)")
        if args.masa_gone:
            raise ConfigError("--masa-gone runs on 127.0.0.1, not with --discovery")
        reason = missing()
        if reason is not None:
            print(f"zerotouch demo --discovery: {reason}", file=sys.stderr)
            return 1
    from zerotouch_plugin.demo.discovery import DiscoveryDemo
    from zerotouch_plugin.demo.flow import Demo  # heavy: ncclient, cryptography

    began = time.monotonic()
    folder = _folder(args.workdir)
    count = 0

    def report(result: StepResult) -> None:
        nonlocal count
        count += 1
        if not args.json:
            _print_result(count, result)

    if args.discovery:
        demo: Demo = DiscoveryDemo(folder, args.devices, keep=args.keep, report=report)
    else:
        demo = Demo(folder, args.devices, keep=args.keep, report=report, masa_gone=args.masa_gone)
    if not args.json:
        plural = "s" if args.devices > 1 else ""
        where = (
            "each in its own network namespace behind a join proxy found by GRASP"
            if args.discovery
            else "on 127.0.0.1"
        )
        print(f"zerotouch demo: {args.devices} device{plural} {where}, work folder {folder}")
    interrupted = False
    received: list[int] = [signal.SIGINT]  # what asyncio.run reports as KeyboardInterrupt
    try:
        ok = asyncio.run(_run(demo, received))
    except (KeyboardInterrupt, asyncio.CancelledError):
        ok, interrupted = False, True
    failed = next((result for result in demo.results if not result.ok), None)
    kept = ok and args.keep
    summary: dict[str, Any] = {
        "ok": ok,
        "failed_step": failed.name if failed else ("interrupted" if interrupted else None),
        "steps": [result.to_json() for result in demo.results],
        "total_seconds": round(time.monotonic() - began, 3),
        "workdir": str(folder),
        "endpoints": demo.endpoints(),
        "kept": kept,
    }
    if isinstance(demo, DiscoveryDemo):
        summary["found"] = demo.found
    if args.masa_gone:
        summary["vouchers_from_escrow"] = demo.from_escrow
    if kept:
        summary["pids"] = {s.name: s.popen.pid for s in demo.services.running}
        summary["stop_command"] = f"zerotouch demo --stop --workdir {shlex.quote(str(folder))}"
    (folder / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary, failed, interrupted)
        if kept:
            print(_keep_help(folder, summary["endpoints"]))
            print(_console_help(folder, summary["endpoints"]["registrar"]))
    return 0 if ok else (128 + received[-1] if interrupted else 1)


def _console_help(folder: Path, registrar: str) -> str:
    """A one-time login link to the kept registrar's console (docs/console.md)."""
    from zerotouch_plugin.cli.registrar import console_link

    link = console_link(folder / "registrar", url=registrar, name="demo")
    again = f"zerotouch registrar console-url --dir {shlex.quote(str(folder / 'registrar'))}"
    return (
        "registrar console (a one-time link, valid 10 minutes; another: "
        f"{again} --url {registrar}):\n  {link}"
    )


def _print_summary(summary: dict[str, Any], failed: StepResult | None, interrupted: bool) -> None:
    seconds = summary["total_seconds"]
    where = f"files in {summary['workdir']} (logs/ has every process's output, {SUMMARY})"
    for line in summary.get("found", []):
        print(f"registrar found: {line}")
    if summary["ok"]:
        print(f"all {len(summary['steps'])} steps held in {seconds:.1f} s; {where}")
    elif interrupted:
        print(f"interrupted after {seconds:.1f} s; everything was stopped; {where}")
    else:
        assert failed is not None
        print(f"demo FAILED at step {failed.name!r} ({failed.title}): {failed.detail}")
        print(where)
