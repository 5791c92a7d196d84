"""The pledge's HTTPS client: performs the actions of the sans-IO ``roles.pledge`` machine.

The IDevID is the TLS client certificate throughout. Until the voucher arrives the registrar is
not verified (provisional TLS, RFC 8995 §5.1: its certificate is recorded); afterwards every
connection must validate against the voucher's pinned-domain-cert (§5.6.2). That check is the
machine's (``roles.pledge.registrar_validated_by``, with the EKU rule of BRSKI rather than
OpenSSL's TLS-server purpose, which refuses an id-kp-cmcRA-only registrar): the TLS layer only
collects the server's certificate and chain and runs the check inside the handshake, so a
server the pin does not vouch for never receives a byte of the request. Redirects are not
followed here: the machine sees each 3xx and follows at most one (§5.6). Only this module
sleeps, reads the clock and draws random bytes; the machine decides everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import os
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import aiohttp
import aiohttp.abc
from aiohttp.abc import ResolveResult
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.artifacts.signer import tls_identity
from zerotouch_plugin.config import AgentConfig
from zerotouch_plugin.device.domain_files import write_domain
from zerotouch_plugin.errors import (
    CertificateError,
    ConfigError,
    StorageError,
    UpstreamUnavailable,
    ZerotouchError,
)
from zerotouch_plugin.roles.discovery import Candidate, Discovery, Search
from zerotouch_plugin.roles.discovery import Wait as DiscoveryWait
from zerotouch_plugin.roles.pledge import (
    Connect,
    Done,
    Enrollment,
    Failed,
    HttpRequest,
    Install,
    Pledge,
    PledgeAction,
    PledgeConfig,
    Response,
    RetryPolicy,
    TlsMode,
    Wait,
    registrar_validated_by,
)
from zerotouch_plugin.services import certfiles
from zerotouch_plugin.services._http import read_at_most
from zerotouch_plugin.services._tls import client_context
from zerotouch_plugin.services.discovery.driver import discovery_machine, run_discovery

__all__ = [
    "MAX_RESPONSE_BYTES",
    "PLEDGE_FILES",
    "HandshakeRefused",
    "Installer",
    "PinMismatch",
    "PledgeClient",
    "drive",
    "enroll",
    "enroll_discovering",
    "load_pledge_config",
    "write_enrollment",
]

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 1 << 20  # vouchers and certificate chains are a few KiB

# Files of the pledge folder: inputs from the factory, outputs of a successful bootstrap.
PLEDGE_FILES = {
    "idevid": "idevid.pem",
    "idevid-key": "idevid.key",
    "masa-ca": "masa-ca.pem",
    "voucher": "voucher.cms",
    "domain-ca": "domain-ca.pem",
    "ldevid": "ldevid.pem",
    "ldevid-key": "ldevid.key",
}

# OpenSSL reasons meaning "the peer refuses this identity": retrying cannot help.
_TLS_REFUSALS = (
    "ALERT_UNKNOWN_CA",
    "ALERT_BAD_CERTIFICATE",
    "ALERT_CERTIFICATE_REQUIRED",
    "ALERT_CERTIFICATE_UNKNOWN",
    "ALERT_CERTIFICATE_EXPIRED",
    "ALERT_CERTIFICATE_REVOKED",
    "ALERT_UNSUPPORTED_CERTIFICATE",
    "ALERT_ACCESS_DENIED",
    "CERTIFICATE_VERIFY_FAILED",
)


# OpenSSL reasons of a server that does not speak TLS 1.2.
_VERSION_ERRORS = ("UNSUPPORTED_PROTOCOL", "PROTOCOL_VERSION", "WRONG_VERSION_NUMBER")


def load_pledge_config(
    folder: Path, *, retry: RetryPolicy | None = None, nonceless_allowed: bool = False
) -> PledgeConfig:
    """The pledge folder's idevid.pem (+chain), idevid.key and masa-ca.pem as a PledgeConfig."""
    paths = {name: folder / file for name, file in PLEDGE_FILES.items()}
    for name in ("idevid", "idevid-key", "masa-ca"):
        if not paths[name].is_file():
            raise ConfigError(
                f"{paths[name]} is missing: a pledge folder holds idevid.pem, idevid.key and "
                "masa-ca.pem ('zerotouch vendor idevid --out P' writes them)"
            )
    idevid = certfiles.load_identity(paths["idevid"], paths["idevid-key"])
    # the IDevID file may carry its CA after the leaf; only intermediates go in the chain
    chain = tuple(c for c in idevid.chain if c.subject != c.issuer)
    idevid = certs.Identity(idevid.cert, idevid.key, chain)
    anchors = tuple(certs.load_certs(paths["masa-ca"].read_bytes()))
    return PledgeConfig(
        idevid=idevid,
        masa_anchors=anchors,
        retry=retry or RetryPolicy(),
        nonceless_allowed=nonceless_allowed,
    )


def write_enrollment(folder: Path, enrollment: Enrollment) -> None:
    """Install the bootstrap results in P (``device/domain_files.py``): each file atomic,
    the domain CA written last as the commit point."""
    write_domain(
        folder,
        key=tls_identity(enrollment.identity).key,
        chain=[enrollment.ldevid, *enrollment.ldevid_chain],
        anchors=enrollment.domain_anchors,
        voucher_cms=enrollment.voucher_cms,
    )


def _retry_after(value: str | None, now: datetime) -> float | None:
    """Retry-After as seconds: delay-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class HandshakeRefused(ConnectionError):
    """The registrar ended the TLS handshake once it saw our client certificate."""


class PinMismatch(ssl.SSLCertVerificationError):
    """The server of a verified connection is not vouched for by the pinned-domain-cert
    (RFC 8995 §5.6.2). Raised inside the TLS handshake, before any request is written."""

    def __init__(self, error: ZerotouchError) -> None:
        super().__init__(error.one_line())
        self.error = error


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: aiohttp hides handshake errors in ``certificate_error`` /
    ``os_error``, asyncio in ``__cause__`` / ``__context__`` (each visited once)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        nested = getattr(current, "certificate_error", None) or getattr(current, "os_error", None)
        current = (
            nested
            if isinstance(nested, BaseException)
            else (current.__cause__ or current.__context__)
        )


def _pin_mismatch(exc: BaseException) -> PinMismatch | None:
    """The PinMismatch behind a failed request."""
    return next((cause for cause in _causes(exc) if isinstance(cause, PinMismatch)), None)


Peer = tuple[x509.Certificate, tuple[x509.Certificate, ...]]  # leaf, what else it sent


def _peer(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> Peer | None:
    """The server's certificate and the rest of the chain it sent, unverified. Python 3.13
    names the chain ``get_unverified_chain``; 3.10-3.12 have it on the ``_ssl`` object."""
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    getter = getattr(ssl_object, "get_unverified_chain", None) or getattr(
        getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None
    )
    raw: list[Any] = getter() if getter is not None else []
    # bytes (3.13) or _ssl.Certificate objects whose public_bytes() is PEM text (3.10-3.12)
    chain = [
        x509.load_der_x509_certificate(
            item if isinstance(item, bytes) else ssl.PEM_cert_to_DER_cert(item.public_bytes())
        )
        for item in raw
    ]
    return x509.load_der_x509_certificate(der), tuple(chain[1:])


@dataclass
class _PeerRecorder:
    """What each handshake's server presented (RFC 8995 §5.1 "record"), and for verified
    connections the pin check run before the handshake completes (§5.6.2)."""

    validate: Callable[[x509.Certificate, tuple[x509.Certificate, ...]], None] | None = None

    def __post_init__(self) -> None:
        self.last: Peer | None = None

    def seen(self, ssl_object: ssl.SSLObject) -> None:
        peer = _peer(ssl_object)
        self.last = peer
        if self.validate is None:
            return
        if peer is None:
            raise PinMismatch(CertificateError("the registrar presented no certificate"))
        try:
            self.validate(*peer)
        except ZerotouchError as exc:
            raise PinMismatch(exc) from exc


def _recording(ctx: ssl.SSLContext, recorder: _PeerRecorder) -> ssl.SSLContext:
    """``ctx`` with an SSLObject class reporting each handshake to ``recorder``: asyncio (and
    so aiohttp) builds ``SSLContext.sslobject_class``, the documented hook."""

    class _PeerSSLObject(ssl.SSLObject):
        def do_handshake(self) -> None:
            super().do_handshake()
            recorder.seen(self)

    ctx.sslobject_class = _PeerSSLObject
    return ctx


def _tls_refusal(exc: BaseException) -> bool:
    """Whether a failure is a TLS-level refusal of our identity or of the server's."""
    for cause in _causes(exc):
        if isinstance(cause, HandshakeRefused | aiohttp.ClientConnectorCertificateError):
            return True
        if isinstance(cause, ssl.SSLError):
            text = f"{getattr(cause, 'reason', None) or ''} {cause}".upper()
            if any(token in text for token in _TLS_REFUSALS):
                return True
    return False


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.replace("\n", " ")


@dataclass(frozen=True)
class _Target:
    base: str
    host: str  # what getaddrinfo takes: an IPv6 link-local address with ``%zone``
    port: int


def _target(url: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ConfigError(f"registrar URL {url!r} must be https://HOST[:PORT]")
    try:
        port = parts.port or 443
    except ValueError as exc:
        raise ConfigError(f"registrar URL {url!r}: {exc}") from None
    # RFC 6874: the zone of an IPv6 link-local literal is written %25 in a URI
    return _Target(url.rstrip("/"), unquote(parts.hostname), port)


class _ZoneResolver(aiohttp.abc.AbstractResolver):
    """Connects aiohttp to IPv6 link-local addresses with their zone (``fe80::1%eth0``).

    aiohttp takes an address literal as it is and drops a URL's zone, so such a target is
    requested under a stand-in name in ``.invalid`` (RFC 6761 §6.4: never resolved
    elsewhere) that this resolver maps to ``address%zone``; getaddrinfo then supplies the
    scope id. Any other name goes to aiohttp's usual resolver."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}
        self._default = aiohttp.ThreadedResolver()

    def base_of(self, target: _Target) -> str:
        """``target``'s base URL as requested: a stand-in name for a zoned address."""
        if "%" not in target.host:
            return target.base
        names = {address: name for name, address in self._names.items()}
        name = names.get(target.host) or f"zone-{len(self._names)}.link-local.invalid"
        self._names[name] = target.host
        path = urlsplit(target.base).path
        return f"https://{name}:{target.port}{path}"

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = self._names.get(host)
        if address is None:
            return await self._default.resolve(host, port, family)
        flags = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6,
                proto=0,
                flags=flags,
            )
        ]

    async def close(self) -> None:
        await self._default.close()


class PledgeClient:
    """Performs one machine's actions against one registrar (and the one origin a redirect
    may name). Use as an async context."""

    def __init__(self, config: PledgeConfig, registrar_url: str, *, timeout: float) -> None:
        if timeout <= 0:
            raise ConfigError("timeout must be positive")
        self.config = config
        # TLS client authentication needs the key in OpenSSL (artifacts/signer.py)
        self._tls = tls_identity(config.idevid)
        self._target = _target(registrar_url)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._seconds = timeout
        self._now: Callable[[], datetime] = _utc_now
        # every handshake's server certificate is recorded: aiohttp releases the connection
        # of a short answer before the caller could ask it (RFC 8995 §5.1 "record")
        self._recorders: dict[tuple[TlsMode, bytes], _PeerRecorder] = {}
        self._sessions: dict[tuple[TlsMode, bytes], aiohttp.ClientSession] = {}
        self._resolver = _ZoneResolver()
        self.probe_chain: tuple[x509.Certificate, ...] = ()  # sent with the last probe's cert

    async def __aenter__(self) -> PledgeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()
        await self._resolver.close()

    @staticmethod
    def _key(mode: TlsMode, trust: Sequence[x509.Certificate]) -> tuple[TlsMode, bytes]:
        return (mode, b"".join(c.public_bytes(Encoding.DER) for c in trust))

    def _context(
        self, mode: TlsMode, trust: Sequence[x509.Certificate]
    ) -> tuple[ssl.SSLContext, _PeerRecorder]:
        """Provisional TLS records the server (§5.1). Verified TLS also lets OpenSSL verify
        nothing: the machine's rule decides (BRSKI names the registrar by the pin, not by
        host name, and accepts an id-kp-cmcRA registrar, §5.6.2), inside the handshake."""
        validate = None
        if mode is TlsMode.VERIFIED:
            if not trust:
                raise ConfigError("a verified request needs the pinned-domain-cert")
            pinned = trust[0]

            def validate(leaf: x509.Certificate, chain: tuple[x509.Certificate, ...]) -> None:
                registrar_validated_by(pinned, leaf, now=self._now(), chain=chain)

        recorder = _PeerRecorder(validate)
        ctx = client_context(self._tls, trust=None)
        return _recording(ctx, recorder), recorder

    def _session(
        self, mode: TlsMode, trust: Sequence[x509.Certificate]
    ) -> tuple[aiohttp.ClientSession, _PeerRecorder]:
        key = self._key(mode, trust)
        session = self._sessions.get(key)
        if session is None:
            ctx, self._recorders[key] = self._context(mode, trust)
            # provisional connections are never reused: each one is checked afresh
            connector = aiohttp.TCPConnector(
                ssl=ctx, force_close=mode is TlsMode.PROVISIONAL, resolver=self._resolver
            )
            session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
            self._sessions[key] = session
        return session, self._recorders[key]

    def _where(self, origin: str | None) -> _Target:
        return self._target if origin is None else _target(origin)

    async def probe(self, origin: str | None = None) -> x509.Certificate:
        """Provisional TLS handshake; the certificate the registrar presented (§5.1), the
        rest of its chain in ``probe_chain``.

        The probe prefers TLS 1.2: there a registrar that refuses the IDevID (unknown
        manufacturer, expired) says so with a handshake alert, while TLS 1.3 only drops the
        connection after the handshake, which looks like an outage and would be retried.
        """
        where = self._where(origin)
        probe_ssl = client_context(self._tls, trust=None)
        probe_ssl.maximum_version = ssl.TLSVersion.TLSv1_2
        try:
            return await self._handshake(where, probe_ssl)
        except ssl.SSLError as exc:
            if not any(
                token in f"{getattr(exc, 'reason', '')} {exc}".upper() for token in _VERSION_ERRORS
            ):
                raise
        # a TLS 1.3-only registrar
        return await self._handshake(where, client_context(self._tls, trust=None))

    async def _handshake(self, where: _Target, ctx: ssl.SSLContext) -> x509.Certificate:
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(where.host, where.port, ssl=ctx), self._seconds
            )
        except (ConnectionResetError, ssl.SSLEOFError, asyncio.IncompleteReadError) as exc:
            # TCP was accepted, the TLS handshake was cut after our certificate went out:
            # asyncio servers drop the connection without an alert when they refuse it.
            raise HandshakeRefused(
                "the registrar closed the TLS handshake after seeing the IDevID: it does not "
                "accept this certificate (unknown manufacturer, or expired)"
            ) from exc
        try:
            ssl_object = writer.get_extra_info("ssl_object")
            peer = _peer(ssl_object) if ssl_object is not None else None
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
        if peer is None:
            raise ssl.SSLError("the registrar presented no certificate")
        self.probe_chain = peer[1]
        return peer[0]

    async def send(self, request: HttpRequest, *, now: Callable[[], datetime]) -> Response:
        self._now = now
        headers = {}
        if request.content_type:
            headers["Content-Type"] = request.content_type
        if request.accept:
            headers["Accept"] = request.accept
        session, recorder = self._session(request.tls, request.trust)
        where = self._where(request.origin)
        url = where.base + request.path
        requested = self._resolver.base_of(where) + request.path
        async with session.request(
            request.method, requested, data=request.body, headers=headers, allow_redirects=False
        ) as resp:
            # provisional connections are fresh per request: the last handshake is ours
            server_cert, server_chain = recorder.last or (None, ())
            if resp.content_length is not None and resp.content_length > MAX_RESPONSE_BYTES:
                body = b""
            else:
                body = await read_at_most(resp.content, MAX_RESPONSE_BYTES)
            location = resp.headers.get("Location")
            return Response(
                status=resp.status,
                body=body[:MAX_RESPONSE_BYTES],
                content_type=resp.headers.get("Content-Type", ""),
                retry_after=_retry_after(resp.headers.get("Retry-After"), now()),
                server_cert=server_cert,
                server_chain=server_chain,
                # RFC 9110 §10.2.2: a relative reference is resolved against the request URL
                location=urljoin(url, location) if location else None,
            )


def _utc_now() -> datetime:
    return datetime.now(UTC)


# Stores an enrollment and switches to it; returns the management listeners to announce in
# enrollstatus (``netconf-tls-port``, ``restconf-port``, ``netconf-ssh-port``), or None.
Installer = Callable[[Enrollment], Awaitable[Mapping[str, int] | None]]


async def _install(machine: Pledge, install: Installer, action: Install) -> PledgeAction:
    try:
        management = await install(action.enrollment)
    except ZerotouchError as exc:
        log.warning("installing the identity failed: %s", exc.one_line())
        return machine.install_failed(exc)
    except OSError as exc:
        log.warning("installing the identity failed: %s", exc)
        return machine.install_failed(StorageError(f"cannot install the identity: {exc}"))
    return machine.installed(management)


def _log_warnings(machine: Pledge) -> None:
    """What the machine honoured only in part (e.g. CSR attributes it does not support)."""
    while machine.warnings:
        log.warning("%s", machine.warnings.pop(0))


async def drive(
    machine: Pledge,
    client: PledgeClient,
    *,
    now: Callable[[], datetime] = _utc_now,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    on_action: Callable[[PledgeAction], None] | None = None,
    install: Installer,
) -> Enrollment:
    """Run ``machine`` to its end, ``install`` storing the identity before enrollstatus;
    the Enrollment, or its error raised."""
    action = machine.start()
    while True:
        if on_action is not None:
            on_action(action)
        if isinstance(action, Done):
            if action.status_error is not None:
                log.warning("enrollstatus not delivered: %s", action.status_error.one_line())
            return action.enrollment
        if isinstance(action, Failed):
            raise action.error
        if isinstance(action, Wait):
            log.info("retrying in %.1f s: %s", action.seconds, action.reason)
            await sleep(action.seconds)
            action = action.then
            continue
        if isinstance(action, Install):
            action = await _install(machine, install, action)
            continue
        try:
            if isinstance(action, Connect):
                cert = await client.probe(action.origin)
                action = machine.connected(cert, now=now(), chain=client.probe_chain)
            else:
                response = await client.send(action, now=now)
                log.debug("%s %s -> %d", action.method, action.path, response.status)
                action = machine.received(response, now=now())
        except (OSError, TimeoutError, aiohttp.ClientError, ssl.SSLError) as exc:
            mismatch = _pin_mismatch(exc)
            if mismatch is not None:
                log.warning("registrar refused before sending: %s", mismatch.error.one_line())
                action = machine.registrar_untrusted(mismatch.error)
            else:
                action = machine.unreachable(_describe(exc), now=now(), refused=_tls_refusal(exc))
        _log_warnings(machine)


async def _enroll_at(folder: Path, config: PledgeConfig, url: str, timeout: float) -> Enrollment:
    machine = Pledge(config, random_bytes=os.urandom)

    async def install(enrollment: Enrollment) -> None:
        await asyncio.to_thread(write_enrollment, folder, enrollment)

    async with PledgeClient(config, url, timeout=timeout) as client:
        try:
            return await drive(machine, client, install=install)
        except ZerotouchError:
            log.info("pledge %s failed in state history %s", config.serial, machine.history)
            raise


async def enroll(
    folder: Path,
    registrar_url: str,
    *,
    retry: RetryPolicy | None = None,
    timeout: float = 30.0,
    nonceless_allowed: bool = False,
) -> Enrollment:
    """``zerotouch pledge enroll``: bootstrap the pledge of ``folder``; its results are written
    (the install step) before enrollstatus reports them."""
    config = load_pledge_config(folder, retry=retry, nonceless_allowed=nonceless_allowed)
    return await _enroll_at(folder, config, registrar_url, timeout)


class _LogObserver:
    """Discovery as ``pledge enroll`` shows it: log lines."""

    def changed(self, machine: Discovery) -> None:
        return None

    def search_started(self, action: Search) -> None:
        log.info("discovery: searching by %s for up to %g s", action.method, action.timeout)

    def candidate_found(self, candidate: Candidate) -> None:
        return None  # the driver logs each new candidate

    def no_local_address(self, where: str) -> None:
        return None  # the driver logs it

    def waiting(self, action: DiscoveryWait) -> None:
        log.info("discovery: %s; next cycle in %.1f s", action.reason, action.seconds)


async def enroll_discovering(
    folder: Path,
    discovery: AgentConfig,
    *,
    retry: RetryPolicy | None = None,
    timeout: float = 30.0,
    nonceless_allowed: bool = False,
) -> tuple[Enrollment, Candidate]:
    """``zerotouch pledge enroll --discovery``: find candidates by the methods of
    ``discovery`` (RFC 8995 §4.1.1) and bootstrap through the first that enrolls the pledge;
    the enrollment and that candidate. After ``bootstrap_rounds`` cycles the last error is
    raised."""
    config = load_pledge_config(folder, retry=retry, nonceless_allowed=nonceless_allowed)
    machine = discovery_machine(discovery, random_bytes=os.urandom)
    enrolled: list[Enrollment] = []

    async def attempt(candidate: Candidate) -> ZerotouchError | None:
        try:
            enrolled.append(await _enroll_at(folder, config, candidate.url, timeout))
        except (ConfigError, StorageError):
            raise
        except ZerotouchError as exc:
            log.warning("bootstrap through %s failed: %s", candidate.url, exc.one_line())
            return exc
        return None

    gave_up = await run_discovery(
        machine, discovery, attempt=attempt, observer=_LogObserver(), now=_utc_now
    )
    if gave_up is not None:
        log.error("%s", gave_up.reason)
        raise gave_up.error or UpstreamUnavailable(gave_up.reason)
    assert machine.enrolled_by is not None  # run_discovery returns None only then
    return enrolled[0], machine.enrolled_by
