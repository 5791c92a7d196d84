"""``zerotouch proxy serve``: a BRSKI join proxy (RFC 8995 §4) in front of a registrar."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import TYPE_CHECKING

from zerotouch_plugin.errors import ConfigError
from zerotouch_plugin.roles.discovery import Role
from zerotouch_plugin.roles.proxy import ProxyLimits, parse_endpoint, registrar_from_url

if TYPE_CHECKING:
    from zerotouch_plugin.services.discovery import Announcer, Finder

__all__ = ["HELP", "register"]

HELP = "BRSKI join proxy (RFC 8995 §4): relays pledges' TLS to a registrar, byte for byte"

DEFAULTS = ProxyLimits()


def _finder(interface: str) -> Finder:
    """GRASP ``AN_join_registrar`` on the registrar-facing link (RFC 8995 §4.3)."""
    from zerotouch_plugin.services.discovery.grasp import GraspFinder

    return GraspFinder(interface, "AN_join_registrar", Role.REGISTRAR)


async def _serve(args: argparse.Namespace) -> None:
    from zerotouch_plugin.services import proxy

    try:
        limits = ProxyLimits(
            max_connections=args.max_connections,
            max_connections_per_ip=args.max_connections_per_ip,
            idle_timeout=args.idle_timeout,
            connect_timeout=args.connect_timeout,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    listen = parse_endpoint(args.listen)
    methods = proxy.parse_announce(args.announce)
    registrars = [registrar_from_url(url) for url in args.registrar or ()]
    finder = None if registrars else _finder(args.registrar_interface)
    relay = proxy.JoinProxy(
        listen, limits=limits, interface=args.interface, registrars=registrars, finder=finder
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    announcers: list[Announcer] = []
    try:
        port = await relay.start()
        announcers = proxy.make_announcers(
            methods, interface=args.interface, role=Role.PROXY, port=port
        )
        await proxy.start_announcers(announcers)
        print(f"listening proxy {listen.shown(port)}", flush=True)
        await stop.wait()
    finally:
        await proxy.close_announcers(announcers)
        await relay.close()


def cmd_serve(args: argparse.Namespace) -> int:
    if not args.registrar and not args.registrar_interface:
        raise ConfigError("give --registrar URL or --registrar-interface IF (GRASP discovery)")
    asyncio.run(_serve(args))
    print("proxy stopped", file=sys.stderr)
    return 0


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    text = "relay pledges' TLS connections to a registrar until SIGINT/SIGTERM"
    p = sub.add_parser("serve", help=text, description=text)
    p.add_argument(
        "--listen",
        default="[::]:8443",
        help="HOST:PORT for pledges: [::]:PORT, [fe80::1%%IF]:PORT, 127.0.0.1:PORT "
        "(default [::]:8443)",
    )
    p.add_argument("--interface", help="pledge-facing interface: listen on it only, announce on it")
    p.add_argument(
        "--registrar",
        action="append",
        metavar="URL",
        help="https://HOST:PORT of a registrar (repeatable, tried in order; a zone as %%25IF)",
    )
    p.add_argument(
        "--registrar-interface",
        metavar="IF",
        help="without --registrar: find registrars by GRASP AN_join_registrar on IF",
    )
    p.add_argument("--announce", help="grasp,mdns: announce AN_Proxy / _brski-proxy._tcp")
    p.add_argument(
        "--max-connections",
        type=int,
        default=DEFAULTS.max_connections,
        help=f"connections relayed at once; more are closed at accept "
        f"(default {DEFAULTS.max_connections})",
    )
    p.add_argument(
        "--max-connections-per-ip",
        type=int,
        default=DEFAULTS.max_connections_per_ip,
        help=f"connections relayed at once from one pledge address; more are closed at accept "
        f"(default {DEFAULTS.max_connections_per_ip})",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULTS.idle_timeout,
        help=f"seconds without a byte either way before both sides are closed "
        f"(default {DEFAULTS.idle_timeout:g})",
    )
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=DEFAULTS.connect_timeout,
        help=f"seconds to reach the registrar (default {DEFAULTS.connect_timeout:g})",
    )
    p.set_defaults(func=cmd_serve)
