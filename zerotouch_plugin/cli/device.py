"""``zerotouch device run``: the reference device server over a device folder P."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
from pathlib import Path

from zerotouch_plugin.config import DeviceConfig, hash_password, load_config
from zerotouch_plugin.errors import ConfigError

__all__ = ["HELP", "register"]

HELP = "reference device: NETCONF (SSH, TLS) and RESTCONF over YANG-validated datastores"


async def _run(args: argparse.Namespace) -> None:
    from zerotouch_plugin.services.device_server import DeviceServer  # heavy: YANG, asyncssh

    folder: Path = args.dir
    if not folder.is_dir():
        raise ConfigError(f"device folder {folder} does not exist")
    config_path = args.config or folder / "device.toml"
    config = load_config(
        DeviceConfig,
        config_path,
        {
            "netconf_ssh": args.netconf_ssh,
            "netconf_tls": args.netconf_tls,
            "restconf": args.restconf,
        },
    )
    if not (config.netconf_ssh or config.netconf_tls or config.restconf):
        raise ConfigError("no listener: give --netconf-ssh, --netconf-tls or --restconf")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    device = DeviceServer(folder, config)
    bound = await device.start()
    # The compiled YANG schema is a large, long-lived object graph: keep the cyclic garbage
    # collector from walking it again and again (multi-millisecond pauses in replies).
    gc.collect()
    gc.freeze()
    try:
        for name, (host, port) in bound.items():
            shown = f"[{host}]" if ":" in host else host
            print(f"listening {name} {shown}:{port}", flush=True)
        if not device.has_domain_identity and (config.netconf_tls or config.restconf):
            print(
                "no domain identity (P/ldevid.pem): TLS clients are refused until enrolment",
                file=sys.stderr,
                flush=True,
            )
        await stop.wait()
    finally:
        await device.close()


def cmd_run(args: argparse.Namespace) -> int:
    asyncio.run(_run(args))
    print("device stopped", file=sys.stderr)
    return 0


def cmd_hash_password(args: argparse.Namespace) -> int:
    """Read a password from stdin, print the value for ``password`` in device.toml."""
    password = sys.stdin.readline().rstrip("\n")
    if not password:
        raise ConfigError("no password on standard input")
    print(hash_password(password, salt=os.urandom(16)))
    return 0


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser("run", help="run the device until SIGINT/SIGTERM", description=HELP)
    p.add_argument("--dir", type=Path, required=True, help="the device folder P")
    p.add_argument("--config", type=Path, help="configuration file (default: P/device.toml)")
    p.add_argument("--netconf-ssh", metavar="HOST:PORT", help="NETCONF over SSH (RFC 6242)")
    p.add_argument("--netconf-tls", metavar="HOST:PORT", help="NETCONF over TLS (RFC 7589)")
    p.add_argument("--restconf", metavar="HOST:PORT", help="RESTCONF over HTTPS (RFC 8040)")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser(
        "hash-password",
        help="hash a password read from stdin for device.toml (PBKDF2-SHA256)",
        description="Reads one line from standard input and prints the hashed password.",
    )
    p.set_defaults(func=cmd_hash_password)
