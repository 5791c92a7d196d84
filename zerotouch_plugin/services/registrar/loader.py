"""The running registrar: its identities, trust anchors, database, MASA client and hand-off
worker, loaded from a registrar folder.

Loading refuses a folder that lacks a file or holds an unreadable one with a ConfigError that
names the file, so ``zerotouch registrar serve`` stops before it listens instead of failing
on the first request.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.config import RegistrarConfig
from zerotouch_plugin.device.schema import DeviceSchema, load_device_schema
from zerotouch_plugin.errors import ConfigError, ZerotouchError
from zerotouch_plugin.roles import registrar as role
from zerotouch_plugin.services import certfiles
from zerotouch_plugin.services._tls import server_context
from zerotouch_plugin.services.handoff import HandoffWorker, ensure_handoff_identity
from zerotouch_plugin.services.masa_client import MasaClient, outage_policy
from zerotouch_plugin.services.pkcs11 import load_signing_identity
from zerotouch_plugin.services.registrar_files import (
    CA_CERT,
    CA_KEY,
    DB_FILE,
    MASA_CLIENT_CERT,
    MASA_CLIENT_KEY,
    REGISTRAR_CERT,
    REGISTRAR_KEY,
)
from zerotouch_plugin.store.db import Database, open_role_database
from zerotouch_plugin.store.registrar import RegistrarRepository

__all__ = [
    "Registrar",
    "day0_schema",
    "load_context",
    "load_registrar",
    "masa_client_identity",
    "tls_context",
]

log = logging.getLogger(__name__)


@dataclass
class Registrar:
    """Everything a running registrar holds: identities, trust, database, MASA client."""

    folder: Path
    config: RegistrarConfig
    context: role.RegistrarContext
    db: Database
    repo: RegistrarRepository
    masa: MasaClient
    handoff: HandoffWorker
    _schema: DeviceSchema | None = None

    async def close(self) -> None:
        await self.handoff.close()
        await self.masa.close()
        self.db.dispose()

    async def day0_schema(self) -> DeviceSchema:
        """The device schema day-0 documents are checked against, compiled on first use."""
        if self._schema is None:
            self._schema = await asyncio.to_thread(day0_schema, self.folder, self.config)
        return self._schema


def _read_certs(folder: Path, names: tuple[str, ...], what: str) -> tuple[x509.Certificate, ...]:
    found: list[x509.Certificate] = []
    for name in names:
        path = folder / name
        try:
            found.extend(certs.load_certs(path.read_bytes()))
        except OSError as exc:
            raise ConfigError(f"cannot read {what} file {path}: {exc}") from exc
        except ZerotouchError as exc:
            raise ConfigError(f"{what} file {path}: {exc}") from exc
    return tuple(found)


def load_context(folder: Path, config: RegistrarConfig) -> role.RegistrarContext:
    """The folder's identities, trust anchors and policy (ConfigError naming what is missing)."""
    needed = (CA_CERT, REGISTRAR_CERT, REGISTRAR_KEY)
    for name in needed if config.ca_key else (*needed, CA_KEY):
        if not (folder / name).is_file():
            raise ConfigError(
                f"{folder / name} is missing; run 'zerotouch registrar init --dir {folder}' first"
            )
    manufacturer_cas = _read_certs(folder, config.manufacturer_cas, "manufacturer CA")
    masa_trust = _read_certs(folder, config.masa_trust, "MASA trust")
    try:
        context = role.RegistrarContext(
            registrar=certfiles.load_identity(folder / REGISTRAR_CERT, folder / REGISTRAR_KEY),
            domain_ca=load_signing_identity(folder / CA_CERT, folder / CA_KEY, config.ca_key),
            manufacturer_cas=manufacturer_cas,
            masa_trust=masa_trust,
            auto_accept=config.auto_accept,
            ask=config.ask,
            ldevid_days=config.ldevid_days,
            ldevid_lifetime=config.ldevid_lifetime,
            device_domain=config.device_domain,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"registrar folder {folder}: {exc}") from exc
    return context


def masa_client_identity(folder: Path, registrar: certs.Identity) -> certs.Identity:
    """The TLS client identity towards the MASA: masa-client.pem/.key when the folder has
    them, else the registrar certificate. The MASA serves audit logs only to an authenticated
    registrar (RFC 8995 §5.8.1); a certificate whose extended key usage lacks
    id-kp-clientAuth fails every TLS server's client check, so that is said at start."""
    cert_path, key_path = folder / MASA_CLIENT_CERT, folder / MASA_CLIENT_KEY
    if cert_path.exists() or key_path.exists():
        try:
            return certfiles.load_identity(cert_path, key_path)
        except (OSError, ZerotouchError) as exc:
            raise ConfigError(f"MASA client identity {cert_path}/{key_path.name}: {exc}") from exc
    try:
        usages = registrar.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return registrar
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        log.warning(
            "the registrar certificate %s has no id-kp-clientAuth extended key usage: a MASA "
            "that authenticates its TLS clients refuses it, and audit logs (RFC 8995 §5.8.1) "
            "cannot be read, so MASA vouchers do not enroll; put a client certificate of the "
            "domain in %s and %s",
            certs.describe(registrar.cert),
            cert_path,
            key_path,
        )
    return registrar


def load_registrar(folder: Path, config: RegistrarConfig) -> Registrar:
    """Load the folder's identities and trust anchors, open (and create) the database."""
    context = load_context(folder, config)
    manufacturer_cas, masa_trust = context.manufacturer_cas, context.masa_trust
    db = open_role_database(folder, config.db, DB_FILE)
    masa = MasaClient(
        masa_client_identity(folder, context.registrar),
        trust=masa_trust or manufacturer_cas,
        timeout=config.masa_timeout,
        retry_after=config.retry_after,
        outage=outage_policy(config),
    )
    repo = RegistrarRepository(db)
    handoff = HandoffWorker(
        repo,
        domain_ca=context.domain_ca,
        identity=ensure_handoff_identity(folder, context.domain_ca, now=datetime.now(UTC)),
        config=config,
    )
    return Registrar(folder, config, context, db, repo, masa, handoff)


def day0_schema(folder: Path, config: RegistrarConfig) -> DeviceSchema:
    """The reference device schema plus ``day0_yang_dirs``/``day0_yang_modules`` (relative
    folders are relative to R)."""
    modules = [(n, rev) for n, _, rev in (m.partition("@") for m in config.day0_yang_modules)]
    return load_device_schema([folder / d for d in config.day0_yang_dirs], modules)


def tls_context(registrar: Registrar) -> ssl.SSLContext:
    """HTTPS asking for a client certificate from a manufacturer CA or the domain CA without
    requiring one at the handshake (CERT_OPTIONAL), so that EST clients can fetch /cacerts
    (RFC 7030 §4.1.1); every other route refuses a request without one (``ROUTES``)."""
    ctx = registrar.context
    return server_context(
        ctx.registrar,
        client_cas=[*ctx.manufacturer_cas, ctx.domain_ca.cert],
        require_client_cert=False,
    )
