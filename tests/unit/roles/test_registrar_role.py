"""Registrar role (RFC 8995 §5.2-§5.9), in memory: every §5.3 check, RVR, voucher, audit, EST."""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.idevid_issuer_forms import idevid_issuer_forms
from tests.vectors.provenance import DATA
from zerotouch_plugin.artifacts import certs, cms
from zerotouch_plugin.artifacts import voucher as voucher_module
from zerotouch_plugin.artifacts.certs import Identity, verification
from zerotouch_plugin.artifacts.voucher import (
    STRICT,
    Assertion,
    Tolerance,
    Voucher,
    VoucherRequest,
)
from zerotouch_plugin.errors import (
    AccessDenied,
    AwaitingApproval,
    CertificateError,
    Conflict,
    Expired,
    InvalidInput,
    PayloadTooLarge,
    PolicyRefused,
    ReplayedRequest,
    SchemaError,
    SignatureInvalid,
    UntrustedSigner,
    UpstreamInvalid,
    UpstreamUnavailable,
    WrongSerial,
    ZerotouchError,
)
from zerotouch_plugin.roles import masa
from zerotouch_plugin.roles import registrar as role
from zerotouch_plugin.roles.records import DeviceState
from zerotouch_plugin.roles.registrar import (
    AuditLevel,
    ClientKind,
    DeviceFacts,
    PolicyDecision,
    PolicyRule,
)
from zerotouch_plugin.roles.states import REGISTRAR_TRANSITIONS, render_mermaid
from zerotouch_plugin.roles.states import RegistrarDeviceState as S
from zerotouch_plugin.roles.states import RegistrarEvent as E
from zerotouch_plugin.store.registrar import ldevid_dns_name

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
NONCE = base64.b64encode(b"0123456789abcdef").decode()
MASA_URL = "https://127.0.0.1:9443"


class Pki:
    def __init__(self) -> None:
        self.vendor = certs.make_ca("Vendor Root", now=NOW, organization="Vendor Inc")
        self.idevid = certs.issue_idevid(self.vendor, "SN-1", masa_url=MASA_URL, now=NOW)
        self.masa = certs.issue_masa_signer(self.vendor, "Vendor MASA", now=NOW)
        self.domain = certs.make_ca("Domain CA", now=NOW)
        self.registrar = certs.issue_registrar(
            self.domain, "registrar", hosts=["127.0.0.1"], now=NOW
        )
        self.stranger = certs.make_ca("Stranger Root", now=NOW)
        self.ctx = role.RegistrarContext(
            registrar=self.registrar,
            domain_ca=self.domain,
            manufacturer_cas=(self.vendor.cert,),
        )

    def pvr(self, signer: Identity | None = None, **fields: object) -> bytes:
        values: dict[str, object] = {
            "serial_number": "SN-1",
            "created_on": NOW,
            "assertion": Assertion.PROXIMITY,
            "nonce": NONCE,
            "proximity_registrar_cert": der(self.registrar.cert),
        }
        values.update(fields)
        request = VoucherRequest(**values)  # type: ignore[arg-type]
        return cms.sign(request.to_json(), signer=signer or self.idevid, now=NOW)

    def voucher(self, signer: Identity | None = None, **fields: object) -> bytes:
        values: dict[str, object] = {
            "created_on": NOW,
            "assertion": Assertion.LOGGED,
            "serial_number": "SN-1",
            "pinned_domain_cert": der(self.domain.cert),
            "nonce": NONCE,
        }
        values.update(fields)
        return cms.sign(
            Voucher(**values).to_json(),  # type: ignore[arg-type]
            signer=signer or self.masa,
            now=NOW,
        )


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


ALLOW = [PolicyRule("SN-1", PolicyDecision.ALLOW)]


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


def accepted(pki: Pki) -> role.PledgeRequest:
    return role.check_voucher_request(
        pki.ctx, pki.pvr(), tls_cert=pki.idevid.cert, rules=ALLOW, now=NOW
    )


# -- §5.3 checks on the pledge voucher-request ------------------------------------------------


def test_valid_request_passes_and_rvr_follows_rfc8995_5_5(pki: Pki) -> None:
    pledge = accepted(pki)
    assert (pledge.serial, pledge.request.nonce) == ("SN-1", NONCE)
    assert pledge.manufacturer == pki.vendor.cert.subject.rfc4514_string()
    later = NOW + timedelta(seconds=3)
    rvr = role.build_registrar_request(pki.ctx, pledge, now=later)
    signed = cms.verify(rvr, trust_anchors=[pki.domain.cert], now=later)
    assert der(signed.signer) == der(pki.registrar.cert)
    assert der(pki.domain.cert) in [der(c) for c in signed.certificates]  # §5.5
    request = VoucherRequest.from_json(signed.content)
    assert request.serial_number == "SN-1"
    assert request.nonce == NONCE
    assert request.assertion is Assertion.PROXIMITY
    assert request.created_on == later
    aki = pki.idevid.cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert request.idevid_issuer == aki.value.key_identifier
    assert request.prior_signed_voucher_request == pledge.cms_der
    assert request.proximity_registrar_cert is None


# Nonce forms seen from real pledges (RFC 8995 Appendix C, captured requests): all opaque.
NONCE_FORMS = {
    "unpadded-base64url": "-_XE9zK9q8Ll1qylMtLKeg",
    "unpadded-base64": "f4G6Vi1t8nKo/FieCVgpBg",
    "padded-base64": "f4G6Vi1t8nKo/FieCVgpBg==",
    "hex": "8c1f9b0e6d2a4f3b8c1f9b0e6d2a4f3b",
    "short-string": "abcd1234",
}


def pvr_with_nonce(pki: Pki, nonce: str | None) -> bytes:
    """A pledge voucher-request carrying ``nonce`` in whatever form (or none)."""
    return cms.sign(
        VoucherRequest(
            serial_number="SN-1",
            created_on=NOW,
            assertion=Assertion.PROXIMITY,
            nonce=nonce,
            proximity_registrar_cert=der(pki.registrar.cert),
            tolerances=frozenset({Tolerance.OPAQUE_NONCE}),
        ).to_json(),
        signer=pki.idevid,
        now=NOW,
    )


@pytest.mark.parametrize("nonce", NONCE_FORMS.values(), ids=NONCE_FORMS.keys())
def test_every_nonce_form_is_relayed_verbatim_through_registrar_and_masa(
    pki: Pki, nonce: str
) -> None:
    """Issue 9 item 1: the registrar built its RVR strictly and raised (a 500) on any nonce
    that is not padded base64 of 8..32 bytes. The nonce is opaque: the pledge's string goes
    into the RVR, the MASA's voucher and the registrar's check byte for byte."""
    pvr = pvr_with_nonce(pki, nonce)
    assert f'"nonce":"{nonce}"'.encode() in cms.inspect(cms.decode(pvr)).content
    pledge = role.check_voucher_request(
        pki.ctx, pvr, tls_cert=pki.idevid.cert, rules=ALLOW, now=NOW
    )
    rvr = role.build_registrar_request(pki.ctx, pledge, now=NOW)
    assert f'"nonce":"{nonce}"'.encode() in cms.inspect(cms.decode(rvr)).content
    verified = masa.verify_registrar_request(
        rvr, tls_client_cert=None, now=NOW, manufacturer_cas=[pki.vendor.cert]
    )
    assert verified.nonce == nonce
    state = DeviceState("SN-1", None, None, None, None)
    voucher = masa.decide(verified, state, masa.MasaRules(), now=NOW).voucher
    assert voucher.nonce == nonce
    voucher_cms = cms.sign(voucher.to_json(), signer=pki.masa, now=NOW)
    assert f'"nonce":"{nonce}"'.encode() in cms.inspect(cms.decode(voucher_cms)).content
    relayed = role.check_masa_voucher(pki.ctx, voucher_cms, pledge=pledge, now=NOW)
    assert relayed.nonce == nonce
    # compared verbatim: another spelling of the same bytes is another nonce
    if nonce.endswith("=="):
        with pytest.raises(UpstreamInvalid, match="nonce"):
            role.check_masa_voucher(
                pki.ctx,
                pki.voucher(
                    nonce=nonce.rstrip("="), tolerances=frozenset({Tolerance.OPAQUE_NONCE})
                ),
                pledge=pledge,
                now=NOW,
            )


@pytest.mark.parametrize(
    "nonce", [NONCE, None, *NONCE_FORMS.values()], ids=["binary", "none", *NONCE_FORMS.keys()]
)
def test_the_registrar_request_is_built_once_and_valid_against_the_yang_schema(
    pki: Pki, nonce: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """build_registrar_request does not validate the request it builds from checked fields
    (issue 17: the registrar's CPU); what it signs is valid YANG (RFC 8995 §3.3) with no
    tolerance but the pledge's nonce form, and reads back to the same JSON."""
    pvr = pvr_with_nonce(pki, nonce)
    pledge = role.check_voucher_request(
        pki.ctx, pvr, tls_cert=pki.idevid.cert, rules=ALLOW, now=NOW
    )
    validated: list[object] = []
    real_validate = voucher_module.validate_artifact

    def counted(obj: dict[str, object], kind: str) -> None:
        validated.append(kind)
        real_validate(obj, kind)  # type: ignore[arg-type]

    monkeypatch.setattr(voucher_module, "validate_artifact", counted)
    rvr = role.build_registrar_request(pki.ctx, pledge, now=NOW)
    assert validated == []
    content = cms.verify(rvr, trust_anchors=[pki.domain.cert], now=NOW).content
    relayed = frozenset({Tolerance.OPAQUE_NONCE})
    tolerances = STRICT if nonce in (NONCE, None) else relayed
    request = VoucherRequest.from_json(content, tolerances=tolerances)
    assert validated == ["voucher-request"]
    assert request.to_json() == content
    assert (request.serial_number, request.nonce) == ("SN-1", nonce)
    assert request.prior_signed_voucher_request == pledge.cms_der


def test_the_idevid_path_is_validated_once_for_the_request_and_the_next_ones(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The voucher-request's CMS carries the IDevID itself: not offered as its own
    intermediate, the path the §5.3 check validates is the one identify_client reuses on the
    pledge's next requests (voucher_status, EST), not validated a second time (issue 17)."""
    idevid = certs.issue_idevid(pki.vendor, "SN-7", masa_url=MASA_URL, now=NOW)
    pvr = pki.pvr(signer=idevid, serial_number="SN-7")
    assert der(idevid.cert) in [
        der(c) for c in cms.verify(pvr, trust_anchors=None, now=NOW).certificates
    ]
    validated: list[x509.Certificate] = []
    real_verify = verification._verify_chain

    def counted(leaf: x509.Certificate, *args: Any) -> list[x509.Certificate]:
        validated.append(leaf)
        return real_verify(leaf, *args)

    monkeypatch.setattr(verification, "_verify_chain", counted)
    rules = [PolicyRule("SN-7", PolicyDecision.ALLOW)]
    pledge = role.check_voucher_request(pki.ctx, pvr, tls_cert=idevid.cert, rules=rules, now=NOW)
    client = role.identify_client(pki.ctx, idevid.cert, now=NOW + timedelta(seconds=1))
    assert (pledge.serial, client.kind, client.serial) == ("SN-7", ClientKind.IDEVID, "SN-7")
    assert validated == [idevid.cert]


def test_a_nonce_seen_before_is_a_replay(pki: Pki) -> None:
    """RFC 8995 §5.3: a voucher-request whose nonce this device already sent is stale."""
    pledge = accepted(pki)
    role.check_fresh_nonce(pledge, None)
    with pytest.raises(
        ReplayedRequest, match=r"already received a voucher .* at 2026-.*replay"
    ) as caught:
        role.check_fresh_nonce(pledge, NOW - timedelta(minutes=1))
    assert caught.value.http_status == 403 and caught.value.reason == "replayed-request"
    nonceless = role.check_voucher_request(
        pki.ctx, pki.pvr(nonce=None), tls_cert=pki.idevid.cert, rules=ALLOW, now=NOW
    )
    role.check_fresh_nonce(nonceless, NOW)  # no nonce, nothing to replay-check


def test_no_tls_client_certificate_is_refused(pki: Pki) -> None:
    with pytest.raises(AccessDenied, match="IDevID as TLS client"):
        role.check_voucher_request(pki.ctx, pki.pvr(), tls_cert=None, rules=ALLOW, now=NOW)


def test_tls_client_must_be_the_signer(pki: Pki) -> None:
    other = certs.issue_idevid(pki.vendor, "SN-1", masa_url=MASA_URL, now=NOW)
    with pytest.raises(UntrustedSigner, match="not by the TLS client"):
        role.check_voucher_request(pki.ctx, pki.pvr(), tls_cert=other.cert, rules=ALLOW, now=NOW)


def test_idevid_from_unknown_manufacturer_is_refused(pki: Pki) -> None:
    foreign = certs.issue_idevid(pki.stranger, "SN-1", masa_url=MASA_URL, now=NOW)
    with pytest.raises(UntrustedSigner, match="does not chain"):
        role.check_voucher_request(
            pki.ctx, pki.pvr(signer=foreign), tls_cert=foreign.cert, rules=ALLOW, now=NOW
        )


def test_expired_idevid_is_refused(pki: Pki) -> None:
    short = certs.issue_idevid(pki.vendor, "SN-1", masa_url=MASA_URL, now=NOW, days=1)
    data = pki.pvr(signer=short)
    with pytest.raises(Expired):
        role.check_voucher_request(
            pki.ctx, data, tls_cert=short.cert, rules=ALLOW, now=NOW + timedelta(days=3)
        )


def test_serial_number_must_match_idevid(pki: Pki) -> None:
    with pytest.raises(WrongSerial, match=r"'SN-2'.*'SN-1'"):
        role.check_voucher_request(
            pki.ctx,
            pki.pvr(serial_number="SN-2"),
            tls_cert=pki.idevid.cert,
            rules=ALLOW,
            now=NOW,
        )


def test_idevid_without_serial_number_is_refused(pki: Pki) -> None:
    plain = certs.issue_client(pki.vendor, "no-serial", now=NOW)
    with pytest.raises(CertificateError, match="serialNumber"):
        role.check_voucher_request(
            pki.ctx, pki.pvr(signer=plain), tls_cert=plain.cert, rules=ALLOW, now=NOW
        )


def test_proximity_registrar_cert_must_be_ours(pki: Pki) -> None:
    """RFC 8995 §5.3: a mismatch means an on-path attacker: 401, not 403."""
    mitm = certs.issue_registrar(pki.stranger, "mitm", hosts=["127.0.0.1"], now=NOW)
    with pytest.raises(AccessDenied, match="another registrar") as info:
        role.check_voucher_request(
            pki.ctx,
            pki.pvr(proximity_registrar_cert=der(mitm.cert)),
            tls_cert=pki.idevid.cert,
            rules=ALLOW,
            now=NOW,
        )
    assert info.value.http_status == 401
    with pytest.raises(AccessDenied, match="no proximity-registrar-cert"):
        role.check_voucher_request(
            pki.ctx,
            pki.pvr(proximity_registrar_cert=None),
            tls_cert=pki.idevid.cert,
            rules=ALLOW,
            now=NOW,
        )


def test_pledge_must_assert_proximity(pki: Pki) -> None:
    with pytest.raises(AccessDenied, match="'proximity'"):
        role.check_voucher_request(
            pki.ctx,
            pki.pvr(assertion=Assertion.VERIFIED),
            tls_cert=pki.idevid.cert,
            rules=ALLOW,
            now=NOW,
        )


def test_tampered_request_is_refused(pki: Pki) -> None:
    data = bytearray(pki.pvr())
    index = bytes(data).index(b"SN-1")
    data[index + 3] = ord("9")
    with pytest.raises((SignatureInvalid, InvalidInput)):
        role.check_voucher_request(
            pki.ctx, bytes(data), tls_cert=pki.idevid.cert, rules=ALLOW, now=NOW
        )


def test_a_voucher_is_not_a_voucher_request(pki: Pki) -> None:
    with pytest.raises(ZerotouchError):
        role.check_voucher_request(
            pki.ctx, pki.voucher(signer=pki.idevid), tls_cert=pki.idevid.cert, rules=ALLOW, now=NOW
        )


# -- policy -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "auto_accept", "allowed"),
    [
        ([], False, False),
        ([], True, True),
        ([PolicyRule("SN-1", PolicyDecision.ALLOW)], False, True),
        ([PolicyRule("SN-2", PolicyDecision.ALLOW)], False, False),
        ([PolicyRule("SN-1", PolicyDecision.ALLOW, "Vendor Inc")], False, True),
        ([PolicyRule("SN-1", PolicyDecision.ALLOW, "Vendor Root")], False, True),
        ([PolicyRule("SN-1", PolicyDecision.ALLOW, "CN=Vendor Root,O=Vendor Inc")], False, True),
        ([PolicyRule("SN-1", PolicyDecision.ALLOW, "Other Corp")], False, False),
        ([PolicyRule("SN-1", PolicyDecision.DENY)], True, False),
        (
            [PolicyRule("SN-1", PolicyDecision.ALLOW), PolicyRule("SN-1", PolicyDecision.DENY)],
            False,
            False,
        ),
    ],
)
def test_policy_table(pki: Pki, rules: list[PolicyRule], auto_accept: bool, allowed: bool) -> None:
    ctx = replace(pki.ctx, auto_accept=auto_accept)
    if allowed:
        role.check_voucher_request(ctx, pki.pvr(), tls_cert=pki.idevid.cert, rules=rules, now=NOW)
    else:
        with pytest.raises(PolicyRefused, match=r"deny list|allow list"):
            role.check_voucher_request(
                ctx, pki.pvr(), tls_cert=pki.idevid.cert, rules=rules, now=NOW
            )


def test_context_and_rule_validation(pki: Pki) -> None:
    with pytest.raises(ValueError, match="manufacturer CA"):
        role.RegistrarContext(registrar=pki.registrar, domain_ca=pki.domain, manufacturer_cas=())
    with pytest.raises(TypeError):
        role.RegistrarContext(
            registrar=pki.registrar.cert,  # type: ignore[arg-type]
            domain_ca=pki.domain,
            manufacturer_cas=(pki.vendor.cert,),
        )
    with pytest.raises(ValueError):
        PolicyRule("", PolicyDecision.ALLOW)
    with pytest.raises(ValueError):
        PolicyRule("SN", "maybe")  # type: ignore[arg-type]


# -- the MASA's voucher -----------------------------------------------------------------------


def test_good_voucher_is_relayed(pki: Pki) -> None:
    voucher = role.check_masa_voucher(pki.ctx, pki.voucher(), pledge=accepted(pki), now=NOW)
    assert voucher.serial_number == "SN-1"
    pinned_registrar = pki.voucher(pinned_domain_cert=der(pki.registrar.cert))
    role.check_masa_voucher(pki.ctx, pinned_registrar, pledge=accepted(pki), now=NOW)


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"serial_number": "SN-2"}, "wrong-serial"),
        ({"nonce": base64.b64encode(b"another-nonce!!!").decode()}, "wrong-nonce"),
        ({"nonce": None, "expires_on": NOW + timedelta(days=1)}, "wrong-nonce"),
    ],
)
def test_bad_voucher_is_never_relayed(pki: Pki, fields: dict[str, object], needle: str) -> None:
    with pytest.raises(UpstreamInvalid, match=needle):
        role.check_masa_voucher(pki.ctx, pki.voucher(**fields), pledge=accepted(pki), now=NOW)


def test_nonceless_voucher_past_expires_on_is_refused(pki: Pki) -> None:
    nonceless = role.check_voucher_request(
        pki.ctx, pki.pvr(nonce=None), tls_cert=pki.idevid.cert, rules=ALLOW, now=NOW
    )
    good = pki.voucher(nonce=None, expires_on=NOW + timedelta(days=1))
    role.check_masa_voucher(pki.ctx, good, pledge=nonceless, now=NOW)
    with pytest.raises(UpstreamInvalid, match="expired"):
        role.check_masa_voucher(pki.ctx, good, pledge=nonceless, now=NOW + timedelta(days=2))


def test_voucher_idevid_issuer_must_name_the_pledges_issuer(pki: Pki) -> None:
    for form in idevid_issuer_forms(pki.idevid.cert).values():
        role.check_masa_voucher(
            pki.ctx, pki.voucher(idevid_issuer=form), pledge=accepted(pki), now=NOW
        )
    with pytest.raises(UpstreamInvalid, match="idevid-issuer"):
        role.check_masa_voucher(
            pki.ctx, pki.voucher(idevid_issuer=b"\x00" * 20), pledge=accepted(pki), now=NOW
        )


def test_voucher_pinning_another_domain_is_refused(pki: Pki) -> None:
    with pytest.raises(UpstreamInvalid, match="pins a certificate"):
        role.check_masa_voucher(
            pki.ctx,
            pki.voucher(pinned_domain_cert=der(pki.stranger.cert)),
            pledge=accepted(pki),
            now=NOW,
        )


def test_voucher_from_untrusted_signer_is_refused(pki: Pki) -> None:
    rogue = certs.issue_masa_signer(pki.stranger, "rogue MASA", now=NOW)
    with pytest.raises(UpstreamInvalid, match="untrusted-signer"):
        role.check_masa_voucher(pki.ctx, pki.voucher(signer=rogue), pledge=accepted(pki), now=NOW)
    trusting = replace(pki.ctx, masa_trust=(pki.stranger.cert,))
    role.check_masa_voucher(trusting, pki.voucher(signer=rogue), pledge=accepted(pki), now=NOW)


def test_masa_url_resolution(pki: Pki) -> None:
    assert role.masa_url_for(pki.idevid.cert, None) == MASA_URL
    assert role.masa_url_for(pki.idevid.cert, "https://m.example/") == "https://m.example"
    assert role.masa_url_for(pki.idevid.cert, "m.example:9443") == "https://m.example:9443"
    assert (
        role.masa_url_for(pki.idevid.cert, "https://m.example/.well-known/brski")
        == "https://m.example"
    )
    with pytest.raises(CertificateError, match="not an https URL"):
        role.masa_url_for(pki.idevid.cert, "http://m.example")
    no_url = certs.issue_idevid(pki.vendor, "SN-9", masa_url=None, now=NOW)
    with pytest.raises(CertificateError, match="no MASA URL"):
        role.masa_url_for(no_url.cert, None)


# -- vouchers held in escrow (nonceless, relayed while the MASA is unreachable) --------------

LATER = NOW + timedelta(days=30)


def nonceless(pki: Pki, **fields: object) -> bytes:
    values: dict[str, object] = {"nonce": None, "expires_on": LATER}
    values.update(fields)
    return pki.voucher(**values)


def test_a_nonceless_voucher_for_this_domain_is_taken_into_escrow(pki: Pki) -> None:
    signed = nonceless(pki)
    held = role.check_escrow_voucher(pki.ctx, signed, serial="SN-1", now=NOW)
    assert (held.serial, held.expires_on) == ("SN-1", LATER)
    assert held.signer == pki.masa.cert.subject.rfc4514_string()
    assert held.voucher.nonce is None and held.cms_der == signed
    # the serial may come from the voucher itself (CLI import), and base64 text is read too
    text = base64.b64encode(signed)
    assert role.check_escrow_voucher(pki.ctx, text, serial=None, now=NOW).serial == "SN-1"
    pinned_registrar = nonceless(pki, pinned_domain_cert=der(pki.registrar.cert))
    role.check_escrow_voucher(pki.ctx, pinned_registrar, serial="SN-1", now=NOW)


@pytest.mark.parametrize(
    ("fields", "error", "needle"),
    [
        ({"serial_number": "SN-2"}, WrongSerial, "'SN-2', not 'SN-1'"),
        ({"nonce": NONCE, "expires_on": None}, InvalidInput, "carries a nonce"),
        ({"expires_on": None}, InvalidInput, "no expires-on"),
        ({"expires_on": NOW - timedelta(seconds=1)}, Expired, "expired on"),
        ({"pinned_domain_cert": b"\x30\x03\x02\x01\x01"}, PolicyRefused, "another domain"),
    ],
    ids=["other-serial", "nonce", "no-expiry", "expired", "other-domain"],
)
def test_what_escrow_refuses(
    pki: Pki, fields: dict[str, object], error: type[ZerotouchError], needle: str
) -> None:
    with pytest.raises(error, match=re.escape(needle)):
        role.check_escrow_voucher(pki.ctx, nonceless(pki, **fields), serial="SN-1", now=NOW)


def test_escrow_needs_a_signer_under_the_manufacturer_anchors(pki: Pki) -> None:
    forger = certs.issue_masa_signer(pki.stranger, "Forged MASA", now=NOW)
    with pytest.raises(UntrustedSigner):
        role.check_escrow_voucher(pki.ctx, nonceless(pki, signer=forger), serial="SN-1", now=NOW)
    with pytest.raises(InvalidInput):
        role.check_escrow_voucher(pki.ctx, b"not a voucher", serial="SN-1", now=NOW)


def test_a_held_voucher_is_checked_again_when_handed_out(pki: Pki) -> None:
    pledge = accepted(pki)
    voucher = role.escrow_voucher_for(pki.ctx, nonceless(pki), pledge=pledge, now=NOW)
    assert voucher.nonce is None and voucher.serial_number == "SN-1"
    with pytest.raises(Expired):  # imported in time, expired since
        role.escrow_voucher_for(
            pki.ctx, nonceless(pki), pledge=pledge, now=LATER + timedelta(seconds=1)
        )
    with pytest.raises(WrongSerial, match="idevid-issuer"):
        role.escrow_voucher_for(
            pki.ctx, nonceless(pki, idevid_issuer=b"\x01" * 20), pledge=pledge, now=NOW
        )


# -- status reports and audit log -------------------------------------------------------------


def test_status_reports() -> None:
    report = role.parse_status_report(
        b'{"version": 1, "status": false, "reason": "bad voucher", "reason-context": {}}'
    )
    assert (report.status, report.reason) == (False, "bad voucher")
    with pytest.raises(InvalidInput, match="not JSON"):
        role.parse_status_report(b"{nope")
    with pytest.raises(SchemaError, match="boolean 'status'"):
        role.parse_status_report(b'{"version": 1, "status": "true"}')
    with pytest.raises(SchemaError, match="'reason'"):
        role.parse_status_report(b'{"version": 1, "status": true, "reason": 3}')


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        (b'{"status": true}', "/version", "needs a 'version' member"),
        (b'{"version": "1", "status": true}', "/version", "JSON integer, 1, not str"),
        (b'{"version": "banana", "status": true}', "/version", "JSON integer, 1, not str"),
        (b'{"version": true, "status": true}', "/version", "JSON integer, 1, not bool"),
        (b'{"version": null, "status": true}', "/version", "JSON integer, 1, not NoneType"),
        (b'{"version": 2, "status": true}', "/version", "version 2 is not supported"),
        (
            b'{"version": 1, "status": true, "reason-context": "not-a-map"}',
            "/reason-context",
            "'reason-context' must be a JSON object",
        ),
        (b'{"version": 1, "status": true, "reason-context": []}', "/reason-context", "object"),
    ],
)
def test_status_report_needs_version_1_and_an_object_as_reason_context(
    body: bytes, path: str, message: str
) -> None:
    """RFC 8995 §5.7 and §5.9.4: "version": uint (1 for this format), "reason-context" a
    map; anything else is a 400 naming the member."""
    with pytest.raises(SchemaError, match=re.escape(message)) as refused:
        role.parse_status_report(body)
    assert refused.value.path == path


@pytest.mark.parametrize(
    "reason", [b'"failed\\u0000"', b'"failed\\ud800"', b'"failed\xed\xa0\x80"', b'"\\u001b[2J"']
)
def test_status_report_reason_that_cannot_be_stored_is_refused(reason: bytes) -> None:
    """NUL cannot go into a PostgreSQL text column and a lone surrogate (escaped, or raw
    UTF-8 that json.loads decodes with surrogatepass) not into UTF-8: 400, not a 500 later."""
    with pytest.raises(SchemaError, match="'reason' holds"):
        role.parse_status_report(b'{"version": 1, "status": false, "reason": ' + reason + b"}")


@pytest.mark.parametrize(
    "body",
    [
        b'{"status": true, "reason-context": {"zerotouch-management": {"netconf-tls-port": '
        + b"9" * 5000
        + b"}}}",
        b'{"status": true, "reason-context": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"status": true, "reason-context": ' + b"[" * 64 + b"]" * 64 + b"}",
    ],
    ids=["port-of-5000-digits", "nested-5000-deep", "nested-65-deep"],
)
def test_status_report_a_parser_cannot_hold_is_invalid_input(body: bytes) -> None:
    """Refused as InvalidInput (400), never an internal error (500): huge integers, and
    nesting past the bound of every interpreter (65 levels parse everywhere; 5,000 on 3.13)."""
    with pytest.raises(InvalidInput, match="not JSON"):
        role.parse_status_report(body)


def audit(*events: tuple[bytes, str | None], truncation: dict[str, int] | None = None) -> bytes:
    log: dict[str, object] = {
        "version": "1",
        "events": [
            {
                "date": "2026-11-26T12:00:00Z",
                "domainID": base64.b64encode(domain).decode(),
                "nonce": nonce,
                "assertion": "logged",
            }
            for domain, nonce in events
        ],
    }
    if truncation:
        log["truncation"] = truncation
    return json.dumps(log).encode()


OURS, THEIRS = b"\x01" * 20, b"\x02" * 20


@pytest.mark.parametrize(
    ("log", "level", "needle"),
    [
        (audit((OURS, NONCE)), AuditLevel.CLEAN, "all for this domain"),
        (audit((OURS, None)), AuditLevel.CLEAN, "all for this domain"),
        (audit((THEIRS, NONCE), (OURS, NONCE)), AuditLevel.WARNING, "1 other domain"),
        (audit((THEIRS, None), (OURS, NONCE)), AuditLevel.ALERT, "nonceless"),
        (audit((OURS, NONCE), truncation={"arbitrary": 2}), AuditLevel.WARNING, "truncated"),
        (audit(), AuditLevel.WARNING, "no entry for this domain"),
    ],
)
def test_audit_log_verdicts(log: bytes, level: AuditLevel, needle: str) -> None:
    verdict = role.evaluate_audit_log(log, own_ids=[OURS])
    assert verdict.level is level
    assert needle in verdict.summary


def test_audit_log_malformed() -> None:
    with pytest.raises(UpstreamInvalid, match="not JSON"):
        role.evaluate_audit_log(b"<html>", own_ids=[OURS])
    with pytest.raises(UpstreamInvalid, match="'events'"):
        role.evaluate_audit_log(b'{"version": "1"}', own_ids=[OURS])
    with pytest.raises(UpstreamInvalid, match="domainID"):
        role.evaluate_audit_log(b'{"events": [{"nonce": null}]}', own_ids=[OURS])
    # what the JSON parser cannot hold is the MASA's fault too, not a registrar 500
    for unusable in (b'{"events": [], "n": ' + b"9" * 5000 + b"}", b"[" * 5000 + b"]" * 5000):
        with pytest.raises(UpstreamInvalid, match="not JSON"):
            role.evaluate_audit_log(unusable, own_ids=[OURS])


# RFC 8995 §5.8.1 "Example of an Audit-Log Response", verbatim (tests/vectors/data): its
# truncation counts (and the event's "truncated") are strings, its second nonce padded base64,
# its first base64url.
RFC8995_AUDIT_LOG_EXAMPLE = (DATA / "examples/rfc8995-inline/example-auditlog.json").read_bytes()
RFC8995_EXAMPLE_DOMAIN = base64.b64decode("BduJhdHPpfhQLyponf48JzXSGZ8=")


def test_audit_log_rfc8995_example_with_string_counts() -> None:
    """The string counts "1" and "2" are read as 3 truncated events (they were ignored)."""
    verdict = role.evaluate_audit_log(RFC8995_AUDIT_LOG_EXAMPLE, own_ids=[RFC8995_EXAMPLE_DOMAIN])
    assert verdict.level is AuditLevel.WARNING
    assert verdict.own_events == 2
    assert verdict.summary == "3 event(s) truncated by the MASA"
    other = role.evaluate_audit_log(RFC8995_AUDIT_LOG_EXAMPLE, own_ids=[OURS])
    assert other.other_domains == ("BduJhdHPpfhQLyponf48JzXSGZ8=",)
    assert "3 event(s) truncated" in other.summary


@pytest.mark.parametrize(
    ("truncation", "needle"),
    [
        ({"arbitrary": "two"}, "'arbitrary' is 'two'"),
        ({"arbitrary": -1}, "'arbitrary' is -1"),
        ({"arbitrary": True}, "'arbitrary' is True"),
        ({"arbitrary": 1.5}, "'arbitrary' is 1.5"),
        ({"arbitrary": "1e3"}, "'arbitrary' is '1e3'"),
        ({"arbitrary": " 2"}, "'arbitrary' is ' 2'"),
        ({"arbitrary": None}, "'arbitrary' is None"),
        ([1, 2], "'truncation' is list"),
        ("3", "'truncation' is str"),
    ],
)
def test_audit_log_truncation_garbage_is_refused(truncation: object, needle: str) -> None:
    log = json.loads(audit((OURS, NONCE)))
    log["truncation"] = truncation
    with pytest.raises(UpstreamInvalid, match=re.escape(needle)):
        role.evaluate_audit_log(json.dumps(log).encode(), own_ids=[OURS])


def test_audit_log_integer_counts_still_read() -> None:
    log = audit((OURS, NONCE), truncation={"nonced duplicates": 4, "arbitrary": 0})
    assert "4 event(s) truncated" in role.evaluate_audit_log(log, own_ids=[OURS]).summary


def test_domain_id_is_the_subject_key_identifier(pki: Pki) -> None:
    ski = pki.domain.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert role.domain_id(pki.domain.cert) == ski.value.digest


# -- who is calling, and may it enroll --------------------------------------------------------


def ldevid_for(pki: Pki, serial: str) -> x509.Certificate:
    csr = certs.make_csr(ec.generate_private_key(ec.SECP256R1()), serial=serial)
    return role.issue_ldevid(pki.ctx, serial, csr, now=NOW)


def test_identify_client(pki: Pki) -> None:
    assert role.identify_client(pki.ctx, pki.idevid.cert, now=NOW).kind is ClientKind.IDEVID
    ldevid = role.identify_client(pki.ctx, ldevid_for(pki, "SN-1"), now=NOW)
    assert (ldevid.kind, ldevid.serial) == (ClientKind.LDEVID, "SN-1")
    nms = certs.issue_client(pki.domain, "nms", now=NOW)
    assert role.identify_client(pki.ctx, nms.cert, now=NOW).kind is ClientKind.DOMAIN
    admin_csr = certs.make_csr(ec.generate_private_key(ec.SECP256R1()))
    admin = certs.issue_from_csr(
        pki.domain,
        admin_csr,
        subject=x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, "alice"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role.ADMIN_OU),
            ]
        ),
        san=[],
        now=NOW,
        server_auth=False,
    )
    assert role.identify_client(pki.ctx, admin, now=NOW).kind is ClientKind.ADMIN
    with pytest.raises(AccessDenied):
        role.identify_client(pki.ctx, None, now=NOW)
    foreign = certs.issue_client(pki.stranger, "x", now=NOW)
    with pytest.raises(UntrustedSigner):
        role.identify_client(pki.ctx, foreign.cert, now=NOW)


def facts(pki: Pki, state: S | None, **kw: object) -> DeviceFacts:
    values: dict[str, object] = {
        "serial": "SN-1",
        "state": state,
        "idevid_fingerprint": certs.fingerprint(pki.idevid.cert),
        "audit_level": AuditLevel.CLEAN,
    }
    values.update(kw)
    return DeviceFacts(**values)  # type: ignore[arg-type]


def csr_for(serial: str | None = "SN-1") -> x509.CertificateSigningRequest:
    return certs.make_csr(ec.generate_private_key(ec.SECP256R1()), serial=serial)


def idevid_client(pki: Pki) -> role.ClientIdentity:
    return role.identify_client(pki.ctx, pki.idevid.cert, now=NOW)


@pytest.mark.parametrize(
    "state", [S.VOUCHER_ACCEPTED, S.ENROLLED, S.ENROLL_FAILED, S.ENROLL_CONFIRMED]
)
def test_enrollment_after_accepted_voucher(pki: Pki, state: S) -> None:
    serial = role.authorize_enrollment(
        pki.ctx, idevid_client(pki), facts(pki, state), csr_for(), rules=ALLOW, reenroll=False
    )
    assert serial == "SN-1"


@pytest.mark.parametrize(
    "state", [None, S.REFUSED, S.VOUCHER_REQUESTED, S.VOUCHER_ISSUED, S.VOUCHER_REJECTED]
)
def test_no_enrollment_without_accepted_voucher(pki: Pki, state: S | None) -> None:
    with pytest.raises(PolicyRefused, match="voucher_status success"):
        role.authorize_enrollment(
            pki.ctx, idevid_client(pki), facts(pki, state), csr_for(), rules=ALLOW, reenroll=False
        )
    with pytest.raises(PolicyRefused, match="has not requested a voucher"):
        role.authorize_enrollment(
            pki.ctx, idevid_client(pki), None, csr_for(), rules=ALLOW, reenroll=False
        )


def test_enrollment_refusals(pki: Pki) -> None:
    accepted_facts = facts(pki, S.VOUCHER_ACCEPTED)
    client = idevid_client(pki)
    with pytest.raises(CertificateError, match="not the one that obtained"):
        role.authorize_enrollment(
            pki.ctx,
            client,
            replace(accepted_facts, idevid_fingerprint="sha256:00"),
            csr_for(),
            rules=ALLOW,
            reenroll=False,
        )
    with pytest.raises(PolicyRefused, match="nonceless voucher for another domain"):
        role.authorize_enrollment(
            pki.ctx,
            client,
            replace(accepted_facts, audit_level=AuditLevel.ALERT),
            csr_for(),
            rules=ALLOW,
            reenroll=False,
        )
    unjudged = replace(accepted_facts, audit_required=True, audit_level=None)
    with pytest.raises(UpstreamUnavailable, match="audit log of device SN-1 has not been judged"):
        role.authorize_enrollment(pki.ctx, client, unjudged, csr_for(), rules=ALLOW, reenroll=False)
    assert (
        role.authorize_enrollment(
            pki.ctx,
            client,
            replace(unjudged, audit_level=AuditLevel.CLEAN),
            csr_for(),
            rules=ALLOW,
            reenroll=False,
        )
        == "SN-1"
    )
    with pytest.raises(PolicyRefused, match="deny list"):
        role.authorize_enrollment(
            pki.ctx,
            client,
            accepted_facts,
            csr_for(),
            rules=[PolicyRule("SN-1", PolicyDecision.DENY)],
            reenroll=False,
        )
    with pytest.raises(WrongSerial, match="'SN-7'"):
        role.authorize_enrollment(
            pki.ctx, client, accepted_facts, csr_for("SN-7"), rules=ALLOW, reenroll=False
        )
    with pytest.raises(AccessDenied, match="current LDevID"):
        role.authorize_enrollment(
            pki.ctx, client, accepted_facts, csr_for(), rules=ALLOW, reenroll=True
        )


def test_an_idevid_serial_longer_than_ub_serial_number_is_400(pki: Pki) -> None:
    """RFC 5280 ub-serial-number (64): a longer IDevID serialNumber names no device; refused
    400 as the client is classified, before any store is asked about it."""
    for length, ok in ((64, True), (65, False)):
        idevid = certs.issue_idevid(pki.vendor, "S" * length, masa_url=MASA_URL, now=NOW)
        if ok:
            assert role.identify_client(pki.ctx, idevid.cert, now=NOW).serial == "S" * length
            continue
        with pytest.raises(InvalidInput, match="at most 64 printable characters") as refused:
            role.identify_client(pki.ctx, idevid.cert, now=NOW)
        assert refused.value.http_status == 400


def test_an_idevid_enrollment_off_the_allow_list_waits_under_policy_ask(pki: Pki) -> None:
    """Policy ``ask``: a device on no list, or held, waits for an operator (simpleenroll
    answers 202, RFC 7030 §4.2.3); without ``ask`` it is refused as at requestvoucher."""
    accepted_facts = facts(pki, S.VOUCHER_ACCEPTED)
    client = idevid_client(pki)
    asking = replace(pki.ctx, ask=True)
    held = [PolicyRule("SN-1", PolicyDecision.PENDING)]
    for ctx, rules in ((asking, []), (asking, held), (pki.ctx, held)):
        with pytest.raises(AwaitingApproval, match="waiting for an operator's approval"):
            role.authorize_enrollment(
                ctx, client, accepted_facts, csr_for(), rules=rules, reenroll=False
            )
    with pytest.raises(PolicyRefused, match="allow list") as refused:
        role.authorize_enrollment(
            pki.ctx, client, accepted_facts, csr_for(), rules=[], reenroll=False
        )
    assert not isinstance(refused.value, AwaitingApproval)


def test_reenrollment_with_ldevid(pki: Pki) -> None:
    client = role.identify_client(pki.ctx, ldevid_for(pki, "SN-1"), now=NOW)
    for state in (S.ENROLLED, S.ENROLL_CONFIRMED):
        assert (
            role.authorize_enrollment(
                pki.ctx, client, facts(pki, state), csr_for(None), rules=[], reenroll=True
            )
            == "SN-1"
        )
    with pytest.raises(PolicyRefused, match="holds no LDevID"):
        role.authorize_enrollment(
            pki.ctx, client, facts(pki, S.VOUCHER_REQUESTED), csr_for(), rules=[], reenroll=True
        )


def csr_asking(*names: x509.GeneralName, key: object = None) -> x509.CertificateSigningRequest:
    """A CSR that asks for ``names`` in its subjectAltName (and a CN that is ignored too)."""
    private = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ignored")])
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(private, certs.signature_hash(private))  # type: ignore[arg-type]


FOREIGN_SANS = (
    x509.DNSName("localhost"),
    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    x509.DNSName("*.example.com"),
    x509.DNSName("sn-2.devices.zerotouch.internal"),  # another device's name
    x509.UniformResourceIdentifier("https://evil.example"),
)


def test_ldevid_profile_names_come_from_policy_only(pki: Pki) -> None:
    """Issue 9 item 13: the LDevID carries <serial label>.<device_domain>; nothing the CSR
    asks for is copied (localhost, 127.0.0.1, a wildcard, another serial's name, a URI)."""
    csr = csr_asking(*FOREIGN_SANS)
    names = role.ldevid_names(pki.ctx, "SN-1", csr)
    assert names.dns_names == ("sn-1.devices.zerotouch.internal",) and names.addresses == ()
    assert names.ignored == (
        "localhost", "127.0.0.1", "*.example.com", "sn-2.devices.zerotouch.internal",
        "https://evil.example",
    )  # fmt: skip
    cert = role.issue_ldevid(pki.ctx, "SN-1", csr, now=NOW, names=names)
    assert cert.subject == role.ldevid_subject("SN-1")
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [x509.DNSName("sn-1.devices.zerotouch.internal")]
    assert ldevid_dns_name(der(cert)) == "sn-1.devices.zerotouch.internal"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert cert.not_valid_after_utc - NOW >= timedelta(days=364)
    certs.verify_chain(cert, trust_anchors=[pki.domain.cert], now=NOW, purpose="client")
    default = role.issue_ldevid(pki.ctx, "SN-1", csr_for(), now=NOW)  # names by default
    assert ldevid_dns_name(der(default)) == "sn-1.devices.zerotouch.internal"
    assert ldevid_dns_name(b"not a certificate") is None


def test_ldevid_names_add_the_operator_assigned_address(pki: Pki) -> None:
    """The host of the management address override goes in: an IP as iPAddress, a name as
    dNSName; the CSR asking for exactly those is then not 'ignored'."""
    ctx = replace(pki.ctx, device_domain="Devices.Example.NET.")
    assert ctx.device_domain == "devices.example.net"
    csr = csr_asking(x509.IPAddress(ipaddress.ip_address("192.0.2.7")), x509.DNSName("x.test"))
    names = role.ldevid_names(ctx, "Sw-0042", csr, assigned_hosts=["192.0.2.7", "OOB.Site.test"])
    assert names.dns_names == ("sw-0042.devices.example.net", "oob.site.test")
    assert names.addresses == (ipaddress.ip_address("192.0.2.7"),)
    assert names.ignored == ("x.test",)
    cert = role.issue_ldevid(ctx, "Sw-0042", csr, now=NOW, names=names)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [
        "sw-0042.devices.example.net", "oob.site.test",
    ]  # fmt: skip
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("192.0.2.7")]


@pytest.mark.parametrize(
    "serial", ["SN.1", "SN_1", "SN 1", "-SN1", "SN1-", "sn\u00e91", "S" * 64, "", "SN/1"]
)
def test_a_serial_that_is_no_dns_label_gets_no_ldevid(pki: Pki, serial: str) -> None:
    with pytest.raises(PolicyRefused, match="cannot be a DNS label") as info:
        role.ldevid_names(pki.ctx, serial, csr_for(None))
    assert info.value.http_status == 403


def test_serials_differing_only_in_case_do_not_share_a_name(pki: Pki) -> None:
    with pytest.raises(PolicyRefused, match=r"sn-1\.devices.* device 'SN-1' already holds"):
        role.ldevid_names(pki.ctx, "sn-1", csr_for(None), same_name=["SN-1"])


@pytest.mark.parametrize("domain", ["internal", "a..b", "-a.b", "a_b.c", "x" * 64 + ".net"])
def test_device_domain_must_be_a_dns_domain(pki: Pki, domain: str) -> None:
    with pytest.raises(ValueError, match="device_domain"):
        replace(pki.ctx, device_domain=domain)


@pytest.mark.parametrize(
    ("key", "needle"),
    [
        (lambda: rsa.generate_private_key(65537, 1024), "RSA-1024"),
        (lambda: ec.generate_private_key(ec.SECP224R1()), "EC secp224r1"),
        (lambda: ec.generate_private_key(ec.SECP192R1()), "EC secp192r1"),
        (lambda: dsa.generate_private_key(2048), "DSAPublicKey"),
    ],
    ids=["rsa-1024", "p-224", "p-192", "dsa"],
)
def test_weak_csr_keys_are_refused(pki: Pki, key: object, needle: str) -> None:
    """Issue 11 hardening: 400 naming the key."""
    private = key()  # type: ignore[operator]
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "SN-1")]))
        .sign(private, hashes.SHA256())
    )
    with pytest.raises(InvalidInput, match=re.escape(needle)) as info:
        role.authorize_enrollment(
            pki.ctx, idevid_client(pki), facts(pki, S.VOUCHER_ACCEPTED), csr, rules=ALLOW,
            reenroll=False,
        )  # fmt: skip
    assert info.value.http_status == 400


@pytest.mark.parametrize(
    "key",
    [
        lambda: rsa.generate_private_key(65537, 2048),
        lambda: ec.generate_private_key(ec.SECP384R1()),
        ed25519.Ed25519PrivateKey.generate,
    ],
    ids=["rsa-2048", "p-384", "ed25519"],
)
def test_strong_csr_keys_are_accepted(pki: Pki, key: object) -> None:
    private = key()  # type: ignore[operator]
    csr = certs.make_csr(private, serial="SN-1")
    assert role.authorize_enrollment(
        pki.ctx, idevid_client(pki), facts(pki, S.VOUCHER_ACCEPTED), csr, rules=ALLOW,
        reenroll=False,
    ) == "SN-1"  # fmt: skip


# -- state table ------------------------------------------------------------------------------


def test_state_table() -> None:
    assert role.next_state(None, E.PVR_ACCEPTED) is S.VOUCHER_REQUESTED
    assert role.next_state(S.ENROLL_CONFIRMED, E.PVR_ACCEPTED) is S.VOUCHER_REQUESTED
    assert role.next_state(S.VOUCHER_ISSUED, E.VOUCHER_STATUS_SUCCESS) is S.VOUCHER_ACCEPTED
    assert role.next_state(S.VOUCHER_ACCEPTED, E.CERT_ISSUED) is S.ENROLLED
    assert role.next_state(S.ENROLLED, E.ENROLL_STATUS_SUCCESS) is S.ENROLL_CONFIRMED
    with pytest.raises(Conflict, match="not expected"):
        role.next_state(S.VOUCHER_REQUESTED, E.CERT_ISSUED)
    with pytest.raises(Conflict):
        role.next_state(None, E.VOUCHER_STATUS_SUCCESS)


def test_readme_and_docs_diagram_is_generated_from_the_table(repo_root: Path) -> None:
    restart = (E.PVR_ACCEPTED, E.PVR_REFUSED)
    main_path = {
        (state, event): target
        for (state, event), target in REGISTRAR_TRANSITIONS.items()
        if state is None or event not in restart
    }
    diagram = f"```mermaid\n{render_mermaid(main_path)}```"
    assert diagram in (repo_root / "README.md").read_text()
    page = (repo_root / "docs" / "state-machines.md").read_text()
    assert diagram in page.split("## Registrar", 1)[1]


def test_a_csr_with_two_serial_numbers_is_named_so(pki: Pki) -> None:
    names = [x509.NameAttribute(NameOID.SERIAL_NUMBER, s) for s in ("SN-1", "SN-2")]
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(names))
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    )
    with pytest.raises(WrongSerial, match="the CSR subject has 2 serialNumber attributes"):
        role.authorize_enrollment(
            pki.ctx, idevid_client(pki), facts(pki, S.VOUCHER_ACCEPTED), csr, rules=ALLOW,
            reenroll=False,
        )  # fmt: skip


def test_a_registrar_request_larger_than_the_masa_takes_is_413() -> None:
    role.check_masa_request_size(b"x" * 100, pledge_request=b"p" * 70, limit=100)
    with pytest.raises(PayloadTooLarge, match=r"of 70 bytes would make .* of 101 bytes") as info:
        role.check_masa_request_size(b"x" * 101, pledge_request=b"p" * 70, limit=100)
    assert info.value.http_status == 413
