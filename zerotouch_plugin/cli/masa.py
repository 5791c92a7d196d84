"""``zerotouch masa ...``: run the manufacturer's MASA from its vendor folder; claims."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from zerotouch_plugin._text import is_decimal
from zerotouch_plugin.config import MASA_POLICIES
from zerotouch_plugin.errors import ConfigError, NotFound
from zerotouch_plugin.roles import masa
from zerotouch_plugin.services import certfiles
from zerotouch_plugin.services._gate import settle_heap
from zerotouch_plugin.services.masa_app import (
    DB_FILE,
    load_config_for,
    load_context,
    start_masa,
)
from zerotouch_plugin.store.db import open_role_database
from zerotouch_plugin.store.masa import MasaRepository

__all__ = ["HELP", "register"]

VENDOR_CA_KEY = "ca.key"  # written by ``vendor init`` beside ca.pem

HELP = "MASA (RFC 8995 §5.5-§5.8): serve vouchers, claim devices for a domain, show audit logs"


def _split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not is_decimal(port) or int(port) > 65535:
        raise ConfigError(f"--listen {listen!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _repository(args: argparse.Namespace) -> MasaRepository:
    config = load_config_for(args.dir, db=args.db)
    if not args.dir.is_dir():
        raise ConfigError(f"vendor folder {args.dir} does not exist")
    return MasaRepository(open_role_database(args.dir, config.db, DB_FILE))


async def _serve(args: argparse.Namespace) -> None:
    host, port = _split_listen(args.listen)
    config = load_config_for(args.dir, db=args.db, policy=args.policy, signer_key=args.key)
    ctx = load_context(args.dir, config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner, bound = await start_masa(ctx, host, port)
    settle_heap()
    try:
        shown = f"[{host}]" if ":" in host else host
        print(f"listening masa https://{shown}:{bound}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()
        ctx.close()


def cmd_serve(args: argparse.Namespace) -> int:
    asyncio.run(_serve(args))
    print("masa stopped", file=sys.stderr)
    return 0


def cmd_claim(args: argparse.Namespace) -> int:
    try:
        ca = certfiles.load_cert_file(args.domain_ca)
    except ValueError as exc:
        raise ConfigError(f"{args.domain_ca}: not a certificate: {exc}") from exc
    repo = _repository(args)
    dom = masa.domain_id(ca)
    repo.claim(
        args.serial,
        domain_id=dom,
        domain_cert=ca.public_bytes(serialization.Encoding.DER),
        now=datetime.now(UTC),
    )
    repo.db.dispose()
    print(f"device {args.serial} claimed for domain {dom} ({ca.subject.rfc4514_string()})")
    return 0


def cmd_signer_key(args: argparse.Namespace) -> int:
    """Move the voucher signer into a PKCS#11 token: a new key generated there (never
    extractable), its certificate issued by the vendor CA, masa-signer.key removed and
    ``signer_key`` set in masa.toml."""
    from zerotouch_plugin.artifacts import certs
    from zerotouch_plugin.services.masa_app import CA_CERT, CONFIG_FILE, SIGNER_CERT, SIGNER_KEY
    from zerotouch_plugin.services.pkcs11 import generate_key, parse_pkcs11_uri

    config_file = args.dir / CONFIG_FILE
    current = load_config_for(args.dir)
    if current.signer_key is not None:
        raise ConfigError(f"{config_file} names a signer_key already: {current.signer_key}")
    uri = parse_pkcs11_uri(args.key)
    ca = certfiles.load_identity(args.dir / CA_CERT, args.dir / VENDOR_CA_KEY)
    public = generate_key(uri)
    cert = certs.masa_signer_cert(ca, public, args.name, now=datetime.now(UTC), days=args.days)
    certfiles.write_certs(args.dir / SIGNER_CERT, [cert])
    with config_file.open("a", encoding="utf-8") as fh:
        fh.write(f"signer_key = {json.dumps(args.key)}\n")
    load_config_for(args.dir)  # the file written must load
    (args.dir / SIGNER_KEY).unlink(missing_ok=True)
    print(f"voucher signer key in {uri}; {args.dir / SIGNER_CERT}: {certs.fingerprint(cert)}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    repo = _repository(args)
    entries = repo.audit_entries(args.serial)
    repo.db.dispose()
    if not entries:
        raise NotFound(f"no voucher was ever issued for device {args.serial}")
    print(json.dumps(masa.audit_log(entries, max_events=len(entries)), indent=2))
    return 0


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)

    def add(name: str, help_text: str, func: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--dir", type=Path, required=True, help="the vendor folder")
        p.add_argument("--db", help="database URL (default: SQLite file masa.db in the folder)")
        p.set_defaults(func=func)
        return p

    p = add("serve", "run the MASA over HTTPS until SIGINT/SIGTERM", cmd_serve)
    p.add_argument("--listen", required=True, metavar="HOST:PORT", help="address to bind")
    p.add_argument(
        "--policy",
        choices=MASA_POLICIES,
        help="ownership policy (default from the folder's masa.toml, else first-come)",
    )
    p.add_argument(
        "--key",
        metavar="PKCS11_URI",
        help="voucher-signing key in a PKCS#11 token (RFC 7512 pkcs11:...; default: masa.toml "
        "signer_key, else masa-signer.key)",
    )

    p = add(
        "signer-key",
        "generate the voucher-signing key in a PKCS#11 token and certify it by the vendor CA",
        cmd_signer_key,
    )
    p.add_argument("--key", required=True, metavar="PKCS11_URI", help="pkcs11:token=...;object=...")
    p.add_argument("--name", default="zerotouch MASA voucher signer", help="certificate CN")
    p.add_argument("--days", type=int, default=730, help="certificate validity in days")

    p = add("claim", "record that a device belongs to the domain of a CA", cmd_claim)
    p.add_argument("--serial", required=True, help="the device serial-number")
    p.add_argument(
        "--domain-ca", type=Path, required=True, help="PEM file of the owner's domain CA"
    )

    p = add("audit", "print a device's audit log (RFC 8995 §5.8.1 JSON)", cmd_audit)
    p.add_argument("--serial", required=True, help="the device serial-number")
