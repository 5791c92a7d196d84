"""The SZTP bootstrap server (RFC 8572 §7) over RESTCONF (RFC 8040), on the sans-IO role in
``roles/sztp_server.py``.

Files in the server folder: ``sztp-tls.pem``/``.key`` (TLS server certificate),
``manufacturer-ca.pem`` (IDevID trust anchors: devices authenticate with their IDevID as TLS
client certificate), ``owner.pem``/``.key`` (owner certificate, then its chain, and key: sign
conveyed information, RFC 8572 §3.1-§3.2), optional ``sztp.toml`` (``SztpConfig``) and
``sztp.db`` (SQLite, unless ``db`` names a database URL, e.g. the registrar's).

Routes: ``GET /.well-known/host-meta`` (RFC 8040 §3.1, no certificate needed),
``POST /restconf/operations/ietf-sztp-bootstrap-server:get-bootstrapping-data`` and
``:report-progress``. Every refusal is an ``ietf-restconf:errors`` document (RFC 8040 §7.1)
in the encoding the client used. Conveyed information, signed or not, is encoded as the
answer is (JSON, eContentType id-ct-sztpConveyedInfoJSON, or XML, id-ct-sztpConveyedInfoXML,
RFC 8572 §3.1): a device that speaks XML to the server gets XML to parse.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import hashlib
import hmac
import logging
import ssl
import time
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

from aiohttp import web
from cryptography import x509

from zerotouch_plugin._checks import require_count, require_positive
from zerotouch_plugin._text import printable
from zerotouch_plugin.artifacts import certs, sztp
from zerotouch_plugin.artifacts.certs import Identity
from zerotouch_plugin.config import ConnectionLimits, check_password, load_config
from zerotouch_plugin.errors import (
    AccessDenied,
    ConfigError,
    NotAcceptable,
    NotFound,
    PayloadTooLarge,
    RemoteError,
    UpstreamInvalid,
    UpstreamUnavailable,
    ZerotouchError,
)
from zerotouch_plugin.roles import sztp_server
from zerotouch_plugin.roles.registrar import masa_url_for
from zerotouch_plugin.services import certfiles, registrar_files
from zerotouch_plugin.services._http import accepts, make_app, read_body
from zerotouch_plugin.services._limits import GatedTlsSite
from zerotouch_plugin.services._tls import peer_certificate, server_context
from zerotouch_plugin.services.masa_client import MasaClient
from zerotouch_plugin.services.restconf.wire import error_type, errors_json, status_and_tag
from zerotouch_plugin.store.db import open_database
from zerotouch_plugin.store.sztp import SeenDevice, SztpRepository

__all__ = [
    "CONFIG_FILE",
    "DB_FILE",
    "GBD_PATH",
    "HOST_META_PATH",
    "MANUFACTURER_CA",
    "MASA_CA",
    "MASA_CLIENT_CERT",
    "MASA_CLIENT_KEY",
    "OWNER_CERT",
    "OWNER_KEY",
    "PROGRESS_PATH",
    "TLS_CERT",
    "TLS_KEY",
    "SztpConfig",
    "SztpContext",
    "database_of",
    "load_config_for",
    "load_context",
    "open_repository",
    "respond",
    "serve_tls",
    "start_sztp",
    "sztp_app",
]

log = logging.getLogger("zerotouch.sztp")

TLS_CERT, TLS_KEY = "sztp-tls.pem", "sztp-tls.key"
OWNER_CERT, OWNER_KEY = "owner.pem", "owner.key"
MANUFACTURER_CA = "manufacturer-ca.pem"
MASA_CLIENT_CERT, MASA_CLIENT_KEY = "masa-client.pem", "masa-client.key"
MASA_CA = "masa-ca.pem"
CONFIG_FILE = "sztp.toml"
DB_FILE = "sztp.db"

RESTCONF_ROOT = "/restconf"
HOST_META_PATH = "/.well-known/host-meta"
_OPERATIONS = f"{RESTCONF_ROOT}/operations/{sztp.SERVER_MODULE}"
GBD_PATH = f"{_OPERATIONS}:get-bootstrapping-data"
PROGRESS_PATH = f"{_OPERATIONS}:report-progress"
# RFC 8040 §3.1 (RFC 6415): where the RESTCONF root is.
_HOST_META = (
    "<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n"
    f"  <Link rel='restconf' href='{RESTCONF_ROOT}'/>\n"
    "</XRD>\n"
)
_RESTCONF_NS = "urn:ietf:params:xml:ns:yang:ietf-restconf"

Clock = Callable[[], datetime]
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_BODY_LIMIT = web.AppKey("sztp_body_limit", int)
_BASIC = web.AppKey("sztp_basic_auth", bool)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclasses.dataclass(frozen=True)
class SztpConfig:
    """The bootstrap server (``sztp.toml``); relative paths are relative to its folder.

    ``trusted``: the devices trust this server's TLS certificate already (RFC 8572 §5.1), so
    a device that does not ask for signed data gets unsigned conveyed information.
    ``reporting_level``: what the server asks devices to report (RFC 8572 §7.1 output).
    """

    trusted: bool = False
    basic_auth: bool = False  # devices without a client certificate may use HTTP basic
    reporting_level: str = "verbose"
    db: str | None = None  # database URL; None = sztp.db in the folder (SQLite)
    max_body_bytes: int = 65536  # larger request bodies are refused with 413
    # ownership vouchers from the MASA (with masa-client.pem/.key and masa-ca.pem present):
    masa_url: str | None = None  # None: the URL in each device's IDevID (RFC 8995 §2.3.2)
    voucher_days: int = 30  # expires-on asked for nonceless vouchers
    masa_timeout: float = 10.0  # seconds for one voucher from the MASA
    limits: ConnectionLimits = dataclasses.field(default_factory=ConnectionLimits)

    def __post_init__(self) -> None:
        if isinstance(self.limits, dict):
            object.__setattr__(self, "limits", ConnectionLimits(**self.limits))
        for name in ("trusted", "basic_auth"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be true or false")
        levels = [level.value for level in sztp.ReportingLevel]
        if self.reporting_level not in levels:
            raise ValueError(f"reporting_level must be one of {', '.join(levels)}")
        if self.db is not None and not isinstance(self.db, str):
            raise TypeError("db must be a string")
        require_count(self.max_body_bytes, "max_body_bytes")
        require_count(self.voucher_days, "voucher_days")
        require_positive(self.masa_timeout, "masa_timeout", "a number of seconds")
        if self.masa_url is not None and not str(self.masa_url).startswith("https://"):
            raise ValueError("masa_url must be an https:// URL")


def load_config_for(folder: Path, **overrides: object) -> SztpConfig:
    return load_config(SztpConfig, folder / CONFIG_FILE, overrides)


@dataclass(frozen=True)
class SztpContext:
    """Everything the bootstrap server holds: configuration, keys, anchors, repository."""

    folder: Path
    config: SztpConfig
    tls: Identity
    manufacturer_cas: tuple[x509.Certificate, ...]
    owner: Identity | None
    owner_certificate: bytes | None  # certs-only CMS of the owner chain (RFC 8572 §3.2)
    repo: SztpRepository
    masa_client: Identity | None = None  # the owner's registrar identity towards the MASA
    masa_trust: tuple[x509.Certificate, ...] = ()  # MASA TLS server anchors

    def ssl_context(self) -> ssl.SSLContext:
        """TLS 1.2+; IDevID client certificates verified against the manufacturer CAs.
        Optional at the handshake so that host-meta needs none and a device without one
        gets a RESTCONF 401 that says so."""
        return server_context(
            self.tls, client_cas=list(self.manufacturer_cas), require_client_cert=False
        )

    def close(self) -> None:
        self.repo.db.dispose()


def database_of(folder: Path, config: SztpConfig) -> str | Path:
    """Where the tables live: ``db`` when configured; in a registrar's folder the
    registrar's database (its ``db`` or ``registrar.db``), so that one owner deployment keeps
    one set of device records; else ``sztp.db``."""
    if config.db:
        return config.db
    registrar_config = folder / registrar_files.CONFIG_FILE
    if registrar_config.is_file():
        try:
            url = tomllib.loads(registrar_config.read_text()).get("db")
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{registrar_config}: not valid TOML: {exc}") from exc
        if isinstance(url, str) and url:
            return url
        return folder / registrar_files.DB_FILE
    return folder / DB_FILE


def open_repository(folder: Path, config: SztpConfig) -> SztpRepository:
    if not folder.is_dir():
        raise ConfigError(f"server folder {folder} does not exist")
    return SztpRepository(open_database(database_of(folder, config)))


def load_context(folder: Path, config: SztpConfig) -> SztpContext:
    """Read the folder's certificates and keys; ConfigError naming what is missing."""
    for name in (TLS_CERT, TLS_KEY, MANUFACTURER_CA):
        if not (folder / name).is_file():
            raise ConfigError(f"{folder / name} is missing (zerotouch sztp init creates it)")
    tls = certfiles.load_identity(folder / TLS_CERT, folder / TLS_KEY)
    anchors = tuple(certs.load_certs((folder / MANUFACTURER_CA).read_bytes()))
    owner: Identity | None = None
    owner_cms: bytes | None = None
    if (folder / OWNER_CERT).is_file():
        owner = certfiles.load_identity(folder / OWNER_CERT, folder / OWNER_KEY)
        owner_cms = sztp.encode_certs_only([owner.cert, *owner.chain])
    masa_client: Identity | None = None
    masa_trust: tuple[x509.Certificate, ...] = ()
    if (folder / MASA_CLIENT_CERT).is_file():
        if owner is None:
            raise ConfigError(f"{folder / MASA_CLIENT_CERT} needs {OWNER_CERT} and {OWNER_KEY}")
        if not (folder / MASA_CA).is_file():
            raise ConfigError(f"{folder / MASA_CA} (the MASA's TLS trust anchors) is missing")
        masa_client = certfiles.load_identity(folder / MASA_CLIENT_CERT, folder / MASA_CLIENT_KEY)
        masa_trust = tuple(certs.load_certs((folder / MASA_CA).read_bytes()))
    return SztpContext(
        folder=folder,
        config=config,
        tls=tls,
        manufacturer_cas=anchors,
        owner=owner,
        owner_certificate=owner_cms,
        repo=open_repository(folder, config),
        masa_client=masa_client,
        masa_trust=masa_trust,
    )


# ---------------------------------------------------------------------------------------------
# RESTCONF wire


def _encoding_of(request: web.Request) -> sztp.Encoding:
    """The encoding of the request body (RFC 8040 §5.2); JSON when there is none."""
    if not request.headers.get("Content-Type"):
        return sztp.Encoding.JSON
    return sztp.Encoding.of_media_type(request.headers["Content-Type"])


def _reply_encoding(request: web.Request, sent: sztp.Encoding) -> sztp.Encoding:
    """The encoding of the answer: what Accept allows, the request's own first (RFC 8040 §5.2)."""
    accept = request.headers.get("Accept")
    candidates: list[sztp.Encoding] = [sent, *sztp.Encoding]
    for encoding in candidates:
        if accepts(accept, encoding.media_type):
            return encoding
    raise NotAcceptable(f"Accept {accept!r} allows neither {sztp.MEDIA_TYPE_JSON} nor XML")


def _errors_xml(err_type: str, tag: str, exc: ZerotouchError) -> bytes:
    parts = [f"<error-type>{err_type}</error-type>", f"<error-tag>{tag}</error-tag>"]
    if exc.path:
        parts.append(
            f'<error-path xmlns:{sztp.SERVER_MODULE}="{sztp.NS_BOOTSTRAP_SERVER}" '
            f'xmlns:{sztp.CONVEYED_MODULE}="{sztp.NS_CONVEYED_INFO}">'
            f"{escape(printable(exc.path))}</error-path>"
        )
    parts.append(f"<error-message>{escape(printable(exc.message, limit=2000))}</error-message>")
    return f'<errors xmlns="{_RESTCONF_NS}"><error>{"".join(parts)}</error></errors>'.encode()


def _error_response(request: web.Request, exc: ZerotouchError) -> web.Response:
    status, tag = status_and_tag(exc)
    if isinstance(exc, UpstreamUnavailable | UpstreamInvalid):
        # the MASA, not the device, failed: 503 (retry later) or 502, as the registrar says
        status = exc.http_status
    kind = error_type(exc)
    try:
        xml = _reply_encoding(request, _encoding_of(request)) is sztp.Encoding.XML
    except ZerotouchError:
        xml = False
    body = _errors_xml(kind, tag, exc) if xml else errors_json(kind, tag, exc)
    response = web.Response(
        status=status,
        body=body,
        content_type=sztp.MEDIA_TYPE_XML if xml else sztp.MEDIA_TYPE_JSON,
    )
    if isinstance(exc, UpstreamUnavailable):
        response.headers["Retry-After"] = str(exc.retry_after)
    if status == 401:
        challenge = 'TLS-Client-Certificate realm="zerotouch SZTP"'
        if request.app.get(_BASIC, False):
            challenge += ', Basic realm="zerotouch SZTP", charset="UTF-8"'
        response.headers["WWW-Authenticate"] = challenge
        response.force_close()
    return response


@web.middleware
async def _restconf_errors(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """ZerotouchError -> ``ietf-restconf:errors`` with its status and error-tag, logged."""
    try:
        return await handler(request)
    except ZerotouchError as exc:
        log.warning(
            "%s %s from %s refused: %s",
            printable(request.method),
            printable(request.path),
            request.remote,
            printable(exc.one_line(), limit=1000),
        )
        return _error_response(request, exc)


@web.middleware
async def _too_large(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """Outermost: a body over the limit is refused while it is read, before any handler
    (and so before ``_restconf_errors``) runs; its answer becomes a RESTCONF error too."""
    response = await handler(request)
    if response.status != 413:
        return response
    limit = request.app[_BODY_LIMIT]
    return _error_response(
        request, PayloadTooLarge(f"request body too large: the limit is {limit} bytes")
    )


def _certificate_serial(cert: x509.Certificate) -> str:
    serial = certs.serial_number_of(cert)
    if not serial:
        raise AccessDenied(
            f"client certificate {cert.subject.rfc4514_string()} has no serialNumber: not an IDevID"
        )
    return serial


def _basic_credentials(header: str) -> tuple[str, str] | None:
    """(user, password) of an ``Authorization: Basic`` header (RFC 7617), else None."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(token.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep and user else None


class Authenticator:
    """Who the device is: the serialNumber of its IDevID (TLS client certificate, RFC 8572
    §5.3), or, where ``basic_auth`` is configured, HTTP basic with the serial number as user
    name and the password set for the device. Where ``basic_auth`` is configured, credentials
    a device sends beside its IDevID are checked too (and must name the same device): a
    device that offers a password is refused when it is wrong. Verified passwords are
    remembered (by their SHA-256, beside the stored hash they matched) so that PBKDF2 runs
    once per device and password, not per request; a password changed or removed with the
    CLI stops matching as soon as the device view reads the new one."""

    def __init__(self, config: SztpConfig, view: DeviceView) -> None:
        self.config = config
        self.view = view
        self._verified: dict[str, tuple[str, bytes]] = {}

    async def serial(self, request: web.Request) -> str:
        cert = peer_certificate(request)
        credentials = None
        if self.config.basic_auth:
            credentials = _basic_credentials(request.headers.get("Authorization", ""))
        if cert is not None:
            serial = _certificate_serial(cert)
            if credentials is not None:
                if credentials[0] != serial:
                    raise AccessDenied(
                        f"HTTP basic user {printable(credentials[0])!r} is not the device of "
                        f"the IDevID ({printable(serial)!r})"
                    )
                await self._check(*credentials)
            return serial
        if credentials is None:
            raise AccessDenied(
                "a device authenticates with its IDevID as TLS client certificate (RFC 8572 §5.3)"
                + (" or HTTP basic" if self.config.basic_auth else "")
            )
        await self._check(*credentials)
        return credentials[0]

    async def _check(self, user: str, password: str) -> None:
        """AccessDenied unless ``password`` is the one set for the device ``user``."""
        device, _ = await self.view.lookup(user)
        stored = None if device is None else device.password
        if stored is None:
            raise AccessDenied(f"HTTP basic authentication of {printable(user)!r} failed")
        seen = hashlib.sha256(password.encode()).digest()
        matched, digest = self._verified.get(user, ("", b""))
        if matched == stored and hmac.compare_digest(digest, seen):
            return
        if not await asyncio.to_thread(check_password, stored, password):
            raise AccessDenied(f"HTTP basic authentication of {printable(user)!r} failed")
        if len(self._verified) >= DeviceView.MAX_CACHED:
            self._verified.clear()
        self._verified[user] = (stored, seen)


# ---------------------------------------------------------------------------------------------
# the application


class DeviceView:
    """What requests read, cached for ``ttl`` seconds, and the visits they note, written in
    one transaction per ``ttl``: a bootstrap server answers bursts of devices, and a database
    round trip per request would cost more than the answer itself. Changes made with the CLI
    take effect within ``ttl``."""

    MAX_CACHED = 100_000

    def __init__(self, repo: SztpRepository, *, ttl: float = 1.0) -> None:
        self.repo = repo
        self.ttl = ttl
        self._responses: tuple[float, dict[str, sztp_server.Response]] | None = None
        self._devices: dict[str, tuple[float, sztp_server.DeviceRecord | None]] = {}
        self._visits: dict[str, tuple[SeenDevice, datetime]] = {}

    async def lookup(
        self, serial: str
    ) -> tuple[sztp_server.DeviceRecord | None, dict[str, sztp_server.Response]]:
        now = time.monotonic()
        cached = self._devices.get(serial)
        responses = self._responses
        if (
            cached is not None
            and responses is not None
            and now - cached[0] < self.ttl
            and now - responses[0] < self.ttl
        ):
            return cached[1], responses[1]
        device, fresh = await asyncio.to_thread(self.repo.lookup, serial)
        if len(self._devices) >= self.MAX_CACHED:
            self._devices.clear()
        self._devices[serial] = (now, device)
        self._responses = (now, fresh)
        return device, fresh

    def forget(self, serial: str) -> None:
        """Read this device from the database next time (its voucher changed)."""
        self._devices.pop(serial, None)

    def visited(self, seen: SeenDevice, now: datetime) -> None:
        self._visits[seen.serial] = (seen, now)

    async def flush(self) -> None:
        visits, self._visits = list(self._visits.values()), {}
        if visits:
            await asyncio.to_thread(self.repo.seen, visits)

    async def run(self) -> AsyncIterator[None]:
        """cleanup_ctx: write the visits every ``ttl`` seconds and once more at shutdown."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(self.ttl)
                try:
                    await self.flush()
                except ZerotouchError as exc:
                    log.error("device visits not recorded: %s", exc.one_line())

        task = asyncio.create_task(loop())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await self.flush()


def respond(
    ctx: SztpContext,
    decided: sztp_server.Plan,
    voucher: bytes | None,
    now: datetime,
    encoding: sztp.Encoding = sztp.Encoding.JSON,
) -> sztp.GetBootstrappingDataOutput:
    """The get-bootstrapping-data output for a plan (RFC 8572 §7.1), its conveyed
    information in ``encoding`` (§3.1: the content type says which)."""
    level = sztp.ReportingLevel(ctx.config.reporting_level)
    info = decided.response.info
    if not decided.signed:
        return sztp.GetBootstrappingDataOutput(
            conveyed_information=sztp.encode_unsigned_conveyed_information(info, encoding),
            reporting_level=level,
        )
    if ctx.owner is None or voucher is None:
        raise ConfigError(f"no owner identity or ownership voucher to sign for {decided.serial}")
    return sztp.GetBootstrappingDataOutput(
        conveyed_information=sztp.sign_conveyed_information(
            info, owner=ctx.owner, now=now, encoding=encoding
        ),
        owner_certificate=ctx.owner_certificate,
        ownership_voucher=voucher,
        reporting_level=level,
    )


class VoucherFetcher:
    """Ownership vouchers from the MASA named in the device's IDevID (or ``masa_url``), asked
    for as the owner's registrar; nonceless ones are stored for the next requests."""

    def __init__(self, ctx: SztpContext, client: MasaClient, view: DeviceView) -> None:
        self.ctx = ctx
        self.client = client
        self.view = view

    async def fetch(
        self, serial: str, idevid: x509.Certificate | None, nonce: bytes | None, now: datetime
    ) -> bytes:
        ctx = self.ctx
        assert ctx.masa_client is not None and ctx.owner is not None
        if idevid is None and ctx.config.masa_url is None:
            raise NotFound(
                f"no ownership voucher for {serial}, and no MASA to ask: the device sent no "
                "IDevID naming one and masa_url is not configured"
            )
        url = masa_url_for(idevid, ctx.config.masa_url) if idevid else str(ctx.config.masa_url)
        owner_chain = (ctx.owner.cert, *ctx.owner.chain)
        expires = now + timedelta(days=ctx.config.voucher_days)
        request = sztp_server.voucher_request(
            ctx.masa_client,
            owner_root=owner_chain[-1],
            serial=serial,
            nonce=nonce,
            expires_on=expires,
            now=now,
        )
        data = await self.client.request_voucher(url, request)
        voucher = sztp_server.check_obtained_voucher(
            data,
            serial=serial,
            nonce=nonce,
            manufacturer_cas=ctx.manufacturer_cas,
            pinnable=owner_chain,
            now=now,
        )
        if nonce is None:
            await asyncio.to_thread(
                ctx.repo.set_device, serial, voucher=data, voucher_expires=voucher.expires_on
            )
            self.view.forget(serial)
        log.info(
            "ownership voucher for %s from %s (%s)", serial, url, "nonce" if nonce else "nonceless"
        )
        return data

    async def voucher_for(
        self,
        decided: sztp_server.Plan,
        device: sztp_server.DeviceRecord | None,
        idevid: x509.Certificate | None,
        nonce: bytes | None,
        now: datetime,
    ) -> bytes | None:
        """The voucher the plan calls for. Without a nonce-bound voucher (a MASA that only
        vouches for pledges it heard from, RFC 8995 §5.5.5, or one unreachable or answering
        with a voucher that fails the checks) the device gets the stored voucher while it is
        valid; else a MASA that refused is asked for a nonceless one, and the other failures
        reach the device (503 / 502). The device decides whether it takes a nonceless one."""
        source = decided.voucher
        if source is sztp_server.VoucherSource.MASA_NONCE:
            try:
                return await self.fetch(decided.serial, idevid, nonce, now)
            except (RemoteError, UpstreamUnavailable, UpstreamInvalid) as exc:
                log.info("no nonce-bound voucher from the MASA: %s", exc.one_line())
                if (
                    device is not None
                    and device.voucher is not None
                    and (device.voucher_expires is None or device.voucher_expires > now)
                ):
                    return device.voucher
                if not isinstance(exc, RemoteError):
                    raise
                source = sztp_server.VoucherSource.MASA_NONCELESS
        if source is sztp_server.VoucherSource.MASA_NONCELESS:
            return await self.fetch(decided.serial, idevid, None, now)
        return None if device is None else device.voucher


def sztp_app(ctx: SztpContext, *, clock: Clock = _utcnow) -> web.Application:
    """The aiohttp application of the bootstrap server."""
    app = make_app(log, realm="zerotouch SZTP", body_limit=ctx.config.max_body_bytes)
    app.middlewares.insert(0, _too_large)
    app.middlewares.append(_restconf_errors)
    app[_BODY_LIMIT] = ctx.config.max_body_bytes
    app[_BASIC] = ctx.config.basic_auth
    view = DeviceView(ctx.repo)
    app.cleanup_ctx.append(lambda _: view.run())
    auth = Authenticator(ctx.config, view)
    fetcher: VoucherFetcher | None = None
    if ctx.masa_client is not None:
        client = MasaClient(
            ctx.masa_client,
            trust=list(ctx.masa_trust),
            timeout=ctx.config.masa_timeout,
            retry_after=30,
        )
        fetcher = VoucherFetcher(ctx, client, view)

        async def close_client(_: web.Application) -> AsyncIterator[None]:
            yield
            await client.close()

        app.cleanup_ctx.append(close_client)

    async def host_meta(request: web.Request) -> web.Response:
        return web.Response(text=_HOST_META, content_type="application/xrd+xml")

    async def get_bootstrapping_data(request: web.Request) -> web.Response:
        serial = await auth.serial(request)
        encoding = _encoding_of(request)
        reply = _reply_encoding(request, encoding)
        body = await read_body(request)
        parsed = sztp.GetBootstrappingDataInput.parse(body, encoding)
        now = clock()
        device, responses = await view.lookup(serial)
        view.visited(SeenDevice(serial, parsed.hw_model, parsed.os_name, parsed.os_version), now)
        decided = sztp_server.plan(
            parsed,
            serial=serial,
            device=device,
            responses=responses,
            trusted=ctx.config.trusted,
            owner=ctx.owner is not None,
            masa=fetcher is not None,
            now=now,
        )
        voucher = None if device is None else device.voucher
        if fetcher is not None and decided.voucher is not None:
            idevid = peer_certificate(request)
            voucher = await fetcher.voucher_for(decided, device, idevid, parsed.nonce, now)
        output = respond(ctx, decided, voucher, now, reply)
        log.info(
            "bootstrapping data for %s (%s) to %s",
            serial,
            "signed" if output.owner_certificate else "unsigned",
            request.remote,
        )
        return web.Response(body=output.encode(reply), content_type=reply.media_type)

    async def report_progress(request: web.Request) -> web.Response:
        serial = await auth.serial(request)
        body = await read_body(request)
        report = sztp.ReportProgressInput.parse(body, _encoding_of(request))
        record = sztp_server.progress_record(
            report, serial=serial, peer=request.remote, now=clock()
        )
        await asyncio.to_thread(ctx.repo.add_progress, record)
        log.info("progress of %s: %s", serial, report.progress_type)
        return web.Response(status=204)

    app.router.add_get(HOST_META_PATH, host_meta)
    app.router.add_post(GBD_PATH, get_bootstrapping_data)
    app.router.add_post(PROGRESS_PATH, report_progress)
    return app


async def serve_tls(
    app: web.Application,
    context: ssl.SSLContext,
    host: str,
    port: int,
    *,
    service: str,
    limits: ConnectionLimits,
) -> tuple[web.AppRunner, int]:
    """Serve ``app`` over HTTPS on host:port (0 = any free port); returns the bound port."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = GatedTlsSite(runner, host, port, context, service=service, limits=limits)
    await site.start()
    bound = [addr[1] for addr in runner.addresses if isinstance(addr, tuple)]
    return runner, int(bound[0]) if bound else port


async def start_sztp(
    ctx: SztpContext, host: str, port: int, *, clock: Clock = _utcnow
) -> tuple[web.AppRunner, int]:
    """Serve the bootstrap server over HTTPS on host:port (0 = any free port)."""
    return await serve_tls(
        sztp_app(ctx, clock=clock),
        ctx.ssl_context(),
        host,
        port,
        service="sztp",
        limits=ctx.config.limits,
    )
