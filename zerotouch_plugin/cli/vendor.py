"""``zerotouch vendor ...``: the manufacturer's PKI (CA, MASA certificates, IDevIDs).

Thin: ``artifacts.certs`` issues the certificates; this module chooses names, lays out the
vendor folder and the pledge folder, and refuses to overwrite a CA by accident.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args
from urllib.parse import urlsplit

from zerotouch_plugin._files import write_atomic
from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.errors import ConfigError
from zerotouch_plugin.services import certfiles

__all__ = ["HELP", "VENDOR_FILES", "IdevidIssuer", "register"]

HELP = "manufacturer PKI: create the vendor CA and MASA certificates, issue IDevIDs"

# Files of the vendor folder (names used by the MASA service and the tests).
VENDOR_FILES = {
    "ca": ("ca.pem", "ca.key"),
    "masa-signer": ("masa-signer.pem", "masa-signer.key"),
    "masa-tls": ("masa-tls.pem", "masa-tls.key"),
}
VENDOR_TOML = "vendor.toml"
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
DEFAULT_HARDWARE_TYPE = "1.3.6.1.4.1.65535.1"
_KEY_KINDS: dict[str, certs.KeyKind] = {kind: kind for kind in get_args(certs.KeyKind)}


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    kinds = list(_KEY_KINDS)

    init = sub.add_parser(
        "init",
        help="create the manufacturer CA, the MASA voucher-signing and TLS certificates",
        description=(
            "Create in the folder ca.pem+key (manufacturer CA), masa-signer.pem+key (signs "
            "vouchers), masa-tls.pem+key (MASA HTTPS server and client certificate for localhost, "
            "127.0.0.1, ::1 and the MASA URL's host) and vendor.toml (the MASA URL)."
        ),
    )
    init.add_argument("--dir", required=True, type=Path, help="vendor folder")
    init.add_argument(
        "--masa-url",
        required=True,
        help="MASA base URL put into IDevIDs (RFC 8995 §2.3.2), e.g. https://127.0.0.1:9443",
    )
    init.add_argument("--key-type", choices=kinds, default="p256", help="key type (default p256)")
    init.add_argument("--name", default="zerotouch", help="manufacturer name used in subjects")
    init.add_argument("--force", action="store_true", help="replace an existing CA")
    init.set_defaults(func=_init)

    idevid = sub.add_parser(
        "idevid",
        help="issue an IDevID for a device into a pledge folder",
        description=(
            "Write to the pledge folder idevid.pem (IDevID, then the CA), idevid.key and "
            "masa-ca.pem (the "
            "manufacturer trust anchor the pledge validates vouchers with)."
        ),
    )
    idevid.add_argument("--dir", required=True, type=Path, help="vendor folder")
    idevid.add_argument(
        "--serial", required=True, help="device serial number (subject serialNumber)"
    )
    idevid.add_argument("--out", required=True, type=Path, help="pledge folder")
    idevid.add_argument("--key-type", choices=kinds, default=None, help="default: the CA's type")
    idevid.add_argument(
        "--hardware-type",
        default=DEFAULT_HARDWARE_TYPE,
        help="hwType OID of the hardwareModuleName (RFC 4108)",
    )
    idevid.add_argument("--force", action="store_true", help="replace an existing IDevID")
    idevid.set_defaults(func=_idevid)


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ConfigError(
            f"--masa-url {url!r} must be an https:// URL with a host (RFC 8995 §2.3.2)"
        )
    if not url.isascii():
        raise ConfigError("--masa-url must be ASCII (an IA5String, RFC 8995 §2.3.2)")
    return url.rstrip("/")


def _init(args: argparse.Namespace) -> int:
    folder: Path = args.dir
    masa_url = _check_url(args.masa_url)
    ca_pem = folder / VENDOR_FILES["ca"][0]
    if ca_pem.exists() and not args.force:
        raise ConfigError(f"{ca_pem} exists; pass --force to replace the manufacturer CA")
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    kind = args.key_type
    ca = certs.make_ca(
        f"{args.name} Manufacturer CA", now=now, key_kind=kind, organization=args.name
    )
    signer = certs.issue_masa_signer(ca, f"{args.name} MASA", now=now, key_kind=kind)
    hosts = list(_LOCAL_HOSTS)
    url_host = urlsplit(masa_url).hostname
    if url_host and url_host not in hosts:
        hosts.append(url_host)
    tls = certs.issue_tls_server(
        ca, f"{args.name} MASA TLS", hosts=hosts, now=now, client_auth=True, key_kind=kind
    )
    settings = f"masa_url = {json.dumps(masa_url)}\nkey_type = {json.dumps(kind)}\n"
    # The CA certificate last: once ca.pem exists, everything else of the folder does too.
    write_atomic(folder / VENDOR_TOML, settings.encode())
    for role, identity in (("masa-signer", signer), ("masa-tls", tls), ("ca", ca)):
        pem, key = VENDOR_FILES[role]
        certfiles.write_key(folder / key, identity.key)
        certfiles.write_certs(folder / pem, [identity.cert, *identity.chain])
    print(f"vendor folder {folder}: CA {certs.fingerprint(ca.cert)}, MASA URL {masa_url}")
    return 0


def _vendor_settings(folder: Path) -> dict[str, str]:
    path = folder / VENDOR_TOML
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{path} missing; run `zerotouch vendor init --dir {folder}` first"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    if not isinstance(data.get("masa_url"), str):
        raise ConfigError(f"{path}: masa_url missing or not a string")
    return {k: v for k, v in data.items() if isinstance(v, str)}


@dataclass(frozen=True)
class IdevidIssuer:
    """The vendor folder's CA, MASA URL and key type, loaded once to issue many IDevIDs."""

    ca: certs.Identity
    masa_url: str
    kind: certs.KeyKind

    @classmethod
    def load(cls, folder: Path, key_type: str | None = None) -> IdevidIssuer:
        settings = _vendor_settings(folder)
        pem, key = VENDOR_FILES["ca"]
        ca = certfiles.load_identity(folder / pem, folder / key)
        kind = _KEY_KINDS.get(key_type or settings.get("key_type", "p256"))
        if kind is None:
            raise ConfigError(
                f"{folder / VENDOR_TOML}: key_type {settings.get('key_type')!r} is not a known "
                "key type"
            )
        return cls(ca, settings["masa_url"], kind)

    def issue(
        self, serial: str, out: Path, *, hardware_type: str = DEFAULT_HARDWARE_TYPE
    ) -> certs.Identity:
        """Write ``out``/idevid.pem (IDevID, then the CA), idevid.key and masa-ca.pem; the key
        last, as it marks the folder as holding an IDevID."""
        try:
            identity = certs.issue_idevid(
                self.ca,
                serial,
                masa_url=self.masa_url,
                now=datetime.now(UTC),
                key_kind=self.kind,
                hardware_type=hardware_type,
            )
        except ValueError as exc:
            raise ConfigError(f"cannot issue the IDevID: {exc}") from exc
        out.mkdir(parents=True, exist_ok=True)
        certfiles.write_certs(out / "masa-ca.pem", [self.ca.cert])
        certfiles.write_certs(out / "idevid.pem", [identity.cert, *identity.chain, self.ca.cert])
        certfiles.write_key(out / "idevid.key", identity.key)
        return identity


def _idevid(args: argparse.Namespace) -> int:
    certs.check_device_serial(args.serial)  # registrars and MASAs refuse any other (RFC 5280)
    out: Path = args.out
    issuer = IdevidIssuer.load(args.dir, args.key_type)
    target = out / "idevid.key"
    if target.exists() and not args.force:
        raise ConfigError(f"{target} exists; pass --force to issue a new IDevID over it")
    identity = issuer.issue(args.serial, out, hardware_type=args.hardware_type)
    print(f"IDevID serialNumber={args.serial} in {out}: {certs.fingerprint(identity.cert)}")
    return 0
