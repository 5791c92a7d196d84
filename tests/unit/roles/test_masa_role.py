"""The MASA's sans-IO checks (RFC 8995 §5.5-§5.8): each check, its failure, its HTTP status."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from tests.support.idevid_issuer_forms import idevid_issuer_forms
from tests.support.masa_world import NONCE, NOW, SERIAL, World, der
from zerotouch_plugin.artifacts import certs, cms
from zerotouch_plugin.artifacts import voucher as voucher_module
from zerotouch_plugin.artifacts.certs import Identity
from zerotouch_plugin.artifacts.voucher import Assertion, Tolerance, Voucher, VoucherRequest
from zerotouch_plugin.errors import (
    AccessDenied,
    CertificateError,
    Expired,
    InvalidInput,
    NotCMS,
    NotFound,
    PolicyRefused,
    ReplayedRequest,
    SchemaError,
    SignatureInvalid,
    UntrustedSigner,
    WrongNonce,
    WrongSerial,
    ZerotouchError,
)
from zerotouch_plugin.roles import masa
from zerotouch_plugin.roles.masa import MasaRules
from zerotouch_plugin.roles.records import AuditEntry, ClaimRecord, DeviceState


@pytest.fixture(scope="module")
def world() -> World:
    return World()


def verify(world: World, body: bytes, **kwargs: object) -> masa.VerifiedRequest:
    return masa.verify_registrar_request(
        body,
        tls_client_cert=kwargs.pop("tls_client_cert", None),  # type: ignore[arg-type]
        now=kwargs.pop("now", NOW),  # type: ignore[arg-type]
        manufacturer_cas=[world.vendor_ca.cert],
        **kwargs,  # type: ignore[arg-type]
    )


def empty(serial: str = SERIAL) -> DeviceState:
    return DeviceState(serial, None, None, None, None)


def expect(exc_type: type[ZerotouchError], status: int, match: str) -> pytest.RaisesExc:  # type: ignore[type-arg]
    assert exc_type.http_status == status
    return pytest.raises(exc_type, match=match)


# -- the good path ---------------------------------------------------------------------------


def test_good_request_verifies_and_yields_a_voucher(world: World) -> None:
    req = verify(world, world.good_rvr())
    dom = world.domain()
    assert req.serial == SERIAL and req.nonce == NONCE
    assert req.registrar == dom.registrar.cert
    assert req.domain_ca == dom.ca.cert  # RFC 8995 §5.5.2: the farthest cert of the chain
    assert not req.authenticated
    decision = masa.decide(req, empty(), MasaRules(), now=NOW)
    v = decision.voucher
    assert v.serial_number == SERIAL and v.nonce == NONCE  # nonce copied through (§5.5.6)
    assert v.pinned_domain_cert == der(dom.ca.cert)
    assert v.assertion is Assertion.PROXIMITY
    assert v.expires_on is None and v.created_on == NOW
    assert decision.take_ownership and decision.domain_id == masa.domain_id(dom.ca.cert)
    # The payload is a valid ietf-voucher artifact.
    assert Voucher.from_json(v.to_json()).serial_number == SERIAL


def test_rfc8995_appendix_c_request_verifies_at_its_signing_time(vectors_dir: Path) -> None:
    base = vectors_dir / "examples/anima-bootstrap/rfc8995-xml-extract"
    vendor = certs.load_certs((base / "vendor.cert").read_bytes())
    body = (base / "parboiled_vr_00-D0-E5-F2-00-02.b64").read_bytes()
    signed = cms.inspect(cms.decode(body))
    assert signed.signing_time is not None
    req = masa.verify_registrar_request(
        body, tls_client_cert=None, now=signed.signing_time, manufacturer_cas=vendor
    )
    assert req.serial == "00-D0-E5-F2-00-02"
    assert req.nonce == "-_XE9zK9q8Ll1qylMtLKeg"
    assert "Fountain Root CA" in req.domain_ca.subject.rfc4514_string()
    voucher = masa.decide(req, empty(req.serial), MasaRules(), now=signed.signing_time).voucher
    assert voucher.nonce == "-_XE9zK9q8Ll1qylMtLKeg"  # opaque nonce kept verbatim
    assert b"-_XE9zK9q8Ll1qylMtLKeg" in voucher.to_json()


def test_domain_id_is_the_ski_or_spki_sha256(world: World) -> None:
    ca = world.domain().ca.cert
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert masa.domain_id(ca) == base64.b64encode(ski).decode()
    # A certificate without SKI: SHA-256 of the SubjectPublicKeyInfo (RFC 8995 §5.8.2).
    bare = world.vendor_ca
    builder = (
        x509.CertificateBuilder()
        .subject_name(bare.cert.subject)
        .issuer_name(bare.cert.subject)
        .public_key(bare.key.public_key())
        .serial_number(7)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
    )
    cert = builder.sign(bare.key, hashes.SHA256())  # type: ignore[arg-type]
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert masa.domain_id(cert) == base64.b64encode(hashlib.sha256(spki).digest()).decode()


def test_peek_request_reads_without_checks(world: World) -> None:
    assert masa.peek_request(world.good_rvr()) == (SERIAL, NONCE)
    assert masa.peek_request(world.rvr(world.pvr(), nonce=None)) == (SERIAL, None)
    with pytest.raises(NotCMS):
        masa.peek_request(b"not a cms")
    no_serial = cms.sign(
        b'{"ietf-voucher-request:voucher": {"assertion": "proximity"}}',
        signer=world.domain().registrar_with_ca,
        now=NOW,
    )
    with pytest.raises(SchemaError) as info:
        masa.peek_request(no_serial)
    assert info.value.http_status == 400


@pytest.mark.parametrize("serial", ["L" * 65, "E" * 300, "N\\u0000UL", "C\\u0001TL"])
def test_peek_request_refuses_a_serial_no_device_can_have(world: World, serial: str) -> None:
    """The store is asked about the serial-number before the request is verified: longer
    than ub-serial-number (64, RFC 5280) or with a control character (written raw, as no
    YANG-checked request carries one), it is 400 first; PostgreSQL answered 500."""
    body = cms.sign(
        b'{"ietf-voucher-request:voucher": {"serial-number": "%s"}}' % serial.encode(),
        signer=world.domain().registrar_with_ca,
        now=NOW,
    )
    with expect(InvalidInput, 400, "at most 64 printable characters"):
        masa.peek_request(body)


@pytest.mark.parametrize("depth", [65, 2_000])
def test_peek_request_of_deep_content_is_invalid_input(world: World, depth: int) -> None:
    """The content is read before any signature is checked: nesting that the interpreter's
    parser stops with a RecursionError (2,000 levels on 3.11) or that it takes (65) is the
    client's error, not an internal one."""
    deep = b'{"ietf-voucher-request:voucher": ' + b"[" * depth + b"]" * depth + b"}"
    signed = cms.sign(deep, signer=world.domain().registrar_with_ca, now=NOW)
    with pytest.raises(InvalidInput, match="nested deeper"):
        masa.peek_request(signed)


# -- RFC 8995 §5.5 checks, one failure each -------------------------------------------------


def test_malformed_body_is_400(world: World) -> None:
    with expect(NotCMS, 400, "."):
        verify(world, b"\x30\x03\x02\x01\x01")


def test_tampered_rvr_signature_is_403(world: World) -> None:
    body = bytearray(world.good_rvr())
    i = body.index(b"ZT-0001")
    body[i : i + 7] = b"ZT-0009"
    with pytest.raises(SignatureInvalid) as info:
        verify(world, bytes(body))
    assert info.value.http_status == 403


def test_a_voucher_instead_of_a_request_is_rejected(world: World) -> None:
    voucher = Voucher(
        created_on=NOW,
        assertion=Assertion.LOGGED,
        serial_number=SERIAL,
        pinned_domain_cert=der(world.domain().ca.cert),
    )
    body = cms.sign(voucher.to_json(), signer=world.domain().registrar_with_ca, now=NOW)
    with pytest.raises(ZerotouchError, match="registrar voucher-request") as info:
        verify(world, body)
    assert info.value.http_status == 400


def test_signer_without_cmc_ra_is_403(world: World) -> None:
    dom = world.domain()
    client = certs.issue_client(dom.ca, "not a registrar", now=NOW)
    body = world.rvr(world.pvr(), signer=Identity(client.cert, client.key, (dom.ca.cert,)))
    with expect(CertificateError, 403, "id-kp-cmcRA"):
        verify(world, body)


def test_signer_must_be_the_tls_client(world: World) -> None:
    other = world.domain("beta").registrar.cert
    with expect(UntrustedSigner, 403, "TLS client certificate"):
        verify(world, world.good_rvr(), tls_client_cert=other)
    req = verify(world, world.good_rvr(), tls_client_cert=world.domain().registrar.cert)
    assert req.authenticated
    # Another certificate of the same, authenticated domain is the same registrar's domain.
    alpha = world.domain()
    sibling = certs.issue_client(alpha.ca, "alpha TLS client", now=NOW).cert
    with expect(UntrustedSigner, 403, "of another domain"):
        verify(world, world.good_rvr(), tls_client_cert=sibling)  # domain not authenticated
    ok = verify(world, world.good_rvr(), tls_client_cert=sibling, domain_trust=[alpha.ca.cert])
    assert ok.authenticated
    with expect(UntrustedSigner, 403, "of another domain"):
        verify(world, world.good_rvr(), tls_client_cert=other, domain_trust=[alpha.ca.cert])


def test_expired_registrar_certificate_is_403(world: World) -> None:
    with expect(Expired, 403, "not valid"):
        verify(world, world.good_rvr(), now=NOW + timedelta(days=3 * 365))


def test_missing_prior_signed_request_is_403(world: World) -> None:
    with expect(PolicyRefused, 403, "prior-signed-voucher-request"):
        verify(world, world.rvr(None))


def test_pledge_of_another_manufacturer_is_404(world: World) -> None:
    other_ca = certs.make_ca("Other Vendor CA", now=NOW)
    foreign = certs.issue_idevid(other_ca, SERIAL, masa_url=None, now=NOW)
    with expect(NotFound, 404, "not signed by an IDevID of this manufacturer"):
        verify(world, world.rvr(world.pvr(idevid=foreign)))


def test_expired_idevid_is_403(world: World) -> None:
    short = certs.issue_idevid(world.vendor_ca, "ZT-SHORT", masa_url=None, now=NOW, days=1)
    body = world.rvr(world.pvr(idevid=short), serial="ZT-SHORT")
    with expect(Expired, 403, "prior-signed-voucher-request"):
        verify(world, body, now=NOW + timedelta(days=2))


def test_tampered_pledge_request_is_403(world: World) -> None:
    pvr = bytearray(world.pvr())
    i = pvr.index(NONCE.encode())
    pvr[i] ^= 0x01
    with pytest.raises(SignatureInvalid, match="prior-signed-voucher-request") as info:
        verify(world, world.rvr(bytes(pvr)))
    assert info.value.http_status == 403


def test_rvr_serial_must_match_idevid(world: World) -> None:
    with expect(WrongSerial, 403, "registrar asks for serial-number 'ZT-9999'"):
        verify(world, world.rvr(world.pvr(), serial="ZT-9999"))


def test_a_serial_no_device_can_have_is_400_before_the_store(world: World) -> None:
    """Longer than ub-serial-number (64, RFC 5280): the MASA's store (255 characters) is
    not asked about it, in a pledge's request or an escrow request without one."""
    long = "L" * 65
    body = world.rvr(world.pvr(serial=long), serial=long)
    with expect(InvalidInput, 400, "at most 64 printable characters"):
        verify(world, body)
    escrow = VoucherRequest(
        created_on=NOW,
        assertion=Assertion.PROXIMITY,
        serial_number="E" * 300,
        expires_on=NOW + timedelta(days=30),
    )
    signed = cms.sign(escrow.to_json(), signer=world.domain().registrar_with_ca, now=NOW)
    with expect(InvalidInput, 400, "at most 64 printable characters"):
        verify(world, signed)
    assert verify(world, world.rvr(world.pvr(serial="S" * 64), serial="S" * 64)).serial == "S" * 64


def test_pvr_serial_must_match_idevid(world: World) -> None:
    body = world.rvr(world.pvr(serial="ZT-0002", idevid=world.idevid(SERIAL)))
    with expect(WrongSerial, 403, "pledge voucher-request names serial-number 'ZT-0002'"):
        verify(world, body)


def test_idevid_issuer_must_match_the_aki(world: World) -> None:
    aki = world.idevid().cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert aki.value.key_identifier is not None
    for form in idevid_issuer_forms(world.idevid().cert).values():
        assert verify(world, world.rvr(world.pvr(), idevid_issuer=form)).serial == SERIAL
    with expect(WrongSerial, 403, "idevid-issuer"):
        verify(world, world.rvr(world.pvr(), idevid_issuer=b"\x01" * 20))


def test_proximity_registrar_cert_must_be_in_the_signer_chain(world: World) -> None:
    other = world.domain("beta").registrar.cert
    with expect(PolicyRefused, 403, "proximity-registrar-cert not in the signer's chain"):
        verify(world, world.rvr(world.pvr(proximity=other)))
    with expect(PolicyRefused, 403, "no proximity-registrar-cert"):
        verify(world, world.rvr(world.pvr(omit_proximity=True)))


def test_nonce_must_be_the_pledges(world: World) -> None:
    other = base64.b64encode(b"fedcba9876543210").decode()
    with expect(WrongNonce, 403, "is not the pledge's nonce"):
        verify(world, world.rvr(world.pvr(), nonce=other))
    with expect(WrongNonce, 403, "is not the pledge's nonce"):
        verify(world, world.rvr(world.pvr(nonce=None), nonce=NONCE))


def test_schema_error_in_the_request_is_400(world: World) -> None:
    body = cms.sign(
        json.dumps(
            {"ietf-voucher-request:voucher": {"serial-number": SERIAL, "assertion": "x"}}
        ).encode(),
        signer=world.domain().registrar_with_ca,
        now=NOW,
    )
    with expect(SchemaError, 400, "registrar voucher-request"):
        verify(world, body)


def test_registrar_chain_without_the_ca_pins_the_registrar(world: World) -> None:
    req = verify(world, world.good_rvr(include_ca=False))
    assert req.domain_ca == world.domain().registrar.cert


def test_configured_domain_trust_authenticates(world: World) -> None:
    dom = world.domain()
    req = verify(world, world.good_rvr(include_ca=False), domain_trust=[dom.ca.cert])
    assert req.authenticated and req.trusted_anchor == dom.ca.cert
    assert req.domain_ca == dom.ca.cert
    other = world.domain("beta").ca.cert
    assert not verify(world, world.good_rvr(), domain_trust=[other]).authenticated


# -- ownership policy and nonceless vouchers -------------------------------------------------


def test_first_come_owner_keeps_the_device(world: World) -> None:
    alpha = world.domain().ca.cert
    owned = DeviceState(SERIAL, masa.domain_id(alpha), der(alpha), NOW, None)
    again = masa.decide(verify(world, world.good_rvr()), owned, MasaRules(), now=NOW)
    assert not again.take_ownership  # renewal for the same domain (RFC 8995 §5.5.1)
    beta_req = verify(world, world.good_rvr("beta"))
    with expect(PolicyRefused, 403, "already belongs to domain"):
        masa.decide(beta_req, owned, MasaRules(), now=NOW)


def test_claims_policy(world: World) -> None:
    rules = MasaRules(policy="claims")
    alpha = world.domain().ca.cert
    claim = ClaimRecord(SERIAL, masa.domain_id(alpha), der(alpha), NOW)
    unauth = verify(world, world.good_rvr())
    with expect(PolicyRefused, 403, "not claimed by any domain"):
        masa.decide(unauth, empty(), rules, now=NOW)
    state = DeviceState(SERIAL, None, None, None, claim)
    with expect(PolicyRefused, 403, "does not chain to that domain's CA"):
        masa.decide(unauth, state, rules, now=NOW)
    beta = verify(world, world.good_rvr("beta"), domain_trust=[alpha])
    with expect(PolicyRefused, 403, "claimed by domain"):
        masa.decide(beta, state, rules, now=NOW)
    good = verify(world, world.good_rvr(include_ca=False), domain_trust=[alpha])
    decision = masa.decide(good, state, rules, now=NOW)
    assert decision.voucher.assertion is Assertion.VERIFIED
    assert decision.voucher.pinned_domain_cert == der(alpha)


def test_nonceless_needs_policy_and_authentication(world: World) -> None:
    alpha = world.domain().ca.cert
    body = world.rvr(world.pvr(nonce=None), nonce=None)
    unauth = verify(world, body)
    with expect(PolicyRefused, 403, "nonceless vouchers are not issued"):
        masa.decide(unauth, empty(), MasaRules(), now=NOW)
    allow = MasaRules(nonceless_allowed=True, voucher_lifetime=timedelta(minutes=30))
    with expect(PolicyRefused, 403, "authenticated registrar"):
        masa.decide(unauth, empty(), allow, now=NOW)
    auth = verify(world, body, domain_trust=[alpha])
    voucher = masa.decide(auth, empty(), allow, now=NOW).voucher
    assert voucher.nonce is None
    assert voucher.expires_on == NOW + timedelta(minutes=30)  # always with expires-on


def test_a_nonce_used_before_is_a_replay(world: World) -> None:
    """RFC 8995 §5.6: a voucher-request whose nonce was answered already is stale (403)."""
    req = verify(world, world.good_rvr())
    used = DeviceState(SERIAL, None, None, None, None, nonce_used_at=NOW - timedelta(minutes=5))
    with expect(ReplayedRequest, 403, "already issued at .* replay"):
        masa.decide(req, used, MasaRules(), now=NOW)
    assert ReplayedRequest.reason == "replayed-request"
    # nonceless requests are governed by expires-on, not by the nonce record
    nonceless = verify(
        world, world.rvr(world.pvr(nonce=None), nonce=None), domain_trust=[world.domain().ca.cert]
    )
    voucher = masa.decide(nonceless, used, MasaRules(nonceless_allowed=True), now=NOW).voucher
    assert voucher.nonce is None


def test_pin_options(world: World) -> None:
    req = verify(world, world.good_rvr())
    reg = masa.decide(req, empty(), MasaRules(pin="registrar"), now=NOW).voucher
    assert reg.pinned_domain_cert == der(world.domain().registrar.cert)
    override = world.domain("beta").ca.cert
    forced = masa.decide(req, empty(), MasaRules(pinned_override=override), now=NOW)
    assert forced.voucher.pinned_domain_cert == der(override)


# -- audit log (RFC 8995 §5.8) ---------------------------------------------------------------


def _entries(world: World) -> list[AuditEntry]:
    a = masa.domain_id(world.domain().ca.cert)
    b = masa.domain_id(world.domain("beta").ca.cert)
    return [
        AuditEntry(NOW + timedelta(minutes=4), b, None, "logged"),
        AuditEntry(NOW + timedelta(minutes=3), a, "n3", "proximity"),
        AuditEntry(NOW + timedelta(minutes=2), a, "n2", "proximity"),
        AuditEntry(NOW + timedelta(minutes=1), a, "n1", "proximity"),
    ]


def test_audit_log_format(world: World) -> None:
    log = masa.audit_log(_entries(world))
    assert log["version"] == 1
    assert log["truncation"] == {"nonced duplicates": 0, "nonceless duplicates": 0, "arbitrary": 0}
    first = log["events"][0]
    assert set(first) == {"date", "domainID", "nonce", "assertion", "truncated"}
    assert first["nonce"] is None and first["date"] == "2026-11-26T12:04:00Z"
    assert [e["nonce"] for e in log["events"]] == [None, "n3", "n2", "n1"]
    json.dumps(log)  # plain JSON


def test_audit_log_abridges_long_logs(world: World) -> None:
    log = masa.audit_log(_entries(world), max_events=3)
    assert [e["nonce"] for e in log["events"]] == [None, "n3"]
    assert log["events"][1]["truncated"] == 2
    assert log["truncation"]["nonced duplicates"] == 2
    tiny = masa.audit_log(_entries(world), max_events=1)
    assert len(tiny["events"]) == 1 and tiny["truncation"]["arbitrary"] == 1


def test_audit_access_only_for_domains_that_owned_the_device(world: World) -> None:
    req = verify(world, world.good_rvr())
    with expect(NotFound, 404, "no voucher was ever issued"):
        masa.check_audit_access(req, [], MasaRules(), None)
    masa.check_audit_access(req, _entries(world), MasaRules(), None)
    gamma = verify(world, world.good_rvr("gamma"))
    with expect(NotFound, 404, "never received a voucher"):
        masa.check_audit_access(gamma, _entries(world), MasaRules(), None)


# -- who may read the audit log (RFC 8995 §5.8.1) --------------------------------------------


def test_audit_log_needs_a_client_certificate_of_a_vouched_domain(world: World) -> None:
    request = verify(world, world.good_rvr())
    alpha, beta = world.domain("alpha"), world.domain("beta")
    pinned = [alpha.ca.cert]
    with expect(AccessDenied, 401, "none was presented"):
        masa.check_audit_client(request, None, pinned, now=NOW)
    with expect(PolicyRefused, 403, "does not chain to the domain of any voucher"):
        masa.check_audit_client(request, beta.registrar.cert, pinned, now=NOW)
    with expect(PolicyRefused, 403, "does not chain"):
        masa.check_audit_client(request, alpha.registrar.cert, [], now=NOW)
    masa.check_audit_client(request, alpha.registrar.cert, pinned, now=NOW)
    # pin "registrar": the pinned certificate is the registrar's own.
    masa.check_audit_client(request, alpha.registrar.cert, [alpha.registrar.cert], now=NOW)


def test_pinned_certificates_are_read_from_the_stored_vouchers(world: World) -> None:
    decision = masa.decide(verify(world, world.good_rvr()), empty(), MasaRules(), now=NOW)
    signed = cms.sign(decision.voucher.to_json(), signer=world.masa_signer, now=NOW)
    assert masa.pinned_certificates([signed, signed]) == [world.domain().ca.cert]


# -- the voucher decide builds ----------------------------------------------------------------

OPAQUE_NONCES = {"hex": "6e6f6e63652d6865782d31", "base64url": "bm9uY2UtYjY0dXJs", "short": "n1"}


def signed_request(world: World, nonce: str | None, *, payload: VoucherRequest) -> bytes:
    """``payload`` signed by the alpha registrar (with its CA), around a pledge request
    carrying ``nonce`` in whatever form: opaque nonces are built with their tolerance."""
    lenient = frozenset({Tolerance.OPAQUE_NONCE})
    pvr = VoucherRequest(
        created_on=NOW,
        assertion=Assertion.PROXIMITY,
        serial_number=SERIAL,
        nonce=nonce,
        proximity_registrar_cert=der(world.domain().registrar.cert),
        tolerances=lenient,
    )
    inner = cms.sign(pvr.to_json(), signer=world.idevid(), now=NOW)
    rvr = dataclasses.replace(payload, nonce=nonce, prior_signed_voucher_request=inner)
    return cms.sign(rvr.to_json(), signer=world.domain().registrar_with_ca, now=NOW)


@pytest.mark.parametrize(
    ("nonce", "rules"),
    [
        (NONCE, MasaRules()),
        *((form, MasaRules()) for form in OPAQUE_NONCES.values()),
        (None, MasaRules(nonceless_allowed=True)),
        (NONCE, MasaRules(pin="registrar")),
    ],
    ids=["binary", *OPAQUE_NONCES, "nonceless", "pin-registrar"],
)
def test_the_voucher_is_built_once_and_valid_against_the_yang_schema(
    world: World, nonce: str | None, rules: MasaRules, monkeypatch: pytest.MonkeyPatch
) -> None:
    """decide builds the voucher from checked fields without validating it again (issue 17:
    the MASA's CPU); what it builds is valid ietf-voucher (RFC 8366 §5.3) with no tolerance
    but the request's nonce form, and reads back to the same voucher."""
    payload = VoucherRequest(
        created_on=NOW,
        assertion=Assertion.PROXIMITY,
        serial_number=SERIAL,
        tolerances=frozenset({Tolerance.OPAQUE_NONCE}),
    )
    body = signed_request(world, nonce, payload=payload)
    request = verify(world, body, domain_trust=[world.domain().ca.cert])
    kinds: list[str] = []
    monkeypatch.setattr(
        voucher_module, "validate_artifact", lambda _obj, kind, **_: kinds.append(kind)
    )
    built = masa.decide(request, empty(), rules, now=NOW).voucher
    assert kinds == []  # then validated for real below
    monkeypatch.undo()
    assert built.nonce == nonce
    assert (built.expires_on is None) == (nonce is not None)
    read = Voucher.from_json(built.to_json(), tolerances=built.tolerances)
    assert read == built and read.to_json() == built.to_json()


def test_proximity_counts_the_signers_chain_not_every_certificate_sent(world: World) -> None:
    """Anyone can add the public certificate of the registrar a pledge saw to the certificates
    of a CMS: a registrar of another domain that did so got the voucher, pinning its own
    domain. Only the signer and its issuers count (RFC 8995 §5.5.5)."""
    seen = world.domain("alpha").registrar.cert
    beta = world.domain("beta").registrar_with_ca
    padded = Identity(beta.cert, beta.key, (*beta.chain, seen))
    with expect(PolicyRefused, 403, "proximity-registrar-cert not in the signer's chain"):
        verify(world, world.rvr(world.pvr(proximity=seen), domain="beta", signer=padded))
    assert verify(world, world.rvr(world.pvr(proximity=beta.cert), domain="beta", signer=padded))
