"""Interop with the OpenSSL CLI, both ways: CMS vouchers signed by ``openssl cms -sign``
verify in zerotouch, CMS signed by zerotouch verifies with ``openssl cms -verify``, and
OpenSSL reads and accepts the certificates zerotouch issues (IDevID extensions, chains)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509

from zerotouch_plugin.artifacts import _cms, certs, cms
from zerotouch_plugin.errors import (
    ArtifactKindMismatch,
    DigestMismatch,
    NotCMS,
    SignatureInvalid,
    UntrustedSigner,
)
from zerotouch_plugin.services import certfiles

PAYLOAD = (
    b'{"ietf-voucher:voucher":{"assertion":"logged","serial-number":"SN-7",'
    b'"created-on":"2026-06-01T12:00:00Z","nonce":"abcd1234"}}'
)


@pytest.fixture(scope="module")
def openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.fail("openssl CLI not found: run scripts/setup-system.sh (Debian package openssl)")
    return path


def run(args: Sequence[str | Path], *, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run([str(a) for a in args], capture_output=True, timeout=60, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{args[:3]} failed: {result.stderr.decode(errors='replace')}")
    return result


class Pki:
    """A CA and a MASA signer written to files, with real clocks (openssl checks now)."""

    def __init__(self, folder: Path, kind: certs.KeyKind, *, intermediate: bool = False) -> None:
        now = datetime.now(UTC)
        self.folder = folder
        self.ca = certs.make_ca(f"Interop CA {kind}", now=now, key_kind=kind)
        issuer = self.ca
        if intermediate:
            issuer = certs.issue_intermediate_ca(self.ca, "Interop MASA CA", now=now, key_kind=kind)
        self.signer = certs.issue_masa_signer(
            issuer, f"Interop MASA {kind}", now=now, key_kind=kind
        )
        self.ca_pem = folder / "ca.pem"
        self.signer_pem = folder / "signer.pem"
        self.signer_key = folder / "signer.key"
        self.chain_pem = folder / "chain.pem"
        certfiles.write_certs(self.ca_pem, [self.ca.cert])
        certfiles.write_certs(self.signer_pem, [self.signer.cert])
        certfiles.write_key(self.signer_key, self.signer.key)
        certfiles.write_certs(self.chain_pem, [*self.signer.chain] or [self.ca.cert])
        self.payload = folder / "payload.json"
        self.payload.write_bytes(PAYLOAD)

    def openssl_sign(self, openssl: str, *extra: str) -> bytes:
        out = self.folder / "out.der"
        run(
            [
                openssl, "cms", "-sign", "-binary", "-nodetach", "-outform", "DER",
                "-in", self.payload, "-signer", self.signer_pem, "-inkey", self.signer_key,
                "-out", out, *extra,
            ]
        )  # fmt: skip
        return out.read_bytes()


# ---------------------------------------------------------------------------------------------
# OpenSSL signs, zerotouch verifies


@pytest.mark.parametrize("kind", ["p256", "p384", "rsa2048"])
@pytest.mark.parametrize("econtent_type", [None, cms.OID_ANIMA_JSON_VOUCHER])
def test_openssl_signed_voucher_verifies(
    tmp_path: Path, openssl: str, kind: certs.KeyKind, econtent_type: str | None
) -> None:
    pki = Pki(tmp_path, kind)
    extra = ["-econtent_type", econtent_type] if econtent_type else []
    der = pki.openssl_sign(openssl, *extra)
    result = cms.verify(der, trust_anchors=[pki.ca.cert], now=datetime.now(UTC))
    assert result.content == PAYLOAD
    assert result.content_type == (econtent_type or cms.OID_DATA)
    assert result.signer == pki.signer.cert
    assert result.signing_time is not None


def test_openssl_streamed_ber_verifies(tmp_path: Path, openssl: str) -> None:
    """``-stream`` writes BER with indefinite lengths: the general decoder reads it."""
    pki = Pki(tmp_path, "p384")
    der = pki.openssl_sign(openssl, "-stream", "-econtent_type", cms.OID_ANIMA_JSON_VOUCHER)
    assert b"\x30\x80" in der[:4]  # indefinite-length ContentInfo
    result = cms.verify(der, trust_anchors=[pki.ca.cert], now=datetime.now(UTC))
    assert result.content == PAYLOAD and result.content_type == cms.OID_ANIMA_JSON_VOUCHER


def test_openssl_subject_key_identifier_signer(tmp_path: Path, openssl: str) -> None:
    pki = Pki(tmp_path, "p256")
    der = pki.openssl_sign(openssl, "-keyid")
    assert _cms.parse_signed_data(der).signer_id.subject_key_identifier is not None
    assert cms.verify(der, trust_anchors=[pki.ca.cert], now=datetime.now(UTC)).content == PAYLOAD


def test_openssl_chain_via_certfile(tmp_path: Path, openssl: str) -> None:
    pki = Pki(tmp_path, "p256", intermediate=True)
    der = pki.openssl_sign(openssl, "-certfile", str(pki.chain_pem))
    result = cms.verify(der, trust_anchors=[pki.ca.cert], now=datetime.now(UTC))
    assert set(result.certificates) == {pki.signer.cert, *pki.signer.chain}
    bare = pki.openssl_sign(openssl)
    with pytest.raises(UntrustedSigner):
        cms.verify(bare, trust_anchors=[pki.ca.cert], now=datetime.now(UTC))


def test_openssl_rsa_pss_and_sha384(tmp_path: Path, openssl: str) -> None:
    pki = Pki(tmp_path, "rsa2048")
    pss = pki.openssl_sign(openssl, "-keyopt", "rsa_padding_mode:pss")
    assert _cms.parse_signed_data(pss).signature_algorithm == "rsassa_pss"
    assert cms.verify(pss, trust_anchors=[pki.ca.cert], now=datetime.now(UTC)).content == PAYLOAD
    sha384 = pki.openssl_sign(openssl, "-md", "sha384")
    assert _cms.parse_signed_data(sha384).digest_algorithm == "sha384"
    assert cms.verify(sha384, trust_anchors=None, now=None).content == PAYLOAD


def test_openssl_without_signed_attributes(tmp_path: Path, openssl: str) -> None:
    pki = Pki(tmp_path, "p256")
    der = pki.openssl_sign(openssl, "-noattr")
    assert _cms.parse_signed_data(der).signed_attributes is None
    result = cms.verify(der, trust_anchors=[pki.ca.cert], now=datetime.now(UTC))
    assert result.content == PAYLOAD and result.signing_time is None
    # RFC 5652 §5.3: without signed attributes the content type must be id-data.
    voucher_type = pki.openssl_sign(
        openssl, "-noattr", "-econtent_type", cms.OID_ANIMA_JSON_VOUCHER
    )
    with pytest.raises(SignatureInvalid, match="id-data"):
        cms.verify(voucher_type, trust_anchors=None, now=None)


def test_openssl_sha1_digest_refused(tmp_path: Path, openssl: str) -> None:
    pki = Pki(tmp_path, "p256")
    der = pki.openssl_sign(openssl, "-md", "sha1")
    with pytest.raises(SignatureInvalid, match="sha1"):
        cms.verify(der, trust_anchors=None, now=None)


def test_openssl_two_signers_refused(tmp_path: Path, openssl: str) -> None:
    pki = Pki(tmp_path, "p256")
    second = certs.issue_masa_signer(pki.ca, "Second", now=datetime.now(UTC))
    certfiles.write_certs(tmp_path / "second.pem", [second.cert])
    certfiles.write_key(tmp_path / "second.key", second.key)
    der = pki.openssl_sign(
        openssl, "-signer", str(tmp_path / "second.pem"), "-inkey", str(tmp_path / "second.key")
    )
    with pytest.raises(SignatureInvalid, match="one SignerInfo"):
        cms.verify(der, trust_anchors=None, now=None)


def test_openssl_tampered_payload_and_other_ca(tmp_path: Path, openssl: str) -> None:
    pki = Pki(tmp_path, "p256")
    der = pki.openssl_sign(openssl)
    tampered = der.replace(b'"SN-7"', b'"SN-8"')
    with pytest.raises(DigestMismatch):
        cms.verify(tampered, trust_anchors=[pki.ca.cert], now=datetime.now(UTC))
    other = certs.make_ca("Interop CA p256", now=datetime.now(UTC))
    with pytest.raises(UntrustedSigner):
        cms.verify(der, trust_anchors=[other.cert], now=datetime.now(UTC))


def test_openssl_pem_output_and_data_only(tmp_path: Path, openssl: str) -> None:
    pki = Pki(tmp_path, "p256")
    pem_out = tmp_path / "out.pem"
    run(
        [
            openssl, "cms", "-sign", "-binary", "-nodetach", "-outform", "PEM",
            "-in", pki.payload, "-signer", pki.signer_pem, "-inkey", pki.signer_key,
            "-out", pem_out,
        ]
    )  # fmt: skip
    assert pem_out.read_bytes().startswith(b"-----BEGIN CMS-----")
    assert cms.verify(pem_out.read_bytes(), trust_anchors=None, now=None).content == PAYLOAD
    data_out = tmp_path / "data.der"
    run([openssl, "cms", "-data_create", "-in", pki.payload, "-outform", "DER", "-out", data_out])
    with pytest.raises(NotCMS, match="not SignedData"):
        cms.verify(data_out.read_bytes(), trust_anchors=None, now=None)


def test_openssl_sztp_content_type_needs_opt_in(tmp_path: Path, openssl: str) -> None:
    pki = Pki(tmp_path, "p256")
    der = pki.openssl_sign(openssl, "-econtent_type", cms.OID_SZTP_CONVEYED_INFO)
    with pytest.raises(ArtifactKindMismatch):
        cms.verify(der, trust_anchors=None, now=None)
    allowed = [cms.OID_SZTP_CONVEYED_INFO]
    assert cms.verify(der, trust_anchors=None, now=None, content_types=allowed).content == PAYLOAD


# ---------------------------------------------------------------------------------------------
# zerotouch signs, OpenSSL verifies


def openssl_verify(openssl: str, folder: Path, der: bytes, ca_pem: Path) -> bytes:
    signed = folder / "zt.der"
    signed.write_bytes(der)
    out = folder / "zt.payload"
    run(
        [
            openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", signed,
            "-CAfile", ca_pem, "-purpose", "any", "-out", out,
        ]
    )  # fmt: skip
    return out.read_bytes()


@pytest.mark.parametrize("kind", ["p256", "p384", "p521", "rsa2048", "rsa3072"])
def test_zerotouch_signed_verifies_in_openssl(
    tmp_path: Path, openssl: str, kind: certs.KeyKind
) -> None:
    pki = Pki(tmp_path, kind)
    der = cms.sign(PAYLOAD, signer=pki.signer, now=datetime.now(UTC))
    assert openssl_verify(openssl, tmp_path, der, pki.ca_pem) == PAYLOAD


def _openssl_version(openssl: str) -> tuple[int, int]:
    words = run([openssl, "version"]).stdout.decode().split()
    major, minor = words[1].split(".")[:2]
    return int(major), int(minor)


def test_zerotouch_ed25519_in_openssl(tmp_path: Path, openssl: str) -> None:
    """RFC 8419 Ed25519 CMS: OpenSSL verifies it from 3.2 on; 3.0/3.1 cannot (no CMS EdDSA
    support, "invalid digest"), which this test pins so that an upgrade is noticed."""
    pki = Pki(tmp_path, "ed25519")
    der = cms.sign(PAYLOAD, signer=pki.signer, now=datetime.now(UTC))
    if _openssl_version(openssl) >= (3, 2):
        assert openssl_verify(openssl, tmp_path, der, pki.ca_pem) == PAYLOAD
        return
    (tmp_path / "ed.der").write_bytes(der)
    result = run(
        [
            openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", tmp_path / "ed.der",
            "-CAfile", pki.ca_pem, "-purpose", "any", "-out", tmp_path / "x",
        ],
        check=False,
    )  # fmt: skip
    assert result.returncode != 0 and b"invalid digest" in result.stderr
    # OpenSSL does read the structure: SHA-512 digest and the Ed25519 algorithm (RFC 8419 §3).
    printed = run(
        [openssl, "cms", "-cmsout", "-print", "-inform", "DER", "-in", tmp_path / "ed.der"]
    )
    assert b"sha512" in printed.stdout and b"ED25519" in printed.stdout


def test_zerotouch_rsa_pss_verifies_in_openssl(tmp_path: Path, openssl: str) -> None:
    pki = Pki(tmp_path, "rsa2048")
    der = cms.sign(PAYLOAD, signer=pki.signer, now=datetime.now(UTC), rsa_pss=True)
    assert openssl_verify(openssl, tmp_path, der, pki.ca_pem) == PAYLOAD


@pytest.mark.parametrize("content_type", [cms.OID_DATA, cms.OID_SZTP_CONVEYED_INFO])
def test_zerotouch_content_types_in_openssl(
    tmp_path: Path, openssl: str, content_type: str
) -> None:
    pki = Pki(tmp_path, "p256")
    der = cms.sign(PAYLOAD, signer=pki.signer, now=datetime.now(UTC), content_type=content_type)
    assert openssl_verify(openssl, tmp_path, der, pki.ca_pem) == PAYLOAD
    printed = run(
        [openssl, "cms", "-cmsout", "-print", "-inform", "DER", "-in", tmp_path / "zt.der"]
    )
    expected = "pkcs7-data" if content_type == cms.OID_DATA else content_type
    assert expected in printed.stdout.decode()


def test_zerotouch_chain_verifies_in_openssl(tmp_path: Path, openssl: str) -> None:
    pki = Pki(tmp_path, "p384", intermediate=True)
    der = cms.sign(PAYLOAD, signer=pki.signer, now=datetime.now(UTC))
    assert openssl_verify(openssl, tmp_path, der, pki.ca_pem) == PAYLOAD
    bare = cms.sign(PAYLOAD, signer=pki.signer, now=datetime.now(UTC), include_chain=False)
    (tmp_path / "bare.der").write_bytes(bare)
    result = run(
        [
            openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", tmp_path / "bare.der",
            "-CAfile", pki.ca_pem, "-purpose", "any", "-out", tmp_path / "x",
        ],
        check=False,
    )  # fmt: skip
    assert result.returncode != 0  # OpenSSL too needs the intermediate


@pytest.mark.parametrize(("kind", "pss"), [("p256", False), ("rsa2048", True)])
def test_zerotouch_output_is_canonical_der(
    tmp_path: Path, openssl: str, kind: certs.KeyKind, pss: bool
) -> None:
    """OpenSSL re-encodes what zerotouch signs byte for byte: it is DER, not just BER."""
    pki = Pki(tmp_path, kind, intermediate=True)
    der = cms.sign(PAYLOAD, signer=pki.signer, now=datetime.now(UTC), rsa_pss=pss)
    (tmp_path / "zt.der").write_bytes(der)
    run(
        [
            openssl, "cms", "-cmsout", "-inform", "DER", "-in", tmp_path / "zt.der",
            "-outform", "DER", "-out", tmp_path / "re.der",
        ]
    )  # fmt: skip
    assert (tmp_path / "re.der").read_bytes() == der


def test_zerotouch_tampered_fails_in_openssl(tmp_path: Path, openssl: str) -> None:
    pki = Pki(tmp_path, "p256")
    der = cms.sign(PAYLOAD, signer=pki.signer, now=datetime.now(UTC)).replace(b"SN-7", b"SN-8")
    (tmp_path / "bad.der").write_bytes(der)
    result = run(
        [
            openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", tmp_path / "bad.der",
            "-CAfile", pki.ca_pem, "-purpose", "any", "-out", tmp_path / "x",
        ],
        check=False,
    )  # fmt: skip
    assert result.returncode != 0 and b"verification failure" in result.stderr.lower()


def test_signed_attributes_match_openssl_view(tmp_path: Path, openssl: str) -> None:
    pki = Pki(tmp_path, "p256")
    der = cms.sign(PAYLOAD, signer=pki.signer, now=datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC))
    (tmp_path / "zt.der").write_bytes(der)
    text = run(
        [openssl, "cms", "-cmsout", "-print", "-inform", "DER", "-in", tmp_path / "zt.der"]
    ).stdout.decode()
    assert "contentType" in text and "messageDigest" in text and "signingTime" in text
    assert "Mar  4 05:06:07 2026 GMT" in text
    assert "ecdsa-with-SHA256" in text
    assert "issuerAndSerialNumber" in text or "d.issuerAndSerialNumber" in text


# ---------------------------------------------------------------------------------------------
# certificates in OpenSSL


def test_idevid_extensions_in_openssl_text(tmp_path: Path, openssl: str) -> None:
    now = datetime.now(UTC)
    ca = certs.make_ca("Interop Manufacturer CA", now=now)
    idevid = certs.issue_idevid(ca, "SN-OPENSSL-1", masa_url="https://masa.example:9443", now=now)
    pem = tmp_path / "idevid.pem"
    certfiles.write_certs(pem, [idevid.cert])
    certfiles.write_certs(tmp_path / "ca.pem", [ca.cert])
    text = run([openssl, "x509", "-in", pem, "-noout", "-text"]).stdout.decode()
    assert "serialNumber = SN-OPENSSL-1" in text or "serialNumber=SN-OPENSSL-1" in text
    assert "1.3.6.1.5.5.7.1.32" in text and "https://masa.example:9443" in text
    assert "1.3.6.1.5.5.7.8.4" in text  # othername hardwareModuleName
    assert "Not After : Dec 31 23:59:59 9999 GMT" in text
    assert "CA:FALSE" in text
    run([openssl, "verify", "-CAfile", tmp_path / "ca.pem", pem])
    # The otherName value parses as HardwareModuleName { hwType OID, hwSerialNum OCTET STRING }.
    san = idevid.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    der = tmp_path / "san.der"
    der.write_bytes(san.value.public_bytes())
    dump = run([openssl, "asn1parse", "-inform", "DER", "-in", der]).stdout.decode()
    assert "OBJECT            :1.3.6.1.5.5.7.8.4" in dump  # id-on-hardwareModuleName
    assert "OBJECT            :1.3.6.1.4.1.65535.1" in dump  # hwType
    assert "prim: OCTET STRING      :SN-OPENSSL-1" in dump  # hwSerialNum


def test_openssl_verify_rejects_wrong_ca(tmp_path: Path, openssl: str) -> None:
    now = datetime.now(UTC)
    ca = certs.make_ca("Interop Manufacturer CA", now=now)
    other = certs.make_ca("Interop Manufacturer CA", now=now)
    idevid = certs.issue_idevid(ca, "SN-2", masa_url=None, now=now)
    certfiles.write_certs(tmp_path / "idevid.pem", [idevid.cert])
    certfiles.write_certs(tmp_path / "other.pem", [other.cert])
    result = run(
        [openssl, "verify", "-CAfile", tmp_path / "other.pem", tmp_path / "idevid.pem"],
        check=False,
    )
    assert result.returncode != 0


def test_registrar_and_tls_certs_in_openssl(tmp_path: Path, openssl: str) -> None:
    now = datetime.now(UTC)
    domain = certs.make_ca("Interop Domain CA", now=now)
    registrar = certs.issue_registrar(
        domain, "registrar", hosts=["localhost", "127.0.0.1"], now=now
    )
    certfiles.write_certs(tmp_path / "domain.pem", [domain.cert])
    certfiles.write_certs(tmp_path / "registrar.pem", [registrar.cert])
    text = run([openssl, "x509", "-in", tmp_path / "registrar.pem", "-noout", "-text"])
    out = text.stdout.decode()
    assert "CMC Registration Authority" in out or "1.3.6.1.5.5.7.3.28" in out
    assert "TLS Web Server Authentication" in out and "TLS Web Client Authentication" in out
    assert "DNS:localhost" in out and "IP Address:127.0.0.1" in out
    for purpose in ("sslserver", "sslclient"):
        run(
            [
                openssl, "verify", "-purpose", purpose, "-CAfile", tmp_path / "domain.pem",
                tmp_path / "registrar.pem",
            ]
        )  # fmt: skip


def test_vendor_cli_output_verifies_in_openssl(tmp_path: Path, openssl: str) -> None:
    vendor, pledge = tmp_path / "V", tmp_path / "P"
    zerotouch = [sys.executable, "-m", "zerotouch_plugin"]
    run([*zerotouch, "vendor", "init", "--dir", vendor, "--masa-url", "https://127.0.0.1:9443"])
    run([*zerotouch, "vendor", "idevid", "--dir", vendor, "--serial", "SN-CLI", "--out", pledge])
    run([openssl, "verify", "-CAfile", pledge / "masa-ca.pem", pledge / "idevid.pem"])
    for name in ("masa-signer.pem", "masa-tls.pem"):
        run([openssl, "verify", "-CAfile", vendor / "ca.pem", vendor / name])
    run(
        [
            openssl, "verify", "-purpose", "sslserver", "-CAfile", vendor / "ca.pem",
            vendor / "masa-tls.pem",
        ]
    )  # fmt: skip
    text = run([openssl, "x509", "-in", pledge / "idevid.pem", "-noout", "-text"]).stdout
    assert b"https://127.0.0.1:9443" in text
    # The key matches the certificate (same public key).
    pub_cert = run([openssl, "x509", "-in", pledge / "idevid.pem", "-noout", "-pubkey"]).stdout
    pub_key = run([openssl, "pkey", "-in", pledge / "idevid.key", "-pubout"]).stdout
    assert pub_cert == pub_key
    # A voucher signed with the MASA signer verifies in OpenSSL against the pledge's anchor.
    signer = certfiles.load_identity(vendor / "masa-signer.pem", vendor / "masa-signer.key")
    der = cms.sign(PAYLOAD, signer=signer, now=datetime.now(UTC))
    assert openssl_verify(openssl, tmp_path, der, pledge / "masa-ca.pem") == PAYLOAD
