"""``zerotouch netopeer2-plugin``: the pledge agent as a sysrepo plugin process beside
netopeer2-server (services/sysrepo_host.py); docs/netopeer2.md says how a vendor runs it."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from zerotouch_plugin.cli.device import add_discovery_options
from zerotouch_plugin.config import AgentConfig, load_config
from zerotouch_plugin.errors import ConfigError

__all__ = ["HELP", "register"]

HELP = "the pledge agent hosted in netopeer2 on sysrepo (a sysrepo plugin process)"
DEFAULT_TLS = "0.0.0.0:6513"  # RFC 7589 §8: the IANA port of NETCONF over TLS


async def _run(args: argparse.Namespace) -> None:
    from zerotouch_plugin.services.device_server import parse_address
    from zerotouch_plugin.services.pledge_agent import PledgeAgent
    from zerotouch_plugin.services.sysrepo_host import SysrepoHost

    folder: Path = args.dir
    config = load_config(
        AgentConfig,
        args.config or folder / "agent.toml",
        {
            "registrars": args.registrar,
            "nonceless_allowed": args.allow_nonceless or None,
            "discovery": args.discovery,
            "interface": args.interface,
            "vendor_registrar": args.vendor_registrar,
        },
    )
    address, port = parse_address(args.netconf_tls, "--netconf-tls")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    host = SysrepoHost(folder, tls_port=port, tls_address=address, domain_user=args.domain_user)
    await host.open()
    try:

        def enrolled(serial: str, already: bool) -> None:
            print(f"enrolled {serial}" + (" (already)" if already else ""), flush=True)

        agent = PledgeAgent(host, config, on_enrolled=enrolled)
        print("listening netopeer2-plugin sysrepo", flush=True)
        await agent.start()
        try:
            await stop.wait()
        finally:
            await agent.close()
    finally:
        await host.close()


def cmd_run(args: argparse.Namespace) -> int:
    if args.install_modules:
        from zerotouch_plugin.services.sysrepo_host import install_modules

        done = install_modules()
        print("zerotouch-bootstrap " + (done or "already installed"))
        return 0
    if args.dir is None:
        raise ConfigError("--dir is required to run the plugin")
    if not args.dir.is_dir():
        raise ConfigError(f"plugin folder {args.dir} does not exist")
    asyncio.run(_run(args))
    print("netopeer2 plugin stopped", file=sys.stderr)
    return 0


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir",
        type=Path,
        help="folder with idevid.pem, idevid.key and masa-ca.pem; the agent keeps its state there",
    )
    parser.add_argument(
        "--config", type=Path, help="agent configuration (default: agent.toml in the folder)"
    )
    parser.add_argument(
        "--netconf-tls",
        metavar="HOST:PORT",
        default=DEFAULT_TLS,
        help="where netopeer2 listens for NETCONF over TLS once the device is enrolled "
        f"(default {DEFAULT_TLS})",
    )
    parser.add_argument(
        "--domain-user",
        default="zerotouch-domain",
        help="the NETCONF user domain clients are mapped to; NACM lets it configure the device",
    )
    parser.add_argument(
        "--registrar",
        metavar="URL",
        action="append",
        help="registrar https://HOST:PORT (repeatable, tried in order)",
    )
    parser.add_argument(
        "--allow-nonceless",
        action="store_true",
        help="accept a voucher without nonce if its expires-on is in the future (RFC 8995 §7.2)",
    )
    parser.add_argument(
        "--install-modules",
        action="store_true",
        help="install the agent's YANG module into sysrepo, or update an older revision of it, "
        "and exit (before netopeer2-server starts: it loads its modules at start)",
    )
    add_discovery_options(parser)
    parser.set_defaults(func=cmd_run)
