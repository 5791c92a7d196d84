"""Pledge logic of BRSKI (RFC 8995 §5), sans-IO: a state machine driven by events.

The machine never opens a socket, reads the clock or touches a file. It hands out *actions*
(open a provisional TLS connection, send this request, wait this long) and is fed what came
back (the registrar certificate seen, an HTTP response, a transport failure) together with
``now``. Randomness (nonces, backoff jitter) comes from the ``random_bytes`` callable the
caller supplies. ``services/pledge_client.py`` performs the actions over HTTPS; the device
agent drives the same machine.

Sequence (transition table ``PLEDGE_TRANSITIONS`` in ``roles/states.py``):

1. provisional TLS, the registrar certificate recorded unverified (§5.1);
2. pledge voucher-request signed with the IDevID (§5.2);
3. voucher validation (§5.6.1) and voucher_status (§5.7), also on failure;
4. EST cacerts -> domain trust anchors checked against pinned-domain-cert (RFC 7030
   §4.1.3, RFC 8995 §5.9.1), from here on TLS verified against pinned-domain-cert;
5. CSR with a fresh key, simpleenroll (RFC 7030 §4.2), LDevID checks;
6. install: the caller stores the identity and switches to it (``Install``, answered with
   ``installed`` or ``install_failed``);
7. enrollstatus (§5.9.4) reporting the installed result, also on failure.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from zerotouch_plugin._checks import require_count, require_number
from zerotouch_plugin._text import printable
from zerotouch_plugin.artifacts import certs, cms, est
from zerotouch_plugin.artifacts.certs import Identity, KeyKind
from zerotouch_plugin.artifacts.signer import Signer, SigningIdentity, SoftwareSigner, make_csr
from zerotouch_plugin.artifacts.voucher import Assertion, Voucher, VoucherRequest, new_nonce
from zerotouch_plugin.errors import (
    AccessDenied,
    CertificateError,
    ConfigError,
    Conflict,
    Expired,
    InvalidInput,
    NotAcceptable,
    NotFound,
    PayloadTooLarge,
    PolicyRefused,
    RemoteError,
    UnsupportedMediaType,
    UntrustedSigner,
    UpstreamUnavailable,
    WrongNonce,
    WrongSerial,
    ZerotouchError,
)
from zerotouch_plugin.roles.backoff import Backoff
from zerotouch_plugin.roles.states import (
    PLEDGE_TRANSITIONS,
    PledgeEvent,
    PledgeState,
    transition,
)

__all__ = [
    "MEDIA_JSON",
    "PATH_CACERTS",
    "PATH_CSRATTRS",
    "PATH_ENROLLSTATUS",
    "PATH_REQUESTVOUCHER",
    "PATH_SIMPLEENROLL",
    "PATH_VOUCHER_STATUS",
    "Connect",
    "Done",
    "Enrollment",
    "Failed",
    "HttpRequest",
    "Install",
    "KeyFactory",
    "Pledge",
    "PledgeAction",
    "PledgeConfig",
    "Response",
    "RetryPolicy",
    "TlsMode",
    "Wait",
    "domain_anchors",
    "enroll_status_request",
    "registrar_validated_by",
    "software_key",
    "status_report",
]

# RFC 8995 §5 / RFC 7030 §3.2.2 well-known paths.
PATH_REQUESTVOUCHER = "/.well-known/brski/requestvoucher"
PATH_VOUCHER_STATUS = "/.well-known/brski/voucher_status"
PATH_ENROLLSTATUS = "/.well-known/brski/enrollstatus"
PATH_CACERTS = "/.well-known/est/cacerts"
PATH_SIMPLEENROLL = "/.well-known/est/simpleenroll"
PATH_CSRATTRS = "/.well-known/est/csrattrs"
MEDIA_JSON = "application/json"  # RFC 8995 §5.7, §5.9.4

_NONCE_BYTES = 16  # RFC 8366 §5.3 allows 8..32
_MAX_RETRY_AFTER = 60.0  # RFC 8995 §5.6: the pledge MUST limit Retry-After to 60 seconds
_STATUS_VERSION = 1  # RFC 8995 §5.7 "version"
# RFC 7030 §4.1.3: the CA certificates, and during a rollover OldWithNew, NewWithOld and
# NewWithNew: a handful. Checking each against the rest costs a path search per pair.
_MAX_CACERTS = 32


# ---------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter; a server's Retry-After is honoured (RFC 9110 §10.2.3).

    ``attempts`` counts tries of one step (1 = never retry). The n-th retry waits
    ``min(max_delay, base_delay * multiplier**(n-1))``, of which the fraction ``jitter`` is
    randomised. With Retry-After the wait is that many seconds (capped at ``max_delay``)
    plus up to ``jitter * base_delay``, so that a crowd of pledges does not return at once.
    """

    attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        require_count(self.attempts, "attempts")
        for name in ("base_delay", "max_delay", "multiplier", "jitter"):
            require_number(getattr(self, name), name)
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError("need 0 <= base_delay <= max_delay")
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")

    def delay(self, retry: int, fraction: float, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1-based); ``fraction`` in [0, 1)."""
        if retry < 1:
            raise ValueError("retry counts from 1")
        if not 0 <= fraction < 1:
            raise ValueError("fraction must be in [0, 1)")
        if retry_after is not None:
            return (
                min(max(retry_after, 0.0), self.max_delay, _MAX_RETRY_AFTER)
                + self.jitter * self.base_delay * fraction
            )
        backoff = Backoff(self.base_delay, self.multiplier, self.max_delay, self.jitter)
        return backoff.delay(retry, fraction)


@dataclass(frozen=True)
class PledgeConfig:
    """What a pledge holds from the factory, and how persistent it is."""

    # IEEE 802.1AR identity: TLS client certificate, signs the PVR (through its Signer)
    idevid: Identity | SigningIdentity
    masa_anchors: tuple[x509.Certificate, ...]  # masa-ca.pem: voucher signers chain here
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    key_kind: KeyKind = "p256"  # the LDevID key, unless /csrattrs names another
    # RFC 8995 §7.2 / RFC 8366 §5.3: accept a voucher without nonce (one the registrar held
    # for offline use) when it carries an expires-on still in the future
    nonceless_allowed: bool = False
    _serial: str = field(init=False, repr=False, compare=False)  # of the IDevID, read once

    def __post_init__(self) -> None:
        if not isinstance(self.idevid, Identity | SigningIdentity):
            raise TypeError("idevid must be an Identity or a SigningIdentity")
        anchors = tuple(self.masa_anchors)
        if not all(isinstance(c, x509.Certificate) for c in anchors):
            raise TypeError("masa_anchors must hold x509.Certificate objects")
        if not anchors:
            raise ValueError("at least one MASA trust anchor is needed to validate vouchers")
        object.__setattr__(self, "masa_anchors", anchors)
        if not isinstance(self.retry, RetryPolicy):
            raise TypeError("retry must be a RetryPolicy")
        if not isinstance(self.nonceless_allowed, bool):
            raise TypeError("nonceless_allowed must be a bool")
        serial = certs.serial_number_of(self.idevid.cert)
        if serial is None:
            raise ConfigError("the IDevID has no subject serialNumber (RFC 8995 §2.3.1)")
        object.__setattr__(self, "_serial", serial)

    @property
    def serial(self) -> str:
        """The IDevID's subject serialNumber (RFC 8995 §2.3.1)."""
        return self._serial


# ---------------------------------------------------------------------------------------------
# actions (machine -> I/O) and inputs (I/O -> machine)


class TlsMode(StrEnum):
    PROVISIONAL = "provisional"  # server not verified, its certificate recorded (§5.1)
    VERIFIED = "verified"  # server must chain to pinned-domain-cert (§5.6.2)


@dataclass(frozen=True)
class Connect:
    """Open provisional TLS to the registrar and report its certificate (``connected``).
    ``origin`` (``https://host:port``) is where a redirect sent us; None is the registrar
    the pledge was given."""

    mode: TlsMode = TlsMode.PROVISIONAL
    origin: str | None = None


@dataclass(frozen=True)
class HttpRequest:
    """Send this request; report the answer with ``received`` (or ``unreachable``)."""

    method: str
    path: str
    body: bytes | None
    content_type: str | None
    accept: str | None
    tls: TlsMode
    trust: tuple[x509.Certificate, ...] = ()  # for VERIFIED: the pinned-domain-cert
    origin: str | None = None  # as for Connect


@dataclass(frozen=True)
class Wait:
    """Sleep ``seconds``, then perform ``then``."""

    seconds: float
    reason: str
    then: Connect | HttpRequest


@dataclass(frozen=True)
class Enrollment:
    """Everything a successful bootstrap produced."""

    serial: str
    voucher_cms: bytes
    voucher: Voucher
    registrar_cert: x509.Certificate
    domain_anchors: tuple[x509.Certificate, ...]
    ldevid: x509.Certificate
    ldevid_chain: tuple[x509.Certificate, ...]  # intermediates, not the trust anchor
    ldevid_key: Signer  # the key the CSR was made for (it may stay in hardware)

    @property
    def identity(self) -> SigningIdentity:
        return SigningIdentity(self.ldevid, self.ldevid_key, self.ldevid_chain)


@dataclass(frozen=True)
class Install:
    """Store ``enrollment`` durably and switch to it, then report ``installed`` (with the
    management listeners the registrar may reach) or ``install_failed``."""

    enrollment: Enrollment


@dataclass(frozen=True)
class Done:
    """Bootstrap complete. ``status_error`` says why enrollstatus could not be delivered
    (status telemetry, §5.9.4: the installed identity stands regardless)."""

    enrollment: Enrollment
    status_error: ZerotouchError | None = None


@dataclass(frozen=True)
class Failed:
    error: ZerotouchError


PledgeAction = Connect | HttpRequest | Wait | Install | Done | Failed


@dataclass(frozen=True)
class Response:
    """An HTTP answer, with the certificate the server presented on that connection."""

    status: int
    body: bytes = b""
    content_type: str = ""
    _: KW_ONLY
    retry_after: float | None = None
    server_cert: x509.Certificate | None = None
    server_chain: tuple[x509.Certificate, ...] = ()  # what else the server sent, unverified
    location: str | None = None  # Location of a 3xx answer


# ---------------------------------------------------------------------------------------------
# pure helpers

KeyFactory = Callable[[KeyKind], Signer]  # a fresh LDevID key pair of the kind asked for


def software_key(kind: KeyKind) -> Signer:
    """An LDevID key generated in memory."""
    return SoftwareSigner(certs.generate_key(kind))


def registrar_validated_by(
    pinned: x509.Certificate,
    registrar: x509.Certificate,
    *,
    now: datetime,
    chain: tuple[x509.Certificate, ...] = (),
) -> None:
    """RFC 8995 §5.6.2: the pinned-domain-cert must validate the registrar's TLS certificate
    (be it, or be a CA it chains to, through the intermediates the registrar sent in
    ``chain``); otherwise the pledge talked to someone else. A present extendedKeyUsage must
    allow a TLS server (id-kp-serverAuth) or an EST RA (id-kp-cmcRA, RFC 7030 §3.6.1): the
    RFC 8995 Appendix C registrar certificate carries cmcRA only."""
    if pinned == registrar:  # cryptography compares the DER
        return
    try:
        certs.verify_chain(
            registrar,
            trust_anchors=[pinned],
            intermediates=list(chain),
            now=now,
            purpose="registrar",
        )
    except ZerotouchError as exc:
        raise UntrustedSigner(
            f"the voucher's pinned-domain-cert ({pinned.subject.rfc4514_string()}) does not "
            f"validate the registrar certificate {registrar.subject.rfc4514_string()} seen on "
            f"provisional TLS (RFC 8995 §5.6.2): possible man-in-the-middle ({exc})"
        ) from exc


def _refuse_device_signer(signer: x509.Certificate) -> None:
    """RFC 8995 §5.6.1: a voucher is the MASA's word. The manufacturer CA a pledge trusts
    for vouchers often issues the IDevIDs as well (RFC 8995 Appendix C, ``zerotouch vendor``),
    so a device certificate chains to it too: the key of one device, taken out of it, would
    otherwise vouch every other device to any domain. A signer of the IDevID profile (subject
    serialNumber, RFC 8995 §2.3.1; hardwareModuleName, RFC 4108 §5) is not a MASA."""
    if certs.serial_number_of(signer) is not None or certs.hardware_module_name_of(signer):
        raise UntrustedSigner(
            f"the voucher is signed by {signer.subject.rfc4514_string()}, a device "
            "certificate (IDevID profile, RFC 8995 §2.3.1), not by the MASA (RFC 8995 §5.6.1)"
        )


def domain_anchors(
    cacerts: list[x509.Certificate], pinned: x509.Certificate, *, now: datetime
) -> tuple[x509.Certificate, ...]:
    """The explicit trust anchors from an EST cacerts answer (RFC 7030 §4.1.3): the CA
    certificates the voucher's pinned-domain-cert vouches for (RFC 8995 §5.9.1). A CA is
    taken when it is the pinned-domain-cert, chains to it, or the pinned-domain-cert (e.g.
    the registrar's own certificate) chains to it. Each candidate costs a path search over
    the whole answer, so the answer is bounded (``_MAX_CACERTS``)."""
    if len(cacerts) > _MAX_CACERTS:
        raise InvalidInput(
            f"EST cacerts holds {len(cacerts)} certificates, more than the {_MAX_CACERTS} a "
            "domain's CA certificates and their rollover certificates take (RFC 7030 §4.1.3)"
        )
    anchors: list[x509.Certificate] = []
    for candidate in cacerts:
        if not certs.is_ca(candidate):
            continue
        linked = (
            candidate == pinned
            or _chains(candidate, pinned, cacerts, now)
            or _chains(pinned, candidate, cacerts, now)
        )
        if linked:
            anchors.append(candidate)
    if not anchors:
        raise UntrustedSigner(
            "EST cacerts holds no CA certificate that the voucher's pinned-domain-cert "
            f"({pinned.subject.rfc4514_string()}) vouches for (RFC 7030 §4.1.3, RFC 8995 §5.9.1)"
        )
    return tuple(anchors)


def _chains(
    leaf: x509.Certificate,
    anchor: x509.Certificate,
    pool: list[x509.Certificate],
    now: datetime,
) -> bool:
    try:
        certs.verify_chain(leaf, trust_anchors=[anchor], intermediates=pool, now=now)
    except ZerotouchError:
        return False
    return True


def status_report(
    success: bool, *, reason: str | None = None, context: Mapping[str, Any] | None = None
) -> bytes:
    """voucher_status / enrollstatus JSON (RFC 8995 §5.7, §5.9.4): version, status, and on
    failure reason; reason-context carries details (a JSON object)."""
    document: dict[str, Any] = {"version": _STATUS_VERSION, "status": bool(success)}
    if reason is not None:
        document["reason"] = reason
    if context is not None:
        document["reason-context"] = dict(context)
    return json.dumps(document, separators=(",", ":")).encode()


def enroll_status_request(
    ldevid: x509.Certificate,
    *,
    serial: str,
    management: Mapping[str, int] | None,
    pinned: x509.Certificate,
    origin: str | None,
) -> HttpRequest:
    """enrollstatus true for an installed LDevID (RFC 8995 §5.9.4), over TLS verified by the
    pinned-domain-cert; also what an agent sends again after a restart that came between
    the install and the report."""
    context: dict[str, Any] = {"serial-number": serial, "ldevid": certs.fingerprint(ldevid)}
    if management:
        context["zerotouch-management"] = dict(management)
    report = status_report(True, context=context)
    return HttpRequest(
        "POST", PATH_ENROLLSTATUS, report, MEDIA_JSON, None, TlsMode.VERIFIED, (pinned,), origin
    )


def _media(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


# Registrar status -> the error the pledge reports (RFC 8995 §5.6 status codes).
_REFUSALS: Mapping[int, type[RemoteError]] = {
    400: InvalidInput,
    401: AccessDenied,
    403: PolicyRefused,
    404: NotFound,
    406: NotAcceptable,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
}


def _refusal(response: Response, what: str) -> RemoteError:
    """A registrar refusal as an error the CLI prints; the body is the registrar's reason,
    which an unverified peer wrote (§5.1): escaped before it reaches a terminal, a log or
    the device's YANG state."""
    text = printable(response.body.decode("utf-8", "replace").strip(), limit=300)
    cls = _REFUSALS.get(response.status, RemoteError)
    return cls(f"{what}: the registrar answered {response.status}: {text or '(empty)'}")


# Statuses after which a request is retried (RFC 8995 §5.6 / RFC 7030 §4.2.3: 202 with
# Retry-After while the request is pending; 503 while an upstream is unreachable).
_RETRYABLE = frozenset({202, 408, 425, 429, 500, 502, 503, 504})
# Status reports complete with any answer (§5.7: the pledge may ignore it) except these.
_STATUS_RETRYABLE = frozenset({408, 429, 502, 503, 504})


# ---------------------------------------------------------------------------------------------
# the machine


class Pledge:
    """One bootstrap attempt of one pledge. Create, ``start``, then feed what happens."""

    def __init__(
        self,
        config: PledgeConfig,
        *,
        random_bytes: Callable[[int], bytes],
        key_factory: KeyFactory = software_key,
    ) -> None:
        """``key_factory`` makes the LDevID key pair (a host may make it in hardware)."""
        if not isinstance(config, PledgeConfig):
            raise TypeError("config must be a PledgeConfig")
        self.config = config
        self._random = random_bytes
        self._key_factory = key_factory
        self.state = PledgeState.IDLE
        self.history: list[tuple[PledgeEvent, PledgeState]] = []
        self.error: ZerotouchError | None = None
        self.enrollment: Enrollment | None = None
        self.last_registrar_error: str | None = None
        self.warnings: list[str] = []  # things honoured only in part; the driver logs them
        self.csr_requirements: est.CsrRequirements | None = None  # what /csrattrs asked
        self._tries = 0
        self._registrar_cert: x509.Certificate | None = None
        self._registrar_chain: tuple[x509.Certificate, ...] = ()
        self._origin: str | None = None  # set by the one redirect followed (§5.6)
        self._redirected = False
        self._pending: Connect | HttpRequest | None = None
        self._nonce: str | None = None
        self._pvr: HttpRequest | None = None  # the voucher-request a 202 asks to resend
        self._voucher_path = PATH_REQUESTVOUCHER
        self._voucher_cms: bytes | None = None
        self._voucher: Voucher | None = None
        self._pinned: x509.Certificate | None = None
        self._anchors: tuple[x509.Certificate, ...] = ()
        self._cacerts: list[x509.Certificate] = []
        self._key: Signer | None = None

    # -- public inputs ------------------------------------------------------------------------

    @property
    def registrar_cert(self) -> x509.Certificate | None:
        """The certificate recorded on provisional TLS (§5.1), unverified until the voucher."""
        return self._registrar_cert

    @property
    def voucher(self) -> Voucher | None:
        return self._voucher

    @property
    def origin(self) -> str | None:
        """Where the one redirect followed sent the pledge (None: the registrar given)."""
        return self._origin

    def start(self) -> PledgeAction:
        self._advance(PledgeEvent.START)
        return self._issue(Connect())

    def connected(
        self,
        server_cert: x509.Certificate,
        *,
        now: datetime,
        chain: tuple[x509.Certificate, ...] = (),
    ) -> PledgeAction:
        """Provisional TLS is up: record the registrar certificate and the chain it sent
        (§5.1), and send the PVR.

        After a 202 the very same signed voucher-request is resent, nonce and all (§5.6),
        provided the same registrar answers; a registrar with another certificate gets a
        new request with a fresh nonce, as after any other failure (§5.2)."""
        self._expect(PledgeState.CONNECTING)
        if not isinstance(server_cert, x509.Certificate):
            raise TypeError("server_cert must be an x509.Certificate")
        resend, self._pvr = self._pvr, None
        previous = self._registrar_cert
        same = previous is not None and previous == server_cert  # the same DER
        self._registrar_cert = server_cert
        self._registrar_chain = tuple(chain)
        self._advance(PledgeEvent.CONNECTED)
        request = resend if resend is not None and same else self._voucher_request(now)
        # connecting and requesting the voucher are one step for the retry count
        return self._issue(request, fresh=False)

    def registrar_untrusted(self, error: ZerotouchError) -> PledgeAction:
        """The TLS layer refused a verified connection before sending anything: the server's
        certificate is not vouched for by the pinned-domain-cert (``registrar_validated_by``,
        §5.6.2). Handled like a verified answer that fails the same check."""
        if not isinstance(error, ZerotouchError):
            raise TypeError("error must be a ZerotouchError")
        pending = self._pending
        if not isinstance(pending, HttpRequest) or pending.tls is not TlsMode.VERIFIED:
            raise ValueError(f"no verified request is pending in state {self.state}")
        return self._step_failed(error)

    def unreachable(self, message: str, *, now: datetime, refused: bool = False) -> PledgeAction:
        """The request could not be completed: a transport fault (retried) or, with
        ``refused``, a TLS-level refusal of our IDevID (final)."""
        if refused and (self.state, PledgeEvent.REFUSED) in PLEDGE_TRANSITIONS:
            return self._refused(
                RemoteError(f"the registrar refused the TLS connection: {message}")
            )
        return self._retry(UpstreamUnavailable(f"registrar unreachable: {message}"), None)

    def installed(self, management: Mapping[str, int] | None = None) -> PledgeAction:
        """The host stored the identity and uses it: enrollstatus true (§5.9.4). Its
        reason-context names the management listeners (``netconf-tls-port``,
        ``restconf-port``, ``netconf-ssh-port``) under ``zerotouch-management``, for the
        registrar's day-0 hand-off at the address this report comes from."""
        self._expect(PledgeState.INSTALLING)
        assert self.enrollment is not None and self._pinned is not None
        self._advance(PledgeEvent.INSTALLED)
        return self._issue(
            enroll_status_request(
                self.enrollment.ldevid,
                serial=self.config.serial,
                management=management,
                pinned=self._pinned,
                origin=self._origin,
            )
        )

    def install_failed(self, error: ZerotouchError) -> PledgeAction:
        """The host could not install the identity: enrollstatus false (§5.9.4)."""
        self._expect(PledgeState.INSTALLING)
        if not isinstance(error, ZerotouchError):
            raise TypeError("error must be a ZerotouchError")
        self._advance(PledgeEvent.INSTALL_FAILED)
        self.enrollment = None
        return self._report_enroll_failure(error)

    def received(self, response: Response, *, now: datetime) -> PledgeAction:
        """An HTTP answer to the pending request."""
        if not isinstance(response, Response):
            raise TypeError("response must be a Response")
        handler = self._HANDLERS.get(self.state)
        pending = self._pending
        if handler is None or not isinstance(pending, HttpRequest):
            raise ValueError(f"no request is pending in state {self.state}")
        if pending.tls is TlsMode.VERIFIED:
            # Defence in depth: the verified connection presents a certificate the
            # pinned-domain-cert validates (the TLS layer checked it too).
            try:
                if response.server_cert is None or self._pinned is None:
                    raise CertificateError("no registrar certificate on verified TLS")
                registrar_validated_by(
                    self._pinned, response.server_cert, now=now, chain=response.server_chain
                )
            except ZerotouchError as exc:
                return self._step_failed(exc)
        if 300 <= response.status < 400:
            return self._redirect(pending, response, now)
        retryable = _STATUS_RETRYABLE if self.state in _LENIENT_STATES else _RETRYABLE
        if response.status in retryable:
            if response.status == 202 and self.state is PledgeState.REQUESTING_VOUCHER:
                self._pvr = pending  # §5.6: resend the same request, same nonce
            what = f"{pending.path} answered {response.status}"
            return self._retry(UpstreamUnavailable(what), response.retry_after)
        if response.status != 200 and self.state not in _LENIENT_STATES:
            return self._refused(_refusal(response, pending.path))
        return handler(self, response, now)

    def _redirect(self, pending: HttpRequest, response: Response, now: datetime) -> PledgeAction:
        """RFC 8995 §5.6: a pledge follows at most one redirection, and only to https.
        The new origin is treated as any registrar: provisional TLS (and a voucher-request
        naming its certificate) before the voucher, verified against the pin after it. A
        redirection not followed ends a status report or csrattrs like any other answer."""
        try:
            if self._redirected:
                raise PolicyRefused(
                    f"{pending.path}: a second redirection ({response.status} to "
                    f"{printable(response.location or 'nowhere')}); a pledge follows at most one "
                    "(RFC 8995 §5.6)"
                )
            target = _redirect_target(pending, response)
        except ZerotouchError as exc:
            if self.state in _LENIENT_STATES:
                self.warnings.append(exc.one_line())
                return self._HANDLERS[self.state](self, response, now)
            return self._refused(exc)
        self._redirected = True
        self._origin = target.origin
        self._advance(PledgeEvent.REDIRECTED)
        if self.state is PledgeState.CONNECTING:
            self._voucher_path = target.path
            return self._issue(Connect(origin=self._origin), fresh=False)
        moved = HttpRequest(
            pending.method,
            target.path,
            pending.body,
            pending.content_type,
            pending.accept,
            pending.tls,
            pending.trust,
            self._origin,
        )
        return self._issue(moved, fresh=False)

    # -- steps ----------------------------------------------------------------------------------

    def _voucher_request(self, now: datetime) -> HttpRequest:
        """The pledge voucher-request of RFC 8995 §5.2, signed with the IDevID."""
        assert self._registrar_cert is not None
        self._nonce = new_nonce(self._random(_NONCE_BYTES))
        request = VoucherRequest(
            created_on=now,
            assertion=Assertion.PROXIMITY,
            serial_number=self.config.serial,  # from the IDevID subject (§5.2)
            nonce=self._nonce,
            proximity_registrar_cert=certs.der(self._registrar_cert),
        )
        body = cms.sign(request.to_json(), signer=self.config.idevid, now=now)
        return HttpRequest(
            "POST",
            self._voucher_path,
            body,
            cms.MEDIA_TYPE_VOUCHER_CMS,
            cms.MEDIA_TYPE_VOUCHER_CMS,
            TlsMode.PROVISIONAL,
            origin=self._origin,
        )

    def _on_voucher(self, response: Response, now: datetime) -> PledgeAction:
        # The answer must come over a connection to the registrar we recorded: the
        # voucher is checked against that certificate (§5.6.2).
        if response.server_cert != self._registrar_certificate():
            return self._retry(
                UpstreamUnavailable("the registrar presented another certificate; reconnecting"),
                None,
            )
        try:
            voucher, pinned = self._validate_voucher(response, now)
        except ZerotouchError as exc:
            self.error = exc
            self._advance(PledgeEvent.VOUCHER_INVALID)
            report = status_report(
                False,
                reason=exc.one_line(),
                context={"error": exc.reason, "serial-number": self.config.serial},
            )
            return self._issue(self._status(PATH_VOUCHER_STATUS, report, TlsMode.PROVISIONAL))
        self._voucher_cms = response.body
        self._voucher = voucher
        self._pinned = pinned
        self._advance(PledgeEvent.VOUCHER_VALID)
        report = status_report(
            True,
            context={
                "serial-number": self.config.serial,
                "assertion": str(voucher.assertion),
                "pinned-domain-cert": certs.fingerprint(self._pinned),
            },
        )
        return self._issue(self._status(PATH_VOUCHER_STATUS, report, TlsMode.VERIFIED))

    def _validate_voucher(
        self, response: Response, now: datetime
    ) -> tuple[Voucher, x509.Certificate]:
        """``_check_voucher``; a date it refuses is said against the pledge's clock, the
        likely culprit on a device that lost its time (RFC 8995 §2.6.1)."""
        try:
            return self._check_voucher(response, now)
        except Expired as exc:
            raise Expired(
                f"{exc.message}; the pledge's clock reads {now.isoformat()}: if that is wrong, "
                "set the clock and bootstrap again (RFC 8995 §2.6.1)",
                path=exc.path,
            ) from exc

    def _check_voucher(self, response: Response, now: datetime) -> tuple[Voucher, x509.Certificate]:
        """RFC 8995 §5.6.1: signature to the MASA anchors at ``now``, serial, nonce,
        idevid-issuer, expiry; then pinned-domain-cert validates the registrar (§5.6.2).
        The voucher and its pinned-domain-cert, parsed once."""
        if _media(response.content_type) != cms.MEDIA_TYPE_VOUCHER_CMS:
            raise UnsupportedMediaType(
                f"the voucher came as {response.content_type or 'no media type'!r}, not "
                f"{cms.MEDIA_TYPE_VOUCHER_CMS} (RFC 8995 §5.6)"
            )
        signed = cms.verify(response.body, trust_anchors=self.config.masa_anchors, now=now)
        _refuse_device_signer(signed.signer)
        voucher = Voucher.from_json(signed.content)
        # serial, idevid-issuer and expiry first: "expired" says more than "no nonce"
        voucher.check(now=now, serial=self.config.serial)
        self._check_idevid_issuer(voucher)
        if voucher.nonce is None:
            self._check_nonceless(voucher, now)
        else:
            # the pledge sent a nonce and accepts only that nonce back (§5.6.1)
            voucher.check(now=now, nonce=self._nonce)
        pinned = voucher.pinned_domain_certificate()
        registrar_validated_by(
            pinned, self._registrar_certificate(), now=now, chain=self._registrar_chain
        )
        return voucher, pinned

    def _check_idevid_issuer(self, voucher: Voucher) -> None:
        """RFC 8366 §5.3: idevid-issuer, when present, names our IDevID's issuer (in any of
        the encodings implementations use, ``certs.idevid_issuer_matches``)."""
        if voucher.idevid_issuer is not None and not certs.idevid_issuer_matches(
            self.config.idevid.cert, voucher.idevid_issuer
        ):
            raise WrongSerial(
                f"the voucher's idevid-issuer {voucher.idevid_issuer.hex()} does not name the "
                "issuer of this device's IDevID (RFC 8366 §5.3)"
            )

    def _check_nonceless(self, voucher: Voucher, now: datetime) -> None:
        """A voucher without nonce (RFC 8995 §7.2 "nonceless"): only where configured, and
        only with an expires-on still ahead (RFC 8366 §5.3; ``check`` refused a past one)."""
        if not self.config.nonceless_allowed:
            raise WrongNonce(
                f"the voucher carries no nonce, but this pledge sent {self._nonce!r} and "
                "does not accept nonceless vouchers (allow them with --allow-nonceless; "
                "RFC 8995 §5.6.1, §7.2)"
            )
        if voucher.expires_on is None:
            raise WrongNonce(
                "the voucher carries neither a nonce nor an expires-on: a nonceless voucher "
                "is accepted only with a limited lifetime (RFC 8366 §5.3, RFC 8995 §7.2)"
            )
        if now >= voucher.expires_on:
            raise Expired(f"the nonceless voucher expired on {voucher.expires_on.isoformat()}")

    def _on_voucher_status(self, response: Response, now: datetime) -> PledgeAction:
        self._note_registrar(response)
        if self.state is PledgeState.REPORTING_VOUCHER_FAILURE:
            self._advance(PledgeEvent.STATUS_SENT)
            return self._fail()
        self._advance(PledgeEvent.STATUS_SENT)
        return self._issue(self._verified("GET", PATH_CACERTS, None, None, est.MEDIA_PKCS7))

    def _on_cacerts(self, response: Response, now: datetime) -> PledgeAction:
        """RFC 7030 §4.1.3: explicit trust anchors, checked against pinned-domain-cert."""
        assert self._pinned is not None
        try:
            if _media(response.content_type) != est.MEDIA_PKCS7:
                raise UnsupportedMediaType(
                    f"cacerts came as {response.content_type or 'no media type'!r}, not "
                    f"{est.MEDIA_PKCS7_CERTS} (RFC 7030 §4.1.3)"
                )
            # the pinned-domain-cert, read with the voucher, is often one of them
            cacerts = est.decode_certs_only(response.body, known=(self._pinned,))
            anchors = domain_anchors(cacerts, self._pinned, now=now)
        except ZerotouchError as exc:
            return self._step_failed(exc)
        self._cacerts = cacerts
        self._anchors = anchors
        self._advance(PledgeEvent.CACERTS_VALID)
        # RFC 8995 §5.9.2: the pledge MUST ask for the CSR attributes the registrar wants
        return self._issue(self._verified("GET", PATH_CSRATTRS, None, None, est.MEDIA_CSRATTRS))

    def _on_csrattrs(self, response: Response, now: datetime) -> PledgeAction:
        """RFC 7030 §4.5: honour what the registrar asks for and this pledge supports; the
        rest is ignored with a warning (§4.5.2 lets a client ignore attributes). No answer
        (404, 204, an empty or malformed body) means the defaults."""
        requirements = est.CsrRequirements()
        if response.status != 200:
            self.warnings.append(
                f"csrattrs answered {response.status}: the CSR uses the defaults (RFC 7030 §4.5.2)"
            )
        elif not response.body.strip():
            self.warnings.append("csrattrs answered an empty body: the CSR uses the defaults")
        else:
            try:
                requirements = est.parse_csrattrs(response.body)
            except ZerotouchError as exc:
                self.warnings.append(
                    f"csrattrs answer ignored, the CSR uses the defaults: {exc.one_line()}"
                )
        self.warnings += [
            f"csrattrs asks for {oid}, which this pledge does not support: ignored"
            for oid in requirements.ignored
        ]
        self.csr_requirements = requirements
        self._advance(PledgeEvent.CSRATTRS_DONE)
        try:
            self._key = self._key_factory(requirements.key_kind or self.config.key_kind)
        except ValueError as exc:
            return self._give_up(ConfigError(f"cannot generate the LDevID key: {exc}"))
        except ZerotouchError as exc:
            return self._give_up(exc)
        serial = self.config.serial
        csr = make_csr(
            self._key,
            common_name=serial,
            serial=serial,
            san=requirements.subject_alt_names,
            hash_name=requirements.hash_name,
        )
        body = est.encode_base64_body(csr.public_bytes(Encoding.DER))
        return self._issue(
            self._verified("POST", PATH_SIMPLEENROLL, body, est.MEDIA_PKCS10, est.MEDIA_PKCS7)
        )

    def _on_certificate(self, response: Response, now: datetime) -> PledgeAction:
        """RFC 7030 §4.2.3: the LDevID must be for our key and chain to the domain CA."""
        try:
            if _media(response.content_type) != est.MEDIA_PKCS7:
                raise UnsupportedMediaType(
                    f"simpleenroll answered {response.content_type or 'no media type'!r}, "
                    f"not {est.MEDIA_PKCS7_CERTS} (RFC 7030 §4.2.3)"
                )
            issued = est.decode_certs_only(response.body, known=self._cacerts)
            leaf, chain = self._check_ldevid(issued, now)
        except ZerotouchError as exc:
            return self._step_failed(exc)
        assert self._key is not None and self._voucher is not None
        assert self._voucher_cms is not None
        self._advance(PledgeEvent.CERT_VALID)
        self.enrollment = Enrollment(
            serial=self.config.serial,
            voucher_cms=self._voucher_cms,
            voucher=self._voucher,
            registrar_cert=self._registrar_certificate(),
            domain_anchors=self._anchors,
            ldevid=leaf,
            ldevid_chain=chain,
            ldevid_key=self._key,
        )
        self._pending = None
        return Install(self.enrollment)

    def _check_ldevid(
        self, issued: list[x509.Certificate], now: datetime
    ) -> tuple[x509.Certificate, tuple[x509.Certificate, ...]]:
        assert self._key is not None
        own = certs.spki(self._key.public_key())
        leaves = [c for c in issued if certs.spki(c) == own]
        if not leaves:
            raise CertificateError(
                "simpleenroll returned no certificate for the key of our CSR (RFC 7030 §4.2.3)"
            )
        leaf = leaves[0]
        path = certs.verify_chain(
            leaf,
            trust_anchors=self._anchors,
            intermediates=[*issued, *self._cacerts],
            now=now,
            purpose="any",  # the domain decides the LDevID's key purposes
        )
        # the validated path without the leaf and without the trust anchor
        return leaf, tuple(path[1:-1])

    def _on_enroll_status(self, response: Response, now: datetime) -> PledgeAction:
        self._note_registrar(response)
        self._advance(PledgeEvent.STATUS_SENT)
        if self.state is PledgeState.FAILED:
            return self._fail()
        assert self.enrollment is not None
        return Done(self.enrollment)

    _HANDLERS: Mapping[PledgeState, Callable[[Pledge, Response, datetime], PledgeAction]] = {
        PledgeState.REQUESTING_VOUCHER: _on_voucher,
        PledgeState.REPORTING_VOUCHER: _on_voucher_status,
        PledgeState.REPORTING_VOUCHER_FAILURE: _on_voucher_status,
        PledgeState.FETCHING_CACERTS: _on_cacerts,
        PledgeState.FETCHING_CSRATTRS: _on_csrattrs,
        PledgeState.ENROLLING: _on_certificate,
        PledgeState.REPORTING_ENROLLMENT: _on_enroll_status,
        PledgeState.REPORTING_ENROLLMENT_FAILURE: _on_enroll_status,
    }

    # -- machinery ----------------------------------------------------------------------------

    def _registrar_certificate(self) -> x509.Certificate:
        if self._registrar_cert is None:
            raise ValueError("no registrar certificate recorded yet")
        return self._registrar_cert

    def _expect(self, state: PledgeState) -> None:
        if self.state is not state:
            raise ValueError(f"not expected in state {self.state}")

    def _advance(self, event: PledgeEvent) -> None:
        self.state = transition(PLEDGE_TRANSITIONS, self.state, event)
        self.history.append((event, self.state))

    def _issue(self, action: Connect | HttpRequest, *, fresh: bool = True) -> PledgeAction:
        if fresh:
            self._tries = 1
        self._pending = action
        return action

    def _status(self, path: str, report: bytes, mode: TlsMode) -> HttpRequest:
        if mode is TlsMode.VERIFIED:
            return self._verified("POST", path, report, MEDIA_JSON, None)
        return HttpRequest(
            "POST", path, report, MEDIA_JSON, None, TlsMode.PROVISIONAL, origin=self._origin
        )

    def _verified(
        self,
        method: str,
        path: str,
        body: bytes | None,
        content_type: str | None,
        accept: str | None,
    ) -> HttpRequest:
        assert self._pinned is not None
        return HttpRequest(
            method,
            path,
            body,
            content_type,
            accept,
            TlsMode.VERIFIED,
            (self._pinned,),
            self._origin,
        )

    def _note_registrar(self, response: Response) -> None:
        if response.status >= 300:
            self.last_registrar_error = _refusal(response, "status report").message

    def _retry(self, error: ZerotouchError, retry_after: float | None) -> PledgeAction:
        """Retry the pending step after a backoff, or give up once attempts run out."""
        if self._tries >= self.config.retry.attempts:
            return self._give_up(error)
        self._advance(PledgeEvent.RETRY)
        fraction = int.from_bytes(self._random(4), "big") / 2**32
        seconds = self.config.retry.delay(self._tries, fraction, retry_after)
        # after RETRY the voucher step restarts at CONNECTING (a fresh record of the registrar)
        then = (
            Connect(origin=self._origin) if self.state is PledgeState.CONNECTING else self._pending
        )
        assert then is not None
        self._pending = then
        self._tries += 1
        return Wait(seconds, error.message, then)

    def _refused(self, error: ZerotouchError) -> PledgeAction:
        self._advance(PledgeEvent.REFUSED)
        if self.state is PledgeState.FAILED:
            self.error = self.error or error
            return self._fail()
        return self._report_enroll_failure(error)

    def _step_failed(self, error: ZerotouchError) -> PledgeAction:
        """A response that fails a check in the EST steps -> enrollstatus false (§5.9.4)."""
        event = _INVALID_ANSWER.get(self.state)
        if event is None:  # a status report over a connection that stopped validating
            return self._give_up(error)
        self._advance(event)
        return self._report_enroll_failure(error)

    def _report_enroll_failure(self, error: ZerotouchError) -> PledgeAction:
        self.error = error
        report = status_report(
            False,
            reason=error.one_line(),
            context={"error": error.reason, "serial-number": self.config.serial},
        )
        return self._issue(self._status(PATH_ENROLLSTATUS, report, TlsMode.VERIFIED))

    def _give_up(self, error: ZerotouchError) -> PledgeAction:
        self._advance(PledgeEvent.GAVE_UP)
        if self.state is PledgeState.ENROLLED:  # only the success report was undeliverable
            assert self.enrollment is not None
            return Done(self.enrollment, status_error=error)
        self.error = self.error or error
        return self._fail()

    def _fail(self) -> PledgeAction:
        error = self.error or RemoteError("bootstrap failed")
        self.error = error
        return Failed(error)


# EST step -> the event of an answer that fails its checks (then enrollstatus false, §5.9.4).
_INVALID_ANSWER: Mapping[PledgeState, PledgeEvent] = {
    PledgeState.FETCHING_CACERTS: PledgeEvent.CACERTS_INVALID,
    PledgeState.FETCHING_CSRATTRS: PledgeEvent.REFUSED,
    PledgeState.ENROLLING: PledgeEvent.CERT_INVALID,
}

# States whose request is a status report: any HTTP answer completes it (§5.7, §5.9.4).
_STATUS_STATES = frozenset(
    {
        PledgeState.REPORTING_VOUCHER,
        PledgeState.REPORTING_VOUCHER_FAILURE,
        PledgeState.REPORTING_ENROLLMENT,
        PledgeState.REPORTING_ENROLLMENT_FAILURE,
    }
)
# ... and these too: CSR attributes are optional, any answer but a transient one will do.
_LENIENT_STATES = _STATUS_STATES | {PledgeState.FETCHING_CSRATTRS}


@dataclass(frozen=True)
class _Target:
    origin: str
    path: str


def _redirect_target(pending: HttpRequest, response: Response) -> _Target:
    """Where a 3xx answer sends the pending request. ``location`` is absolute (the HTTP
    client resolves a relative one against the request URL) and must be https."""
    if not response.location:
        raise RemoteError(f"{pending.path}: {response.status} redirection without a Location")
    try:
        parts = urlsplit(response.location)
        port = parts.port or 443
    except ValueError as exc:
        raise RemoteError(f"{pending.path}: unusable redirection Location: {exc}") from None
    if parts.scheme != "https" or not parts.hostname:
        raise PolicyRefused(
            f"{pending.path}: redirection to {response.location!r} refused: a pledge follows "
            "https only (RFC 8995 §5.6)"
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(f"https://{host}:{port}", path)
