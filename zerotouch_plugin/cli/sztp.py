"""``zerotouch sztp ...``: the SZTP bootstrap server (RFC 8572): set up, serve, manage
responses and devices, show progress reports."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from zerotouch_plugin._text import is_decimal
from zerotouch_plugin.artifacts import certs, sztp
from zerotouch_plugin.config import hash_password
from zerotouch_plugin.errors import ConfigError, InvalidInput, NotFound
from zerotouch_plugin.services import certfiles
from zerotouch_plugin.services._gate import settle_heap
from zerotouch_plugin.services.sztp import admin, server
from zerotouch_plugin.store.sztp import SztpRepository

__all__ = ["HELP", "register"]

HELP = "SZTP bootstrap server (RFC 8572): serve bootstrapping data, manage responses and devices"

SERVER_CA = "sztp-ca.pem"  # the CA of the TLS certificate: what devices trust the server by
OWNER_CA = "owner-ca.pem"  # the owner's root: the pinned-domain-cert of ownership vouchers
OWNER_CA_KEY = "owner-ca.key"
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)

    init = sub.add_parser(
        "init",
        help="create the server folder: TLS and owner certificates, manufacturer trust anchors",
        description=(
            f"Write {server.TLS_CERT}+key (TLS, issued by a new {SERVER_CA}), "
            f"{server.MANUFACTURER_CA} (copied), {server.OWNER_CERT}+key (owner certificate "
            f"under a new {OWNER_CA}, unless --owner-cert/--owner-key are given) and "
            f"{server.CONFIG_FILE}."
        ),
    )
    init.add_argument("--dir", required=True, type=Path, help="server folder")
    init.add_argument(
        "--manufacturer-ca",
        required=True,
        type=Path,
        action="append",
        help="PEM file of a manufacturer CA whose IDevIDs are accepted (repeatable)",
    )
    init.add_argument("--host", action="append", default=[], help="extra TLS host name or IP")
    init.add_argument("--owner-cert", type=Path, help="owner certificate (then its chain), PEM")
    init.add_argument("--owner-key", type=Path, help="owner private key")
    init.add_argument(
        "--masa-ca",
        type=Path,
        help=(
            "PEM anchors of the MASA's TLS certificate: ownership vouchers are then obtained "
            "from the MASA, with masa-client.pem+key issued under the owner CA"
        ),
    )
    init.add_argument(
        "--trusted",
        action="store_true",
        help="devices trust this server already: unsigned data unless they ask (RFC 8572 §5.1)",
    )
    init.add_argument("--force", action="store_true", help="replace an existing folder's keys")
    init.set_defaults(func=cmd_init)

    serve = sub.add_parser("serve", help="serve RESTCONF get-bootstrapping-data/report-progress")
    _folder(serve)
    serve.add_argument("--listen", default="127.0.0.1:8443", help="HOST:PORT (port 0: any)")
    serve.add_argument(
        "--admin-listen", metavar="HOST:PORT", help="also serve the admin API (mTLS) there"
    )
    serve.set_defaults(func=cmd_serve)

    response = sub.add_parser("response", help="manage responses (conveyed information)")
    rsub = response.add_subparsers(dest="action", metavar="ACTION", required=True)
    rset = rsub.add_parser(
        "set",
        help="create or replace a response",
        description=(
            "From --file (conveyed information, RFC 7951 JSON or XML by its suffix), or "
            "redirect information from --redirect, or onboarding information from the "
            "--config/--image-* options. The name 'default' answers devices without one."
        ),
    )
    _folder(rset)
    rset.add_argument("--name", default="default", help="response name (default: default)")
    rset.add_argument("--file", type=Path, help="conveyed information file (.json or .xml)")
    rset.add_argument(
        "--redirect",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="redirect to this bootstrap server (repeatable)",
    )
    rset.add_argument("--trust-anchor", type=Path, help="PEM chain of the redirect servers")
    rset.add_argument("--config", type=Path, help="configuration file to convey")
    rset.add_argument("--handling", choices=["merge", "replace"], default="merge")
    rset.add_argument("--pre-script", type=Path, help="pre-configuration script")
    rset.add_argument("--post-script", type=Path, help="post-configuration script")
    rset.add_argument("--os-name", help="boot image OS name")
    rset.add_argument("--os-version", help="boot image OS version")
    rset.add_argument("--image-uri", action="append", default=[], help="boot image URI")
    rset.add_argument("--image-sha256", help="boot image SHA-256 (hex)")
    rset.set_defaults(func=cmd_response_set)
    rshow = rsub.add_parser("show", help="print responses")
    _folder(rshow)
    rshow.add_argument("--name", help="only this response")
    rshow.add_argument("--format", choices=["json", "xml"], default="json")
    rshow.set_defaults(func=cmd_response_show)
    rdel = rsub.add_parser("delete", help="delete a response no device uses")
    _folder(rdel)
    rdel.add_argument("--name", required=True)
    rdel.set_defaults(func=cmd_response_delete)

    devices = sub.add_parser("devices", help="list devices, or set one's response and voucher")
    _folder(devices)
    devices.add_argument("--set", metavar="SERIAL", help="create or change this device")
    devices.add_argument("--response", help="with --set: the response it gets")
    devices.add_argument("--voucher", type=Path, help="with --set: ownership voucher (CMS)")
    devices.add_argument(
        "--password-file",
        type=Path,
        help="with --set: the device's HTTP basic password (first line), where basic_auth is on",
    )
    devices.add_argument("--json", action="store_true", help="JSON output")
    devices.set_defaults(func=cmd_devices)

    progress = sub.add_parser("progress", help="show progress reports (RFC 8572 §7.3)")
    _folder(progress)
    progress.add_argument("--serial", help="only this device")
    progress.add_argument("--json", action="store_true", help="JSON output")
    progress.set_defaults(func=cmd_progress)


def _folder(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", required=True, type=Path, help="server folder")
    parser.add_argument("--db", help="database URL (default: sztp.db in the folder)")


def _now() -> datetime:
    return datetime.now(UTC)


def _repository(args: argparse.Namespace) -> SztpRepository:
    config = server.load_config_for(args.dir, db=args.db)
    return server.open_repository(args.dir, config)


def _split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not is_decimal(port) or int(port) > 65535:
        raise ConfigError(f"--listen {listen!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def cmd_init(args: argparse.Namespace) -> int:
    folder: Path = args.dir
    if (folder / server.TLS_CERT).exists() and not args.force:
        raise ConfigError(f"{folder / server.TLS_CERT} exists; pass --force to replace it")
    anchors = [c for path in args.manufacturer_ca for c in certs.load_certs(path.read_bytes())]
    folder.mkdir(parents=True, exist_ok=True)
    now = _now()
    ca = certs.make_ca("zerotouch SZTP server CA", now=now)
    tls = certs.issue_tls_server(
        ca, "zerotouch SZTP server", hosts=[*_LOCAL_HOSTS, *args.host], now=now
    )
    certfiles.write_certs(folder / SERVER_CA, [ca.cert])
    certfiles.write_certs(folder / server.TLS_CERT, [tls.cert, *tls.chain])
    certfiles.write_key(folder / server.TLS_KEY, tls.key)
    certfiles.write_certs(folder / server.MANUFACTURER_CA, anchors)
    admin_ca = certs.make_ca("zerotouch SZTP admin CA", now=now)
    operator = certs.issue_client(admin_ca, "zerotouch SZTP admin", now=now)
    certfiles.write_certs(folder / admin.ADMIN_CA, [admin_ca.cert])
    certfiles.write_certs(folder / admin.ADMIN_CERT, [operator.cert])
    certfiles.write_key(folder / admin.ADMIN_KEY, operator.key)
    if args.owner_cert or args.owner_key:
        if not (args.owner_cert and args.owner_key):
            raise ConfigError("--owner-cert and --owner-key go together")
        if args.masa_ca:
            raise ConfigError(
                "--masa-ca issues the MASA client certificate under the owner CA that init "
                f"makes; with --owner-cert, write {server.MASA_CLIENT_CERT}+key yourself"
            )
        owner = certfiles.load_identity(args.owner_cert, args.owner_key)
    else:
        owner_ca = certs.make_ca("zerotouch SZTP owner CA", now=now)
        certfiles.write_certs(folder / OWNER_CA, [owner_ca.cert])
        certfiles.write_key(folder / OWNER_CA_KEY, owner_ca.key)
        issued = certs.issue_client(owner_ca, "zerotouch SZTP owner", now=now)
        # the chain up to the root: the device chains the owner certificate to the voucher's
        # pinned-domain-cert, and the server asks the MASA to pin that root
        owner = certs.Identity(issued.cert, issued.key, (*issued.chain, owner_ca.cert))
        if args.masa_ca:
            # id-kp-cmcRA: the MASA takes voucher-requests from registrars only (RFC 8995 §5.5)
            client = certs.issue_registrar(
                owner_ca, "zerotouch SZTP owner registrar", hosts=["localhost"], now=now
            )
            certfiles.write_certs(folder / server.MASA_CLIENT_CERT, [client.cert, *client.chain])
            certfiles.write_key(folder / server.MASA_CLIENT_KEY, client.key)
            masa_anchors = certs.load_certs(args.masa_ca.read_bytes())
            certfiles.write_certs(folder / server.MASA_CA, masa_anchors)
    certfiles.write_certs(folder / server.OWNER_CERT, [owner.cert, *owner.chain])
    certfiles.write_key(folder / server.OWNER_KEY, owner.key)
    config = folder / server.CONFIG_FILE
    if not config.exists() or args.force:
        config.write_text(f"trusted = {'true' if args.trusted else 'false'}\n")
    _repository(argparse.Namespace(dir=folder, db=None)).db.dispose()
    print(f"sztp server folder {folder} ready (devices trust the TLS server by {SERVER_CA})")
    return 0


async def _serve(args: argparse.Namespace) -> None:
    host, port = _split_listen(args.listen)
    config = server.load_config_for(args.dir, db=args.db)
    ctx = server.load_context(args.dir, config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner, bound = await server.start_sztp(ctx, host, port)
    runners = [runner]
    try:
        if args.admin_listen:
            admin_host, admin_port = _split_listen(args.admin_listen)
            app = admin.admin_app(
                ctx.repo,
                manufacturer_cas=ctx.manufacturer_cas,
                owner_chain=() if ctx.owner is None else (ctx.owner.cert, *ctx.owner.chain),
                body_limit=ctx.config.max_body_bytes,
            )
            admin_runner, admin_bound = await server.serve_tls(
                app,
                admin.admin_context(ctx.tls, args.dir),
                admin_host,
                admin_port,
                service="sztp-admin",
                limits=ctx.config.limits,
            )
            runners.append(admin_runner)
        settle_heap()
        # the service line first: test harnesses wait for it
        print(f"listening sztp https://{_shown(host)}:{bound}", flush=True)
        if args.admin_listen:
            print(f"listening sztp-admin https://{_shown(admin_host)}:{admin_bound}", flush=True)
        await stop.wait()
    finally:
        for each in runners:
            await each.cleanup()
        ctx.close()


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def cmd_serve(args: argparse.Namespace) -> int:
    asyncio.run(_serve(args))
    print("sztp server stopped", file=sys.stderr)
    return 0


def _redirect(args: argparse.Namespace) -> sztp.RedirectInformation:
    anchor = None
    if args.trust_anchor is not None:
        anchor = sztp.encode_certs_only(certs.load_certs(args.trust_anchor.read_bytes()))
    servers = []
    for item in args.redirect:
        host, sep, port = item.rpartition(":")
        if not sep or not is_decimal(port) or (":" in host and not host.endswith("]")):
            host, port = item, "443"  # no port, or a bare IPv6 address
        servers.append(sztp.BootstrapServer(host.strip("[]"), int(port), anchor))
    return sztp.RedirectInformation(tuple(servers))


def _read(path: Path | None) -> bytes | None:
    return None if path is None else path.read_bytes()


def _onboarding(args: argparse.Namespace) -> sztp.OnboardingInformation:
    image = None
    if args.image_uri or args.os_name or args.os_version:
        try:
            hashes = (
                (sztp.ImageVerification(bytes.fromhex(args.image_sha256)),)
                if args.image_sha256
                else ()
            )
        except ValueError as exc:
            raise InvalidInput(f"--image-sha256: not hex: {exc}") from None
        image = sztp.BootImage(args.os_name, args.os_version, tuple(args.image_uri), hashes)
    configuration = _read(args.config)
    return sztp.OnboardingInformation(
        boot_image=image,
        configuration_handling=(
            sztp.ConfigurationHandling(args.handling) if configuration is not None else None
        ),
        pre_configuration_script=_read(args.pre_script),
        configuration=configuration,
        post_configuration_script=_read(args.post_script),
    )


def cmd_response_set(args: argparse.Namespace) -> int:
    info: sztp.ConveyedInformation
    if args.file is not None:
        encoding = sztp.Encoding.XML if args.file.suffix == ".xml" else sztp.Encoding.JSON
        info = sztp.parse_conveyed_information(args.file.read_bytes(), encoding)
    elif args.redirect:
        info = _redirect(args)
    else:
        info = _onboarding(args)
    repo = _repository(args)
    try:
        repo.set_response(args.name, info, now=_now())
    finally:
        repo.db.dispose()
    print(f"response {args.name} set ({info.member})")
    return 0


def cmd_response_show(args: argparse.Namespace) -> int:
    repo = _repository(args)
    try:
        responses = [repo.response(args.name)] if args.name else list(repo.responses().values())
    finally:
        repo.db.dispose()
    encoding = sztp.Encoding(args.format)
    for response in responses:
        if len(responses) > 1 or not args.name:
            print(f"# {response.name}")
        print(response.info.encode(encoding).decode())
    return 0


def cmd_response_delete(args: argparse.Namespace) -> int:
    repo = _repository(args)
    try:
        repo.delete_response(args.name)
    finally:
        repo.db.dispose()
    print(f"response {args.name} deleted")
    return 0


def _voucher(folder: Path, path: Path, serial: str) -> tuple[bytes, datetime | None]:
    """An ownership voucher file for ``serial``, checked as the admin API checks it."""
    owner = certs.load_certs((folder / server.OWNER_CERT).read_bytes())
    return admin.checked_voucher(
        path.read_bytes(),
        serial=serial,
        manufacturer_cas=certs.load_certs((folder / server.MANUFACTURER_CA).read_bytes()),
        owner_chain=owner,
        now=_now(),
    )


def cmd_devices(args: argparse.Namespace) -> int:
    repo = _repository(args)
    try:
        if args.set:
            voucher, expires = (
                _voucher(args.dir, args.voucher, args.set) if args.voucher else (None, None)
            )
            password = None
            if args.password_file:
                lines = args.password_file.read_text().splitlines()
                if not lines or not lines[0]:
                    raise ConfigError(f"{args.password_file}: the first line is empty")
                password = hash_password(lines[0], salt=os.urandom(16))
            repo.set_device(
                args.set,
                response=args.response,
                voucher=voucher,
                voucher_expires=expires,
                password=password,
            )
            print(f"device {args.set} set")
            return 0
        if args.response or args.voucher or args.password_file:
            raise ConfigError("--response, --voucher and --password-file need --set SERIAL")
        rows = [admin.device_json(d) for d in repo.devices()]
    finally:
        repo.db.dispose()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for row in rows:
        print(
            f"{row['serial']}  response={row['response'] or '(default)'}  "
            f"voucher={'yes' if row['voucher'] else 'no'}  "
            f"last-seen={row['last-seen'] or '-'}  progress={row['last-progress'] or '-'}"
        )
    return 0


def cmd_progress(args: argparse.Namespace) -> int:
    repo = _repository(args)
    try:
        records = repo.progress(args.serial)
    finally:
        repo.db.dispose()
    if args.serial and not records and not args.json:
        raise NotFound(f"no progress reports from {args.serial}")
    rows = [admin.progress_json(r) for r in records]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for row in rows:
        message = f"  {row['message']}" if row["message"] else ""
        print(f"{row['time']}  {row['serial']}  {row['progress-type']}{message}")
    return 0
