"""EST codecs (RFC 7030 §4, RFC 8951 §3): tolerant base64 reading, certs-only, CSR, csrattrs."""

from __future__ import annotations

import base64
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, pkcs7

from tests.support.calls import recorded
from zerotouch_plugin.artifacts import certs, est
from zerotouch_plugin.errors import InvalidInput, SignatureInvalid

NOW = datetime(2026, 11, 26, tzinfo=UTC)


@pytest.fixture(scope="module")
def ca() -> certs.Identity:
    return certs.make_ca("EST test CA", now=NOW)


@pytest.fixture(scope="module")
def csr_der() -> bytes:
    csr = certs.make_csr(ec.generate_private_key(ec.SECP256R1()), serial="SN-EST")
    return csr.public_bytes(Encoding.DER)


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda b: base64.b64encode(b), id="plain"),
        pytest.param(lambda b: base64.encodebytes(b), id="76-column-lines"),
        pytest.param(lambda b: base64.b64encode(b).replace(b"=", b""), id="no-padding"),
        pytest.param(
            lambda b: b"\r\n  " + b" \r\n\t".join(_chunks(base64.b64encode(b), 10)),
            id="crlf-tabs-and-spaces",
        ),
        pytest.param(
            lambda b: b"\x0b".join(_chunks(base64.b64encode(b), 16)) + b"\x0c\n",
            id="vertical-tabs-and-form-feeds",
        ),
        pytest.param(lambda b: base64.urlsafe_b64encode(b), id="url-safe-alphabet"),
        pytest.param(
            lambda b: (
                b"-----BEGIN CERTIFICATE REQUEST-----\n"
                + base64.encodebytes(b)
                + b"-----END CERTIFICATE REQUEST-----\n"
            ),
            id="pem-armour",
        ),
        pytest.param(lambda b: b, id="raw-der"),
    ],
)
def test_decode_base64_body_is_rfc8951_tolerant(mangle: object, csr_der: bytes) -> None:
    body = mangle(csr_der)  # type: ignore[operator]
    assert est.decode_base64_body(body) == csr_der


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"", "empty"),
        (b"   \r\n", "empty"),
        (b"MII!@#$", "not base64"),
        (b"QUJDRA=A", "not base64"),
        (b"QUJDR", "truncated"),
    ],
)
def test_decode_base64_body_rejects_garbage(body: bytes, needle: str) -> None:
    with pytest.raises(InvalidInput, match=needle):
        est.decode_base64_body(body)


def test_encode_base64_body_has_short_lines(csr_der: bytes) -> None:
    body = est.encode_base64_body(csr_der)
    lines = body.split(b"\r\n")
    assert all(len(line) <= 64 for line in lines)
    assert base64.b64decode(body) == csr_der


def test_certs_only_round_trip_and_openssl_reads_it(ca: certs.Identity, tmp_path: Path) -> None:
    leaf = certs.issue_client(ca, "leaf", now=NOW)
    body = est.encode_certs_only([ca.cert, leaf.cert])
    assert est.decode_certs_only(body) == [ca.cert, leaf.cert]
    (tmp_path / "p7.der").write_bytes(base64.b64decode(body))
    out = subprocess.run(
        ["openssl", "pkcs7", "-inform", "DER", "-in", str(tmp_path / "p7.der"), "-print_certs"],
        check=True,
        capture_output=True,
    ).stdout
    assert x509.load_pem_x509_certificates(out) == [ca.cert, leaf.cert]


def test_certs_only_reuses_known_certificates(
    ca: certs.Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A certificate of the message equal to one read already (the pledge's pinned-domain-cert
    in cacerts) is that object and is not read again; the others are read eagerly."""
    leaf = certs.issue_client(ca, "SN-KNOWN", now=NOW)
    read = recorded(monkeypatch, certs, "read_eagerly")
    found = est.decode_certs_only(est.encode_certs_only([leaf.cert, ca.cert]), known=[ca.cert])
    assert len(found) == 2 and leaf.cert in found  # a SET OF: in any order
    assert next(cert for cert in found if cert == ca.cert) is ca.cert
    assert read == [leaf.cert]


def test_certs_only_needs_certificates() -> None:
    with pytest.raises(ValueError, match="at least one"):
        est.encode_certs_only([])
    with pytest.raises(InvalidInput, match="certs-only"):
        est.decode_certs_only(base64.b64encode(b"\x30\x03\x02\x01\x01"))


def test_certs_only_with_a_malformed_key_is_invalid_input(ca: certs.Identity) -> None:
    """The EC point's 0x04 prefix changed to 0x05, no point form (SEC 1 §2.3.4): cryptography
    loads the certificate and only fails on public_key(), which the pledge calls when it
    checks its cacerts."""
    der = ca.cert.public_bytes(Encoding.DER)
    point = der.index(b"\x03\x42\x00\x04") + 3
    broken = x509.load_der_x509_certificate(der[:point] + b"\x05" + der[point + 1 :])
    body = base64.b64encode(pkcs7.serialize_certificates([broken], Encoding.DER))
    with pytest.raises(InvalidInput, match="certificate 1 of the certs-only message"):
        est.decode_certs_only(body)


def test_certs_only_of_another_content_type_is_invalid_input(ca: certs.Identity) -> None:
    """ContentInfo of an unknown type (1.2.840.113549.1.7.9) instead of signedData:
    cryptography raises UnsupportedAlgorithm, which is not a ValueError."""
    der = pkcs7.serialize_certificates([ca.cert], Encoding.DER)
    signed_data_oid = b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02"
    body = base64.b64encode(der.replace(signed_data_oid, signed_data_oid[:-1] + b"\x09", 1))
    with pytest.raises(InvalidInput, match="not a certs-only PKCS#7"):
        est.decode_certs_only(body)


def test_certs_only_with_a_certificate_of_unknown_version_is_invalid_input(
    ca: certs.Identity,
) -> None:
    """X.509 version value 1 (v2, which cryptography does not read): InvalidVersion, not a
    ValueError, from the PKCS#7 loader itself."""
    der = pkcs7.serialize_certificates([ca.cert], Encoding.DER)
    v3 = b"\xa0\x03\x02\x01\x02"
    body = base64.b64encode(der.replace(v3, b"\xa0\x03\x02\x01\x01", 1))
    with pytest.raises(InvalidInput, match="not a certs-only PKCS#7"):
        est.decode_certs_only(body)


def test_csr_of_unknown_version_is_invalid_input(ca: certs.Identity) -> None:
    """PKCS#10 version 1 (only v1 = 0 exists, RFC 2986 §4.1): cryptography raises
    InvalidVersion, which is not a ValueError."""
    der = certs.make_csr(ca.key, common_name="v2").public_bytes(Encoding.DER)
    version = der.index(b"\x02\x01\x00")
    body = base64.b64encode(der[:version] + b"\x02\x01\x01" + der[version + 3 :])
    with pytest.raises(InvalidInput, match="not a DER PKCS#10"):
        est.parse_csr(body)


def test_signed_csr_with_a_bit_string_name_is_invalid_input(ca: certs.Identity) -> None:
    """A CSR whose CN is a BIT STRING, properly signed by its own key: cryptography raises
    TypeError (not ValueError) when the subject is read, which the registrar does later."""
    csr = certs.make_csr(ca.key, common_name="bitcn")
    tbs = csr.tbs_certrequest_bytes.replace(b"\x0c\x05bitcn", b"\x03\x05bitcn")
    assert isinstance(ca.key, ec.EllipticCurvePrivateKey)
    signature = ca.key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    algorithm = bytes.fromhex("300a06082a8648ce3d040302")  # ecdsa-with-SHA256
    bits = b"\x00" + signature
    body = tbs + algorithm + b"\x03" + _der_length(len(bits)) + bits
    der = b"\x30" + _der_length(len(body)) + body
    with pytest.raises(InvalidInput, match="not a DER PKCS#10"):
        est.parse_csr(base64.b64encode(der))


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(size)]) + size


def test_parse_csr_from_openssl(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    subprocess.run(
        ["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key)],
        check=True,
    )
    pem = subprocess.run(
        ["openssl", "req", "-new", "-key", str(key), "-subj", "/serialNumber=SN-OSSL/CN=x"],
        check=True,
        capture_output=True,
    ).stdout
    csr = est.parse_csr(pem)
    assert csr.subject.rfc4514_string() == "CN=x,2.5.4.5=SN-OSSL"


def test_parse_csr_refuses_bad_signature_and_non_csr(csr_der: bytes, ca: certs.Identity) -> None:
    tampered = bytearray(csr_der)
    tampered[-3] ^= 0xFF  # inside the signature
    with pytest.raises((SignatureInvalid, InvalidInput)):
        est.parse_csr(base64.b64encode(bytes(tampered)))
    with pytest.raises(InvalidInput, match="PKCS#10"):
        est.parse_csr(base64.b64encode(ca.cert.public_bytes(Encoding.DER)))


def test_csr_signed_by_another_key_is_refused(csr_der: bytes) -> None:
    csr = x509.load_der_x509_csr(csr_der)
    other = ec.generate_private_key(ec.SECP256R1())
    forged = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(csr.subject)
        .sign(other, csr.signature_hash_algorithm)
    )
    # splice the original public key into the forged request: the signature no longer verifies
    good_spki = csr.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    bad_spki = other.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    spliced = forged.public_bytes(Encoding.DER).replace(bad_spki, good_spki)
    with pytest.raises(SignatureInvalid, match="does not verify"):
        est.parse_csr(base64.b64encode(spliced))


def test_csrattrs_round_trip_and_openssl_parses() -> None:
    oids = [x509.ObjectIdentifier("1.2.840.10045.4.3.2"), x509.ObjectIdentifier("2.5.4.5")]
    body = est.encode_csrattrs(oids)
    assert est.decode_csrattrs(body) == oids
    dump = subprocess.run(
        ["openssl", "asn1parse", "-inform", "DER"],
        input=base64.b64decode(body),
        check=True,
        capture_output=True,
    ).stdout.decode()
    assert "ecdsa-with-SHA256" in dump and "serialNumber" in dump
    with pytest.raises(InvalidInput, match="CsrAttrs"):
        est.decode_csrattrs(base64.b64encode(b"\x04\x01\x00"))


# ---------------------------------------------------------------------------------------------
# what a /csrattrs answer asks of the pledge (RFC 7030 §4.5.2, RFC 8995 §5.9.2)

# RFC 7030 §4.5.2's example: challengePassword, ecPublicKey {secp384r1}, extensionRequest
# {macAddress}, ecdsa-with-SHA384
RFC7030_EXAMPLE = (
    b"MEEGCSqGSIb3DQEJBzASBgcqhkjOPQIBMQcGBSuBBAAiMBYGCSqGSIb3DQEJDjEJBgcrBgEBAQEWBggqhkjOPQQDAw=="
)


def test_rfc7030_example_is_honoured_where_supported() -> None:
    wanted = est.parse_csrattrs(RFC7030_EXAMPLE)
    assert (wanted.key_kind, wanted.hash_name) == ("p384", "sha384")
    assert wanted.subject_alt_names == () and not wanted.serial_number
    assert wanted.ignored == (
        "1.2.840.113549.1.9.7",
        "extension 1.3.6.1.1.1.1.22 (extensionRequest)",
    )


def _genconf(tmp_path: Path, conf: str) -> bytes:
    """DER made by OpenSSL's own encoder (``openssl asn1parse -genconf``)."""
    path = tmp_path / "attrs.cnf"
    path.write_text(conf)
    out = tmp_path / "attrs.der"
    subprocess.run(["openssl", "asn1parse", "-genconf", str(path), "-out", str(out), "-noout"],
                   check=True, capture_output=True)  # fmt: skip
    return out.read_bytes()


# RFC 8994 §6.2.2 / RFC 8995 §5.9.2 shape: serialNumber asked for, and an extensionRequest
# whose subjectAltName names the otherName the registrar wants (here an AcpNodeName).
ACP_CONF = """\
asn1 = SEQUENCE:attrs
[attrs]
serial = OID:serialNumber
sig = OID:ecdsa-with-SHA256
key = SEQUENCE:keyattr
ext = SEQUENCE:extreq
[keyattr]
type = OID:id-ecPublicKey
values = SET:curve
[curve]
c = OID:prime256v1
[extreq]
type = OID:extReq
values = SET:extset
[extset]
exts = SEQUENCE:extensions
[extensions]
san = SEQUENCE:sanext
[sanext]
id = OID:subjectAltName
value = OCTWRAP,SEQUENCE:names
[names]
other = IMPLICIT:0C,SEQUENCE:acpname
dns = IMPLICIT:2,IA5STRING:sn-1.devices.example
ip = IMPLICIT:7,FORMAT:HEX,OCTETSTRING:C0000201
[acpname]
type = OID:1.3.6.1.5.5.7.8.10
value = EXPLICIT:0C,UTF8String:rfcSELF+fd89b714f3db00000200000064000000+area51@acp.example.com
"""


def test_openssl_encoded_csrattrs_with_san_and_acp_node_name(tmp_path: Path) -> None:
    der = _genconf(tmp_path, ACP_CONF)
    wanted = est.parse_csrattrs(est.encode_base64_body(der))
    assert wanted.serial_number and wanted.key_kind == "p256" and wanted.hash_name == "sha256"
    other, dns, ip = wanted.subject_alt_names
    assert isinstance(other, x509.OtherName)
    assert other.type_id.dotted_string == "1.3.6.1.5.5.7.8.10"
    assert b"rfcSELF+fd89b714f3db" in other.value and other.value[:1] == b"\x0c"  # UTF8String
    assert dns == x509.DNSName("sn-1.devices.example")
    assert ip == x509.IPAddress(__import__("ipaddress").ip_address("192.0.2.1"))
    assert wanted.ignored == ()
    # the pledge puts them in its CSR; cryptography reads the otherName back unchanged
    csr = certs.make_csr(certs.generate_key("p256"), serial="SN-1", san=wanted.subject_alt_names)
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == list(wanted.subject_alt_names)


@pytest.mark.parametrize(
    ("conf", "kind", "hash_name", "ignored"),
    [
        ("asn1 = SEQUENCE:a\n[a]\nk = SEQUENCE:r\n[r]\nt = OID:rsaEncryption\nv = SET:s\n"
         "[s]\nn = INTEGER:3072\n", "rsa3072", None, ()),
        ("asn1 = SEQUENCE:a\n[a]\nk = SEQUENCE:r\n[r]\nt = OID:rsaEncryption\nv = SET:s\n"
         "[s]\nn = INTEGER:1024\n", "rsa2048", None, ("1.2.840.113549.1.1.1 size 1024",)),
        ("asn1 = SEQUENCE:a\n[a]\ns = OID:sha512WithRSAEncryption\n", "rsa2048", "sha512", ()),
        ("asn1 = SEQUENCE:a\n[a]\ne = OID:ED25519\n", "ed25519", None, ()),
        ("asn1 = SEQUENCE:a\n[a]\nk = SEQUENCE:e\n[e]\nt = OID:id-ecPublicKey\nv = SET:c\n"
         "[c]\nc = OID:secp521r1\n", "p521", None, ()),
        ("asn1 = SEQUENCE:a\n[a]\nk = SEQUENCE:e\n[e]\nt = OID:id-ecPublicKey\nv = SET:c\n"
         "[c]\nc = OID:secp256k1\n", "p256", None, ("1.2.840.10045.2.1 curve 1.3.132.0.10",)),
        ("asn1 = SEQUENCE:a\n[a]\nu = OID:1.2.3.4.5\n", None, None, ("1.2.3.4.5",)),
        # a key attribute and a signature algorithm of another family: the key wins
        ("asn1 = SEQUENCE:a\n[a]\nk = SEQUENCE:e\ns = OID:sha256WithRSAEncryption\n"
         "[e]\nt = OID:id-ecPublicKey\nv = SET:c\n[c]\nc = OID:secp384r1\n", "p384", None,
         ("signature algorithm for a rsa key with a p384 key",)),
        ("asn1 = SEQUENCE:a\n[a]\n", None, None, ()),  # an empty CsrAttrs is valid
    ],
)  # fmt: skip
def test_openssl_encoded_key_and_signature_attributes(
    tmp_path: Path, conf: str, kind: str | None, hash_name: str | None, ignored: tuple[str, ...]
) -> None:
    wanted = est.parse_csrattrs(est.encode_base64_body(_genconf(tmp_path, conf)))
    assert (wanted.key_kind, wanted.hash_name, wanted.ignored) == (kind, hash_name, ignored)


@pytest.mark.parametrize(
    "body",
    [
        b"not base64 at all!",
        est.encode_base64_body(b"\x04\x02ab"),  # an OCTET STRING, not a SEQUENCE
        est.encode_base64_body(b"\x30\x05\x06\x03\x2a"),  # truncated
        est.encode_base64_body(b"\x30\x03\x02\x01\x05"),  # an INTEGER is no AttrOrOID
    ],
)
def test_malformed_csrattrs_is_invalid_input(body: bytes) -> None:
    with pytest.raises(InvalidInput):
        est.parse_csrattrs(body)


def test_csr_requirements_are_validated() -> None:
    with pytest.raises(ValueError):
        est.CsrRequirements(hash_name="md5")
    with pytest.raises(TypeError):
        est.CsrRequirements(subject_alt_names=("a.example",))  # type: ignore[arg-type]


def test_parse_csr_names_a_sha1_signature(tmp_path: Path) -> None:
    """Issue 11: SHA-1 is refused for what it is, not as a bad signature."""
    key = tmp_path / "k.pem"
    subprocess.run(
        ["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key)],
        check=True,
    )
    der = subprocess.run(
        ["openssl", "req", "-new", "-sha1", "-key", str(key), "-subj", "/serialNumber=S",
         "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout  # fmt: skip
    with pytest.raises(InvalidInput, match="signed with SHA-1, which is not accepted: sign it"):
        est.parse_csr(base64.b64encode(der))
