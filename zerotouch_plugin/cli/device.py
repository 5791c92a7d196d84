"""``zerotouch device run``: the reference device server over a device folder, with the
pledge agent; ``zerotouch device factory-reset``: forget what bootstrapping gave it."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import fcntl
import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from zerotouch_plugin.config import (
    DISCOVERY_METHODS,
    DeviceConfig,
    hash_password,
    load_config,
)
from zerotouch_plugin.errors import ConfigError, InUse

if TYPE_CHECKING:
    from zerotouch_plugin.services.bootstrap_order import OrderedBootstrap
    from zerotouch_plugin.services.device_server import DeviceServer
    from zerotouch_plugin.services.sztp_agent import SztpAgent

__all__ = ["HELP", "register"]

HELP = "reference device: NETCONF (SSH, TLS) and RESTCONF over YANG-validated datastores"
_LOCK_FILE = ".device.lock"


@contextmanager
def _device_lock(folder: Path) -> Iterator[None]:
    """One process per device folder: ``run`` holds the lock, ``factory-reset`` needs it."""
    fd = os.open(folder / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InUse(f"{folder} is in use by a running device: stop it first") from None
        yield
    finally:
        os.close(fd)


def _listening(bound: Mapping[str, tuple[str, int]], shown: set[str]) -> None:
    """``listening NAME HOST:PORT`` for each listener not announced yet."""
    for name, (host, port) in bound.items():
        if name not in shown:
            shown.add(name)
            address = f"[{host}]" if ":" in host else host
            print(f"listening {name} {address}:{port}", flush=True)


def _strings(paths: list[Path] | Path | None) -> list[str] | str | None:
    """Paths of the command line as the configuration keys take them (strings)."""
    if paths is None or isinstance(paths, Path):
        return None if paths is None else str(paths)
    return [str(p) for p in paths]


async def _run(args: argparse.Namespace) -> None:
    from zerotouch_plugin.services._gate import settle_heap
    from zerotouch_plugin.services.device_server import DeviceServer  # heavy: YANG, lxml
    from zerotouch_plugin.services.pledge_agent import PledgeAgent

    folder: Path = args.dir
    config_path = args.config or folder / "device.toml"
    config = load_config(
        DeviceConfig,
        config_path,
        {
            "netconf_ssh": args.netconf_ssh,
            "netconf_tls": args.netconf_tls,
            "restconf": args.restconf,
            "registrars": args.registrar,
            "nonceless_allowed": args.allow_nonceless or None,
            "discovery": args.discovery,
            "interface": args.interface,
            "vendor_registrar": args.vendor_registrar,
            "bootstrap_servers": args.bootstrap_server,
            "bootstrap_server_ca": _strings(args.bootstrap_server_ca),
            "bootstrap_media": None if args.bootstrap_media is None else str(args.bootstrap_media),
            "bootstrap_dhcp": args.bootstrap_dhcp,
            "bootstrap_dhcp_lease": _strings(args.bootstrap_dhcp_lease),
            "bootstrap_dns_domain": args.bootstrap_dns_domain,
            "bootstrap_dns_server": args.bootstrap_dns_server,
            "bootstrap_mdns_interface": args.bootstrap_mdns_interface,
            "bootstrap_order": (
                None if args.bootstrap_order is None else args.bootstrap_order.split(",")
            ),
            "hw_model": args.hw_model,
            "os_name": args.os_name,
            "os_version": args.os_version,
            "script_interpreter": args.script_interpreter,
            "script_timeout": args.script_timeout,
        },
    )
    if not (config.netconf_ssh or config.netconf_tls or config.restconf):
        raise ConfigError("no listener: give --netconf-ssh, --netconf-tls or --restconf")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    device = DeviceServer(folder, config)
    shown: set[str] = set()

    def enrolled(serial: str, already: bool) -> None:
        _listening(device.bound, shown)  # RESTCONF listens once the identity is there
        print(f"enrolled {serial}" + (" (already)" if already else ""), flush=True)

    # a folder without a factory identity is a plain NETCONF/RESTCONF server: no agent
    agent: PledgeAgent | SztpAgent | OrderedBootstrap | None = None
    if config.bootstrap_order:
        agent = _ordered_agent(config, device, folder, enrolled)
    elif config.sztp:
        agent = _sztp_agent(config, device, folder)
    elif (folder / "idevid.pem").exists() or config.registrars:
        agent = PledgeAgent(device, config.agent_config(), on_enrolled=enrolled)
    bound = await device.start()
    # The compiled YANG schema is a large, long-lived object graph: keep the cyclic garbage
    # collector from walking it again and again (multi-millisecond pauses in replies).
    settle_heap()
    try:
        _listening(bound, shown)
        if not device.has_domain_identity and (config.netconf_tls or config.restconf):
            print(
                "no domain identity (ldevid.pem): TLS clients are refused until enrolment",
                file=sys.stderr,
                flush=True,
            )
        if agent is not None:
            await agent.start()
        await device.serve(stop)  # raises when a listener's server failed to load
    finally:
        if agent is not None:
            await agent.close()
        await device.close()


def _ordered_agent(
    config: DeviceConfig,
    device: DeviceServer,
    folder: Path,
    enrolled: Callable[[str, bool], None],
) -> OrderedBootstrap:
    """SZTP and BRSKI in ``bootstrap_order``, each given ``bootstrap_rounds`` (at least one)
    rounds per turn, so that the next protocol gets its turn."""
    from zerotouch_plugin.services.bootstrap_order import OrderedBootstrap, onboarded_by
    from zerotouch_plugin.services.pledge_agent import PledgeAgent

    rounds = max(1, config.bootstrap_rounds)
    turn = dataclasses.replace(config, bootstrap_rounds=rounds)
    factories: dict[str, Callable[[], PledgeAgent | SztpAgent]] = {
        "sztp": lambda: _sztp_agent(turn, device, folder),
        "brski": lambda: PledgeAgent(device, turn.agent_config(), on_enrolled=enrolled),
    }
    return OrderedBootstrap(
        [(name, factories[name]) for name in config.bootstrap_order],
        pause=config.bootstrap_retry_delay,
        onboarded=lambda: onboarded_by(device),
    )


def _sztp_agent(config: DeviceConfig, device: DeviceServer, folder: Path) -> SztpAgent:
    """The SZTP path (RFC 8572): bootstrap servers, DHCP and removable media, not BRSKI."""
    from zerotouch_plugin.services.sztp_agent import (
        DatastoreOnboarder,
        SztpAgent,
        SztpSettings,
        ssh_host_keys,
    )

    def complete(where: str) -> None:
        print(f"bootstrapped sztp {where}", flush=True)

    settings = SztpSettings.of(config.agent_config())
    if config.netconf_ssh:  # an NMS may then trust the device by these (RFC 8572 §7.3)
        settings = dataclasses.replace(settings, ssh_host_keys=ssh_host_keys(folder))
    onboarder = DatastoreOnboarder(device.datastores, folder)
    return SztpAgent(device, settings, onboarder, workdir=folder, on_complete=complete)


def cmd_run(args: argparse.Namespace) -> int:
    if not args.dir.is_dir():
        raise ConfigError(f"device folder {args.dir} does not exist")
    with _device_lock(args.dir):
        asyncio.run(_run(args))
    print("device stopped", file=sys.stderr)
    return 0


def cmd_factory_reset(args: argparse.Namespace) -> int:
    """Forget the domain identity, the voucher, the agent's state and (unless kept) the
    startup configuration; the factory identity and device.toml stay."""
    from zerotouch_plugin.device.agent_store import agent_files
    from zerotouch_plugin.device.datastore import STARTUP_FILE
    from zerotouch_plugin.device.domain_files import discard_incomplete, forget_domain

    folder: Path = args.dir
    if not folder.is_dir():
        raise ConfigError(f"device folder {folder} does not exist")
    with _device_lock(folder):
        removed = [*discard_incomplete(folder), *forget_domain(folder)]
        extra = agent_files(folder) + ([] if args.keep_config else [STARTUP_FILE])
        for name in extra:
            if (folder / name).exists():
                (folder / name).unlink()
                removed.append(name)
    kept = "startup configuration kept" if args.keep_config else "startup configuration erased"
    print(f"factory reset {folder}: removed {', '.join(removed) or 'nothing'}; {kept}")
    return 0


def cmd_hash_password(args: argparse.Namespace) -> int:
    """Read a password from stdin, print the value for ``password`` in device.toml."""
    password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise ConfigError("no password on standard input")
    print(hash_password(password, salt=os.urandom(16)))
    return 0


def _methods(text: str) -> tuple[str, ...]:
    methods = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in methods if m not in DISCOVERY_METHODS]
    if not methods or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown method(s) {', '.join(unknown) or '(none given)'}; known: "
            + ", ".join(DISCOVERY_METHODS)
        )
    return methods


def add_discovery_options(p: argparse.ArgumentParser) -> None:
    """``--discovery``, ``--interface``, ``--vendor-registrar``: the pledge's discovery
    (RFC 8995 §4), shared by ``device run`` and ``pledge enroll``."""
    p.add_argument(
        "--discovery",
        type=_methods,
        metavar="METHOD,...",
        help="how to find the registrar, in this order: configured (the --registrar URLs), "
        "grasp, mdns, dns-sd, vendor (default: configured when registrars are given, else "
        "grasp,mdns,dns-sd and vendor when a vendor registrar is set)",
    )
    p.add_argument(
        "--interface",
        metavar="IF",
        help="link to search on (default: every up interface but loopback with a local address)",
    )
    p.add_argument(
        "--vendor-registrar",
        metavar="URL",
        help="the manufacturer's well-known registrar, https://HOST[:PORT] (method vendor, "
        "tried last; it may redirect to the owner's registrar once)",
    )


def _add_sztp_options(p: argparse.ArgumentParser) -> None:
    """The SZTP path (RFC 8572): given any source, the agent bootstraps by SZTP, not BRSKI."""
    p.add_argument(
        "--bootstrap-server",
        metavar="URL",
        action="append",
        help="SZTP bootstrap server https://HOST[:PORT] (repeatable, tried in order; RFC 8572 "
        "§4.4): the device bootstraps by SZTP instead of BRSKI",
    )
    p.add_argument(
        "--bootstrap-server-ca",
        metavar="FILE",
        type=Path,
        action="append",
        help="PEM trust anchor(s) of the bootstrap servers: a server that chains to them is "
        "trusted and may send unsigned data (RFC 8572 §5.1); without, only signed data counts",
    )
    p.add_argument(
        "--bootstrap-media",
        metavar="DIR",
        type=Path,
        help="removable-storage folder with conveyed-information.cms, owner-certificate.cms "
        "and ownership-voucher.cms (RFC 8572 §4.1; signed data only), tried after the servers",
    )
    p.add_argument(
        "--bootstrap-dhcp",
        metavar="IF",
        help="ask DHCPv4 and DHCPv6 on this interface for bootstrap servers (options 143 and "
        "136, RFC 8572 §8), tried after the configured ones",
    )
    p.add_argument(
        "--bootstrap-dhcp-lease",
        metavar="FILE",
        type=Path,
        help="read the bootstrap servers of DHCP option 143/136 from this dhclient lease file",
    )
    p.add_argument(
        "--bootstrap-dns-domain",
        metavar="DOMAIN",
        help="look up SERIAL._sztp.DOMAIN TXT records (ci=, oc=, ov= artifacts) and "
        "_sztp._tcp.DOMAIN SRV records (bootstrap servers), RFC 8572 §4.2",
    )
    p.add_argument(
        "--bootstrap-dns-server",
        metavar="ADDRESS[:PORT]",
        help="the DNS resolver for --bootstrap-dns-domain (default: the system's)",
    )
    p.add_argument(
        "--bootstrap-mdns-interface",
        metavar="IFACE",
        help="first ask multicast DNS on this interface for SERIAL._sztp.local TXT and "
        "_sztp._tcp.local SRV records, RFC 8572 §4.2",
    )
    p.add_argument(
        "--bootstrap-order",
        metavar="sztp,brski",
        help="try SZTP sources and BRSKI discovery in this order until one onboards the "
        "device (default: SZTP when an SZTP source is given, else BRSKI)",
    )
    p.add_argument("--hw-model", help="hardware model sent to the bootstrap server (§7.1)")
    p.add_argument("--os-name", help="OS name sent to the bootstrap server (RFC 8572 §7.1)")
    p.add_argument("--os-version", help="OS version sent to the bootstrap server")
    p.add_argument(
        "--script-interpreter",
        metavar="PATH",
        help="run SZTP pre/post-configuration scripts with this interpreter (default: execute "
        "the script itself, no shell)",
    )
    p.add_argument(
        "--script-timeout",
        type=float,
        metavar="SECONDS",
        help="kill an SZTP script after this long (default 300)",
    )


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser("run", help="run the device until SIGINT/SIGTERM", description=HELP)
    p.add_argument("--dir", type=Path, required=True, help="the device folder")
    p.add_argument("--config", type=Path, help="configuration file (default: device.toml in it)")
    p.add_argument("--netconf-ssh", metavar="HOST:PORT", help="NETCONF over SSH (RFC 6242)")
    p.add_argument("--netconf-tls", metavar="HOST:PORT", help="NETCONF over TLS (RFC 7589)")
    p.add_argument("--restconf", metavar="HOST:PORT", help="RESTCONF over HTTPS (RFC 8040)")
    p.add_argument(
        "--registrar",
        metavar="URL",
        action="append",
        help="registrar https://HOST:PORT for the pledge agent (repeatable, tried in order; "
        "replaces registrars of device.toml)",
    )
    p.add_argument(
        "--allow-nonceless",
        action="store_true",
        help="accept a voucher without nonce if its expires-on is in the future (RFC 8995 "
        "§7.2; also nonceless_allowed = true in device.toml)",
    )
    add_discovery_options(p)
    _add_sztp_options(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser(
        "factory-reset",
        help="forget the domain identity, voucher, bootstrap state and startup configuration",
        description=(
            "With the device stopped: removes domain-ca.pem, ldevid.pem, ldevid.key, "
            "voucher.cms, bootstrap-state.json and startup.json, so the next run bootstraps "
            "again from its factory identity. Keeps idevid.*, masa-ca.pem, device.toml and "
            "the SSH host keys."
        ),
    )
    p.add_argument("--dir", type=Path, required=True, help="the device folder")
    p.add_argument(
        "--keep-config", action="store_true", help="keep the startup configuration (startup.json)"
    )
    p.set_defaults(func=cmd_factory_reset)
    p = sub.add_parser(
        "hash-password",
        help="hash a password read from stdin for device.toml (PBKDF2-SHA256)",
        description="Reads one line from standard input and prints the hashed password.",
    )
    p.set_defaults(func=cmd_hash_password)
