"""``zerotouch discovery ...``: look for, or announce, BRSKI join proxies and registrars the
way a pledge or a proxy does (RFC 8995 §4): an operator's tool when a device does not find its
way, and what the namespace tests drive.

Thin: the finders and announcers of ``services.discovery`` do the work. ``listen`` prints
each candidate as one JSON object per line and ends with ``N candidate(s) by METHOD in S s``
on stderr; ``announce`` prints ``announcing ...`` once the announcement is out and keeps it up
until interrupted (SIGINT/SIGTERM withdraw it cleanly) or ``--duration`` ends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from zerotouch_plugin.artifacts.grasp import AN_JOIN_REGISTRAR, AN_PROXY, IPPROTO_TCP
from zerotouch_plugin.cli._args import positive_seconds
from zerotouch_plugin.errors import ConfigError
from zerotouch_plugin.roles.discovery import Candidate
from zerotouch_plugin.roles.grasp import Announcement

__all__ = ["ANNOUNCE_METHODS", "HELP", "LISTEN_METHODS", "register"]

HELP = "find or announce BRSKI join proxies and registrars (GRASP, mDNS, unicast DNS-SD)"

DEFAULT_TIMEOUT = 5.0


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more seconds")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError("must be 1..65535")
    return value


def _json_value(value: Any) -> Any:
    """An objective-value from the link as JSON, or its repr when JSON cannot carry it
    (a map, a byte string, NaN or an infinity: RFC 8259 §6 has no such numbers)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)
    return value


def _record(candidate: Candidate, elapsed: float, **extra: Any) -> dict[str, Any]:
    return {
        "method": str(candidate.method),
        "role": str(candidate.role),
        "host": candidate.host,
        "port": candidate.port,
        "scope": candidate.scope,
        "url": candidate.url,
        "source": candidate.source,
        "elapsed": round(elapsed, 3),
        **extra,
    }


def _need_interface(args: argparse.Namespace) -> str:
    if not args.interface:
        raise ConfigError(f"--method {args.method} needs --interface")
    return str(args.interface)


# ---------------------------------------------------------------------------------------------
# listen


async def _listen_grasp(args: argparse.Namespace, emit: Callable[[dict[str, Any]], None]) -> None:
    from zerotouch_plugin.services.discovery.grasp import GraspFinder

    objective = args.objective or AN_PROXY
    finder = GraspFinder(_need_interface(args), objective, values=args.value or None)
    started = finder.clock()

    def on_candidate(candidate: Candidate, announcement: Announcement) -> None:
        expires = announcement.expires
        emit(
            _record(
                candidate,
                announcement.received - started,
                objective=announcement.objective.name,
                value=_json_value(announcement.objective.value),
                ttl=None if expires is None else round(expires - announcement.received, 3),
            )
        )

    alive = await finder.watch(on_candidate, timeout=args.timeout, first=not args.all)
    if args.stats:
        stats = {**finder.counters.snapshot(), **finder.sizes, "alive": len(alive)}
        print(json.dumps(stats), file=sys.stderr, flush=True)


async def _listen_mdns(args: argparse.Namespace, emit: Callable[[dict[str, Any]], None]) -> None:
    from zerotouch_plugin.services.discovery import mdns

    types = tuple(_SERVICES[name] for name in args.service) if args.service else None
    finder = mdns.MdnsFinder(
        _need_interface(args),
        types or mdns.SERVICE_TYPES,
        **({"linger": args.timeout} if args.all else {}),
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    found = await finder.find(timeout=args.timeout)
    for candidate in found:
        emit(_record(candidate, loop.time() - started))


async def _listen_dns_sd(args: argparse.Namespace, emit: Callable[[dict[str, Any]], None]) -> None:
    from zerotouch_plugin.services.discovery.dnssd import DnsSdFinder

    finder = DnsSdFinder(args.domain)
    loop = asyncio.get_running_loop()
    started = loop.time()
    found = await finder.find(timeout=args.timeout)
    for candidate in found:
        emit(_record(candidate, loop.time() - started))


Listen = Callable[[argparse.Namespace, Callable[[dict[str, Any]], None]], Awaitable[None]]

# Discovery method -> how ``listen`` searches with it (a table: one entry per method).
LISTEN_METHODS: dict[str, Listen] = {
    "grasp": _listen_grasp,
    "mdns": _listen_mdns,
    "dns-sd": _listen_dns_sd,
}


async def _listen(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    started = loop.time()
    count = 0

    def emit(record: dict[str, Any]) -> None:
        nonlocal count
        count += 1
        print(json.dumps(record), flush=True)

    await LISTEN_METHODS[args.method](args, emit)
    elapsed = loop.time() - started
    print(f"{count} candidate(s) by {args.method} in {elapsed:.3f} s", file=sys.stderr)
    return 0


def cmd_listen(args: argparse.Namespace) -> int:
    return asyncio.run(_listen(args))


# ---------------------------------------------------------------------------------------------
# announce


_SERVICES = {
    "proxy": "_brski-proxy._tcp.local.",
    "registrar": "_brski-registrar._tcp.local.",
    "bootstrapks": "_bootstrapks._tcp.local.",
}


def _announcer_grasp(args: argparse.Namespace) -> tuple[Any, str]:
    from zerotouch_plugin.services.discovery.grasp import GraspAnnouncer

    objective = args.objective or AN_PROXY
    announcer = GraspAnnouncer(
        objective,
        args.value,
        port=args.port,
        interface=_need_interface(args),
        host=args.host or "::",
        protocol=args.protocol,
        interval=args.interval,
        ttl=args.ttl,
    )
    return announcer, f"{objective} on {args.interface} port {args.port} by GRASP"


def _announcer_mdns(args: argparse.Namespace) -> tuple[Any, str]:
    from zerotouch_plugin.services.discovery import mdns

    if not args.service:
        raise ConfigError("--method mdns needs --service proxy, registrar or bootstrapks")
    announcer = mdns.MdnsAnnouncer(
        _SERVICES[args.service],
        args.instance or f"zerotouch {args.service}",
        args.port,
        _need_interface(args),
        [args.host] if args.host else None,
    )
    return announcer, f"on {args.interface} port {args.port} by mDNS"


# Discovery method -> its announcer (the methods that announce).
ANNOUNCE_METHODS: dict[str, Callable[[argparse.Namespace], tuple[Any, str]]] = {
    "grasp": _announcer_grasp,
    "mdns": _announcer_mdns,
}


async def _announce(args: argparse.Namespace) -> int:
    method = args.method or ("mdns" if args.service else "grasp")
    announcer, what = ANNOUNCE_METHODS[method](args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await announcer.start()
    try:
        name = getattr(announcer, "name", None)
        print(f"announcing {name + ' ' if name else ''}{what}", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), args.duration)
    finally:
        await announcer.close()
    return 0


def cmd_announce(args: argparse.Namespace) -> int:
    return asyncio.run(_announce(args))


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser(
        "listen",
        help="print the join proxies and registrars a method finds",
        description=(
            "Searches by METHOD and prints each candidate as a JSON object per line (method, "
            "role, host, port, scope, url, source, elapsed: seconds into the search; GRASP adds "
            "objective, value and ttl), then 'N candidate(s) by METHOD in S s' on stderr. "
            "Returns as the pledge's finder does, at the first answer, or with --all at the "
            "timeout. Malformed or hostile GRASP messages are dropped and counted (--stats)."
        ),
    )
    p.add_argument("--method", choices=sorted(LISTEN_METHODS), default="grasp",
                   help="grasp (default), mdns or dns-sd")  # fmt: skip
    p.add_argument("--interface", help="network interface (grasp, mdns), e.g. eth0")
    p.add_argument(
        "--timeout",
        type=positive_seconds,
        default=DEFAULT_TIMEOUT,
        help=f"seconds to search (default {DEFAULT_TIMEOUT:g})",
    )
    p.add_argument("--all", action="store_true", help="search until the timeout, print all")
    p.add_argument(
        "--objective",
        help=f"grasp: {AN_PROXY} (join proxies, the default) or {AN_JOIN_REGISTRAR}",
    )
    p.add_argument(
        "--value",
        action="append",
        help="grasp: only announcements with this objective value (repeatable; default any)",
    )
    p.add_argument(
        "--stats",
        action="store_true",
        help="grasp: print the counters (received, accepted, dropped by reason) and table "
        "sizes as JSON on stderr",
    )
    p.add_argument(
        "--service",
        action="append",
        choices=sorted(_SERVICES),
        help="mdns: the service names to browse (repeatable; default all three)",
    )
    p.add_argument("--domain", help="dns-sd: the domain (default: resolv.conf's search/domain)")
    p.set_defaults(func=cmd_listen)

    a = sub.add_parser(
        "announce",
        help="announce a join proxy or registrar on an interface (GRASP or mDNS)",
        description=(
            "GRASP: floods OBJECTIVE with a locator (HOST, PORT, PROTOCOL) to ff02::13 port "
            "7017 on INTERFACE every INTERVAL seconds, the first at once (HOST :: announces "
            "the interface's link-local address). mDNS: registers INSTANCE of SERVICE with the "
            "interface's addresses. Prints 'announcing ...' once it is out."
        ),
    )
    a.add_argument("--method", choices=sorted(ANNOUNCE_METHODS),
                   help="grasp or mdns (default: mdns with --service, else grasp)")  # fmt: skip
    a.add_argument("--interface", required=True, help="network interface, e.g. eth0")
    a.add_argument("--port", type=_port, required=True, help="port of the announced service")
    a.add_argument("--host", help="announced address (default: the interface's)")
    a.add_argument("--objective", help=f"grasp: the objective (default {AN_PROXY})")
    a.add_argument("--value", default="BRSKI", help="grasp: objective value (default BRSKI)")
    a.add_argument("--protocol", type=int, default=IPPROTO_TCP,
                   help="grasp: IANA protocol number (default 6, TCP)")  # fmt: skip
    a.add_argument(
        "--interval",
        type=positive_seconds,
        default=0.5,
        help="grasp: seconds between floods (default 0.5)",
    )
    a.add_argument(
        "--ttl",
        type=_seconds,
        default=180.0,
        help="grasp: seconds listeners may keep the announcement, 0 for ever (default 180)",
    )
    a.add_argument("--service", choices=sorted(_SERVICES), help="mdns: the service name")
    a.add_argument("--instance", help="mdns: the instance name (default 'zerotouch SERVICE')")
    a.add_argument(
        "--duration", type=positive_seconds, default=None,
        help="seconds to announce (default: until interrupted)",
    )  # fmt: skip
    a.set_defaults(func=cmd_announce)
