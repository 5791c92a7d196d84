"""Certificates: issuance (IDevID extensions, registrar EKUs, LDevID from CSR), path
validation (never a bad signature, wrong issuer, expired certificate or non-CA issuer), and
PEM/DER encoding."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.cert_bags import cross_signed
from tests.support.idevid_issuer_forms import idevid_issuer_forms
from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.artifacts.certs import verification
from zerotouch_plugin.errors import (
    CertificateError,
    Expired,
    InvalidInput,
    SignatureInvalid,
    UntrustedSigner,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
KINDS: list[certs.KeyKind] = ["p256", "p384", "p521", "rsa2048", "ed25519"]


@pytest.fixture(scope="module")
def vendor() -> certs.Identity:
    return certs.make_ca("Test Manufacturer CA", now=NOW, organization="Test")


@pytest.fixture(scope="module")
def idevid(vendor: certs.Identity) -> certs.Identity:
    return certs.issue_idevid(vendor, "SN-0001", masa_url="https://masa.example:9443", now=NOW)


def _build(
    issuer: certs.Identity,
    *,
    subject: str = "leaf",
    ca: bool = False,
    not_before: datetime = NOW - timedelta(days=1),
    not_after: datetime = NOW + timedelta(days=1),
    critical_unknown: bool = False,
) -> certs.Identity:
    """A hand-built certificate for the negative cases the issuing API never produces."""
    key = certs.generate_key("p256")
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if critical_unknown:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.65535.99"), b"\x05\x00"),
            critical=True,
        )
    cert = builder.sign(issuer.key, certs.signature_hash(issuer.key))
    return certs.Identity(cert, key)


# ---------------------------------------------------------------------------------------------
# keys and issuance


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("p256", ec.EllipticCurvePrivateKey),
        ("p384", ec.EllipticCurvePrivateKey),
        ("p521", ec.EllipticCurvePrivateKey),
        ("rsa2048", rsa.RSAPrivateKey),
        ("ed25519", ed25519.Ed25519PrivateKey),
    ],
)
def test_generate_key_kinds(kind: certs.KeyKind, expected: type) -> None:
    key = certs.generate_key(kind)
    assert isinstance(key, expected)
    assert certs.key_kind_of(key) == kind


def test_generate_key_rsa3072() -> None:
    key = certs.generate_key("rsa3072")
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 3072


def test_generate_key_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown key kind"):
        certs.generate_key("dsa1024")  # type: ignore[arg-type]


def test_default_key_is_p256() -> None:
    key = certs.generate_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"


def test_make_ca_is_self_signed_ca(vendor: certs.Identity) -> None:
    cert = vendor.cert
    assert cert.subject == cert.issuer
    cert.verify_directly_issued_by(cert)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert cert.not_valid_before_utc <= NOW <= cert.not_valid_after_utc
    assert vendor.chain == ()


def test_make_ca_rejects_naive_time_and_bad_days() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        certs.make_ca("x", now=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="days"):
        certs.make_ca("x", now=NOW, days=0)
    with pytest.raises(TypeError):
        certs.make_ca("x", now="2026-01-01")  # type: ignore[arg-type]


def test_idevid_carries_rfc8995_identity(idevid: certs.Identity, vendor: certs.Identity) -> None:
    cert = idevid.cert
    assert certs.serial_number_of(cert) == "SN-0001"
    assert certs.masa_url_of(cert) == "https://masa.example:9443"
    assert certs.hardware_module_name_of(cert) == ("1.3.6.1.4.1.65535.1", b"SN-0001")
    # RFC 5280 §4.1.2.5 / IEEE 802.1AR: no well-defined expiration.
    assert cert.not_valid_after_utc == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    masa_ext = cert.extensions.get_extension_for_oid(certs.OID_MASA_URL)
    assert not masa_ext.critical
    assert masa_ext.value.value[:1] == b"\x16"  # IA5String tag, RFC 8995 §2.3.2
    assert cert.issuer == vendor.cert.subject
    cert.verify_directly_issued_by(vendor.cert)


def test_idevid_without_masa_url_and_with_days(vendor: certs.Identity) -> None:
    identity = certs.issue_idevid(vendor, "SN-2", masa_url=None, now=NOW, days=10)
    assert certs.masa_url_of(identity.cert) is None
    assert identity.cert.not_valid_after_utc == NOW + timedelta(days=10)


def test_idevid_rejects_empty_serial_and_non_ascii_url(vendor: certs.Identity) -> None:
    with pytest.raises(ValueError, match="serial"):
        certs.issue_idevid(vendor, "", masa_url=None, now=NOW)
    with pytest.raises(ValueError, match="ASCII"):
        certs.issue_idevid(vendor, "SN", masa_url="https://mäsa.example", now=NOW)


def test_serial_and_masa_url_absent_on_other_certs(vendor: certs.Identity) -> None:
    assert certs.serial_number_of(vendor.cert) is None
    assert certs.masa_url_of(vendor.cert) is None
    assert certs.hardware_module_name_of(vendor.cert) is None


def test_registrar_has_cmc_ra_and_tls_ekus(vendor: certs.Identity) -> None:
    registrar = certs.issue_registrar(
        vendor, "registrar", hosts=["localhost", "127.0.0.1", "::1"], now=NOW
    )
    ekus = list(registrar.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert ekus == [
        certs.OID_KP_CMC_RA,
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ]
    san = registrar.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    for purpose in ("any", "server", "client"):
        chain = certs.verify_chain(
            registrar.cert, trust_anchors=[vendor.cert], now=NOW, purpose=purpose
        )
        assert chain[-1] == vendor.cert


def test_tls_server_purposes(vendor: certs.Identity) -> None:
    server = certs.issue_tls_server(vendor, "srv", hosts=["localhost"], now=NOW)
    certs.verify_chain(server.cert, trust_anchors=[vendor.cert], now=NOW, purpose="server")
    with pytest.raises(UntrustedSigner, match="client"):
        certs.verify_chain(server.cert, trust_anchors=[vendor.cert], now=NOW, purpose="client")
    both = certs.issue_tls_server(vendor, "srv", hosts=["localhost"], now=NOW, client_auth=True)
    certs.verify_chain(both.cert, trust_anchors=[vendor.cert], now=NOW, purpose="client")


def test_client_cert_purposes(vendor: certs.Identity) -> None:
    client = certs.issue_client(vendor, "operator", now=NOW)
    certs.verify_chain(client.cert, trust_anchors=[vendor.cert], now=NOW, purpose="client")
    with pytest.raises(UntrustedSigner):
        certs.verify_chain(client.cert, trust_anchors=[vendor.cert], now=NOW, purpose="server")
    # "any" never looks at EKU: vouchers are signed by certificates of any EKU.
    certs.verify_chain(client.cert, trust_anchors=[vendor.cert], now=NOW, purpose="any")


def test_hosts_must_be_a_sequence(vendor: certs.Identity) -> None:
    with pytest.raises(TypeError, match="sequence"):
        certs.issue_tls_server(vendor, "srv", hosts="localhost", now=NOW)


def test_ldevid_from_csr() -> None:
    domain = certs.make_ca("Domain CA", now=NOW)
    key = certs.generate_key()
    csr = certs.make_csr(key, serial="SN-0001", common_name="pledge")
    assert csr.is_signature_valid
    subject = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "SN-0001")])
    cert = certs.issue_from_csr(
        domain, csr, subject=subject, san=[x509.DNSName("pledge.example")], now=NOW, days=30
    )
    assert cert.public_key() == key.public_key()
    assert cert.subject == subject
    assert cert.not_valid_after_utc == NOW + timedelta(days=30)
    ekus = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in ekus and ExtendedKeyUsageOID.SERVER_AUTH in ekus
    certs.verify_chain(cert, trust_anchors=[domain.cert], now=NOW, purpose="client")


def test_ldevid_refuses_csr_with_bad_signature() -> None:
    domain = certs.make_ca("Domain CA", now=NOW)
    csr = certs.make_csr(certs.generate_key(), common_name="pledge")
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    forged = x509.load_der_x509_csr(bytes(der))
    with pytest.raises(SignatureInvalid, match="CSR signature"):
        certs.issue_from_csr(domain, forged, subject=forged.subject, san=[], now=NOW)


def test_identity_validates_types_and_key_match(vendor: certs.Identity) -> None:
    with pytest.raises(TypeError):
        certs.Identity(certs.der(vendor.cert), vendor.key)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        certs.Identity(vendor.cert, b"key")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        certs.Identity(vendor.cert, vendor.key, [vendor.cert])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not belong"):
        certs.Identity(vendor.cert, certs.generate_key())


def test_fingerprint_format(vendor: certs.Identity) -> None:
    value = certs.fingerprint(vendor.cert)
    assert value.startswith("sha256:") and len(value) == 7 + 64
    assert value == certs.fingerprint(x509.load_der_x509_certificate(certs.der(vendor.cert)))


# ---------------------------------------------------------------------------------------------
# path validation


@pytest.mark.parametrize("kind", KINDS)
def test_verify_chain_through_intermediate(kind: certs.KeyKind) -> None:
    root = certs.make_ca("Root", now=NOW, key_kind=kind)
    sub = certs.issue_intermediate_ca(root, "Factory CA", now=NOW, key_kind=kind)
    leaf = certs.issue_idevid(sub, "SN-9", masa_url=None, now=NOW, key_kind=kind)
    assert leaf.chain == (sub.cert,)
    chain = certs.verify_chain(
        leaf.cert, trust_anchors=[root.cert], intermediates=leaf.chain, now=NOW
    )
    assert chain == [leaf.cert, sub.cert, root.cert]
    with pytest.raises(UntrustedSigner):
        certs.verify_chain(leaf.cert, trust_anchors=[root.cert], now=NOW)  # intermediate missing
    other = certs.make_ca("Root", now=NOW, key_kind=kind)  # same name, other key
    with pytest.raises(UntrustedSigner):
        certs.verify_chain(leaf.cert, trust_anchors=[other.cert], intermediates=leaf.chain, now=NOW)


@pytest.mark.parametrize("kind", KINDS)
def test_verify_chain_expired_and_not_yet_valid(kind: certs.KeyKind) -> None:
    root = certs.make_ca("Root", now=NOW, key_kind=kind)
    masa = certs.issue_masa_signer(root, "MASA", now=NOW, key_kind=kind, days=30)
    with pytest.raises(Expired, match="not valid at"):
        certs.verify_chain(masa.cert, trust_anchors=[root.cert], now=NOW + timedelta(days=31))
    with pytest.raises(Expired):
        certs.verify_chain(masa.cert, trust_anchors=[root.cert], now=NOW - timedelta(days=1))
    # An expired trust anchor fails too, and is named.
    long_lived = certs.issue_masa_signer(root, "MASA", now=NOW, key_kind=kind, days=20000)
    with pytest.raises(Expired, match="CN=Root"):
        certs.verify_chain(
            long_lived.cert, trust_anchors=[root.cert], now=NOW + timedelta(days=3651)
        )


@pytest.mark.parametrize("kind", KINDS)
def test_verify_chain_refuses_non_ca_issuer(kind: certs.KeyKind) -> None:
    root = certs.make_ca("Root", now=NOW, key_kind=kind)
    ee = certs.issue_client(root, "not a CA", now=NOW, key_kind=kind)
    leaf = certs.issue_client(ee, "leaf", now=NOW, key_kind=kind)
    with pytest.raises(UntrustedSigner):
        certs.verify_chain(leaf.cert, trust_anchors=[root.cert], intermediates=[ee.cert], now=NOW)
    with pytest.raises(UntrustedSigner):
        certs.verify_chain(leaf.cert, trust_anchors=[ee.cert], now=NOW)


@pytest.mark.parametrize("kind", KINDS)
def test_verify_chain_refuses_bad_signature(kind: certs.KeyKind) -> None:
    root = certs.make_ca("Root", now=NOW, key_kind=kind)
    leaf = certs.issue_masa_signer(root, "MASA", now=NOW, key_kind=kind)
    der = bytearray(certs.der(leaf.cert))
    der[-3] ^= 0x40  # inside the signature value
    forged = x509.load_der_x509_certificate(bytes(der))
    with pytest.raises(UntrustedSigner):
        certs.verify_chain(forged, trust_anchors=[root.cert], now=NOW)


def test_verify_chain_refuses_tampered_tbs(vendor: certs.Identity, idevid: certs.Identity) -> None:
    der = certs.der(idevid.cert).replace(b"SN-0001", b"SN-0002")
    forged = x509.load_der_x509_certificate(der)
    assert certs.serial_number_of(forged) == "SN-0002"
    with pytest.raises(UntrustedSigner):
        certs.verify_chain(forged, trust_anchors=[vendor.cert], now=NOW)


def test_verify_chain_refuses_unknown_critical_extension(vendor: certs.Identity) -> None:
    leaf = _build(vendor, critical_unknown=True)
    with pytest.raises(UntrustedSigner, match="critical"):
        certs.verify_chain(leaf.cert, trust_anchors=[vendor.cert], now=NOW)


def test_verify_chain_refuses_unknown_critical_extension_ed25519() -> None:
    root = certs.make_ca("Root", now=NOW, key_kind="ed25519")
    leaf = _build(root, critical_unknown=True)
    with pytest.raises(UntrustedSigner, match="critical"):
        certs.verify_chain(leaf.cert, trust_anchors=[root.cert], now=NOW)


@pytest.mark.parametrize("kind", ["p256", "ed25519"])
def test_verify_chain_enforces_path_length(kind: certs.KeyKind) -> None:
    root = certs.make_ca("Root", now=NOW, key_kind=kind)
    sub = certs.issue_intermediate_ca(root, "Sub", now=NOW, key_kind=kind, path_length=0)
    subsub = certs.issue_intermediate_ca(sub, "SubSub", now=NOW, key_kind=kind, path_length=0)
    leaf = certs.issue_client(subsub, "leaf", now=NOW, key_kind=kind)
    assert leaf.chain == (subsub.cert, sub.cert)
    with pytest.raises(UntrustedSigner):
        certs.verify_chain(leaf.cert, trust_anchors=[root.cert], intermediates=leaf.chain, now=NOW)


def test_verify_chain_needs_anchors_and_known_purpose(idevid: certs.Identity) -> None:
    with pytest.raises(UntrustedSigner, match="no trust anchors"):
        certs.verify_chain(idevid.cert, trust_anchors=[], now=NOW)
    with pytest.raises(ValueError, match="purpose"):
        certs.verify_chain(
            idevid.cert,
            trust_anchors=[idevid.cert],
            now=NOW,
            purpose="email",  # type: ignore[arg-type]
        )


def test_verify_chain_ed25519_leaf_under_ecdsa_ca(vendor: certs.Identity) -> None:
    leaf = certs.issue_idevid(vendor, "SN-ED", masa_url=None, now=NOW, key_kind="ed25519")
    assert certs.verify_chain(leaf.cert, trust_anchors=[vendor.cert], now=NOW)[-1] == vendor.cert
    with pytest.raises(UntrustedSigner):
        certs.verify_chain(leaf.cert, trust_anchors=[certs.make_ca("X", now=NOW).cert], now=NOW)


# ---------------------------------------------------------------------------------------------
# bytes


def test_key_and_certificates_round_trip_through_pem(idevid: certs.Identity) -> None:
    pem = certs.key_pem(idevid.key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = certs.load_private_key(pem)
    assert certs.Identity(idevid.cert, loaded).key.public_key() == idevid.key.public_key()
    der = idevid.key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert certs.key_kind_of(certs.load_private_key(der)) == "p256"
    chain = certs.certs_pem([idevid.cert, idevid.cert])
    assert certs.load_certs(chain) == [idevid.cert, idevid.cert]
    with pytest.raises(ValueError, match="no certificates"):
        certs.certs_pem([])


def test_load_private_key_refuses_garbage_and_encrypted_keys(idevid: certs.Identity) -> None:
    with pytest.raises(InvalidInput, match="not an unencrypted private key"):
        certs.load_private_key(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    encrypted = idevid.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(InvalidInput, match="not an unencrypted private key"):
        certs.load_private_key(encrypted)


def test_load_certs_refuses_certificates_cryptography_reads_lazily(idevid: certs.Identity) -> None:
    """A certificate that loads but fails when read (X.509 version value 5: InvalidVersion; a
    CN retagged as BIT STRING: TypeError) is InvalidInput from load_certs, in DER and PEM."""
    der = idevid.cert.public_bytes(serialization.Encoding.DER)
    version_5 = der.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x05", 1)
    cn = idevid.cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert isinstance(cn, str)
    utf8_cn = b"\x0c" + bytes([len(cn)]) + cn.encode()
    bit_string_cn = der.replace(utf8_cn, b"\x03" + utf8_cn[1:], 1)
    for broken in (version_5, bit_string_cn):
        assert broken != der
        pem = (
            b"-----BEGIN CERTIFICATE-----\n"
            + base64.encodebytes(broken)
            + (b"-----END CERTIFICATE-----\n")
        )
        for data in (broken, pem):
            with pytest.raises(InvalidInput, match=r"not a PEM or DER X\.509 certificate"):
                certs.load_certs(data)


def test_load_certs_reuses_known_certificates(
    vendor: certs.Identity, idevid: certs.Identity
) -> None:
    """A certificate equal to one read already is that object, not a second parse; the
    others are read (and checked) as ever."""
    known = certs.load_certs(certs.certs_pem([vendor.cert]))
    found = certs.load_certs(certs.certs_pem([idevid.cert, vendor.cert]), known=known)
    assert found == [idevid.cert, vendor.cert]
    assert found[1] is known[0]
    assert found[0] is not idevid.cert  # parsed from the bytes
    assert certs.known_as(idevid.cert, known) is None


def test_load_certs_rejects_garbage() -> None:
    with pytest.raises(InvalidInput, match="certificate"):
        certs.load_certs(b"hello")
    with pytest.raises(InvalidInput):
        certs.load_certs(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


# ---------------------------------------------------------------------------------------------
# the validated-path cache never outlives a check


def test_cached_path_still_checks_time_and_inputs() -> None:
    root = certs.make_ca("Root", now=NOW)
    sub = certs.issue_intermediate_ca(root, "Sub", now=NOW, days=30)
    leaf = certs.issue_masa_signer(sub, "MASA", now=NOW, days=365)
    chain = certs.verify_chain(
        leaf.cert, trust_anchors=[root.cert], intermediates=[sub.cert], now=NOW
    )
    assert chain == [leaf.cert, sub.cert, root.cert]
    # Same certificates later: the intermediate has expired by then.
    with pytest.raises(Expired, match="CN=Sub"):
        certs.verify_chain(
            leaf.cert,
            trust_anchors=[root.cert],
            intermediates=[sub.cert],
            now=NOW + timedelta(days=40),
        )
    # Without the intermediate, or with other anchors, there is no path, cached or not.
    with pytest.raises(UntrustedSigner):
        certs.verify_chain(leaf.cert, trust_anchors=[root.cert], now=NOW)
    with pytest.raises(UntrustedSigner):
        certs.verify_chain(
            leaf.cert,
            trust_anchors=[certs.make_ca("Root", now=NOW).cert],
            intermediates=[sub.cert],
            now=NOW,
        )
    # A purpose the certificate does not allow is refused even after an "any" success.
    client = certs.issue_client(sub, "c", now=NOW).cert
    certs.verify_chain(client, trust_anchors=[root.cert], intermediates=[sub.cert], now=NOW)
    with pytest.raises(UntrustedSigner):
        certs.verify_chain(
            client, trust_anchors=[root.cert], intermediates=[sub.cert], now=NOW, purpose="server"
        )
    assert (
        certs.verify_chain(leaf.cert, trust_anchors=[root.cert], intermediates=[sub.cert], now=NOW)
        == chain
    )


def test_untrusted_messages_name_the_missing_link() -> None:
    root = certs.make_ca("Vendor CA", now=NOW)
    sub = certs.issue_intermediate_ca(root, "Sub CA", now=NOW)
    leaf = certs.issue_masa_signer(sub, "MASA", now=NOW)
    with pytest.raises(UntrustedSigner, match=r"no certificate named CN=Sub CA .*\[CN=Vendor CA\]"):
        certs.verify_chain(leaf.cert, trust_anchors=[root.cert], now=NOW)
    impostor = certs.make_ca("Vendor CA", now=NOW)
    with pytest.raises(UntrustedSigner, match="its key did not sign CN=Sub CA"):
        certs.verify_chain(
            leaf.cert, trust_anchors=[impostor.cert], intermediates=[sub.cert], now=NOW
        )


@pytest.mark.parametrize(
    "value",
    [
        b"\x04\x05https",  # OCTET STRING
        b"\x0c\x03m\xc3\xa4",  # UTF8String with non-ASCII
        b"\x16\x05abc",  # truncated IA5String
    ],
)
def test_malformed_masa_url_extension(vendor: certs.Identity, value: bytes) -> None:
    key = certs.generate_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "SN")]))
        .issuer_name(vendor.cert.subject)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.UnrecognizedExtension(certs.OID_MASA_URL, value), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.OtherName(certs.OID_HARDWARE_MODULE_NAME, b"\x30\x03\x06\x01\x2a")]
            ),
            critical=False,
        )
        .sign(vendor.key, certs.signature_hash(vendor.key))
    )
    with pytest.raises(CertificateError, match=r"RFC 8995 §2\.3\.2"):
        certs.masa_url_of(cert)
    with pytest.raises(CertificateError, match="hardwareModuleName"):
        certs.hardware_module_name_of(cert)


# ---------------------------------------------------------------------------------------------
# idevid-issuer (RFC 8366 §5.3): the one helper all three roles use


def test_idevid_issuer_sends_the_key_identifier(idevid: certs.Identity) -> None:
    sent = certs.idevid_issuer(idevid.cert)
    aki = idevid.cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert sent == aki.key_identifier and sent is not None and len(sent) == 20


def test_idevid_issuer_matches_every_form(idevid: certs.Identity) -> None:
    forms = idevid_issuer_forms(idevid.cert)
    assert forms["extn-value-octet-string"][:4] == bytes.fromhex("04183016")
    for name, value in forms.items():
        assert certs.idevid_issuer_matches(idevid.cert, value), name


def test_idevid_issuer_of_another_ca_or_altered_does_not_match(
    idevid: certs.Identity,
) -> None:
    other_vendor = certs.make_ca("Other Manufacturer CA", now=NOW)
    other = certs.issue_idevid(other_vendor, "SN-0001", masa_url="https://m.example", now=NOW)
    for name, value in idevid_issuer_forms(other.cert).items():
        assert not certs.idevid_issuer_matches(idevid.cert, value), name
    key_id = certs.idevid_issuer(idevid.cert)
    assert key_id is not None
    for altered in (key_id[:-1], key_id + b"\x00", b"", bytes([key_id[0] ^ 1]) + key_id[1:]):
        assert not certs.idevid_issuer_matches(idevid.cert, altered)
    with pytest.raises(TypeError):
        certs.idevid_issuer_matches(idevid.cert, key_id.hex())  # type: ignore[arg-type]


def test_idevid_without_aki_has_no_idevid_issuer(vendor: certs.Identity) -> None:
    key = certs.generate_key("p256")
    bare = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "SN-NOAKI")]))
        .issuer_name(vendor.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
        .sign(vendor.key, certs.signature_hash(vendor.key))  # type: ignore[arg-type]
    )
    assert certs.idevid_issuer(bare) is None
    assert not certs.idevid_issuer_matches(bare, b"\x01" * 20)


# ---------------------------------------------------------------------------------------------
# the registrar's TLS certificate as the pledge sees it (RFC 8995 §5.6.2, RFC 7030 §3.6.1)


def _with_eku(ca: certs.Identity, ekus: list[x509.ObjectIdentifier]) -> x509.Certificate:
    key = certs.generate_key("p256")
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "registrar")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
        .sign(ca.key, certs.signature_hash(ca.key))  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("ekus", "accepted"),
    [
        ([certs.OID_KP_CMC_RA], True),  # RFC 8995 Appendix C registrar
        ([ExtendedKeyUsageOID.SERVER_AUTH], True),
        ([ExtendedKeyUsageOID.CLIENT_AUTH, certs.OID_KP_CMC_RA], True),
        ([ExtendedKeyUsageOID.CLIENT_AUTH], False),
        ([ExtendedKeyUsageOID.CODE_SIGNING], False),
    ],
)
def test_registrar_purpose_takes_server_auth_or_cmc_ra(
    ekus: list[x509.ObjectIdentifier], accepted: bool
) -> None:
    domain = certs.make_ca("Domain CA", now=NOW - timedelta(days=1))
    leaf = _with_eku(domain, ekus)
    if accepted:
        chain = certs.verify_chain(leaf, trust_anchors=[domain.cert], now=NOW, purpose="registrar")
        assert chain[0] == leaf
    else:
        with pytest.raises(UntrustedSigner):
            certs.verify_chain(leaf, trust_anchors=[domain.cert], now=NOW, purpose="registrar")
    if ekus == [certs.OID_KP_CMC_RA]:  # OpenSSL's and the "server" purpose refuse it
        with pytest.raises(UntrustedSigner):
            certs.verify_chain(leaf, trust_anchors=[domain.cert], now=NOW, purpose="server")


# ---------------------------------------------------------------------------------------------
# CSR options a registrar's /csrattrs asks for (RFC 8995 §5.9.2)


@pytest.mark.parametrize(
    ("kind", "hash_name", "expected"),
    [
        ("p256", "sha384", "ecdsa-with-SHA384"),
        ("p384", None, "ecdsa-with-SHA384"),
        ("p256", "sha512", "ecdsa-with-SHA512"),
        ("rsa2048", "sha384", "sha384WithRSAEncryption"),
        ("ed25519", "sha256", "ed25519"),  # Ed25519 has no separate hash (RFC 8410 §6)
    ],
)
def test_make_csr_signature_hash_and_san(
    kind: certs.KeyKind, hash_name: str | None, expected: str
) -> None:
    san = [
        x509.DNSName("sn-1.devices.example"),
        x509.OtherName(x509.ObjectIdentifier("1.3.6.1.5.5.7.8.10"), b"\x0c\x03abc"),
    ]
    csr = certs.make_csr(
        certs.generate_key(kind), serial="SN-1", common_name="SN-1", san=san, hash_name=hash_name
    )
    assert csr.is_signature_valid
    assert csr.signature_algorithm_oid._name == expected
    got = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(got) == san
    with pytest.raises(ValueError, match="hash_name"):
        certs.make_csr(certs.generate_key(kind), serial="SN-1", hash_name="md5")


@pytest.mark.parametrize("kind", ["p256", "ed25519"])
def test_a_bag_of_cross_signed_cas_costs_a_bounded_search(
    kind: certs.KeyKind, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A depth-first search made about count^8 signature checks here: 25 such certificates
    in a voucher-request cost a MASA 20 s of CPU before it refused. Now each pair is checked
    once and the search stops after a fixed number of checks: still a refusal."""
    leaf, bag = cross_signed(kind, 6, now=NOW)
    checked = 0

    def counted(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
        nonlocal checked
        checked += 1
        assert checked <= 1000, "the path search is unbounded"
        return real(cert, issuer)

    real = verification.issued_by
    monkeypatch.setattr(verification, "issued_by", counted)
    anchor = certs.make_ca("Anchor", now=NOW, key_kind=kind)
    with pytest.raises(UntrustedSigner, match="does not chain to a trust anchor"):
        certs.verify_chain(leaf.cert, trust_anchors=[anchor.cert], intermediates=bag, now=NOW)
    assert 0 < checked <= verification._PATH_CHECKS
    # The same bag with its own anchor among the trust anchors: a path, found within the bound.
    checked = 0
    chain = certs.verify_chain(leaf.cert, trust_anchors=[bag[0]], intermediates=bag, now=NOW)
    assert chain[0] == leaf.cert and chain[-1] == bag[0]
    assert checked <= verification._PATH_CHECKS
