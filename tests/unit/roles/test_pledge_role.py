"""The pledge state machine driven in memory: real certificates, real CMS, no sockets."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from tests.support.calls import recorded
from tests.support.idevid_issuer_forms import idevid_issuer_forms
from zerotouch_plugin.artifacts import certs, cms, est
from zerotouch_plugin.artifacts.certs import Identity
from zerotouch_plugin.artifacts.voucher import Assertion, Voucher, VoucherRequest
from zerotouch_plugin.errors import (
    ArtifactKindMismatch,
    CertificateError,
    ConfigError,
    Expired,
    InvalidInput,
    NotCMS,
    PolicyRefused,
    SignatureInvalid,
    StorageError,
    UnsupportedMediaType,
    UntrustedSigner,
    UpstreamUnavailable,
    WrongNonce,
    WrongSerial,
    ZerotouchError,
)
from zerotouch_plugin.roles import pledge as role
from zerotouch_plugin.roles.pledge import (
    Connect,
    Done,
    Failed,
    HttpRequest,
    Install,
    Pledge,
    PledgeConfig,
    Response,
    RetryPolicy,
    TlsMode,
    Wait,
)
from zerotouch_plugin.roles.states import PledgeState

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SERIAL = "PL-0001"


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


@dataclass
class World:
    """A manufacturer (CA, MASA signer, the pledge's IDevID) and two owners' domains."""

    @cached_property
    def vendor(self) -> Identity:
        return certs.make_ca("vendor CA", now=NOW - timedelta(days=1))

    @cached_property
    def other_vendor(self) -> Identity:
        return certs.make_ca("other vendor CA", now=NOW - timedelta(days=1))

    @cached_property
    def masa(self) -> Identity:
        return certs.issue_masa_signer(self.vendor, "MASA", now=NOW - timedelta(days=1))

    @cached_property
    def idevid(self) -> Identity:
        return certs.issue_idevid(
            self.vendor, SERIAL, masa_url="https://masa.example", now=NOW - timedelta(days=1)
        )

    @cached_property
    def domain(self) -> Identity:
        return certs.make_ca("domain CA", now=NOW - timedelta(days=1))

    @cached_property
    def registrar(self) -> Identity:
        return certs.issue_registrar(
            self.domain, "registrar", hosts=["127.0.0.1"], now=NOW - timedelta(days=1)
        )

    @cached_property
    def evil_domain(self) -> Identity:
        return certs.make_ca("evil domain CA", now=NOW - timedelta(days=1))

    @cached_property
    def evil_registrar(self) -> Identity:
        return certs.issue_registrar(
            self.evil_domain, "evil registrar", hosts=["127.0.0.1"], now=NOW - timedelta(days=1)
        )

    def config(self, **kwargs: object) -> PledgeConfig:
        return PledgeConfig(idevid=self.idevid, masa_anchors=(self.vendor.cert,), **kwargs)  # type: ignore[arg-type]

    def voucher(
        self, pvr: VoucherRequest, *, signer: Identity | None = None, **changes: object
    ) -> bytes:
        fields: dict[str, object] = {
            "created_on": NOW,
            "assertion": Assertion.LOGGED,
            "serial_number": pvr.serial_number,
            "pinned_domain_cert": der(self.domain.cert),
            "nonce": pvr.nonce,
        }
        fields.update(changes)
        voucher = Voucher(**fields)  # type: ignore[arg-type]
        return cms.sign(voucher.to_json(), signer=signer or self.masa, now=NOW)


WORLD = World()


def rng(seed: int = 7) -> random.Random:
    return random.Random(seed)


def machine(config: PledgeConfig | None = None, seed: int = 7) -> Pledge:
    return Pledge(config or WORLD.config(), random_bytes=rng(seed).randbytes)


def ok(body: bytes, content_type: str, server: Identity | None = None) -> Response:
    return Response(200, body, content_type, server_cert=(server or WORLD.registrar).cert)


def to_voucher_request(m: Pledge, registrar: Identity | None = None) -> HttpRequest:
    assert isinstance(m.start(), Connect)
    action = m.connected((registrar or WORLD.registrar).cert, now=NOW)
    assert isinstance(action, HttpRequest)
    return action


def pvr_of(action: HttpRequest) -> VoucherRequest:
    assert action.body is not None
    signed = cms.verify(action.body, trust_anchors=[WORLD.vendor.cert], now=NOW)
    return VoucherRequest.from_json(signed.content)


def status_of(action: role.PledgeAction, path: str) -> dict[str, object]:
    assert isinstance(action, HttpRequest), action
    assert action.path == path
    assert action.content_type == "application/json"
    assert action.body is not None
    document = json.loads(action.body)
    assert isinstance(document, dict)
    return document


def to_cacerts(m: Pledge) -> HttpRequest:
    pvr_request = to_voucher_request(m)
    action = m.received(ok(WORLD.voucher(pvr_of(pvr_request)), cms.MEDIA_TYPE_VOUCHER_CMS), now=NOW)
    assert status_of(action, role.PATH_VOUCHER_STATUS)["status"] is True
    action = m.received(
        Response(200, b"recorded", "text/plain", server_cert=WORLD.registrar.cert), now=NOW
    )
    assert isinstance(action, HttpRequest) and action.path == role.PATH_CACERTS
    return action


def to_csrattrs(m: Pledge) -> HttpRequest:
    to_cacerts(m)
    action = m.received(
        ok(est.encode_certs_only([WORLD.domain.cert]), est.MEDIA_PKCS7_CERTS), now=NOW
    )
    assert isinstance(action, HttpRequest) and action.path == role.PATH_CSRATTRS
    return action


def to_enroll(m: Pledge, csrattrs: Response | None = None) -> HttpRequest:
    to_csrattrs(m)
    answer = csrattrs or Response(404, b"", "text/plain", server_cert=WORLD.registrar.cert)
    action = m.received(answer, now=NOW)
    assert isinstance(action, HttpRequest) and action.path == role.PATH_SIMPLEENROLL
    return action


def issue(action: HttpRequest, ca: Identity | None = None) -> x509.Certificate:
    assert action.body is not None
    csr = est.parse_csr(action.body)
    return certs.issue_from_csr(
        ca or WORLD.domain,
        csr,
        subject=x509.Name.from_rfc4514_string(f"CN={SERIAL}"),
        san=[],
        now=NOW,
    )


# ---------------------------------------------------------------------------------------------
# the whole exchange


def test_full_bootstrap_produces_an_enrollment() -> None:
    m = machine()
    assert isinstance(m.start(), Connect)
    assert m.state is PledgeState.CONNECTING
    pvr_request = m.connected(WORLD.registrar.cert, now=NOW)
    assert isinstance(pvr_request, HttpRequest)
    # RFC 8995 §5.2: the PVR over provisional TLS, voucher-cms both ways
    assert pvr_request.tls is TlsMode.PROVISIONAL
    assert pvr_request.path == "/.well-known/brski/requestvoucher"
    assert pvr_request.content_type == pvr_request.accept == "application/voucher-cms+json"
    signed = cms.verify(pvr_request.body or b"", trust_anchors=[WORLD.vendor.cert], now=NOW)
    assert der(signed.signer) == der(WORLD.idevid.cert)
    pvr = VoucherRequest.from_json(signed.content)
    assert pvr.serial_number == SERIAL
    assert pvr.assertion is Assertion.PROXIMITY
    assert pvr.created_on == NOW
    assert pvr.proximity_registrar_cert == der(WORLD.registrar.cert)
    assert pvr.nonce is not None and len(pvr.nonce) >= 12

    voucher_cms = WORLD.voucher(pvr)
    action = m.received(ok(voucher_cms, cms.MEDIA_TYPE_VOUCHER_CMS), now=NOW)
    report = status_of(action, role.PATH_VOUCHER_STATUS)
    assert report["version"] == 1 and report["status"] is True
    assert isinstance(action, HttpRequest)
    # from here on the registrar must validate against pinned-domain-cert (§5.6.2)
    assert action.tls is TlsMode.VERIFIED and action.trust == (WORLD.domain.cert,)

    action = m.received(Response(200, b"", "text/plain", server_cert=WORLD.registrar.cert), now=NOW)
    assert isinstance(action, HttpRequest)
    assert (action.method, action.path, action.tls) == ("GET", role.PATH_CACERTS, TlsMode.VERIFIED)

    action = m.received(
        ok(est.encode_certs_only([WORLD.domain.cert]), est.MEDIA_PKCS7_CERTS), now=NOW
    )
    # RFC 8995 §5.9.2: the pledge asks for the CSR attributes, over verified TLS
    assert isinstance(action, HttpRequest)
    assert (action.method, action.path, action.tls) == ("GET", role.PATH_CSRATTRS, TlsMode.VERIFIED)
    assert action.accept == "application/csrattrs"
    action = m.received(ok(est.encode_csrattrs([]), est.MEDIA_CSRATTRS), now=NOW)
    assert isinstance(action, HttpRequest)
    assert (action.method, action.path) == ("POST", role.PATH_SIMPLEENROLL)
    assert action.content_type == "application/pkcs10"
    assert action.body is not None
    csr = est.parse_csr(action.body)
    # RFC 8995 §5.9.1: the CSR names the device by its serial number
    for oid in (NameOID.SERIAL_NUMBER, NameOID.COMMON_NAME):
        assert [a.value for a in csr.subject.get_attributes_for_oid(oid)] == [SERIAL]
    ldevid = issue(action)

    action = m.received(ok(est.encode_certs_only([ldevid]), est.MEDIA_PKCS7_CERTS), now=NOW)
    # RFC 8995 §5.9.4: the identity is installed before enrollstatus reports it
    assert isinstance(action, Install) and m.state is PledgeState.INSTALLING
    assert der(action.enrollment.ldevid) == der(ldevid)
    action = m.installed({"netconf-tls-port": 6513, "restconf-port": 8443})
    report = status_of(action, role.PATH_ENROLLSTATUS)
    assert report["status"] is True
    assert report["reason-context"] == {
        "serial-number": SERIAL,
        "ldevid": certs.fingerprint(ldevid),
        "zerotouch-management": {"netconf-tls-port": 6513, "restconf-port": 8443},
    }
    done = m.received(Response(200, b"", "text/plain", server_cert=WORLD.registrar.cert), now=NOW)
    assert isinstance(done, Done)
    assert m.state is PledgeState.ENROLLED
    result = done.enrollment
    assert result.serial == SERIAL
    assert result.voucher_cms == voucher_cms
    assert result.domain_anchors == (WORLD.domain.cert,)
    assert der(result.ldevid) == der(ldevid)
    assert result.ldevid_chain == ()
    assert result.identity.cert == ldevid  # the key matches the certificate
    assert der(result.registrar_cert) == der(WORLD.registrar.cert)


def test_pinned_domain_cert_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The voucher's pinned-domain-cert is parsed once, for the registrar check and the
    verified steps alike (it was parsed twice)."""
    parsed = []
    original = Voucher.pinned_domain_certificate

    def counting(voucher: Voucher) -> x509.Certificate:
        parsed.append(voucher)
        return original(voucher)

    monkeypatch.setattr(Voucher, "pinned_domain_certificate", counting)
    to_cacerts(machine())
    assert len(parsed) == 1


def test_the_pinned_domain_cert_in_cacerts_is_not_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """cacerts carries the pinned-domain-cert that came with the voucher: the pledge takes the
    certificate it read then; any other certificate of the answer is read as ever."""
    m = machine()
    to_cacerts(m)
    read = recorded(monkeypatch, certs, "read_eagerly")
    body = est.encode_certs_only([WORLD.domain.cert, WORLD.other_vendor.cert])
    action = m.received(ok(body, est.MEDIA_PKCS7_CERTS), now=NOW)
    assert isinstance(action, HttpRequest) and action.path == role.PATH_CSRATTRS
    assert read == [WORLD.other_vendor.cert]


def test_the_serial_number_is_read_from_the_idevid_once(monkeypatch: pytest.MonkeyPatch) -> None:
    read = recorded(monkeypatch, certs, "serial_number_of")
    config = WORLD.config()
    to_enroll(machine(config))
    assert config.serial == SERIAL
    assert read.count(WORLD.idevid.cert) == 1  # (the voucher signer's is looked at too)


def test_csr_key_is_fresh_for_every_pledge_run() -> None:
    first = est.parse_csr(to_enroll(machine(seed=1)).body or b"")
    second = est.parse_csr(to_enroll(machine(seed=1)).body or b"")
    assert first.public_key() != second.public_key()
    assert first.public_key() != WORLD.idevid.cert.public_key()


def test_nonce_comes_from_the_given_random_bytes() -> None:
    a = pvr_of(to_voucher_request(machine(seed=3)))
    b = pvr_of(to_voucher_request(machine(seed=3)))
    c = pvr_of(to_voucher_request(machine(seed=4)))
    assert a.nonce == b.nonce != c.nonce


def test_pinned_registrar_certificate_itself_is_accepted() -> None:
    """pinned-domain-cert may be the registrar's own certificate (RFC 8995 §5.6.2); the CA
    from cacerts is then taken because the pinned certificate chains to it."""
    m = machine()
    pvr = pvr_of(to_voucher_request(m))
    voucher = WORLD.voucher(pvr, pinned_domain_cert=der(WORLD.registrar.cert))
    action = m.received(ok(voucher, cms.MEDIA_TYPE_VOUCHER_CMS), now=NOW)
    assert isinstance(action, HttpRequest) and action.trust == (WORLD.registrar.cert,)
    m.received(Response(200, b"", "", server_cert=WORLD.registrar.cert), now=NOW)
    action = m.received(
        ok(est.encode_certs_only([WORLD.domain.cert]), est.MEDIA_PKCS7_CERTS), now=NOW
    )
    assert isinstance(action, HttpRequest) and action.path == role.PATH_CSRATTRS


# ---------------------------------------------------------------------------------------------
# voucher validation failures (RFC 8995 §5.6.1): each is reported with voucher_status false


def _voucher_failure(body: bytes, error: type[ZerotouchError], **response: object) -> str:
    m = machine()
    to_voucher_request(m)
    fields: dict[str, object] = {
        "status": 200,
        "body": body,
        "content_type": cms.MEDIA_TYPE_VOUCHER_CMS,
        "server_cert": WORLD.registrar.cert,
    }
    fields.update(response)
    action = m.received(Response(**fields), now=NOW)  # type: ignore[arg-type]
    assert m.state is PledgeState.REPORTING_VOUCHER_FAILURE
    report = status_of(action, role.PATH_VOUCHER_STATUS)
    assert isinstance(action, HttpRequest)
    assert action.tls is TlsMode.PROVISIONAL  # nothing validates the registrar now
    assert report["version"] == 1 and report["status"] is False
    assert isinstance(report["reason"], str) and report["reason"]
    context = report["reason-context"]
    assert isinstance(context, dict) and context["serial-number"] == SERIAL
    # whatever the registrar answers to the report, the pledge fails with the real reason
    final = m.received(Response(404, b"not found", "text/plain"), now=NOW)
    assert isinstance(final, Failed)
    assert isinstance(final.error, error), final.error
    assert m.state is PledgeState.FAILED
    assert m.voucher is None
    return str(report["reason"])


def test_voucher_from_an_untrusted_masa_is_refused() -> None:
    rogue = certs.issue_masa_signer(WORLD.other_vendor, "rogue MASA", now=NOW - timedelta(days=1))
    pvr = pvr_of(to_voucher_request(machine()))
    reason = _voucher_failure(WORLD.voucher(pvr, signer=rogue), UntrustedSigner)
    assert "untrusted-signer" in reason


@pytest.mark.parametrize("signer", ["own", "other"])
def test_voucher_signed_by_a_device_of_the_same_vendor_is_refused(signer: str) -> None:
    # the vendor CA of masa-ca.pem issues the IDevIDs too: a device key is not a MASA
    other = certs.issue_idevid(
        WORLD.vendor, "PL-0002", masa_url="https://masa.example", now=NOW - timedelta(days=1)
    )
    pvr = pvr_of(to_voucher_request(machine()))
    voucher = WORLD.voucher(pvr, signer=WORLD.idevid if signer == "own" else other)
    assert "IDevID profile" in _voucher_failure(voucher, UntrustedSigner)


def test_voucher_for_another_serial_is_refused() -> None:
    pvr = pvr_of(to_voucher_request(machine()))
    reason = _voucher_failure(WORLD.voucher(pvr, serial_number="OTHER-1"), WrongSerial)
    assert "OTHER-1" in reason


def test_voucher_with_another_nonce_is_refused() -> None:
    pvr = pvr_of(to_voucher_request(machine(seed=99)))  # another run's nonce
    _voucher_failure(WORLD.voucher(pvr), WrongNonce)


def test_nonceless_voucher_is_refused_by_an_online_pledge() -> None:
    pvr = pvr_of(to_voucher_request(machine()))
    _voucher_failure(WORLD.voucher(pvr, nonce=None, expires_on=NOW + timedelta(days=1)), WrongNonce)


def test_expired_voucher_is_refused() -> None:
    pvr = pvr_of(to_voucher_request(machine()))
    voucher = WORLD.voucher(pvr, nonce=None, expires_on=NOW - timedelta(minutes=1))
    _voucher_failure(voucher, Expired)


def test_voucher_signed_by_an_expired_masa_certificate_is_refused() -> None:
    old = certs.issue_masa_signer(WORLD.vendor, "old MASA", now=NOW - timedelta(days=10), days=2)
    pvr = pvr_of(to_voucher_request(machine()))
    _voucher_failure(WORLD.voucher(pvr, signer=old), Expired)


def test_voucher_for_another_idevid_issuer_is_refused() -> None:
    pvr = pvr_of(to_voucher_request(machine()))
    _voucher_failure(WORLD.voucher(pvr, idevid_issuer=b"\x30\x03\x80\x01\x00"), WrongSerial)


def test_tampered_voucher_is_refused() -> None:
    pvr = pvr_of(to_voucher_request(machine()))
    body = WORLD.voucher(pvr)
    tampered = body.replace(b'"logged"', b'"verify"')
    assert tampered != body
    _voucher_failure(tampered, SignatureInvalid)


def test_garbage_instead_of_a_voucher_is_refused() -> None:
    _voucher_failure(b"<html>hello</html>", NotCMS)


def test_voucher_request_instead_of_a_voucher_is_refused() -> None:
    pvr = pvr_of(to_voucher_request(machine()))
    body = cms.sign(pvr.to_json(), signer=WORLD.masa, now=NOW)
    _voucher_failure(body, ArtifactKindMismatch)


def test_voucher_with_the_wrong_media_type_is_refused() -> None:
    pvr = pvr_of(to_voucher_request(machine()))
    _voucher_failure(WORLD.voucher(pvr), UnsupportedMediaType, content_type="application/json")


def test_man_in_the_middle_registrar_is_refused() -> None:
    """A registrar of another domain relays a genuine voucher pinning the real domain: the
    pinned-domain-cert does not validate the registrar the pledge talked to (§5.6.2)."""
    m = machine()
    pvr = pvr_of(to_voucher_request(m, WORLD.evil_registrar))
    assert pvr.proximity_registrar_cert == der(WORLD.evil_registrar.cert)
    action = m.received(
        ok(WORLD.voucher(pvr), cms.MEDIA_TYPE_VOUCHER_CMS, WORLD.evil_registrar), now=NOW
    )
    report = status_of(action, role.PATH_VOUCHER_STATUS)
    assert report["status"] is False
    assert "man-in-the-middle" in str(report["reason"])
    final = m.received(Response(200, b"", "", server_cert=WORLD.evil_registrar.cert), now=NOW)
    assert isinstance(final, Failed) and isinstance(final.error, UntrustedSigner)


def test_voucher_over_a_connection_to_another_registrar_reconnects() -> None:
    m = machine()
    first = pvr_of(to_voucher_request(m))
    wait = m.received(
        ok(WORLD.voucher(first), cms.MEDIA_TYPE_VOUCHER_CMS, WORLD.evil_registrar), now=NOW
    )
    assert isinstance(wait, Wait) and isinstance(wait.then, Connect)
    assert m.state is PledgeState.CONNECTING
    again = m.connected(WORLD.registrar.cert, now=NOW)
    assert isinstance(again, HttpRequest)
    assert pvr_of(again).nonce != first.nonce  # a new request, never a replay


# ---------------------------------------------------------------------------------------------
# registrar refusals, retries and backoff


def test_registrar_refusal_fails_without_a_voucher_status() -> None:
    m = machine()
    to_voucher_request(m)
    final = m.received(
        Response(403, b"policy-refused: device PL-0001 is not on the allow list", "text/plain"),
        now=NOW,
    )
    assert isinstance(final, Failed) and isinstance(final.error, PolicyRefused)
    assert "allow list" in str(final.error)
    assert m.state is PledgeState.FAILED


def test_503_with_retry_after_waits_then_sends_a_fresh_request() -> None:
    m = machine(WORLD.config(retry=RetryPolicy(attempts=3, base_delay=1, max_delay=60)))
    first = pvr_of(to_voucher_request(m))
    wait = m.received(Response(503, b"MASA down", "text/plain", retry_after=7), now=NOW)
    assert isinstance(wait, Wait)
    assert 7 <= wait.seconds <= 7 + 0.5  # Retry-After honoured, plus a little jitter
    assert isinstance(wait.then, Connect)
    second = m.connected(WORLD.registrar.cert, now=NOW + timedelta(seconds=8))
    assert isinstance(second, HttpRequest)
    pvr = pvr_of(second)
    assert pvr.nonce != first.nonce and pvr.created_on == NOW + timedelta(seconds=8)
    action = m.received(ok(WORLD.voucher(pvr), cms.MEDIA_TYPE_VOUCHER_CMS), now=NOW)
    assert status_of(action, role.PATH_VOUCHER_STATUS)["status"] is True


def test_retries_run_out() -> None:
    m = machine(WORLD.config(retry=RetryPolicy(attempts=3, base_delay=1, max_delay=60)))
    assert isinstance(m.start(), Connect)
    delays = []
    for _ in range(2):
        wait = m.unreachable("connection refused", now=NOW)
        assert isinstance(wait, Wait) and isinstance(wait.then, Connect)
        delays.append(wait.seconds)
    final = m.unreachable("connection refused", now=NOW)
    assert isinstance(final, Failed) and isinstance(final.error, UpstreamUnavailable)
    assert 0.5 <= delays[0] <= 1 and 1 <= delays[1] <= 2  # exponential, half jittered


def test_tls_refusal_is_final() -> None:
    m = machine()
    m.start()
    final = m.unreachable("TLSV1_ALERT_UNKNOWN_CA", now=NOW, refused=True)
    assert isinstance(final, Failed) and "UNKNOWN_CA" in str(final.error)


def test_enroll_202_is_retried_with_the_same_request() -> None:
    m = machine()
    request = to_enroll(m)
    wait = m.received(
        Response(202, b"", "", retry_after=2, server_cert=WORLD.registrar.cert), now=NOW
    )
    assert isinstance(wait, Wait) and wait.then == request
    assert m.state is PledgeState.ENROLLING


def test_status_report_answers_are_ignored_but_503_is_retried() -> None:
    m = machine()
    pvr = pvr_of(to_voucher_request(m))
    m.received(ok(WORLD.voucher(pvr), cms.MEDIA_TYPE_VOUCHER_CMS), now=NOW)
    wait = m.received(Response(503, b"", "", server_cert=WORLD.registrar.cert), now=NOW)
    assert isinstance(wait, Wait) and m.state is PledgeState.REPORTING_VOUCHER
    action = m.received(Response(409, b"conflict", "", server_cert=WORLD.registrar.cert), now=NOW)
    assert isinstance(action, HttpRequest) and action.path == role.PATH_CACERTS
    assert m.last_registrar_error is not None and "409" in m.last_registrar_error


@pytest.mark.parametrize(
    ("retry", "fraction", "retry_after", "expected"),
    [
        (1, 0.0, None, 0.5),
        (1, 0.999, None, 0.9995),
        (3, 0.0, None, 2.0),
        (10, 0.0, None, 15.0),  # capped at max_delay 30, half of it fixed
        (1, 0.0, 12, 12.0),
        (1, 0.5, 12, 12.25),
        (1, 0.0, 100, 30.0),  # Retry-After capped at max_delay
    ],
)
def test_backoff_policy(
    retry: int, fraction: float, retry_after: float | None, expected: float
) -> None:
    assert RetryPolicy().delay(retry, fraction, retry_after) == pytest.approx(expected)


def test_retry_after_is_capped_at_60_seconds() -> None:
    """RFC 8995 §5.6: a registrar cannot hold a pledge longer, whatever max_delay allows."""
    policy = RetryPolicy(base_delay=1, max_delay=600, jitter=0)
    assert policy.delay(1, 0.0, 3600) == 60.0
    assert policy.delay(1, 0.0, 45) == 45.0


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"attempts": 0}, ValueError),
        ({"attempts": 1.5}, TypeError),
        ({"base_delay": 10, "max_delay": 5}, ValueError),
        ({"jitter": 2}, ValueError),
        ({"multiplier": 0.5}, ValueError),
        ({"base_delay": float("nan")}, ValueError),
        ({"max_delay": float("inf")}, ValueError),
        ({"multiplier": float("nan")}, ValueError),
        ({"jitter": True}, TypeError),
    ],
)
def test_retry_policy_is_validated(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        PledgeConfig(idevid=WORLD.idevid, masa_anchors=())
    with pytest.raises(TypeError):
        PledgeConfig(idevid=WORLD.idevid.cert, masa_anchors=(WORLD.vendor.cert,))  # type: ignore[arg-type]
    no_serial = certs.issue_client(WORLD.vendor, "no serial", now=NOW)
    with pytest.raises(ConfigError):
        PledgeConfig(idevid=no_serial, masa_anchors=(WORLD.vendor.cert,))


def test_out_of_order_input_is_refused() -> None:
    m = machine()
    with pytest.raises(ValueError):
        m.connected(WORLD.registrar.cert, now=NOW)
    with pytest.raises(ValueError):
        m.received(Response(200), now=NOW)


# ---------------------------------------------------------------------------------------------
# EST failures: each is reported with enrollstatus false (RFC 8995 §5.9.4)


def _enroll_failure(m: Pledge, action: role.PledgeAction, error: type[ZerotouchError]) -> None:
    assert m.state is PledgeState.REPORTING_ENROLLMENT_FAILURE
    report = status_of(action, role.PATH_ENROLLSTATUS)
    assert report["status"] is False and report["reason"]
    assert isinstance(action, HttpRequest) and action.tls is TlsMode.VERIFIED
    final = m.received(Response(200, b"", "", server_cert=WORLD.registrar.cert), now=NOW)
    assert isinstance(final, Failed) and isinstance(final.error, error), final
    assert m.enrollment is None


def test_cacerts_of_another_domain_are_refused() -> None:
    m = machine()
    to_cacerts(m)
    action = m.received(
        ok(est.encode_certs_only([WORLD.evil_domain.cert]), est.MEDIA_PKCS7_CERTS), now=NOW
    )
    _enroll_failure(m, action, UntrustedSigner)


def test_cacerts_past_the_bound_are_refused_before_any_path_search(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # CAs named like the domain CA, each a path search against all the others: 600 of them
    # held the pledge's event loop for 25 s
    decoys = [certs.make_ca("domain CA", now=NOW - timedelta(days=1)).cert for _ in range(32)]
    m = machine()
    to_cacerts(m)
    searches = recorded(monkeypatch, certs, "verify_chain")
    body = est.encode_certs_only([*decoys, WORLD.domain.cert])
    action = m.received(ok(body, est.MEDIA_PKCS7_CERTS), now=NOW)
    _enroll_failure(m, action, InvalidInput)
    assert m.error is not None and "33 certificates" in m.error.message
    assert set(searches) <= {WORLD.registrar.cert}  # only the pin check of the answer


def test_cacerts_with_a_wrong_media_type_are_refused() -> None:
    m = machine()
    to_cacerts(m)
    action = m.received(ok(est.encode_certs_only([WORLD.domain.cert]), "text/plain"), now=NOW)
    _enroll_failure(m, action, UnsupportedMediaType)


def test_ldevid_for_another_key_is_refused() -> None:
    m = machine()
    to_enroll(m)
    stranger = certs.issue_client(WORLD.domain, SERIAL, now=NOW).cert
    action = m.received(ok(est.encode_certs_only([stranger]), est.MEDIA_PKCS7_CERTS), now=NOW)
    _enroll_failure(m, action, CertificateError)


def test_ldevid_from_another_ca_is_refused() -> None:
    m = machine()
    request = to_enroll(m)
    forged = issue(request, WORLD.evil_domain)
    action = m.received(ok(est.encode_certs_only([forged]), est.MEDIA_PKCS7_CERTS), now=NOW)
    _enroll_failure(m, action, UntrustedSigner)


def test_enroll_refusal_is_reported() -> None:
    m = machine()
    to_enroll(m)
    action = m.received(
        Response(
            403, b"policy-refused: audit alert", "text/plain", server_cert=WORLD.registrar.cert
        ),
        now=NOW,
    )
    _enroll_failure(m, action, PolicyRefused)


def test_verified_step_answered_by_another_server_is_refused() -> None:
    m = machine()
    to_cacerts(m)
    action = m.received(
        ok(est.encode_certs_only([WORLD.domain.cert]), est.MEDIA_PKCS7_CERTS, WORLD.evil_registrar),
        now=NOW,
    )
    _enroll_failure(m, action, UntrustedSigner)


def test_registrar_validated_by_and_domain_anchors() -> None:
    role.registrar_validated_by(WORLD.domain.cert, WORLD.registrar.cert, now=NOW)
    role.registrar_validated_by(WORLD.registrar.cert, WORLD.registrar.cert, now=NOW)
    with pytest.raises(UntrustedSigner):
        role.registrar_validated_by(WORLD.domain.cert, WORLD.evil_registrar.cert, now=NOW)
    pool = [WORLD.domain.cert, WORLD.evil_domain.cert, WORLD.registrar.cert]
    assert role.domain_anchors(pool, WORLD.domain.cert, now=NOW) == (WORLD.domain.cert,)
    assert role.domain_anchors(pool, WORLD.registrar.cert, now=NOW) == (WORLD.domain.cert,)
    with pytest.raises(UntrustedSigner):
        role.domain_anchors([WORLD.evil_domain.cert], WORLD.domain.cert, now=NOW)


def test_status_report_shape() -> None:
    assert json.loads(role.status_report(True)) == {"version": 1, "status": True}
    assert json.loads(role.status_report(False, reason="bad", context={"a": 1})) == {
        "version": 1,
        "status": False,
        "reason": "bad",
        "reason-context": {"a": 1},
    }


def test_history_records_every_transition() -> None:
    m = machine()
    to_enroll(m)
    assert [state for _, state in m.history] == [
        PledgeState.CONNECTING,
        PledgeState.REQUESTING_VOUCHER,
        PledgeState.REPORTING_VOUCHER,
        PledgeState.FETCHING_CACERTS,
        PledgeState.FETCHING_CSRATTRS,
        PledgeState.ENROLLING,
    ]


def test_failed_report_over_an_unvalidated_connection_keeps_the_first_reason() -> None:
    m = machine()
    to_enroll(m)
    stranger = certs.issue_client(WORLD.domain, SERIAL, now=NOW).cert
    m.received(ok(est.encode_certs_only([stranger]), est.MEDIA_PKCS7_CERTS), now=NOW)
    assert m.state is PledgeState.REPORTING_ENROLLMENT_FAILURE
    final = m.received(Response(200, server_cert=WORLD.evil_registrar.cert), now=NOW)
    assert isinstance(final, Failed) and isinstance(final.error, CertificateError)
    assert m.state is PledgeState.FAILED


# ---------------------------------------------------------------------------------------------
# the install step (RFC 8995 §5.9.4: enrollstatus reports the installed result)


def to_install(m: Pledge) -> Install:
    request = to_enroll(m)
    action = m.received(ok(est.encode_certs_only([issue(request)]), est.MEDIA_PKCS7_CERTS), now=NOW)
    assert isinstance(action, Install)
    return action


def test_enrollstatus_without_listeners_has_no_management_context() -> None:
    m = machine()
    to_install(m)
    report = status_of(m.installed(), role.PATH_ENROLLSTATUS)
    assert report["status"] is True
    assert isinstance(report["reason-context"], dict)
    assert "zerotouch-management" not in report["reason-context"]


def test_install_failure_is_reported_with_enrollstatus_false() -> None:
    m = machine()
    to_install(m)
    action = m.install_failed(StorageError("disk full"))
    _enroll_failure(m, action, StorageError)
    report = status_of(action, role.PATH_ENROLLSTATUS)
    assert "disk full" in str(report["reason"])


def test_install_answers_only_an_install() -> None:
    m = machine()
    to_enroll(m)
    with pytest.raises(ValueError):
        m.installed()
    m2 = machine()
    to_install(m2)
    with pytest.raises(ValueError):
        m2.received(Response(200, server_cert=WORLD.registrar.cert), now=NOW)
    with pytest.raises(TypeError):
        m2.install_failed("disk full")  # type: ignore[arg-type]


def test_undeliverable_success_report_keeps_the_installed_identity() -> None:
    m = machine(config=WORLD.config(retry=RetryPolicy(attempts=2)))
    install = to_install(m)
    m.installed()
    assert isinstance(m.unreachable("connection refused", now=NOW), Wait)
    done = m.unreachable("connection refused", now=NOW)
    assert isinstance(done, Done) and done.enrollment == install.enrollment
    assert isinstance(done.status_error, UpstreamUnavailable)
    assert m.state is PledgeState.ENROLLED


# ---------------------------------------------------------------------------------------------
# interoperability with other vendors' registrars and MASAs


@pytest.mark.parametrize("form", ["keyIdentifier", "keyIdentifier-octet-string", "aki-sequence",
                                  "extn-value-octet-string"])  # fmt: skip
def test_voucher_with_each_idevid_issuer_form_is_accepted(form: str) -> None:
    """RFC 8366 §5.3 says keyIdentifier; other readings are in the field."""
    m = machine()
    pvr = pvr_of(to_voucher_request(m))
    value = idevid_issuer_forms(WORLD.idevid.cert)[form]
    action = m.received(
        ok(WORLD.voucher(pvr, idevid_issuer=value), cms.MEDIA_TYPE_VOUCHER_CMS), now=NOW
    )
    assert status_of(action, role.PATH_VOUCHER_STATUS)["status"] is True
    assert m.voucher is not None and m.voucher.idevid_issuer == value


def test_voucher_with_another_vendors_idevid_issuer_is_refused() -> None:
    pvr = pvr_of(to_voucher_request(machine()))
    other = certs.issue_idevid(WORLD.other_vendor, SERIAL, masa_url="https://m", now=NOW)
    value = idevid_issuer_forms(other.cert)["keyIdentifier"]
    reason = _voucher_failure(WORLD.voucher(pvr, idevid_issuer=value), WrongSerial)
    assert "does not name the issuer of this device's IDevID" in reason


def test_202_resends_the_same_signed_request() -> None:
    """RFC 8995 §5.6: after a 202 the same voucher-request, byte for byte, same nonce."""
    m = machine(WORLD.config(retry=RetryPolicy(attempts=5, base_delay=1, max_delay=60)))
    first = to_voucher_request(m)
    bodies = [first.body]
    for _ in range(2):
        wait = m.received(
            Response(202, b"pending approval", "text/plain", retry_after=3,
                     server_cert=WORLD.registrar.cert), now=NOW)  # fmt: skip
        assert isinstance(wait, Wait) and 3 <= wait.seconds <= 3.5
        assert isinstance(wait.then, Connect) and m.state is PledgeState.CONNECTING
        again = m.connected(WORLD.registrar.cert, now=NOW + timedelta(minutes=1))
        assert isinstance(again, HttpRequest)
        bodies.append(again.body)
    assert bodies[0] == bodies[1] == bodies[2]
    action = m.received(ok(WORLD.voucher(pvr_of(first)), cms.MEDIA_TYPE_VOUCHER_CMS), now=NOW)
    assert status_of(action, role.PATH_VOUCHER_STATUS)["status"] is True


def test_202_then_another_registrar_signs_a_new_request() -> None:
    """The kept request names the registrar it was for: another registrar gets a new one."""
    m = machine()
    first = pvr_of(to_voucher_request(m))
    m.received(Response(202, b"", "", server_cert=WORLD.registrar.cert), now=NOW)
    again = m.connected(WORLD.evil_registrar.cert, now=NOW)
    assert isinstance(again, HttpRequest)
    second = pvr_of(again)
    assert second.nonce != first.nonce
    assert second.proximity_registrar_cert == der(WORLD.evil_registrar.cert)


def test_202_then_503_signs_a_new_request() -> None:
    """Only a 202 keeps the request; after an outage the pledge starts a fresh one (§5.2)."""
    m = machine()
    first = pvr_of(to_voucher_request(m))
    m.received(Response(202, b"", "", server_cert=WORLD.registrar.cert), now=NOW)
    kept = m.connected(WORLD.registrar.cert, now=NOW)
    assert isinstance(kept, HttpRequest) and pvr_of(kept).nonce == first.nonce
    m.received(Response(503, b"", "", server_cert=WORLD.registrar.cert), now=NOW)
    fresh = m.connected(WORLD.registrar.cert, now=NOW)
    assert isinstance(fresh, HttpRequest) and pvr_of(fresh).nonce != first.nonce


def _cmc_ra_registrar(eku: x509.ObjectIdentifier) -> Identity:
    key = certs.generate_key("p256")
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cmcRA registrar")]))
        .issuer_name(WORLD.domain.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .sign(WORLD.domain.key, certs.signature_hash(WORLD.domain.key))  # type: ignore[arg-type]
    )
    return Identity(cert, key)


@pytest.mark.parametrize(
    ("eku", "accepted"),
    [
        (certs.OID_KP_CMC_RA, True),  # RFC 8995 Appendix C
        (x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, True),
        (x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH, False),
    ],
)
def test_registrar_eku_rule(eku: x509.ObjectIdentifier, accepted: bool) -> None:
    """RFC 8995 §5.6.2: the pin must vouch for the registrar; its EKU, when present, must
    allow a TLS server or an EST RA (cmcRA only is what Appendix C uses)."""
    registrar = _cmc_ra_registrar(eku)
    m = machine()
    pvr = pvr_of(to_voucher_request(m, registrar))
    action = m.received(ok(WORLD.voucher(pvr), cms.MEDIA_TYPE_VOUCHER_CMS, registrar), now=NOW)
    report = status_of(action, role.PATH_VOUCHER_STATUS)
    assert report["status"] is accepted, report
    if not accepted:
        assert "extendedKeyUsage" in str(report["reason"])
        return
    action = m.received(Response(200, b"", "", server_cert=registrar.cert), now=NOW)
    assert isinstance(action, HttpRequest) and action.path == role.PATH_CACERTS


def test_verified_connection_refused_in_the_handshake_reports_enroll_failure() -> None:
    m = machine()
    to_cacerts(m)
    error = UntrustedSigner("the pin does not validate the server")
    action = m.registrar_untrusted(error)
    assert m.state is PledgeState.REPORTING_ENROLLMENT_FAILURE
    assert status_of(action, role.PATH_ENROLLSTATUS)["status"] is False
    with pytest.raises(TypeError):
        m.registrar_untrusted("no")  # type: ignore[arg-type]


def test_registrar_chain_from_the_handshake_reaches_the_pin() -> None:
    """The pin is the domain root; the registrar's issuer is an intermediate it sent."""
    sub = certs.issue_intermediate_ca(WORLD.domain, "sub CA", now=NOW - timedelta(days=1))
    registrar = certs.issue_registrar(
        sub, "sub registrar", hosts=["127.0.0.1"], now=NOW - timedelta(days=1)
    )
    m = machine()
    assert isinstance(m.start(), Connect)
    pvr = pvr_of(m.connected(registrar.cert, now=NOW, chain=(sub.cert,)))  # type: ignore[arg-type]
    action = m.received(ok(WORLD.voucher(pvr), cms.MEDIA_TYPE_VOUCHER_CMS, registrar), now=NOW)
    assert status_of(action, role.PATH_VOUCHER_STATUS)["status"] is True
    # without the intermediate the verified answer does not validate
    bare = m.received(Response(200, b"", "", server_cert=registrar.cert), now=NOW)
    assert isinstance(bare, Failed) and isinstance(bare.error, UntrustedSigner)


# -- CSR attributes (RFC 8995 §5.9.2, RFC 7030 §4.5) --------------------------------------------


def _csrattrs(der: bytes) -> Response:
    return ok(est.encode_base64_body(der), est.MEDIA_CSRATTRS)


def _csr_after(answer: Response) -> tuple[x509.CertificateSigningRequest, Pledge]:
    m = machine()
    action = to_enroll(m, answer)
    return est.parse_csr(action.body or b""), m


@pytest.mark.parametrize(
    ("answer", "warning"),
    [
        (Response(404, b"not found", "text/plain"), "csrattrs answered 404"),
        (Response(204, b"", ""), "csrattrs answered 204"),
        (Response(200, b"", est.MEDIA_CSRATTRS), "empty body"),
        (Response(200, b"<html>no</html>", "text/html"), "answer ignored"),
        (
            Response(200, est.encode_base64_body(b"\x30\x03\x02\x01\x05"), est.MEDIA_CSRATTRS),
            "answer ignored",
        ),
    ],
)
def test_csrattrs_absent_or_broken_means_defaults(answer: Response, warning: str) -> None:
    answer = Response(
        answer.status, answer.body, answer.content_type, server_cert=WORLD.registrar.cert
    )
    csr, m = _csr_after(answer)
    assert isinstance(csr.public_key(), ec.EllipticCurvePublicKey)
    assert csr.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    assert (
        csr.signature_hash_algorithm is not None and csr.signature_hash_algorithm.name == "sha256"
    )
    assert any(warning in text for text in m.warnings), m.warnings


def test_csrattrs_key_curve_signature_and_san_are_honoured() -> None:
    # RFC 7030 §4.5.2 example shape: ecPublicKey with a curve, ecdsa-with-SHA384,
    # serialNumber, extensionRequest with a subjectAltName; plus challengePassword (ignored)
    der = _cms_csrattrs(
        ("oid", "1.2.840.113549.1.9.7"),
        ("attr", "1.2.840.10045.2.1", "1.3.132.0.34"),
        ("oid", "1.2.840.10045.4.3.3"),
        ("oid", "2.5.4.5"),
        ("san", ["pl-0001.devices.example"]),
    )
    csr, m = _csr_after(_csrattrs(der))
    key = csr.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp384r1"
    assert (
        csr.signature_hash_algorithm is not None and csr.signature_hash_algorithm.name == "sha384"
    )
    assert [a.value for a in csr.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)] == [SERIAL]
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["pl-0001.devices.example"]
    assert any("1.2.840.113549.1.9.7" in text for text in m.warnings), m.warnings
    assert m.csr_requirements is not None and m.csr_requirements.serial_number


@pytest.mark.parametrize(
    ("items", "key_type", "detail", "hash_name"),
    [
        ([("attr-int", "1.2.840.113549.1.1.1", 3072), ("oid", "1.2.840.113549.1.1.12")],
         rsa.RSAPublicKey, 3072, "sha384"),
        ([("oid", "1.2.840.113549.1.1.11")], rsa.RSAPublicKey, 2048, "sha256"),
        ([("oid", "1.3.101.112")], ed25519.Ed25519PublicKey, None, None),
        ([("attr", "1.2.840.10045.2.1", "1.3.132.0.35")], ec.EllipticCurvePublicKey,
         "secp521r1", "sha512"),
        ([("oid", "1.2.840.10045.4.3.4")], ec.EllipticCurvePublicKey, "secp521r1", "sha512"),
    ],
)  # fmt: skip
def test_csrattrs_key_types(
    items: list[tuple[object, ...]], key_type: type, detail: object, hash_name: str | None
) -> None:
    csr, _ = _csr_after(_csrattrs(_cms_csrattrs(*items)))
    key = csr.public_key()
    assert isinstance(key, key_type)
    if isinstance(key, rsa.RSAPublicKey):
        assert key.key_size == detail
    if isinstance(key, ec.EllipticCurvePublicKey):
        assert key.curve.name == detail
    got = csr.signature_hash_algorithm
    assert (got.name if got is not None else None) == hash_name
    assert csr.is_signature_valid


def _cms_csrattrs(*items: tuple[object, ...]) -> bytes:
    """A CsrAttrs DER built with asn1crypto directly (not the project's encoder)."""
    from asn1crypto import core
    from asn1crypto import x509 as ax

    parts = []
    for item in items:
        kind = item[0]
        if kind == "oid":
            parts.append(core.ObjectIdentifier(item[1]).dump())
        elif kind == "attr":
            value = core.ObjectIdentifier(item[2]).dump()
            parts.append(_attr(str(item[1]), value))
        elif kind == "attr-int":
            parts.append(_attr(str(item[1]), core.Integer(item[2]).dump()))
        elif kind == "san":
            names = ax.GeneralNames([ax.GeneralName({"dns_name": n}) for n in item[1]])  # type: ignore[attr-defined]
            ext = ax.Extensions([{"extn_id": "subject_alt_name", "critical": False,
                                   "extn_value": names}])  # fmt: skip
            parts.append(_attr("1.2.840.113549.1.9.14", ext.dump()))
    body = b"".join(parts)
    return bytes(core.Sequence.load(b"\x30" + _len(body) + body).dump())


def _attr(oid: str, value_der: bytes) -> bytes:
    from asn1crypto import core

    values = b"\x31" + _len(value_der) + value_der
    inner = core.ObjectIdentifier(oid).dump() + values
    return b"\x30" + _len(inner) + inner


def _len(body: bytes) -> bytes:
    n = len(body)
    if n < 128:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


# -- redirection (RFC 8995 §5.6) ---------------------------------------------------------------


def test_one_redirect_to_another_origin_is_followed_as_a_new_registrar() -> None:
    m = machine()
    to_voucher_request(m)
    action = m.received(
        Response(307, b"", "", location="https://127.0.0.2:9443/.well-known/brski/requestvoucher",
                 server_cert=WORLD.registrar.cert), now=NOW)  # fmt: skip
    assert action == Connect(origin="https://127.0.0.2:9443")
    assert m.state is PledgeState.CONNECTING
    request = m.connected(WORLD.evil_registrar.cert, now=NOW)
    assert isinstance(request, HttpRequest) and request.origin == "https://127.0.0.2:9443"
    # the new registrar is named in a new request (its proximity-registrar-cert)
    assert pvr_of(request).proximity_registrar_cert == der(WORLD.evil_registrar.cert)
    second = m.received(
        Response(
            302, b"", "", location="https://127.0.0.3/x", server_cert=WORLD.evil_registrar.cert
        ),
        now=NOW,
    )
    assert isinstance(second, Failed) and isinstance(second.error, PolicyRefused)
    assert "at most one" in str(second.error)


def test_redirect_of_a_verified_request_keeps_the_pin() -> None:
    m = machine()
    cacerts = to_cacerts(m)
    moved = m.received(
        Response(301, b"", "", location="https://127.0.0.2:8443/est/cacerts",
                 server_cert=WORLD.registrar.cert), now=NOW)  # fmt: skip
    assert isinstance(moved, HttpRequest)
    assert (moved.origin, moved.path, moved.tls) == (
        "https://127.0.0.2:8443",
        "/est/cacerts",
        TlsMode.VERIFIED,
    )
    assert moved.trust == cacerts.trust
    # the next steps go to the new origin too
    action = m.received(
        ok(est.encode_certs_only([WORLD.domain.cert]), est.MEDIA_PKCS7_CERTS), now=NOW
    )
    assert isinstance(action, HttpRequest) and action.origin == "https://127.0.0.2:8443"


def test_second_redirect_of_a_status_report_ends_the_report() -> None:
    """§5.7: any answer completes voucher_status; a redirection not followed is one."""
    m = machine()
    pvr = pvr_of(to_voucher_request(m))
    m.received(ok(WORLD.voucher(pvr), cms.MEDIA_TYPE_VOUCHER_CMS), now=NOW)
    moved = m.received(
        Response(
            308, b"", "", location="https://127.0.0.2/status", server_cert=WORLD.registrar.cert
        ),
        now=NOW,
    )
    assert isinstance(moved, HttpRequest) and moved.origin == "https://127.0.0.2:443"
    action = m.received(
        Response(308, b"", "", location="https://127.0.0.3/s", server_cert=WORLD.registrar.cert),
        now=NOW,
    )
    assert isinstance(action, HttpRequest) and action.path == role.PATH_CACERTS
    assert any("at most one" in text for text in m.warnings), m.warnings


def test_redirect_to_http_is_refused() -> None:
    m = machine()
    to_voucher_request(m)
    final = m.received(
        Response(302, b"", "", location="http://127.0.0.2/", server_cert=WORLD.registrar.cert),
        now=NOW,
    )
    assert isinstance(final, Failed) and "https only" in str(final.error)


# -- nonceless vouchers (RFC 8995 §7.2, RFC 8366 §5.3) -------------------------------------------


def test_nonceless_voucher_with_future_expiry_is_accepted_when_allowed() -> None:
    m = machine(WORLD.config(nonceless_allowed=True))
    pvr = pvr_of(to_voucher_request(m))
    voucher = WORLD.voucher(pvr, nonce=None, expires_on=NOW + timedelta(minutes=20))
    action = m.received(ok(voucher, cms.MEDIA_TYPE_VOUCHER_CMS), now=NOW)
    assert status_of(action, role.PATH_VOUCHER_STATUS)["status"] is True
    assert m.voucher is not None and m.voucher.nonce is None


@pytest.mark.parametrize(
    ("changes", "error", "needle"),
    [
        ({"expires_on": None}, WrongNonce, "neither a nonce nor an expires-on"),
        ({"expires_on": NOW - timedelta(seconds=1)}, Expired, "expired"),
        ({"serial_number": "OTHER"}, WrongSerial, "OTHER"),
        (
            {"pinned_domain_cert": der(WORLD.evil_domain.cert)},
            UntrustedSigner,
            "pinned-domain-cert",
        ),
    ],
)
def test_nonceless_voucher_must_still_validate(
    changes: dict[str, object], error: type[ZerotouchError], needle: str
) -> None:
    m = machine(WORLD.config(nonceless_allowed=True))
    pvr = pvr_of(to_voucher_request(m))
    fields: dict[str, object] = {"nonce": None, "expires_on": NOW + timedelta(days=1), **changes}
    action = m.received(ok(WORLD.voucher(pvr, **fields), cms.MEDIA_TYPE_VOUCHER_CMS), now=NOW)
    report = status_of(action, role.PATH_VOUCHER_STATUS)
    assert report["status"] is False and needle in str(report["reason"]), report
    final = m.received(Response(200, b"", ""), now=NOW)
    assert isinstance(final, Failed) and isinstance(final.error, error)


def test_nonceless_voucher_signed_by_another_vendor_is_refused_even_when_allowed() -> None:
    rogue = certs.issue_masa_signer(WORLD.other_vendor, "rogue", now=NOW - timedelta(days=1))
    m = machine(WORLD.config(nonceless_allowed=True))
    pvr = pvr_of(to_voucher_request(m))
    voucher = WORLD.voucher(pvr, signer=rogue, nonce=None, expires_on=NOW + timedelta(days=1))
    m.received(ok(voucher, cms.MEDIA_TYPE_VOUCHER_CMS), now=NOW)
    final = m.received(Response(200, b"", ""), now=NOW)
    assert isinstance(final, Failed) and isinstance(final.error, UntrustedSigner)


def test_nonceless_refused_by_default_names_the_option() -> None:
    pvr = pvr_of(to_voucher_request(machine()))
    reason = _voucher_failure(
        WORLD.voucher(pvr, nonce=None, expires_on=NOW + timedelta(days=1)), WrongNonce
    )
    assert "--allow-nonceless" in reason


def _at(state: PledgeState) -> Pledge:
    """A machine waiting for the answer in ``state``."""
    m = machine()
    steps = {
        PledgeState.REQUESTING_VOUCHER: to_voucher_request,
        PledgeState.FETCHING_CACERTS: to_cacerts,
        PledgeState.FETCHING_CSRATTRS: to_csrattrs,
        PledgeState.ENROLLING: to_enroll,
    }
    if state in steps:
        steps[state](m)
    elif state is PledgeState.REPORTING_VOUCHER:
        pvr = pvr_of(to_voucher_request(m))
        m.received(ok(WORLD.voucher(pvr), cms.MEDIA_TYPE_VOUCHER_CMS), now=NOW)
    else:
        m.received(ok(est.encode_certs_only([issue(to_enroll(m))]), est.MEDIA_PKCS7_CERTS), now=NOW)
        m.installed()
    assert m.state is state
    return m


@pytest.mark.parametrize(
    "state",
    [
        PledgeState.REQUESTING_VOUCHER,
        PledgeState.REPORTING_VOUCHER,
        PledgeState.FETCHING_CACERTS,
        PledgeState.FETCHING_CSRATTRS,
        PledgeState.ENROLLING,
        PledgeState.REPORTING_ENROLLMENT,
    ],
)
@pytest.mark.parametrize("location", [None, "ftp://x/", "https://[::1", "https://127.0.0.9/a"])
def test_any_status_in_any_state_gives_an_action(state: PledgeState, location: str | None) -> None:
    """Whatever a registrar answers, the machine decides; it never raises."""
    for status in (100, 199, 201, 202, 204, 301, 302, 304, 307, 308, 399, 400, 401, 404, 418,
                   500, 503, 599):  # fmt: skip
        m = _at(state)
        response = Response(status, b"x", "text/plain", location=location,
                            server_cert=WORLD.registrar.cert)  # fmt: skip
        action = m.received(response, now=NOW)
        assert isinstance(action, Connect | HttpRequest | Wait | Install | Done | Failed)
        if isinstance(action, HttpRequest):  # and a redirect of the next request too
            again = Response(
                302, b"", "", location="https://127.0.0.8/", server_cert=WORLD.registrar.cert
            )
            assert isinstance(
                m.received(again, now=NOW), Connect | HttpRequest | Wait | Failed | Done
            )


def _idevid_without_aki() -> Identity:
    key = certs.generate_key("p256")
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, SERIAL)]))
        .issuer_name(WORLD.vendor.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=365))
        .sign(WORLD.vendor.key, certs.signature_hash(WORLD.vendor.key))  # type: ignore[arg-type]
    )
    return Identity(cert, key)


@pytest.mark.parametrize("carries", [False, True])
def test_idevid_without_aki(carries: bool) -> None:
    """An IDevID without AKI (like RFC 8995 Appendix C's): a voucher without idevid-issuer is
    fine; one with an idevid-issuer cannot name this issuer and is refused."""
    idevid = _idevid_without_aki()
    m = machine(PledgeConfig(idevid=idevid, masa_anchors=(WORLD.vendor.cert,)))
    pvr = pvr_of(to_voucher_request(m))
    value = idevid_issuer_forms(WORLD.idevid.cert)["keyIdentifier"] if carries else None
    action = m.received(
        ok(WORLD.voucher(pvr, idevid_issuer=value), cms.MEDIA_TYPE_VOUCHER_CMS), now=NOW
    )
    assert status_of(action, role.PATH_VOUCHER_STATUS)["status"] is not carries
