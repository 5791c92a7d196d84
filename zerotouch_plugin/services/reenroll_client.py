"""EST simplereenroll from the device's side (RFC 7030 §4.2.2, RFC 8995 §5.9.3): renew the
LDevID over TLS authenticated by the current one, and check what comes back.

API (stable, used by the pledge agent)::

    async def reenroll(
        registrar_url: str,            # https://HOST[:PORT] of the registrar
        *,
        current: Identity,             # the LDevID the device holds now, with its key
        csr: x509.CertificateSigningRequest,  # signed by the key to certify (new or same)
        trust: Sequence[x509.Certificate],    # the domain CA(s) the registrar chains to
        timeout: float = 30.0,         # seconds for the whole exchange
        now: datetime | None = None,   # to check the LDevIDs at (default: the clock)
    ) -> tuple[x509.Certificate, ...]  # the new LDevID first, then what came with it

The CSR may carry a new key (what RFC 7030 §4.2.2 recommends) or the current one; it must
ask for the current LDevID's subject serialNumber. The answer is accepted only if the first
certificate is for the CSR's key, names the same device, and chains to ``trust`` now.

Errors say what to do next: ``UpstreamUnavailable`` (registrar unreachable: retry later,
``retry_after`` 0, the caller's backoff decides; 503 or 202: ``retry_after`` the seconds its
Retry-After asks, RFC 7030 §4.2.3); ``Expired`` (the LDevID expired, found before connecting, since
the registrar's TLS handshake refuses it without an answer: enroll again with the IDevID);
``CertificateError`` (the LDevID was revoked, is unknown, or the registrar's certificate does
not verify); the registrar's other refusals keep its reason (``WrongSerial``, ``InvalidInput``,
``PolicyRefused``, ...); ``UpstreamInvalid`` for an answer that fails the checks above.
Renewal needs no enrollstatus: the registrar keeps the device's state.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from zerotouch_plugin._text import is_decimal, printable
from zerotouch_plugin.artifacts import certs, est
from zerotouch_plugin.artifacts.certs import Identity
from zerotouch_plugin.errors import (
    AccessDenied,
    CertificateError,
    ConfigError,
    Conflict,
    Expired,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    PolicyRefused,
    SignatureInvalid,
    UnsupportedMediaType,
    UpstreamInvalid,
    UpstreamUnavailable,
    WrongSerial,
    ZerotouchError,
)
from zerotouch_plugin.services._http import read_at_most
from zerotouch_plugin.services._tls import client_context

__all__ = ["MAX_RESPONSE_BYTES", "PATH_SIMPLEREENROLL", "reenroll"]

log = logging.getLogger(__name__)

PATH_SIMPLEREENROLL = "/.well-known/est/simplereenroll"
# A certs-only answer with a certificate or a short chain fits well within this.
MAX_RESPONSE_BYTES = 65536
DEFAULT_RETRY_AFTER = 30

# The registrar's refusals (its reason slug, first word of the text/plain answer) as ours,
# so the caller can tell "retry" from "enroll again"; a reason not listed keeps the class of
# its status.
_STATUS_CLASSES: tuple[type[ZerotouchError], ...] = (
    InvalidInput, AccessDenied, PolicyRefused, NotFound, Conflict, PayloadTooLarge,
    UnsupportedMediaType,
)  # fmt: skip
_REASON_CLASSES: tuple[type[ZerotouchError], ...] = (
    *_STATUS_CLASSES, CertificateError, Expired, SignatureInvalid, WrongSerial,
)  # fmt: skip
_BY_STATUS: Mapping[int, type[ZerotouchError]] = {cls.http_status: cls for cls in _STATUS_CLASSES}
_BY_REASON: Mapping[str, type[ZerotouchError]] = {cls.reason: cls for cls in _REASON_CLASSES}
# TLS alerts by which a server refuses our certificate at the handshake (RFC 8446 §6.2).
_HANDSHAKE_REFUSALS: Mapping[str, type[ZerotouchError]] = {
    "CERTIFICATE_EXPIRED": Expired,
    "CERTIFICATE_REVOKED": CertificateError,
    "UNKNOWN_CA": CertificateError,
    "BAD_CERTIFICATE": CertificateError,
    "CERTIFICATE_UNKNOWN": CertificateError,
    "UNSUPPORTED_CERTIFICATE": CertificateError,
}


def _serial_of_csr(csr: x509.CertificateSigningRequest) -> list[str]:
    return [str(a.value) for a in csr.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)]


def _check_request(current: Identity, csr: x509.CertificateSigningRequest, now: datetime) -> str:
    """The device serial, once the request is one the registrar can accept. An expired
    LDevID is refused here: the registrar's TLS handshake would refuse it with no answer
    the client could read."""
    if not isinstance(current, Identity):
        raise TypeError("current must be an Identity (the LDevID and its key)")
    if not isinstance(csr, x509.CertificateSigningRequest):
        raise TypeError("csr must be an x509.CertificateSigningRequest")
    serial = certs.serial_number_of(current.cert)
    if not serial:
        raise ConfigError("the current LDevID has no subject serialNumber: it cannot renew")
    if not current.cert.not_valid_before_utc <= now <= current.cert.not_valid_after_utc:
        raise Expired(
            f"the LDevID {certs.fingerprint(current.cert)} is valid from "
            f"{current.cert.not_valid_before_utc:%Y-%m-%dT%H:%M:%SZ} to "
            f"{current.cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}, not at "
            f"{now:%Y-%m-%dT%H:%M:%SZ}: it cannot renew; enroll again with the IDevID"
        )
    if _serial_of_csr(csr) != [serial]:
        raise ConfigError(
            f"the CSR must ask for serialNumber {serial!r} of the current LDevID, not "
            f"{_serial_of_csr(csr)!r} (RFC 8995 §5.9.3)"
        )
    if not csr.is_signature_valid:
        raise ConfigError("the CSR's signature does not verify with its own key")
    return serial


def _refusal(status: int, text: str, retry_after: str | None) -> ZerotouchError:
    """The registrar's error answer as the error it stands for: 503, or 202 (accepted, the
    certificate not ready yet, RFC 7030 §4.2.3), is "come back after Retry-After"."""
    if status in (202, 503):
        value = retry_after or ""
        # past 9 digits (31 years) it is no advice
        seconds = int(value) if is_decimal(value) and len(value) <= 9 else None
        return UpstreamUnavailable(
            f"the registrar cannot answer yet ({status}): {text}",
            retry_after=seconds or DEFAULT_RETRY_AFTER,
        )
    cls = _BY_REASON.get(text.split(":", 1)[0].strip())
    if cls is None or cls.http_status != status:
        cls = _BY_STATUS.get(status, UpstreamInvalid)
    return cls(f"the registrar refused the renewal ({status}): {text}")


def _handshake_error(exc: ssl.SSLError) -> ZerotouchError:
    """A TLS failure: our LDevID refused by the registrar (alert), or the registrar's
    certificate not trusted by us; anything else is a transient failure."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return CertificateError(
            "the registrar's TLS certificate does not verify against the domain CA: "
            f"{getattr(exc, 'verify_message', None) or exc}"
        )
    text = f"{getattr(exc, 'reason', None) or ''} {exc}".upper()
    for alert, cls in _HANDSHAKE_REFUSALS.items():
        if alert in text:
            return cls(
                f"the registrar refused the LDevID at the TLS handshake "
                f"({alert.lower().replace('_', ' ')}): {exc}"
            )
    return UpstreamUnavailable(f"TLS with the registrar failed: {exc}", retry_after=0)


def _spki(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    """The ssl error under an aiohttp connection error, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        nested = getattr(seen, "certificate_error", None) or getattr(seen, "os_error", None)
        seen = nested if isinstance(nested, BaseException) else seen.__cause__
    return None


def _check_answer(
    chain: list[x509.Certificate],
    *,
    serial: str,
    csr: x509.CertificateSigningRequest,
    trust: Sequence[x509.Certificate],
    now: datetime,
) -> tuple[x509.Certificate, ...]:
    """Refuse (UpstreamInvalid) an answer that is not the LDevID asked for."""
    wanted = _spki(csr.public_key())
    # RFC 7030 §4.2.3 does not order a certs-only answer: the LDevID is the one for our key
    mine = [c for c in chain if _spki(c.public_key()) == wanted]
    if not mine:
        raise UpstreamInvalid("the renewed LDevID is not for the key of the CSR")
    leaf = mine[0]
    others = [c for c in chain if c is not leaf]
    if certs.serial_number_of(leaf) != serial:
        raise UpstreamInvalid(
            f"the renewed LDevID names serialNumber {certs.serial_number_of(leaf)!r}, "
            f"not {serial!r}"
        )
    try:
        certs.verify_chain(
            leaf, trust_anchors=trust, intermediates=others, now=now, purpose="client"
        )
    except ZerotouchError as exc:
        raise UpstreamInvalid(f"the renewed LDevID does not verify: {exc}") from exc
    return (leaf, *others)


async def reenroll(
    registrar_url: str,
    *,
    current: Identity,
    csr: x509.CertificateSigningRequest,
    trust: Sequence[x509.Certificate],
    timeout: float = 30.0,
    now: datetime | None = None,
) -> tuple[x509.Certificate, ...]:
    """Renew ``current`` by simplereenroll at ``registrar_url`` (see the module docstring)."""
    now = now or datetime.now(UTC)
    serial = _check_request(current, csr, now)
    if not registrar_url.startswith("https://"):
        raise ConfigError(f"registrar URL {registrar_url!r} must be https://HOST[:PORT]")
    if not trust:
        raise ConfigError("trust must name the domain CA the registrar chains to")
    if not timeout > 0:
        raise ConfigError("timeout must be positive")
    ctx = client_context(current, trust=list(trust))
    body = est.encode_base64_body(csr.public_bytes(Encoding.DER))
    url = registrar_url.rstrip("/") + PATH_SIMPLEREENROLL
    headers = {"Content-Type": est.MEDIA_PKCS10, "Content-Transfer-Encoding": "base64"}
    connector = aiohttp.TCPConnector(ssl=ctx, force_close=True)
    limit = aiohttp.ClientTimeout(total=timeout)
    try:
        async with (
            aiohttp.ClientSession(connector=connector, timeout=limit) as session,
            session.post(url, data=body, headers=headers, allow_redirects=False) as resp,
        ):
            data = await read_at_most(resp.content, MAX_RESPONSE_BYTES)
            status, media = resp.status, resp.headers.get("Content-Type", "")
            retry_after = resp.headers.get("Retry-After")
    except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
        cause = _ssl_cause(exc)
        if cause is not None:
            raise _handshake_error(cause) from exc
        raise UpstreamUnavailable(
            f"TLS with the registrar at {url} failed: {exc}", retry_after=0
        ) from exc
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise UpstreamUnavailable(
            f"the registrar at {url} did not answer: {exc or type(exc).__name__}", retry_after=0
        ) from exc
    if len(data) > MAX_RESPONSE_BYTES:
        raise UpstreamInvalid(f"the registrar answered more than {MAX_RESPONSE_BYTES} bytes")
    text = printable(data.decode("utf-8", "replace").strip(), limit=500)
    if status != 200:
        raise _refusal(status, text, retry_after)
    if media.split(";", 1)[0].strip().lower() != est.MEDIA_PKCS7:
        raise UpstreamInvalid(f"the registrar answered {media!r}, not {est.MEDIA_PKCS7_CERTS}")
    try:
        chain = est.decode_certs_only(data)
    except ZerotouchError as exc:
        raise UpstreamInvalid(f"the registrar's answer is no certs-only message: {exc}") from exc
    renewed = _check_answer(chain, serial=serial, csr=csr, trust=trust, now=now)
    log.info(
        "LDevID of %s renewed: %s valid until %s",
        serial,
        certs.fingerprint(renewed[0]),
        renewed[0].not_valid_after_utc.isoformat(),
    )
    return renewed
