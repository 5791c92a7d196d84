"""The MASA's HTTPS service (RFC 8995 §5.5-§5.8) over the sans-IO role in roles/masa.py.

Files in the vendor folder: ``ca.pem`` (manufacturer CA: IDevID trust anchor),
``masa-signer.pem``/``.key`` (voucher signer), ``masa-tls.pem``/``.key`` (TLS server
certificate), optional ``masa.toml`` (MasaConfig) and ``masa.db`` (SQLite, unless ``db``
names a database URL).

A voucher is returned only after it and its audit-log entry are committed to the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from zerotouch_plugin.artifacts import certs, cms
from zerotouch_plugin.artifacts.certs import Identity
from zerotouch_plugin.artifacts.signer import SigningIdentity
from zerotouch_plugin.config import MasaConfig, load_config
from zerotouch_plugin.errors import (
    ConfigError,
    Expired,
    NotAcceptable,
    NotFound,
    PolicyRefused,
    SchemaError,
    UnsupportedMediaType,
    UntrustedSigner,
)
from zerotouch_plugin.roles import masa
from zerotouch_plugin.services import certfiles
from zerotouch_plugin.services._http import accepts, make_app, media_type_of, read_body
from zerotouch_plugin.services._limits import GatedTlsSite
from zerotouch_plugin.services._metrics import HttpMetrics, exposition
from zerotouch_plugin.services._tls import peer_certificate, server_context
from zerotouch_plugin.store.db import open_role_database
from zerotouch_plugin.store.masa import DeviceState, IssuedVoucher, IssueRecord, MasaRepository

__all__ = [
    "AUDIT_PATH",
    "CA_CERT",
    "CONFIG_FILE",
    "DB_FILE",
    "SIGNER_CERT",
    "SIGNER_KEY",
    "TLS_CERT",
    "TLS_KEY",
    "VOUCHER_PATH",
    "MasaContext",
    "load_config_for",
    "load_context",
    "masa_app",
    "start_masa",
]

log = logging.getLogger("zerotouch.masa")

CA_CERT = "ca.pem"
SIGNER_CERT, SIGNER_KEY = "masa-signer.pem", "masa-signer.key"
TLS_CERT, TLS_KEY = "masa-tls.pem", "masa-tls.key"
CONFIG_FILE = "masa.toml"
DB_FILE = "masa.db"

# RFC 8995 §5.5 and §5.8.1 (the /.well-known/brski/ prefix is RFC 8995 §8.2).
VOUCHER_PATH = "/.well-known/brski/requestvoucher"
AUDIT_PATH = "/.well-known/brski/requestauditlog"
MEDIA_JSON = "application/json"

Clock = Callable[[], datetime]

# Vouchers whose pinned-domain-cert the MASA remembers from signing them (their audit log is
# asked for right after): enough for a site-wide burst, a few hundred kB.
_PINNED_MEMO = 4096


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class MasaContext:
    """Everything the MASA service holds: configuration, keys, trust anchors, repository."""

    folder: Path
    config: MasaConfig
    rules: masa.MasaRules
    manufacturer_cas: tuple[x509.Certificate, ...]
    registrar_cas: tuple[x509.Certificate, ...]
    signer: Identity | SigningIdentity  # SigningIdentity: the key is in a PKCS#11 token
    tls: Identity
    repo: MasaRepository
    # Server contexts handed out, so domains vouched to later become TLS client CAs too.
    _contexts: list[ssl.SSLContext] = field(default_factory=list, compare=False, repr=False)
    # DER of the domain certificates those contexts already accept.
    _trusted: set[bytes] = field(default_factory=set, compare=False, repr=False)
    # SHA-256 of a voucher this process issued -> its pinned-domain-cert (DER), newest last.
    _pinned: dict[bytes, bytes] = field(default_factory=dict, compare=False, repr=False)

    def ssl_context(self) -> ssl.SSLContext:
        """TLS 1.2+ with the MASA's TLS certificate. Registrars' client certificates are
        requested when they can be verified: against ``registrar_cas`` and the domain
        certificates the MASA vouched to or holds claims for (the audit log needs them,
        RFC 8995 §5.8.1); ``trust_domain`` adds a domain while serving."""
        known = self.repo.domain_certs()
        self._trusted.update(known)
        domains = [x509.load_der_x509_certificate(d) for d in known]
        context = server_context(
            self.tls,
            client_cas=[*self.registrar_cas, *domains] or None,
            require_client_cert=self.config.require_client_cert,
        )
        # A pinned registrar certificate (pin "registrar") is an anchor without its CA.
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        self._contexts.append(context)
        return context

    def trust_domain(self, der: bytes) -> None:
        """Accept TLS client certificates of this domain (DER of its certificate) from now
        on (new connections); a domain already accepted costs nothing."""
        if der in self._trusted:
            return
        self._trusted.add(der)
        pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
        for context in self._contexts:
            context.load_verify_locations(cadata=pem.decode("ascii"))
            if context.verify_mode == ssl.CERT_NONE:
                context.verify_mode = ssl.CERT_OPTIONAL

    def issued(self, voucher_cms: bytes, pinned_der: bytes) -> None:
        """Remember the pinned-domain-cert of a voucher just signed (for its audit log)."""
        if len(self._pinned) >= _PINNED_MEMO:
            del self._pinned[next(iter(self._pinned))]
        self._pinned[hashlib.sha256(voucher_cms).digest()] = pinned_der

    def pinned(self, voucher_cms: Sequence[bytes]) -> list[x509.Certificate]:
        """The distinct pinned-domain-certs of vouchers this MASA signed, as
        ``masa.pinned_certificates``; those this process issued lately without parsing."""
        found: dict[bytes, x509.Certificate] = {}
        for signed in voucher_cms:
            der = self._pinned.get(hashlib.sha256(signed).digest())
            if der is None:
                cert = masa.pinned_certificates([signed])[0]
                der = cert.public_bytes(serialization.Encoding.DER)
                found.setdefault(der, cert)
            elif der not in found:
                found[der] = x509.load_der_x509_certificate(der)
        return list(found.values())

    def close(self) -> None:
        self.repo.db.dispose()


def _path(folder: Path, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else folder / path


def _certs_from(folder: Path, names: Sequence[str]) -> tuple[x509.Certificate, ...]:
    found: list[x509.Certificate] = []
    for name in names:
        path = _path(folder, name)
        try:
            found.extend(certs.load_certs(path.read_bytes()))
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    return tuple(found)


def load_config_for(folder: Path, **overrides: object) -> MasaConfig:
    """The folder's ``masa.toml`` (if present) plus command-line overrides (None = not given)."""
    return load_config(MasaConfig, folder / CONFIG_FILE, overrides)


def load_context(folder: Path, config: MasaConfig) -> MasaContext:
    """Load keys, certificates and the database of the vendor folder; ConfigError if missing."""
    if not folder.is_dir():
        raise ConfigError(f"vendor folder {folder} does not exist (run zerotouch vendor init)")
    needed = (CA_CERT, SIGNER_CERT, TLS_CERT, TLS_KEY)
    for name in needed if config.signer_key else (*needed, SIGNER_KEY):
        if not (folder / name).is_file():
            raise ConfigError(f"{folder / name} is missing (run zerotouch vendor init)")
    override = None
    if config.pinned_domain_cert is not None:
        override = certfiles.load_cert_file(_path(folder, config.pinned_domain_cert))
    repo = MasaRepository(open_role_database(folder, config.db, DB_FILE))
    return MasaContext(
        folder=folder,
        config=config,
        rules=masa.MasaRules.from_config(config, pinned_override=override),
        manufacturer_cas=_certs_from(folder, [CA_CERT]),
        registrar_cas=_certs_from(folder, config.registrar_cas),
        signer=_signer(folder, config),
        tls=certfiles.load_identity(folder / TLS_CERT, folder / TLS_KEY),
        repo=repo,
    )


def _signer(folder: Path, config: MasaConfig) -> Identity | SigningIdentity:
    """The voucher signer: masa-signer.key, or the token key ``signer_key`` names (its
    certificate still masa-signer.pem, which must hold the token key's public key)."""
    from zerotouch_plugin.services.pkcs11 import load_signing_identity

    return load_signing_identity(folder / SIGNER_CERT, folder / SIGNER_KEY, config.signer_key)


def _verify(
    ctx: MasaContext,
    body: bytes,
    tls_cert: x509.Certificate | None,
    now: datetime,
    device: DeviceState,
    peeked: tuple[str, str | None],
) -> masa.VerifiedRequest:
    """The registrar voucher-request verified against the device state the store read for the
    serial and nonce ``peeked`` from it unverified (a claim names a domain whose registrars
    are authenticated); the verified request must name that same serial and nonce."""
    trust = list(ctx.registrar_cas)
    if device.claim is not None:
        trust.append(x509.load_der_x509_certificate(device.claim.domain_cert))
    request = masa.verify_registrar_request(
        body,
        tls_client_cert=tls_cert,
        now=now,
        manufacturer_cas=ctx.manufacturer_cas,
        domain_trust=trust,
    )
    if (request.serial, request.nonce) != peeked:
        raise SchemaError(
            "the registrar voucher-request names another serial-number or nonce when verified "
            "than when read first"
        )
    return request


def _configured_registrar(
    ctx: MasaContext, tls_cert: x509.Certificate | None, now: datetime
) -> x509.Certificate | None:
    """The TLS client certificate if it chains to ``registrar_cas``, else None.

    TLS also lets through registrars of domains this MASA vouched to (for the audit log);
    for voucher requests only the configured CAs authenticate a registrar (RFC 8995 §5.5.4).
    """
    if tls_cert is None or not ctx.registrar_cas:
        return None
    try:
        certs.verify_chain(tls_cert, trust_anchors=ctx.registrar_cas, now=now, purpose="any")
    except (UntrustedSigner, Expired):
        return None
    return tls_cert


def issue_voucher(
    ctx: MasaContext, body: bytes, tls_cert: x509.Certificate | None, now: datetime
) -> tuple[IssuedVoucher, bytes]:
    """In one transaction, under the device lock: verify against the device's state, decide,
    sign, and commit voucher + audit entry; the voucher and the DER of the domain
    certificate it pins."""
    peeked = masa.peek_request(body)
    registrar = _configured_registrar(ctx, tls_cert, now)
    decided: list[IssueRecord] = []

    def decide(state: DeviceState) -> IssueRecord:
        request = _verify(ctx, body, registrar, now, state, peeked)
        decision = masa.decide(request, state, ctx.rules, now=now)
        voucher = decision.voucher
        signed = cms.sign(voucher.to_json(), signer=ctx.signer, now=now)
        record = IssueRecord(
            voucher_cms=signed,
            created_on=voucher.created_on,
            expires_on=voucher.expires_on,
            domain_id=decision.domain_id,
            domain_cert=decision.domain_cert,
            nonce=voucher.nonce,
            assertion=str(voucher.assertion),
            take_ownership=decision.take_ownership,
            request_cms=request.der,
            idevid_issuer=request.idevid_issuer.hex() if request.idevid_issuer else None,
        )
        decided.append(record)
        return record

    issued = ctx.repo.issue_voucher(peeked[0], nonce=peeked[1], now=now, decide=decide)
    pinned = decided[-1].domain_cert
    ctx.issued(issued.cms, pinned)
    return issued, pinned


def audit_log_for(
    ctx: MasaContext, body: bytes, tls_cert: x509.Certificate | None, now: datetime
) -> dict[str, object]:
    """The RFC 8995 §5.8.1 log of the device the RVR names, for a domain that owned it,
    asked by a registrar of a domain the device was vouched to (TLS client certificate).
    What the answer depends on is read in one transaction, before the request is verified."""
    peeked = masa.peek_request(body)
    found = ctx.repo.audit_view(peeked[0])
    request = _verify(
        ctx, body, _configured_registrar(ctx, tls_cert, now), now, found.device, peeked
    )
    masa.check_audit_client(request, tls_cert, ctx.pinned(found.voucher_cms), now=now)
    masa.check_audit_access(request, found.entries, ctx.rules, found.device.claim)
    return masa.audit_log(found.entries, max_events=ctx.config.audit_max_events)


def _check_media(request: web.Request, produces: str) -> None:
    # RFC 8995 §5.6: 415 for a voucher-request media type that is not understood; 406 when
    # the voucher type the client accepts cannot be produced.
    got = media_type_of(request.headers.get("Content-Type"))
    if got != cms.MEDIA_TYPE_VOUCHER_CMS:
        raise UnsupportedMediaType(
            f"Content-Type {got or '(none)'!r} is not supported: send the registrar "
            f"voucher-request as {cms.MEDIA_TYPE_VOUCHER_CMS}"
        )
    accept = request.headers.get("Accept")
    if not accepts(accept, produces):
        raise NotAcceptable(f"Accept {accept!r} does not allow {produces}, the only format served")


def masa_app(ctx: MasaContext, *, clock: Clock = _utcnow) -> web.Application:
    """The aiohttp application of the MASA (errors answered by the shared middleware)."""
    app = make_app(log, realm="zerotouch MASA", body_limit=ctx.config.max_body_bytes)

    async def request_voucher(request: web.Request) -> web.Response:
        _check_media(request, cms.MEDIA_TYPE_VOUCHER_CMS)
        body = await read_body(request)
        issued, pinned = await asyncio.to_thread(
            issue_voucher, ctx, body, peer_certificate(request), clock()
        )
        ctx.trust_domain(pinned)
        log.info(
            "voucher %d issued for %s to domain %s (%s, nonce %s) requested by %s",
            issued.id,
            issued.serial,
            issued.domain_id,
            issued.assertion,
            "yes" if issued.nonce else "none",
            request.remote,
        )
        return web.Response(body=issued.cms, content_type=cms.MEDIA_TYPE_VOUCHER_CMS)

    async def request_audit_log(request: web.Request) -> web.Response:
        _check_media(request, MEDIA_JSON)
        body = await read_body(request)
        result = await asyncio.to_thread(
            audit_log_for, ctx, body, peer_certificate(request), clock()
        )
        log.info("audit log served to %s", request.remote)
        # Without indent: json's C encoder writes it (with indent, the pure-Python one does).
        return web.Response(text=json.dumps(result), content_type=MEDIA_JSON)

    app.router.add_post(VOUCHER_PATH, request_voucher)
    app.router.add_post(AUDIT_PATH, request_audit_log)
    _serve_metrics(app, _metrics_token(ctx))
    app.cleanup_ctx.append(lambda _: _watch_claims(ctx))
    return app


_MIN_TOKEN = 16  # bytes of a metrics bearer token


def _metrics_token(ctx: MasaContext) -> bytes | None:
    """The bearer token of ``metrics_token_file``; ConfigError before the MASA listens when
    it cannot be read or is too short to guess."""
    if ctx.config.metrics_token_file is None:
        return None
    path = ctx.folder / ctx.config.metrics_token_file
    try:
        token = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read metrics_token_file {path}: {exc}") from exc
    if len(token) < _MIN_TOKEN:
        raise ConfigError(f"the metrics token in {path} is shorter than {_MIN_TOKEN} bytes")
    return token


def _serve_metrics(app: web.Application, token: bytes | None) -> None:
    """Request metrics on every route, and ``GET /metrics`` for a client that presents the
    bearer token (RFC 6750 §2.1; Prometheus ``authorization.credentials_file``): the counts
    are the vendor's, not something a registrar's certificate should open."""
    metrics = HttpMetrics("masa")
    metrics.install(app)

    async def serve(request: web.Request) -> web.Response:
        if token is None:
            raise NotFound("metrics are off: set metrics_token_file in masa.toml")
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode("utf-8", "replace"), token
        ):
            raise PolicyRefused("GET /metrics needs 'Authorization: Bearer' with the metrics token")
        return await exposition(metrics.registry)

    app.router.add_get("/metrics", serve)


CLAIM_POLL = 1.0  # seconds between looks for domains claimed while the MASA serves


async def _watch_claims(ctx: MasaContext) -> AsyncIterator[None]:
    """Trust the TLS client certificates of domains claimed while serving (``masa claim``
    writes the database, not this process): without it, once the MASA asks for client
    certificates, a newly claimed domain's registrar fails the handshake until a restart,
    and cannot authenticate for the nonceless voucher or audit log it is owed (RFC 8995
    §5.5.4, §5.8.1)."""
    known = set(await asyncio.to_thread(ctx.repo.domain_certs))

    async def watch() -> None:
        while True:
            await asyncio.sleep(CLAIM_POLL)
            for der in set(await asyncio.to_thread(ctx.repo.domain_certs)) - known:
                known.add(der)
                ctx.trust_domain(der)
                log.info(
                    "TLS client certificates of domain %s accepted",
                    masa.domain_id(x509.load_der_x509_certificate(der)),
                )

    task = asyncio.create_task(watch())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def start_masa(
    ctx: MasaContext, host: str, port: int, *, clock: Clock = _utcnow
) -> tuple[web.AppRunner, int]:
    """Serve the MASA over HTTPS on host:port (0 = any free port); returns the bound port."""
    runner = web.AppRunner(masa_app(ctx, clock=clock), access_log=None)
    await runner.setup()
    site = GatedTlsSite(
        runner, host, port, ctx.ssl_context(), service="masa", limits=ctx.config.limits
    )
    await site.start()
    bound = [addr[1] for addr in runner.addresses if isinstance(addr, tuple)]
    return runner, int(bound[0]) if bound else port
