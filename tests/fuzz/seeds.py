"""Valid artifacts the harnesses mutate: the public vectors (tests/vectors/data/PROVENANCE.md)
and ones built here with the project's own code, so every field a parser reads is reached."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import cache
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from asn1crypto import core as asn1_core
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, pkcs7

from zerotouch_plugin.artifacts import certs, cms
from zerotouch_plugin.artifacts.grasp import (
    AN_JOIN_REGISTRAR,
    AN_PROXY,
    IPPROTO_TCP,
    O_FQDN_LOCATOR,
    O_URI_LOCATOR,
    SYNC_ONLY,
    Flood,
    Locator,
    Objective,
)
from zerotouch_plugin.artifacts.voucher import (
    Assertion,
    Voucher,
    VoucherRequest,
    new_nonce,
    sign_artifact,
)
from zerotouch_plugin.errors import ZerotouchError

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "data" / "examples"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
_CMS_SUFFIXES = (".pkcs", ".der", ".b64", ".vch", ".bin", ".base64")


@cache
def pki() -> tuple[certs.Identity, certs.Identity, certs.Identity]:
    """(vendor CA, MASA signer, pledge IDevID), all valid at NOW."""
    ca = certs.make_ca("fuzz vendor CA", now=NOW - timedelta(days=1))
    masa = certs.issue_masa_signer(ca, "fuzz MASA", now=NOW - timedelta(days=1))
    idevid = certs.issue_idevid(
        ca, "FUZZ-0001", masa_url="https://masa.example", now=NOW - timedelta(days=1)
    )
    return ca, masa, idevid


@cache
def own_artifacts() -> tuple[Voucher | VoucherRequest, ...]:
    """One of each shape: nonced, nonceless with expiry, and a voucher-request."""
    _, masa, idevid = pki()
    return (
        Voucher(
            created_on=NOW,
            assertion=Assertion.LOGGED,
            serial_number="FUZZ-0001",
            pinned_domain_cert=masa.cert.public_bytes(Encoding.DER),
            nonce=new_nonce(b"0123456789abcdef"),
            idevid_issuer=b"\x04\x14" + b"k" * 20,
            domain_cert_revocation_checks=False,
        ),
        Voucher(
            created_on=NOW,
            assertion=Assertion.VERIFIED,
            serial_number="FUZZ-0001",
            pinned_domain_cert=b"pinned",
            expires_on=NOW + timedelta(days=30),
            last_renewal_date=NOW + timedelta(days=60),
        ),
        VoucherRequest(
            created_on=NOW,
            assertion=Assertion.PROXIMITY,
            serial_number="FUZZ-0001",
            nonce=new_nonce(b"fedcba9876543210"),
            proximity_registrar_cert=idevid.cert.public_bytes(Encoding.DER),
            prior_signed_voucher_request=b"\x30\x03\x02\x01\x00",
        ),
    )


@cache
def own_signed() -> tuple[bytes, ...]:
    """The own artifacts signed by the MASA (DER CMS), in the order of own_artifacts()."""
    _, masa, _ = pki()
    return tuple(sign_artifact(artifact, signer=masa, now=NOW) for artifact in own_artifacts())


@cache
def own_signed_other_keys() -> tuple[bytes, ...]:
    """The first voucher signed with an RSA (PKCS#1 v1.5 and PSS) and an Ed25519 key, so the
    other signature paths of the CMS verifier are fuzzed too."""
    ca, _, _ = pki()
    content = own_artifacts()[0].to_json()
    out = []
    kinds: tuple[tuple[certs.KeyKind, bool], ...] = (
        ("rsa2048", False),
        ("rsa2048", True),
        ("ed25519", False),
    )
    for kind, pss in kinds:
        signer = certs.issue_masa_signer(
            ca, f"fuzz MASA {kind}", now=NOW - timedelta(days=1), key_kind=kind
        )
        out.append(cms.sign(content, signer=signer, now=NOW, rsa_pss=pss))
    return tuple(out)


@cache
def vector_cms() -> tuple[bytes, ...]:
    """DER of every signed artifact among the vectors that decodes as CMS."""
    out = []
    for path in sorted(VECTORS.rglob("*")):
        if path.suffix not in _CMS_SUFFIXES or not path.is_file():
            continue
        try:
            out.append(cms.decode(path.read_bytes()))
        except ZerotouchError:
            continue
    return tuple(out)


@cache
def vector_json() -> tuple[Any, ...]:
    """Every voucher or voucher-request JSON document among the vectors."""
    out = []
    for path in sorted(VECTORS.rglob("*.json")):
        try:
            obj = json.loads(path.read_bytes())
        except ValueError:
            continue
        if isinstance(obj, dict) and any("voucher" in key for key in obj):
            out.append(obj)
    return tuple(out)


def signer_key(cert: x509.Certificate) -> bytes:
    """The signer's public key (DER SPKI): what a signature really binds content to."""
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def verified_content(der: bytes) -> tuple[bytes, bytes] | None:
    """(content, signer key) a seed's signature covers (checked with its embedded signer), or
    None when the seed itself does not verify."""
    try:
        signed = cms.verify(der, trust_anchors=None, now=None)
    except ZerotouchError:
        return None
    return signed.content, signer_key(signed.signer)


# ---------------------------------------------------------------------------------------------
# EST (RFC 7030 §4)


def _tlv(tag: int, *parts: bytes) -> bytes:
    body = b"".join(parts)
    if len(body) < 0x80:
        return bytes([tag, len(body)]) + body
    size = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def _oid(dotted: str) -> bytes:
    return bytes(asn1_core.ObjectIdentifier(dotted).dump())


@cache
def csrattrs_ders() -> tuple[bytes, ...]:
    """CsrAttrs (RFC 7030 §4.5.2) with every item kind parse_csrattrs reads: bare OIDs, an EC
    key with its curve, an RSA key with its size, and an extensionRequest carrying a
    subjectAltName (RFC 8995 §5.9.2)."""
    san = x509.SubjectAlternativeName(
        [
            x509.DNSName("sn-1.devices.example"),
            x509.OtherName(x509.ObjectIdentifier("1.3.6.1.5.5.7.8.10"), b"\x0c\x04node"),
        ]
    ).public_bytes()
    extension = _tlv(0x30, _oid("2.5.29.17"), _tlv(0x04, san))
    rich = _tlv(
        0x30,
        _oid("2.5.4.5"),
        _oid("1.2.840.10045.4.3.2"),
        _tlv(0x30, _oid("1.2.840.10045.2.1"), _tlv(0x31, _oid("1.2.840.10045.3.1.7"))),
        _tlv(0x30, _oid("1.2.840.113549.1.9.14"), _tlv(0x31, _tlv(0x30, extension))),
        _tlv(0x30, _oid("1.2.840.113549.1.1.1"), _tlv(0x31, bytes(asn1_core.Integer(3072).dump()))),
    )
    return rich, _tlv(0x30, _oid("1.3.101.112")), _tlv(0x30)


@cache
def csr_ders() -> tuple[bytes, ...]:
    """PKCS#10 requests as pledges send them, with each key family and a SAN."""
    _, _, idevid = pki()
    san = (x509.DNSName("pledge.example"),)
    out = [certs.make_csr(idevid.key, serial="FUZZ-0001", san=san)]
    for kind in ("rsa2048", "ed25519"):
        out.append(certs.make_csr(certs.generate_key(kind), common_name=f"fuzz {kind}"))
    return tuple(csr.public_bytes(Encoding.DER) for csr in out)


@cache
def certs_only_ders() -> tuple[bytes, ...]:
    """certs-only PKCS#7 (RFC 7030 §4.1.3) with one certificate and with a chain."""
    ca, masa, idevid = pki()
    return tuple(
        pkcs7.serialize_certificates(chain, Encoding.DER)
        for chain in ([ca.cert], [idevid.cert, masa.cert, ca.cert])
    )


# ---------------------------------------------------------------------------------------------
# GRASP (RFC 8990 §2.8.11, RFC 8995 §4)


@cache
def grasp_floods() -> tuple[bytes, ...]:
    """M_FLOOD datagrams with every locator kind, the null locator, and objective values of
    each CBOR shape the decoder freezes (text, array, map, byte string)."""
    proxy = Objective(AN_PROXY, SYNC_ONLY, 1, "")
    registrar = Objective(AN_JOIN_REGISTRAR, 4, 255, "EST-TLS")
    floods = (
        Flood(
            12340815, ip_address("fe80::1"), 180000, ((proxy, Locator.ip("fe80::1", port=4443)),)
        ),
        Flood(
            51804321,
            ip_address("fd89:b714:f3db::1"),
            180000,
            (
                (registrar, Locator.ip("fd89:b714:f3db::1", port=8443)),
                (Objective(AN_PROXY), Locator.ip("192.0.2.7", port=443)),
                (Objective("EX1", 5, 2, ("Example 1 value=", 100)), None),
                (Objective("EX2", 1, 3, {"k": b"\x00\x01", "n": [1, 2, {"x": None}]}), None),
                (registrar, Locator(O_FQDN_LOCATOR, "registrar.example", IPPROTO_TCP, 8443)),
                (registrar, Locator(O_URI_LOCATOR, "https://registrar.example/", None, None)),
            ),
        ),
    )
    return tuple(flood.encode() for flood in floods)
