"""The pledge's HTTPS client: performs the actions of the sans-IO ``roles.pledge`` machine.

The IDevID is the TLS client certificate throughout, and one TLS connection carries the whole
enrollment (keep-alive, ``services/_http1.py``). ``Connect`` opens it provisionally (RFC 8995
§5.1): the registrar is not verified, its certificate is recorded, and the voucher-request
goes over the same connection. Once the voucher's pinned-domain-cert validates the
certificate of that very handshake the connection is no longer provisional (§5.6.2), and
voucher_status, csrattrs, simpleenroll and enrollstatus follow on it. A verified request only
goes over a connection whose server the pin validates (``roles.pledge.registrar_validated_by``,
with the EKU rule of BRSKI rather than OpenSSL's TLS-server purpose, which refuses an
id-kp-cmcRA-only registrar): a connection opened later (the registrar closed the idle one, a
redirect) is checked after its handshake, so a server the pin does not vouch for never
receives a byte of the request. Redirects are not followed here: the machine sees each 3xx
and follows at most one (§5.6). Only this module sleeps, reads the clock and draws random
bytes; the machine decides everything else.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import logging
import os
import ssl
import time
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urljoin, urlsplit

from cryptography import x509

from zerotouch_plugin._text import is_decimal
from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.artifacts.signer import SoftwareSigner, tls_identity
from zerotouch_plugin.config import AgentConfig
from zerotouch_plugin.device.domain_files import write_domain
from zerotouch_plugin.errors import (
    ConfigError,
    StorageError,
    UpstreamUnavailable,
    ZerotouchError,
)
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
from zerotouch_plugin.services._http1 import Http1Connection
from zerotouch_plugin.services._tls import client_context

if TYPE_CHECKING:  # discovery loads only when ``enroll_discovering`` runs
    from zerotouch_plugin.roles.discovery import Candidate, Discovery, Search
    from zerotouch_plugin.roles.discovery import Wait as DiscoveryWait

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
    cert_path, key_path = folder / PLEDGE_FILES["idevid"], folder / PLEDGE_FILES["idevid-key"]
    cert_data, key_data = _factory_file(cert_path), _factory_file(key_path)
    anchors = tuple(certs.load_certs(_factory_file(folder / PLEDGE_FILES["masa-ca"])))
    # the IDevID file may carry its CA after the leaf (often the MASA anchor, read just now);
    # only intermediates go in the chain
    idevid = certfiles.identity_of(
        cert_data,
        key_data,
        cert_path,
        key_path,
        known=anchors,
        keep=lambda cert: cert.subject != cert.issuer,
    )
    return PledgeConfig(
        idevid=idevid,
        masa_anchors=anchors,
        retry=retry or RetryPolicy(),
        nonceless_allowed=nonceless_allowed,
    )


def _factory_file(path: Path) -> bytes:
    """A file the factory put in the pledge folder."""
    try:
        return path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise ConfigError(
            f"{path} is missing: a pledge folder holds idevid.pem, idevid.key and "
            "masa-ca.pem ('zerotouch vendor idevid --out P' writes them)"
        ) from None


def write_enrollment(folder: Path, enrollment: Enrollment) -> None:
    """Install the bootstrap results in P (``device/domain_files.py``): each file atomic,
    the domain CA written last as the commit point."""
    signer = enrollment.ldevid_key
    # the LDevID was checked to be for this key (RFC 7030 §4.2.3, roles.pledge): a software
    # key is written as it is; any other goes through tls_identity, which refuses it
    key = (
        signer.private_key
        if isinstance(signer, SoftwareSigner)
        else tls_identity(enrollment.identity).key
    )
    write_domain(
        folder,
        key=key,
        chain=[enrollment.ldevid, *enrollment.ldevid_chain],
        anchors=enrollment.domain_anchors,
        voucher_cms=enrollment.voucher_cms,
    )


def _retry_after(value: str | None, now: datetime) -> float | None:
    """Retry-After as seconds: delay-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if is_decimal(value):
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


class UnreadableCertificate(ConnectionError):
    """The server's TLS certificate (or one it sent with it) is not X.509 DER that
    cryptography reads, though OpenSSL took it."""


class ClosedBeforeHandshake(ConnectionResetError):
    """The registrar closed the connection before answering our ClientHello: nothing about
    this pledge was seen yet, so this is a busy or restarting server, not a refusal."""


class PinMismatch(ssl.SSLCertVerificationError):
    """The server of a verified connection is not vouched for by the pinned-domain-cert
    (RFC 8995 §5.6.2). Raised right after the TLS handshake, before any request is written."""

    def __init__(self, error: ZerotouchError) -> None:
        super().__init__(error.one_line())
        self.error = error


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps (``__cause__`` / ``__context__``, each visited once)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


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
    # bytes (3.13) or _ssl.Certificate objects whose public_bytes() is PEM text (3.10-3.12);
    # the first is the leaf itself
    chain = tuple(
        _peer_cert(
            item if isinstance(item, bytes) else ssl.PEM_cert_to_DER_cert(item.public_bytes())
        )
        for item in raw[1:]
    )
    return _peer_cert(der), chain


def _peer_cert(der: bytes) -> x509.Certificate:
    """A certificate the server sent, read whole now: OpenSSL takes encodings (a BER
    BOOLEAN, say) that cryptography refuses, and the server is not trusted yet (§5.1)."""
    try:
        return certs.read_eagerly(x509.load_der_x509_certificate(der))
    except certs.MALFORMED as exc:
        raise UnreadableCertificate(
            f"the registrar sent a certificate this pledge cannot read: {exc}"
        ) from exc


@dataclass
class _HandshakeWatch:
    """Whether the server answered the ClientHello of the connection being opened (its
    ServerHello, with the certificate request in the same flight, was processed)."""

    answered: bool = False


# The watch of each client's context, for ``_WatchedSSLObject``: one class for all contexts,
# not a class made (and left to the garbage collector) per pledge.
_WATCHES: weakref.WeakKeyDictionary[ssl.SSLContext, _HandshakeWatch] = weakref.WeakKeyDictionary()


class _WatchedSSLObject(ssl.SSLObject):
    """Tells the watch of its context once the server has answered: asyncio builds
    ``SSLContext.sslobject_class``, the documented hook."""

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        finally:
            watch = _WATCHES.get(self.context)
            if watch is not None and self.cipher() is not None:  # chosen once ServerHello came
                watch.answered = True


def _watching(ctx: ssl.SSLContext, watch: _HandshakeWatch) -> ssl.SSLContext:
    """``ctx``, its handshakes told to ``watch``."""
    _WATCHES[ctx] = watch
    ctx.sslobject_class = _WatchedSSLObject
    return ctx


def _tls_refusal(exc: BaseException) -> bool:
    """Whether a failure is a TLS-level refusal of our identity or of the server's."""
    for cause in _causes(exc):
        if isinstance(cause, ClosedBeforeHandshake):
            return False
        if isinstance(cause, HandshakeRefused):
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

    @property
    def literal(self) -> bool:
        """An IP address, not a name (no SNI for it, RFC 6066 §3)."""
        try:
            ipaddress.ip_address(self.host.partition("%")[0])
        except ValueError:
            return False
        return True

    @property
    def host_header(self) -> str:
        """The Host field (RFC 9112 §3.2): the zone of a link-local address is local."""
        host = self.host.partition("%")[0]
        host = f"[{host}]" if ":" in host else host
        return host if self.port == 443 else f"{host}:{self.port}"


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


# Seconds a kept connection may idle and still carry the next request (servers close idle
# ones: the registrar after its header_timeout, 10 s by default).
_IDLE_REUSE = 5.0
# Characters a request target keeps as they are (RFC 3986 §3.3, §3.4); others are escaped.
_TARGET_SAFE = "/?&=%:@!$'()*+,;~-._"


class PledgeClient:
    """Performs one machine's actions against one registrar (and the one origin a redirect
    may name), over one kept TLS connection per origin. Use as an async context."""

    def __init__(self, config: PledgeConfig, registrar_url: str, *, timeout: float) -> None:
        if timeout <= 0:
            raise ConfigError("timeout must be positive")
        self.config = config
        # TLS client authentication needs the key in OpenSSL (artifacts/signer.py)
        self._tls = tls_identity(config.idevid)
        self._target = _target(registrar_url)
        self._seconds = timeout
        self._now: Callable[[], datetime] = _utc_now
        self._watch = _HandshakeWatch()
        self._contexts: dict[bool, ssl.SSLContext] = {}  # TLS 1.2 preferred -> context
        self._tls13_only: set[str] = set()  # origins that refused TLS 1.2
        self._connections: dict[str, _Kept] = {}
        self.probe_chain: tuple[x509.Certificate, ...] = ()  # sent with the last probe's cert
        self.connections_opened = 0  # TLS handshakes this client made

    async def __aenter__(self) -> PledgeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        kept, self._connections = list(self._connections.values()), {}
        for connection in kept:
            await connection.http.close()

    def _context(self, prefer_tls12: bool) -> ssl.SSLContext:
        """One context per kind for the client's life: the IDevID is loaded once. The server
        is not verified by OpenSSL: on provisional TLS it is recorded (§5.1), on verified TLS
        the machine's rule decides (BRSKI names the registrar by the pin, not by host name,
        and accepts an id-kp-cmcRA registrar, §5.6.2), before a request is written."""
        ctx = self._contexts.get(prefer_tls12)
        if ctx is None:
            ctx = _watching(client_context(self._tls, trust=None), self._watch)
            if prefer_tls12:
                ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            self._contexts[prefer_tls12] = ctx
        return ctx

    def _where(self, origin: str | None) -> _Target:
        return self._target if origin is None else _target(origin)

    async def _open(self, where: _Target) -> _Kept:
        """A new TLS connection with the IDevID.

        TLS 1.2 is preferred: there a registrar that refuses the IDevID (unknown
        manufacturer, expired) says so with a handshake alert, while TLS 1.3 only drops the
        connection after the handshake, which looks like an outage and would be retried. A
        TLS 1.3-only registrar gets TLS 1.3.
        """
        if where.base not in self._tls13_only:
            try:
                return await self._handshake(where, self._context(prefer_tls12=True))
            except ssl.SSLError as exc:
                text = f"{getattr(exc, 'reason', '')} {exc}".upper()
                if not any(token in text for token in _VERSION_ERRORS):
                    raise
            self._tls13_only.add(where.base)
        return await self._handshake(where, self._context(prefer_tls12=False))

    async def _handshake(self, where: _Target, ctx: ssl.SSLContext) -> _Kept:
        self._watch.answered = False
        self.connections_opened += 1
        try:
            # asyncio.timeout, not wait_for: no task per call on Python 3.11
            async with asyncio.timeout(self._seconds):
                http = await Http1Connection.open(
                    where.host, where.port, ctx, server_hostname="" if where.literal else where.host
                )
        except (
            ConnectionResetError,
            ConnectionAbortedError,
            BrokenPipeError,
            ssl.SSLEOFError,
            asyncio.IncompleteReadError,
        ) as exc:
            if not self._watch.answered:
                raise ClosedBeforeHandshake(
                    "the registrar closed the connection before answering the TLS ClientHello "
                    "(busy, or restarting)"
                ) from exc
            # TCP was accepted, the TLS handshake was cut after our certificate went out:
            # asyncio servers drop the connection without an alert when they refuse it.
            raise HandshakeRefused(
                "the registrar closed the TLS handshake after seeing the IDevID: it does not "
                "accept this certificate (unknown manufacturer, or expired)"
            ) from exc
        ssl_object = http.ssl_object
        try:
            peer = _peer(ssl_object) if ssl_object is not None else None
        except UnreadableCertificate:
            http.abort()
            raise
        if peer is None:
            http.abort()
            raise ssl.SSLError("the registrar presented no certificate")
        return _Kept(http, peer)

    def _drop(self, where: _Target) -> None:
        kept = self._connections.pop(where.base, None)
        if kept is not None:
            kept.http.abort()

    async def probe(self, origin: str | None = None) -> x509.Certificate:
        """Open the provisional TLS connection the voucher-request goes over and keep it;
        the certificate the registrar presented (§5.1), the rest of its chain in
        ``probe_chain``. Any connection kept to that origin is replaced: a fresh record."""
        where = self._where(origin)
        self._drop(where)
        kept = await self._open(where)
        self._connections[where.base] = kept
        self.probe_chain = kept.peer[1]
        return kept.peer[0]

    def _check_pin(self, kept: _Kept, trust: Sequence[x509.Certificate]) -> None:
        """A verified request goes only over a connection whose server the
        pinned-domain-cert validates (§5.6.2); checked once per connection and pin."""
        if not trust:
            raise ConfigError("a verified request needs the pinned-domain-cert")
        pinned = trust[0]
        if pinned in kept.pins:
            return
        try:
            registrar_validated_by(pinned, kept.peer[0], now=self._now(), chain=kept.peer[1])
        except ZerotouchError as exc:
            raise PinMismatch(exc) from exc
        kept.pins.add(pinned)

    async def send(self, request: HttpRequest, *, now: Callable[[], datetime]) -> Response:
        """Send ``request`` over the connection kept to its origin (a new one when there is
        none or the server closed it); the answer with that connection's certificate."""
        self._now = now
        where = self._where(request.origin)
        try:
            async with asyncio.timeout(self._seconds):
                return await self._exchange(where, request)
        except BaseException:
            self._drop(where)  # a connection in an unknown state is not reused
            raise

    async def _exchange(self, where: _Target, request: HttpRequest) -> Response:
        kept = self._connections.get(where.base)
        if kept is None or not kept.fresh():
            self._drop(where)
            kept = await self._open(where)
            self._connections[where.base] = kept
        if request.tls is TlsMode.VERIFIED:
            self._check_pin(kept, request.trust)
        headers = {}
        if request.content_type:
            headers["Content-Type"] = request.content_type
        if request.accept:
            headers["Accept"] = request.accept
        answer = await kept.http.request(
            request.method,
            quote(request.path, safe=_TARGET_SAFE),
            host=where.host_header,
            headers=headers,
            body=request.body,
            max_body=MAX_RESPONSE_BYTES,
        )
        kept.last_used = time.monotonic()
        if not answer.reusable:
            self._drop(where)
        return Response(
            status=answer.status,
            body=answer.body,
            content_type=answer.headers.get("content-type", ""),
            retry_after=_retry_after(answer.headers.get("retry-after"), self._now()),
            server_cert=kept.peer[0],
            server_chain=kept.peer[1],
            location=_resolved(where.base + request.path, answer.headers.get("location")),
        )


def _resolved(url: str, location: str | None) -> str | None:
    """RFC 9110 §10.2.2: a relative Location is resolved against the request URL. One that
    does not parse (``https://[::1``) goes on as it came, for the machine to refuse."""
    if not location:
        return None
    try:
        return urljoin(url, location)
    except ValueError:
        return location


@dataclass
class _Kept:
    """A connection kept for the next request, with what its handshake showed."""

    http: Http1Connection
    peer: Peer
    pins: set[x509.Certificate] = field(default_factory=set)  # the pins that validated it
    last_used: float = field(default_factory=time.monotonic)

    def fresh(self) -> bool:
        """Usable, and not idle so long that the server may be closing it as we write."""
        return self.http.usable() and time.monotonic() - self.last_used < _IDLE_REUSE


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
        except (OSError, TimeoutError) as exc:
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
    # discovery's sockets and DNS library load only when discovery is asked for
    from zerotouch_plugin.services.discovery.driver import discovery_machine, run_discovery

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
