"""``zerotouch registrar ...``: set up, run and administer a BRSKI registrar (its folder)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import hashlib
import json
import re
import secrets
import shutil
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from zerotouch_plugin._text import printable
from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.config import DEFAULT_DEVICE_DOMAIN, RegistrarConfig, load_config
from zerotouch_plugin.errors import ConfigError, ZerotouchError
from zerotouch_plugin.services import certfiles
from zerotouch_plugin.services.registrar_files import (
    CA_CERT,
    CA_KEY,
    CONFIG_FILE,
    DB_FILE,
    REGISTRAR_CERT,
    REGISTRAR_KEY,
)

if TYPE_CHECKING:
    from zerotouch_plugin.store.registrar import RegistrarRepository

# The service, the database layer and the device schema are imported by the commands that
# use them: each costs a noticeable part of a second, and most commands need none of them.

__all__ = ["HELP", "console_link", "register"]

HELP = "BRSKI registrar (RFC 8995) with EST enrollment: init, policy, devices, serve"

MANUFACTURER_CAS = "manufacturer-cas.pem"
MASA_TRUST = "masa-trust.pem"
# Values of enums in modules too heavy to import for every command (tests keep them equal):
DAY0_FORMATS = ("json", "xml")  # device.day0.Day0Format
POLICY_DECISIONS = ("allow", "deny")  # roles.registrar.PolicyDecision but "pending"
DEVICE_COLUMNS = (
    ("serial", "serial"),
    ("state", "state"),
    ("voucher_requested_at", "requested"),
    ("voucher_issued_at", "issued"),
    ("voucher_accepted", "accepted"),
    ("voucher_source", "from"),
    ("enrolled_at", "enrolled"),
    ("audit_level", "audit"),
    ("escrow", "escrow until"),
    ("handoff", "hand-off"),
    ("last_error", "last error"),
    ("updated_at", "updated (UTC)"),
)
CLIENT_CERT_COLUMNS = (
    ("fingerprint", "fingerprint"),
    ("name", "name"),
    ("admin", "admin"),
    ("issued_at", "issued (UTC)"),
    ("not_after", "expires (UTC)"),
    ("revoked_at", "revoked (UTC)"),
    ("revoked_reason", "reason"),
)


EXPORT_SUFFIX = ".cms"  # one voucher, CMS DER, per file of ``vouchers export``
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
CELL_LIMIT = 80  # characters of a stored value shown in a table cell
REASON_LIMIT = 200  # characters of a revocation reason


def _now() -> datetime:
    return datetime.now(UTC)


def _config(folder: Path, **overrides: Any) -> RegistrarConfig:
    return load_config(RegistrarConfig, folder / CONFIG_FILE, overrides)


def _repo(args: argparse.Namespace, config: RegistrarConfig | None = None) -> RegistrarRepository:
    from zerotouch_plugin.store.db import open_role_database
    from zerotouch_plugin.store.registrar import RegistrarRepository

    if config is None:
        config = _config(args.dir, db=getattr(args, "db", None))
    return RegistrarRepository(open_role_database(args.dir, config.db, DB_FILE))


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def _copy_certs(files: list[Path], target: Path, what: str) -> None:
    found: list[x509.Certificate] = []
    for path in files:
        try:
            found.extend(certs.load_certs(path.read_bytes()))
        except OSError as exc:
            raise ConfigError(f"cannot read {what} {path}: {exc}") from exc
    certfiles.write_certs(target, found)


def cmd_init(args: argparse.Namespace) -> int:
    from zerotouch_plugin.services.handoff import HANDOFF_CLIENT_FILE, ensure_handoff_identity

    folder: Path = args.dir
    if (folder / CA_CERT).exists():
        raise ConfigError(f"{folder} already holds a registrar (found {CA_CERT}); not overwritten")
    folder.mkdir(parents=True, exist_ok=True)
    now = _now()
    ca = _new_domain_ca(args, now)
    hosts = args.host or ["127.0.0.1", "localhost"]
    registrar = certs.issue_registrar(ca, "registrar", hosts=hosts, now=now)
    _copy_certs(args.manufacturer_ca, folder / MANUFACTURER_CAS, "manufacturer CA")
    lines = [
        "# zerotouch registrar configuration (see docs/cli/registrar.md)",
        'listen = "127.0.0.1:8443"',
        f"manufacturer_cas = {_toml_list([MANUFACTURER_CAS])}",
    ]
    if args.masa_trust:
        _copy_certs(args.masa_trust, folder / MASA_TRUST, "MASA trust anchor")
        lines.append(f"masa_trust = {_toml_list([MASA_TRUST])}")
    if args.masa_url:
        lines.append(f"masa_url = {json.dumps(args.masa_url)}")
    lines.append("auto_accept = false")
    # true: a trusted pledge on no list waits for 'registrar approve' (docs/console.md)
    lines.append("ask = false")
    # LDevID DNS names: <serial label>.<device_domain> (docs/cli/registrar.md, "LDevID names")
    lines.append(f"device_domain = {json.dumps(args.device_domain)}")
    if isinstance(ca, certs.Identity):
        certfiles.write_key(folder / CA_KEY, ca.key)
    else:
        lines.append(f"ca_key = {json.dumps(args.ca_key)}")
    certfiles.write_certs(folder / CA_CERT, [ca.cert])
    certfiles.write_key(folder / REGISTRAR_KEY, registrar.key)
    certfiles.write_certs(folder / REGISTRAR_CERT, [registrar.cert, *registrar.chain])
    client = ensure_handoff_identity(folder, ca, now=now)
    (folder / CONFIG_FILE).write_text("\n".join(lines) + "\n")
    _config(folder)  # the file just written must load
    print(f"domain CA       {folder / CA_CERT}  {certs.fingerprint(ca.cert)}")
    print(f"registrar cert  {folder / REGISTRAR_CERT}  hosts {', '.join(hosts)}")
    print(f"hand-off client {folder / HANDOFF_CLIENT_FILE}  {certs.fingerprint(client.cert)}")
    print(f"configuration   {folder / CONFIG_FILE}")
    return 0


def _who() -> str:
    """How a CLI user is named in the record of their actions."""
    try:
        return f"cli {getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _new_domain_ca(args: argparse.Namespace, now: datetime) -> certs.Issuer:
    """The domain CA: its key in ca.key, or generated in the PKCS#11 token ``--ca-key``
    names (it never leaves the token; the CA signs through it)."""
    if args.ca_key is None:
        return certs.make_ca(args.ca_name, now=now, organization=args.organization)
    from zerotouch_plugin.artifacts.signer import SigningIdentity
    from zerotouch_plugin.services.pkcs11 import Pkcs11Signer, generate_key

    generate_key(args.ca_key)
    signer = Pkcs11Signer(args.ca_key)
    cert = certs.make_ca_for(signer, args.ca_name, now=now, organization=args.organization)
    return SigningIdentity(cert, signer)


def _policy(decision: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        _repo(args).set_policy(args.serial, decision, manufacturer=args.manufacturer, now=_now())
        print(f"{decision} {args.serial} (manufacturer {args.manufacturer or 'any'})")
        return 0

    return run


def cmd_approve(args: argparse.Namespace) -> int:
    decided = _repo(args).decide_pending(args.serial, "allow", actor=_who(), now=_now())
    if decided == 0:
        raise ConfigError(
            f"device {args.serial} is not waiting for approval (see 'registrar devices'); "
            "'registrar allow' adds it to the allow list"
        )
    print(f"approved {args.serial}: its next voucher-request gets a voucher")
    return 0


def console_link(
    folder: Path,
    *,
    url: str | None = None,
    name: str = "operator",
    minutes: int = 10,
    db: str | None = None,
) -> str:
    """A one-time login link to the registrar console of ``folder``: a random token whose
    SHA-256 is stored in the registrar's database, valid ``minutes``, in the URL fragment
    (browsers send no fragment to servers or in Referer; console.js posts it)."""
    if not 1 <= minutes <= 60:
        raise ConfigError("--minutes must be between 1 and 60")
    config = _config(folder, db=db)
    secret, now = secrets.token_urlsafe(32), _now()
    repo = _repo(argparse.Namespace(dir=folder, db=db), config)
    repo.add_login_token(
        secret, who=f"login link {name}", now=now, until=now + timedelta(minutes=minutes)
    )
    base = (url or f"https://{config.listen}").rstrip("/")
    return f"{base}/console/login#token={secret}"


def cmd_console_url(args: argparse.Namespace) -> int:
    print(console_link(args.dir, url=args.url, name=args.name, minutes=args.minutes, db=args.db))
    print(f"one use, valid {args.minutes} minutes, as 'login link {args.name}'", file=sys.stderr)
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    removed = _repo(args).remove_policy(args.serial, manufacturer=args.manufacturer)
    print(f"removed {removed} policy entr{'y' if removed == 1 else 'ies'} for {args.serial}")
    return 0


def _cell(value: Any) -> str:
    from zerotouch_plugin.store.registrar import EscrowRow, HandoffRow

    if value is None:
        return "-"
    if isinstance(value, HandoffRow):
        return value.state if value.attempts == 0 else f"{value.state} ({value.attempts})"
    if isinstance(value, EscrowRow):
        used = f" (used {value.used_count})" if value.used_count else ""
        return f"{value.expires_on:%Y-%m-%d %H:%M}{used}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    # Stored strings may come from a pledge (status reasons, serials): escaped, one bounded
    # line each; ``--json`` keeps the exact stored value.
    return printable(str(value), limit=CELL_LIMIT)


def cmd_devices(args: argparse.Namespace) -> int:
    repo = _repo(args)
    devices = repo.devices()
    if args.json:
        policy = [
            {"serial": p.serial, "decision": p.decision, "manufacturer": p.manufacturer}
            for p in repo.policies()
        ]
        records = [d.to_json_dict() for d in devices]
        print(json.dumps({"devices": records, "policy": policy}, indent=2))
        return 0
    _print_table(DEVICE_COLUMNS, devices)
    if not devices:
        print("(no devices yet)")
    return 0


def _print_table(columns: tuple[tuple[str, str], ...], records: Sequence[Any]) -> None:
    """One line per record: the attributes ``columns`` names, under their headings."""
    rows = [[h for _, h in columns]]
    rows += [[_cell(getattr(r, k)) for k, _ in columns] for r in records]
    widths = [max(len(r[i]) for r in rows) for i in range(len(columns))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def cmd_client_certs(args: argparse.Namespace) -> int:
    """The client certificates ``issue-client-cert`` issued, revoked ones with when and why."""
    issued = _repo(args).client_certificates()
    if args.json:
        records = [c.to_json_dict() for c in issued]
        print(json.dumps({"client_certificates": records}, indent=2))
        return 0
    _print_table(CLIENT_CERT_COLUMNS, issued)
    if not issued:
        print("(no client certificates issued yet)")
    return 0


def _day0_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read day-0 configuration {path}: {exc}") from exc


def cmd_day0(args: argparse.Namespace) -> int:
    """Set, show or clear the day-0 configuration of a serial or the default."""
    from zerotouch_plugin.device.day0 import format_of, parse_day0
    from zerotouch_plugin.roles.handoff import parse_address
    from zerotouch_plugin.services.registrar import day0_schema

    serial: str | None = None if args.default else args.serial
    who = "the default" if serial is None else serial
    if args.clear and (args.file or args.address):
        raise ConfigError("--clear takes no --file or --address")
    if args.address and serial is None:
        raise ConfigError("--address is per device: give --serial")
    if args.format and not args.file:
        raise ConfigError("--format goes with --file")
    config = _config(args.dir, db=args.db)
    repo = _repo(args, config)
    if args.clear:
        found = repo.clear_day0(serial)
        print(f"day-0 entry of {who} {'removed' if found else 'was not set'}")
        return 0
    if args.file:
        fmt = format_of(args.file.name, args.format)
        document = parse_day0(day0_schema(args.dir, config), _day0_text(args.file), fmt)
        repo.set_day0(
            serial, text=document.text, fmt=str(fmt), edit_xml=document.edit_xml, now=_now()
        )
        print(f"day-0 configuration of {who} stored ({fmt}, valid)")
    if args.address:
        target = parse_address(args.address)
        repo.set_day0_address(args.serial, str(target), now=_now())
        print(f"management address of {who}: {target}")
    if not (args.file or args.address):
        entry = repo.day0(serial)
        if entry is None:
            print(f"no day-0 entry for {who}")
            return 0
        print(f"# {who}: format {entry.format or '-'}, address {entry.address or '-'}")
        if entry.config is not None:
            print(entry.config.rstrip("\n"))
    return 0


def cmd_handoff(args: argparse.Namespace) -> int:
    """Queue the day-0 hand-off of an enrolled device again."""
    from zerotouch_plugin.services.handoff import requeue_handoff

    config = _config(args.dir, db=args.db)
    target = requeue_handoff(_repo(args, config), args.serial, now=_now())
    print(
        f"hand-off of {args.serial} queued for {target}: a running registrar pushes it within "
        f"{config.handoff_poll:g} s ('registrar devices' shows the outcome)"
    )
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    """Revoke LDevIDs: they no longer renew (simplereenroll) or enroll (simpleenroll); or a
    client certificate of ``issue-client-cert``: the admin API and the console refuse it."""
    if not args.reason or printable(args.reason, limit=REASON_LIMIT) != args.reason:
        raise ConfigError(
            f"--reason must be one line of 1 to {REASON_LIMIT} printable characters: the "
            "registrar quotes it to a device that presents the revoked LDevID"
        )
    repo = _repo(args)
    if args.fingerprint:
        client = repo.revoke_client_certificate(args.fingerprint, reason=args.reason, now=_now())
        if client is None:
            repo.revoke_certificate(args.fingerprint, reason=args.reason, now=_now())
        revoked = [args.fingerprint]
    else:
        revoked = repo.revoke_device_certificates(args.serial, reason=args.reason, now=_now())
    for fingerprint in revoked:
        print(f"revoked {fingerprint}")
    if not revoked:
        print(f"device {args.serial} holds no LDevID that is not revoked already")
    return 0


def cmd_issue_client_cert(args: argparse.Namespace) -> int:
    """Issue a client certificate from the domain CA, recorded (so that ``revoke`` can
    revoke it) before its files are written."""
    from zerotouch_plugin.roles.client_certs import ClientCertificate
    from zerotouch_plugin.services.pkcs11 import load_signing_identity

    config = _config(args.dir, db=args.db)
    ca = load_signing_identity(args.dir / CA_CERT, args.dir / CA_KEY, config.ca_key)
    key = certs.generate_key("p256")
    csr = certs.make_csr(key, common_name=args.name)
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, args.name)]
    if args.admin:
        from zerotouch_plugin.roles.registrar import ADMIN_OU

        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ADMIN_OU))
    now = _now()
    cert = certs.issue_from_csr(
        ca,
        csr,
        subject=x509.Name(attributes),
        san=[],
        now=now,
        days=args.days,
        client_auth=True,
        server_auth=False,
    )
    _repo(args, config).record_client_certificate(
        ClientCertificate(
            fingerprint=certs.fingerprint(cert),
            name=args.name,
            admin=args.admin,
            issued_at=now,
            not_after=cert.not_valid_after_utc,
        )
    )
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    certfiles.write_key(out / "key.pem", key)
    certfiles.write_certs(out / "cert.pem", [cert, *ca.chain])
    shutil.copyfile(args.dir / CA_CERT, out / "ca.pem")
    role = "admin" if args.admin else "client"
    print(
        f"{role} certificate for {args.name}: {out / 'cert.pem'} (key {out / 'key.pem'}), "
        f"{certs.fingerprint(cert)}"
    )
    if args.p12:
        _write_p12(out, args.name, key, cert, ca.cert)
    return 0


def _write_p12(
    out: Path, name: str, key: Any, cert: x509.Certificate, ca: x509.Certificate
) -> None:
    """The key and certificate as PKCS#12 for a browser's certificate store, under a random
    password written beside it (mode 0600)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import PrivateFormat, pkcs12

    password = secrets.token_urlsafe(18)
    encryption = (
        PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(100000)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(password.encode())
    )
    data = pkcs12.serialize_key_and_certificates(name.encode(), key, cert, [ca], encryption)
    for path, content in (
        (out / "client.p12", data),
        (out / "client.p12.password", f"{password}\n".encode()),
    ):
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_bytes(content)
    print(f"PKCS#12 for a browser: {out / 'client.p12'} (password: client.p12.password)")


def _voucher_files(paths: list[Path]) -> list[Path]:
    """The files named, and the *.cms files of a folder named (as ``vouchers export`` writes)."""
    found: list[Path] = []
    for path in paths:
        found.extend(sorted(path.glob(f"*{EXPORT_SUFFIX}")) if path.is_dir() else [path])
    return found


def cmd_vouchers_import(args: argparse.Namespace) -> int:
    """Verify each file (roles/registrar.check_escrow_voucher) and hold it in escrow; a file
    that fails is named with its reason and nothing of it is stored."""
    from zerotouch_plugin.roles.registrar import check_escrow_voucher
    from zerotouch_plugin.services.registrar import load_context

    config = _config(args.dir, db=args.db)
    context = load_context(args.dir, config)
    repo = _repo(args, config)
    failed = 0
    files = _voucher_files(args.files)
    if not files:
        raise ConfigError("no voucher files found (a folder is read for *.cms files)")
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
        try:
            held = check_escrow_voucher(context, data, serial=args.serial, now=_now())
        except ZerotouchError as exc:
            print(f"{path}: refused: {exc.one_line()}", file=sys.stderr)
            failed += 1
            continue
        repo.hold_escrow(held, now=_now())
        print(f"{path}: held for {held.serial} until {held.expires_on:%Y-%m-%dT%H:%M:%SZ}")
    return 1 if failed else 0


def _export_name(serial: str) -> str:
    """The file a held voucher is exported to: the serial when it makes a plain file name,
    else its SHA-256 (the serial is in the voucher either way)."""
    if SAFE_NAME.fullmatch(serial):
        return serial + EXPORT_SUFFIX
    return "sha256-" + hashlib.sha256(serial.encode()).hexdigest() + EXPORT_SUFFIX


def cmd_vouchers_export(args: argparse.Namespace) -> int:
    """Write each held voucher (CMS DER, as the MASA signed it) to ``--out``; an existing
    file is never overwritten, and none is written when any would be."""
    held = _repo(args).escrows()
    if args.serial:
        wanted = set(args.serial)
        held = [h for h in held if h.serial in wanted]
        missing = wanted - {h.serial for h in held}
        if missing:
            raise ConfigError(f"no voucher is held in escrow for {', '.join(sorted(missing))}")
    out: Path = args.out
    targets = [(h, out / _export_name(h.serial)) for h in held]
    clash = [str(path) for _, path in targets if path.exists()]
    if clash:
        raise ConfigError(f"not overwritten: {', '.join(clash)}")
    out.mkdir(parents=True, exist_ok=True)
    for row, path in targets:
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(row.voucher_cms)
        tmp.replace(path)
        print(f"{path}: {row.serial} until {row.expires_on:%Y-%m-%dT%H:%M:%SZ}")
    if not targets:
        print("no vouchers held in escrow")
    return 0


def cmd_prefetch(args: argparse.Namespace) -> int:
    """Fetch nonceless vouchers from the MASA for the serials and hold them in escrow."""
    from zerotouch_plugin.services.registrar import load_registrar
    from zerotouch_plugin.services.registrar.escrow import Fetched, prefetch

    config = _config(args.dir, db=args.db)
    if config.masa_gone:
        raise ConfigError("masa_gone is set in registrar.toml: the MASA is not asked")
    days = args.lifetime if args.lifetime is not None else config.escrow_lifetime_days

    async def run() -> list[Fetched]:
        registrar = load_registrar(args.dir, config)
        try:
            serials = args.serial or [
                p.serial for p in registrar.repo.policies() if p.decision == "allow"
            ]
            if not serials:
                raise ConfigError("no serial is allowed (registrar allow --serial SN)")
            return await prefetch(registrar, serials, days=days)
        finally:
            await registrar.close()

    results = asyncio.run(run())
    for r in results:
        if r.expires_on is not None:
            print(f"{printable(r.serial)}: held until {r.expires_on:%Y-%m-%dT%H:%M:%SZ}")
        else:
            print(f"{printable(r.serial)}: not fetched: {r.error}", file=sys.stderr)
    return 1 if any(r.error for r in results) else 0


def _split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


# Seconds the registrar waits, as it exits, for the store calls still running (a handler
# cancelled at shutdown may have left its transaction mid-way).
_STORE_CALLS_GRACE = 30.0


async def _serve(args: argparse.Namespace) -> None:
    from aiohttp import web

    from zerotouch_plugin.services._gate import settle_heap
    from zerotouch_plugin.services._limits import GatedTlsSite
    from zerotouch_plugin.services.registrar import load_registrar, registrar_app, tls_context
    from zerotouch_plugin.services.registrar.common import finish_store_calls

    config = _config(
        args.dir,
        listen=args.listen,
        db=args.db,
        auto_accept=True if args.auto_accept else None,
        device_domain=args.device_domain,
        ca_key=args.ca_key,
    )
    from zerotouch_plugin.roles.discovery import Role
    from zerotouch_plugin.services import proxy

    methods = proxy.parse_announce(args.announce)
    registrar = load_registrar(args.dir, config)
    runner = web.AppRunner(registrar_app(registrar), handle_signals=False)
    await runner.setup()
    host, port = _split_listen(config.listen)
    site = GatedTlsSite(
        runner,
        host,
        port,
        tls_context(registrar),
        service="registrar",
        limits=config.limits,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    announcers: list[Any] = []
    try:
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        # RFC 8995 §4.3: AN_join_registrar to proxies, _brski-registrar._tcp on the link
        announcers = proxy.make_announcers(
            methods, interface=args.interface, role=Role.REGISTRAR, port=bound
        )
        await proxy.start_announcers(announcers)
        settle_heap()
        shown = f"[{host}]" if ":" in host else host
        print(f"listening registrar https://{shown}:{bound}", flush=True)
        await stop.wait()
    finally:
        await proxy.close_announcers(announcers)
        await runner.cleanup()
        await asyncio.to_thread(finish_store_calls, _STORE_CALLS_GRACE)


def cmd_serve(args: argparse.Namespace) -> int:
    asyncio.run(_serve(args))
    print("registrar stopped", file=sys.stderr)
    return 0


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)

    def add(name: str, help_text: str, func: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--dir", type=Path, required=True, help="the registrar folder")
        p.set_defaults(func=func)
        return p

    vouchers = sub.add_parser(
        "vouchers",
        help="nonceless vouchers held in escrow for when the MASA is unreachable",
        description="nonceless vouchers held in escrow for when the MASA is unreachable",
    )
    actions = vouchers.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = actions.add_parser(
        "import",
        help="verify nonceless vouchers (CMS: DER, PEM or base64) and hold them in escrow",
        description="verify nonceless vouchers (CMS: DER, PEM or base64) and hold them in "
        "escrow, each under the serial-number it names",
    )
    p.add_argument("--dir", type=Path, required=True, help="the registrar folder")
    p.add_argument("--serial", help="refuse a voucher for another serial-number")
    p.add_argument("--db", help="database URL (default: the config, else registrar.db)")
    p.add_argument(
        "files", type=Path, nargs="+", metavar="FILE", help="voucher files, or folders of *.cms"
    )
    p.set_defaults(func=cmd_vouchers_import)
    p = actions.add_parser(
        "export",
        help="write the vouchers held in escrow to a folder, one <serial>.cms each",
        description="write the vouchers held in escrow to a folder, one <serial>.cms (CMS DER) "
        "each, for another registrar's 'vouchers import' or for keeping offline",
    )
    p.add_argument("--dir", type=Path, required=True, help="the registrar folder")
    p.add_argument("--out", type=Path, required=True, help="folder to write to")
    p.add_argument("--serial", action="append", help="only this serial (repeatable)")
    p.add_argument("--db", help="database URL (default: the config, else registrar.db)")
    p.set_defaults(func=cmd_vouchers_export)

    p = add(
        "prefetch",
        "fetch long-lived nonceless vouchers from the MASA (claims mode) and hold them in escrow",
        cmd_prefetch,
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--serial", action="extend", nargs="+", help="device serial numbers (repeatable)"
    )
    which.add_argument("--all-allowed", action="store_true", help="every serial on the allow list")
    p.add_argument(
        "--lifetime",
        type=int,
        metavar="DAYS",
        help="days until expires-on (default escrow_lifetime_days, 365); the MASA may cap it",
    )
    p.add_argument("--db", help="database URL (default: the config, else registrar.db)")

    p = add("init", "create the domain CA, registrar certificate and configuration", cmd_init)
    p.add_argument(
        "--manufacturer-ca",
        type=Path,
        action="append",
        required=True,
        help="PEM file of a manufacturer CA whose IDevIDs are accepted (repeatable)",
    )
    p.add_argument("--masa-url", help="MASA base URL overriding the IDevID MASA URL extension")
    p.add_argument(
        "--masa-trust", type=Path, action="append", help="PEM trust anchor of the MASA's TLS"
    )
    p.add_argument(
        "--host",
        action="append",
        default=None,
        help="DNS name or IP of the registrar certificate (default 127.0.0.1 and localhost)",
    )
    p.add_argument("--ca-name", default="zerotouch domain CA", help="domain CA common name")
    p.add_argument(
        "--ca-key",
        metavar="PKCS11_URI",
        help="generate the domain CA key in this PKCS#11 token (RFC 7512 pkcs11:...) instead "
        "of ca.key; registrar.toml then names it (ca_key)",
    )
    p.add_argument("--organization", default=None, help="domain CA organization")
    p.add_argument(
        "--device-domain",
        default=DEFAULT_DEVICE_DOMAIN,
        help="DNS domain of the devices' LDevID names, <serial>.<domain> "
        f"(default {DEFAULT_DEVICE_DOMAIN})",
    )

    for decision in POLICY_DECISIONS:
        p = add(str(decision), f"{decision} a device serial number (works while serving)", None)
        p.set_defaults(func=_policy(decision))
    p = add("remove", "drop the allow/deny entries of a serial number", cmd_remove)
    p = add(
        "approve",
        "allow a device that waits for approval (policy 'ask'; works while serving)",
        cmd_approve,
    )
    p.add_argument("--serial", required=True, help="device serial number")
    p.add_argument("--db", help="database URL (default: the config, else registrar.db)")
    p = add(
        "console-url",
        "print a one-time login link to the registrar console (docs/console.md)",
        cmd_console_url,
    )
    p.add_argument("--url", help="the registrar's base URL (default https://<listen>)")
    p.add_argument("--name", default="operator", help="who the link is for (recorded)")
    p.add_argument("--minutes", type=int, default=10, help="validity, 1 to 60 (default 10)")
    p.add_argument("--db", help="database URL (default: the config, else registrar.db)")
    for name in ("allow", "deny", "remove"):
        q = sub.choices[name]
        q.add_argument("--serial", required=True, help="device serial number")
        q.add_argument("--manufacturer", help="IDevID issuer (RFC 4514 string, O or CN)")
        q.add_argument("--db", help="database URL (default: the config, else registrar.db)")

    p = add("devices", "list devices with their state", cmd_devices)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--db", help="database URL (default: the config, else registrar.db)")

    p = add(
        "day0",
        "set, show or clear day-0 configuration pushed after enrollment (works while serving)",
        cmd_day0,
    )
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--serial", help="device serial number")
    who.add_argument("--default", action="store_true", help="for devices without their own")
    p.add_argument(
        "--file", type=Path, help="YANG data, RFC 7951 JSON (.json) or XML (.xml), validated"
    )
    p.add_argument("--format", choices=DAY0_FORMATS, help="overrides the extension")
    p.add_argument(
        "--address", metavar="HOST:PORT", help="NETCONF/TLS address of the device (proxy, NAT)"
    )
    p.add_argument("--clear", action="store_true", help="remove the configuration and address")
    p.add_argument("--db", help="database URL (default: the config, else registrar.db)")

    p = add(
        "handoff",
        "push the day-0 configuration again to an enrolled device (works while serving)",
        cmd_handoff,
    )
    p.add_argument("--serial", required=True, help="device serial number")
    p.add_argument("--db", help="database URL (default: the config, else registrar.db)")

    p = add(
        "revoke",
        "revoke a device's LDevIDs, or one LDevID or client certificate by fingerprint",
        cmd_revoke,
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--serial", help="every LDevID of this device")
    which.add_argument(
        "--fingerprint", help="one certificate (an LDevID, or from issue-client-cert), sha256:<hex>"
    )
    p.add_argument("--reason", required=True, help="recorded with the revocation")
    p.add_argument("--db", help="database URL (default: the config, else registrar.db)")

    p = add(
        "issue-client-cert", "issue a client certificate from the domain CA", cmd_issue_client_cert
    )
    p.add_argument("--name", required=True, help="subject common name")
    p.add_argument("--out", type=Path, required=True, help="folder for cert.pem, key.pem, ca.pem")
    p.add_argument("--admin", action="store_true", help="admin API rights (OU=zerotouch-admin)")
    p.add_argument(
        "--p12", action="store_true", help="also write client.p12 (PKCS#12) for a browser"
    )
    p.add_argument("--days", type=int, default=365, help="validity in days")
    p.add_argument("--db", help="database URL (default: the config, else registrar.db)")

    p = add(
        "client-certs",
        "list the client certificates issue-client-cert issued, revoked ones marked",
        cmd_client_certs,
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--db", help="database URL (default: the config, else registrar.db)")

    p = add("serve", "run the registrar HTTPS service until SIGINT/SIGTERM", cmd_serve)
    p.add_argument("--listen", help="HOST:PORT (default from the configuration)")
    p.add_argument("--db", help="database URL, e.g. postgresql://user@host/db")
    p.add_argument("--auto-accept", action="store_true", help="accept every trusted pledge")
    p.add_argument("--device-domain", help="DNS domain of LDevID names (default: configuration)")
    p.add_argument(
        "--ca-key",
        metavar="PKCS11_URI",
        help="domain CA key in a PKCS#11 token (default: registrar.toml ca_key, else ca.key)",
    )
    p.add_argument(
        "--announce", help="grasp,mdns: announce AN_join_registrar / _brski-registrar._tcp"
    )
    p.add_argument("--interface", help="the link --announce announces on")
