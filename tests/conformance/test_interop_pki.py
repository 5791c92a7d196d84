"""tests/support/interop_pki.py makes what it says: OpenSSL checks every certificate and CMS
it makes, the re-issued RFC 8995 Appendix C PKI keeps the published keys, names and
extensions, and the project reads all of it (certificates, CMS, role folders)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from tests.support import interop_pki as ip
from tests.support.processes import run_cli, start_server
from zerotouch_plugin.artifacts import certs, cms
from zerotouch_plugin.config import MasaConfig, RegistrarConfig, load_config
from zerotouch_plugin.errors import Expired, UntrustedSigner
from zerotouch_plugin.services import certfiles

NOW = datetime.now(UTC)
MASA_URL = "https://127.0.0.1:9443"


@dataclass(frozen=True)
class Material:
    vendors: dict[str, ip.VendorPki]
    idevids: dict[str, ip.Cert]
    domain: ip.DomainPki
    appendix_c: ip.AppendixC


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    root = tmp_path_factory.mktemp("interop-pki")
    vendors = {kind: ip.make_vendor_pki(root / f"vendor-{kind}", kind) for kind in ip.KEY_TYPES}
    idevids = {
        kind: vendor.idevid(f"OV-{kind}-0001", masa_url=MASA_URL)
        for kind, vendor in vendors.items()
    }
    return Material(
        vendors, idevids, ip.make_domain_pki(root / "domain"), ip.make_appendix_c(root / "c")
    )


def openssl_verify(cert: Path, ca: Path, *, untrusted: Path | None = None) -> str:
    args = ["openssl", "verify", "-CAfile", str(ca), "-purpose", "any"]
    if untrusted is not None:
        args += ["-untrusted", str(untrusted)]
    result = subprocess.run([*args, str(cert)], capture_output=True, text=True, check=False)
    return (result.stdout + result.stderr).strip()


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def extensions(cert: x509.Certificate) -> list[tuple[str, bool, bytes]]:
    return [(e.oid.dotted_string, e.critical, e.value.public_bytes()) for e in cert.extensions]


# ---------------------------------------------------------------------------------------------
# another vendor, per key type


@pytest.mark.parametrize("kind", ip.KEY_TYPES)
def test_every_vendor_certificate_verifies_with_openssl(material: Material, kind: str) -> None:
    vendor = material.vendors[kind]
    for cert in (vendor.ca, vendor.masa, vendor.masa_tls, material.idevids[kind]):
        assert openssl_verify(cert.cert, vendor.ca.cert).endswith(": OK"), cert.name
        assert cert.root == vendor.ca.cert
        assert certs.key_kind_of(load(cert.cert).public_key()) == kind


@pytest.mark.parametrize("kind", ip.KEY_TYPES)
def test_idevid_carries_what_rfc_8995_asks(material: Material, kind: str) -> None:
    idevid = load(material.idevids[kind].cert)
    ca = load(material.vendors[kind].ca.cert)
    assert certs.serial_number_of(idevid) == f"OV-{kind}-0001"
    masa_url = idevid.extensions.get_extension_for_oid(certs.OID_MASA_URL)
    assert not masa_url.critical
    raw = masa_url.value.public_bytes()
    assert raw[0] == 0x16 and raw[2:] == MASA_URL.encode()  # IA5String (RFC 8995 §2.3.2)
    assert certs.masa_url_of(idevid) == MASA_URL
    assert certs.hardware_module_name_of(idevid) == (
        ip.HARDWARE_TYPE,
        f"OV-{kind}-0001".encode(),
    )
    aki = idevid.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert idevid.not_valid_after_utc.year == 9999
    # the project's path validation takes the OpenSSL-made chain
    assert certs.verify_chain(idevid, trust_anchors=[ca], now=NOW)[-1] == ca


def test_idevid_options(material: Material) -> None:
    vendor = material.vendors["p256"]
    bare = load(vendor.idevid("OV-BARE", aki=False, hardware_module_name=False).cert)
    oids = {e.oid for e in bare.extensions}
    assert ExtensionOID.AUTHORITY_KEY_IDENTIFIER not in oids
    assert ExtensionOID.SUBJECT_ALTERNATIVE_NAME not in oids
    assert certs.OID_MASA_URL not in oids
    assert ip.idevid_issuer_forms(vendor.folder / "idevid-OV-BARE.pem") is None
    # the Appendix C way of writing the URL: no scheme
    schemeless = vendor.idevid("OV-HOSTPORT", masa_url="masa.example:9443", key_type="rsa2048")
    assert certs.masa_url_of(schemeless.x509()) == "masa.example:9443"
    assert schemeless.key_type == "rsa2048"
    assert openssl_verify(schemeless.cert, vendor.ca.cert).endswith(": OK")


def test_masa_tls_certificate_serves_localhost(material: Material) -> None:
    tls = material.vendors["p384"].masa_tls.x509()
    eku = tls.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    san = tls.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert {str(a) for a in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}


# ---------------------------------------------------------------------------------------------
# another domain


def _eku_text(cert: Path) -> str:
    return subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-ext", "extendedKeyUsage"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def test_domain_certificates_verify_with_openssl(material: Material) -> None:
    domain = material.domain
    for cert in (domain.ca, domain.registrar_cmcra_only, domain.registrar, domain.sub_ca):
        assert openssl_verify(cert.cert, domain.ca.cert).endswith(": OK"), cert.name
    via = domain.registrar_via_sub_ca
    assert not openssl_verify(via.cert, domain.ca.cert).endswith(": OK")
    assert openssl_verify(via.cert, domain.ca.cert, untrusted=domain.sub_ca.cert).endswith(": OK")
    # chain files: the leaf then the sub-CA; full chain adds the root
    assert [c.subject for c in x509.load_pem_x509_certificates(via.chain.read_bytes())] == [
        via.x509().subject,
        domain.sub_ca.x509().subject,
    ]
    assert len(x509.load_pem_x509_certificates(via.full_chain.read_bytes())) == 3
    assert via.root == domain.ca.cert
    sub = domain.sub_ca.x509().extensions.get_extension_for_class(x509.BasicConstraints).value
    assert sub.ca and sub.path_length == 0


def test_cmcra_only_registrar_has_only_cmcra(material: Material) -> None:
    text = _eku_text(material.domain.registrar_cmcra_only.cert)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert lines == ["X509v3 Extended Key Usage: critical", "CMC Registration Authority"]
    eku = material.domain.registrar_cmcra_only.x509().extensions.get_extension_for_class(
        x509.ExtendedKeyUsage
    )
    assert eku.critical and list(eku.value) == [certs.OID_KP_CMC_RA]
    # the same as RFC 8995 Appendix C's registrar
    assert "CMC Registration Authority" in _eku_text(ip.APPENDIX_C_ORIGINALS.jrc)


def test_full_registrar_has_three_ekus(material: Material) -> None:
    for cert in (material.domain.registrar, material.domain.registrar_via_sub_ca):
        text = _eku_text(cert.cert)
        for name in ("TLS Web Server Authentication", "TLS Web Client Authentication", "CMC"):
            assert name in text, (cert.name, text)


# ---------------------------------------------------------------------------------------------
# RFC 8995 Appendix C for today


def test_appendix_c_reissue_keeps_keys_names_and_extensions(material: Material) -> None:
    c = material.appendix_c
    o = c.originals
    for new, old, issuer in (
        (c.vendor, o.vendor, o.vendor),
        (c.masa, o.masa, o.vendor),
        (c.ownerca, o.ownerca, o.ownerca),
        (c.jrc, o.jrc, o.ownerca),
    ):
        a, b = load(old), new.x509()
        assert b.subject.public_bytes() == a.subject.public_bytes(), new.name
        assert b.issuer.public_bytes() == load(issuer).subject.public_bytes(), new.name
        assert extensions(b) == extensions(a), new.name
        assert b.public_key() == a.public_key(), new.name
        assert b.serial_number != a.serial_number, new.name
        assert a.not_valid_after_utc < NOW < b.not_valid_after_utc, new.name
        assert b.not_valid_before_utc <= NOW
    assert c.vendor.key.read_bytes() == o.vendor_key.read_bytes()
    assert oct(c.masa.key.stat().st_mode & 0o777) == "0o600"


def test_appendix_c_chains_today(material: Material) -> None:
    c = material.appendix_c
    # the original IDevID (2021, valid to 2999, signed with vendor.key) under the new CA
    assert openssl_verify(c.originals.idevid, c.vendor.cert).endswith(": OK")
    assert c.idevid.root == c.vendor.cert
    assert load(c.idevid.cert) == load(c.originals.idevid)
    assert openssl_verify(c.masa.cert, c.vendor.cert).endswith(": OK")
    assert openssl_verify(c.jrc.cert, c.ownerca.cert).endswith(": OK")
    assert openssl_verify(c.masa_tls.cert, c.vendor.cert).endswith(": OK")
    assert "expired" in openssl_verify(c.originals.masa, c.originals.vendor)
    idevid = load(c.originals.idevid)
    assert certs.verify_chain(idevid, trust_anchors=[c.vendor.x509()], now=NOW)
    assert certs.masa_url_of(idevid) == c.masa_url
    assert ip.idevid_issuer_forms(c.originals.idevid) is None  # no AKI in the published IDevID


def test_appendix_c_artifacts_against_the_reissued_cas(material: Material) -> None:
    """The published pledge request verifies today under the re-issued vendor CA (its
    embedded IDevID runs to 2999); the voucher and the registrar request do not (their
    embedded signers expired in 2023 / 2022)."""
    c = material.appendix_c
    request = cms.decode(c.originals.pledge_request.read_bytes())
    content = json.loads(ip.cms_verify(request, c.vendor.cert))
    assert content["ietf-voucher-request:voucher"]["nonce"] == c.nonce
    assert cms.verify(request, trust_anchors=[c.vendor.x509()], now=NOW).content
    for artifact, anchor in (
        (c.originals.voucher, c.vendor),
        (c.originals.registrar_request, c.ownerca),
    ):
        with pytest.raises(Expired):
            cms.verify(artifact.read_bytes(), trust_anchors=[anchor.x509()], now=NOW)


# ---------------------------------------------------------------------------------------------
# CMS made by OpenSSL, read by OpenSSL and by the project


def _voucher(serial: str, nonce: str, pinned: bytes) -> dict[str, object]:
    return {
        "ietf-voucher:voucher": {
            "assertion": "proximity",
            "created-on": NOW.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "serial-number": serial,
            "nonce": nonce,
            "pinned-domain-cert": base64.b64encode(pinned).decode(),
        }
    }


@pytest.mark.parametrize("kind", ip.KEY_TYPES)
@pytest.mark.parametrize("content_type", [None, ip.OID_ANIMA_JSON_VOUCHER])
def test_cms_sign_verifies_with_openssl_and_the_project(
    material: Material, kind: str, content_type: str | None
) -> None:
    vendor = material.vendors[kind]
    payload = _voucher(f"OV-{kind}-0001", "abcd1234", material.domain.ca.der)
    if kind == "ed25519":
        with pytest.raises(ip.CmsUnsupported, match="Ed25519"):
            ip.cms_sign(payload, vendor.masa, econtent_type=content_type)
        pytest.xfail("OpenSSL cannot CMS-sign with Ed25519 (openssl/openssl#11915, #32248)")
    der = ip.cms_sign(payload, vendor.masa, econtent_type=content_type)
    assert json.loads(ip.cms_verify(der, vendor.ca.cert)) == payload
    result = cms.verify(der, trust_anchors=[vendor.ca.x509()], now=NOW)
    assert result.content_type == (content_type or ip.OID_DATA)
    assert json.loads(result.content) == payload
    assert result.signer == vendor.masa.x509()
    assert result.signing_time is not None and abs(result.signing_time - NOW) < timedelta(1)


def test_cms_sign_options(material: Material, tmp_path: Path) -> None:
    domain = material.domain
    via = domain.registrar_via_sub_ca
    # with the chain: OpenSSL and the project find the sub-CA in the CMS
    der = ip.cms_sign(b"{}", via, out=tmp_path / "rvr.der")
    assert (tmp_path / "rvr.der").read_bytes() == der
    assert ip.cms_verify(der, domain.ca.cert) == b"{}"
    inspected = cms.inspect(der)
    assert len(inspected.certificates) == 2
    assert cms.verify(der, trust_anchors=[domain.ca.x509()], now=NOW).content == b"{}"
    # without it: only the signer; the project needs the sub-CA from elsewhere
    alone = ip.cms_sign(b"{}", via, include_chain=False)
    assert len(cms.inspect(alone).certificates) == 1
    assert (
        cms.verify(
            alone, trust_anchors=[domain.ca.x509()], now=NOW, intermediates=[domain.sub_ca.x509()]
        ).content
        == b"{}"
    )
    with_root = ip.cms_sign(b"{}", via, include_root=True)
    assert len(cms.inspect(with_root).certificates) == 3
    # RSA-PSS and no certificates at all
    rsa = material.vendors["rsa2048"]
    pss = ip.cms_sign(b"{}", rsa.masa, rsa_pss=True)
    assert cms.verify(pss, trust_anchors=[rsa.ca.x509()], now=NOW).content == b"{}"
    bare = ip.cms_sign(b"{}", rsa.masa, no_certs=True)
    with pytest.raises(UntrustedSigner, match="neither embedded"):
        cms.inspect(bare)
    anchors = [rsa.ca.x509()]
    assert cms.verify(bare, trust_anchors=anchors, now=NOW, intermediates=[rsa.masa.x509()])


def test_appendix_c_fresh_voucher_through_the_cli(material: Material, tmp_path: Path) -> None:
    """A voucher the re-issued Appendix C MASA signs today, as highway would (id-data), passes
    ``zerotouch voucher verify`` with the vendor CA; the pledge request signed with the
    published IDevID key passes with --request."""
    c = material.appendix_c
    voucher = _voucher(c.serial, c.nonce, c.jrc.der)
    path = tmp_path / "voucher.der"
    ip.cms_sign(voucher, c.masa, out=path)
    result = run_cli(
        "voucher", "verify", path, "--trust", c.vendor.cert,
        "--expect-serial", c.serial, f"--expect-nonce={c.nonce}",  # starts with "-"
    )  # fmt: skip
    assert json.loads(result.stdout) == voucher
    request = {
        "ietf-voucher-request:voucher": {
            "assertion": "proximity",
            "created-on": NOW.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "serial-number": c.serial,
            "nonce": c.nonce,
            "proximity-registrar-cert": base64.b64encode(c.jrc.der).decode(),
        }
    }
    ip.cms_sign(request, c.idevid, out=tmp_path / "vr.der")
    result = run_cli(
        "voucher", "verify", tmp_path / "vr.der", "--trust", c.vendor.cert, "--request"
    )
    assert json.loads(result.stdout) == request


# ---------------------------------------------------------------------------------------------
# nonces and idevid-issuer

_FORMS = {
    "base64url-unpadded": r"[A-Za-z0-9_-]*[-_][A-Za-z0-9_-]*",
    "base64-unpadded": r"(?:[A-Za-z0-9+/]{4})*[A-Za-z0-9+/]{2,3}",
    "base64-padded": r"(?:[A-Za-z0-9+/]{4})*[A-Za-z0-9+/]{2,3}=+",
    "base64-no-padding-needed": r"(?:[A-Za-z0-9+/]{4})+",
    "hex": r"(?:[0-9a-f]{2})+",
    "decimal-digits": r"[0-9]+",
    "abcd1234": r"abcd1234",
}


@pytest.mark.parametrize("sample", ip.NONCE_SAMPLES, ids=lambda s: f"{s.form}:{s.value}")
def test_nonce_sample_is_in_its_source(sample: ip.NonceSample) -> None:
    assert re.fullmatch(_FORMS[sample.form], sample.value), sample
    data = (ip.DATA / sample.source).read_bytes()
    try:
        obj = json.loads(data)
    except json.JSONDecodeError:
        obj = json.loads(data.replace(b"\n", b""))
    (inner,) = obj.values()
    assert inner["nonce"] == sample.value


def test_every_nonce_form_is_sampled() -> None:
    assert {s.form for s in ip.NONCE_SAMPLES} == set(_FORMS)


@pytest.mark.parametrize("kind", ip.KEY_TYPES)
def test_idevid_issuer_forms(material: Material, kind: str) -> None:
    idevid = material.idevids[kind]
    forms = ip.idevid_issuer_forms(idevid.cert)
    assert forms is not None
    aki = idevid.x509().extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert forms.key_identifier == aki.key_identifier and len(forms.key_identifier) == 20
    assert forms.aki_der == aki.public_bytes()
    assert forms.extn_value == b"\x04\x18\x30\x16\x80\x14" + forms.key_identifier
    assert forms.extn_value in idevid.der  # verbatim from the certificate


# ---------------------------------------------------------------------------------------------
# role folders


def test_vendor_folder_loads_in_the_masa(material: Material, tmp_path: Path) -> None:
    from zerotouch_plugin.services.masa_app import load_context

    vendor = material.vendors["ed25519"]
    folder = vendor.write_folder(tmp_path / "V", masa_url=MASA_URL)
    context = load_context(folder, MasaConfig())
    try:
        assert context.signer.cert == vendor.masa.x509()
        assert context.manufacturer_cas == (vendor.ca.x509(),)
    finally:
        context.close()
    # the project's own CLI issues IDevIDs under the OpenSSL-made CA
    run_cli("vendor", "idevid", "--dir", folder, "--serial", "OV-CLI", "--out", tmp_path / "P")
    made = certfiles.load_cert_file(tmp_path / "P" / "idevid.pem")
    assert openssl_verify(tmp_path / "P" / "idevid.pem", vendor.ca.cert).endswith(": OK")
    assert certs.masa_url_of(made) == MASA_URL


def test_appendix_c_folders_load(material: Material, tmp_path: Path) -> None:
    from zerotouch_plugin.services.masa_app import load_context
    from zerotouch_plugin.services.registrar import load_registrar

    c = material.appendix_c
    vendor = ip.write_vendor_folder(
        tmp_path / "V", ca=c.vendor, masa=c.masa, masa_tls=c.masa_tls, masa_url=MASA_URL,
        key_type="p384",
    )  # fmt: skip
    context = load_context(vendor, MasaConfig())
    context.close()
    registrar = ip.write_registrar_folder(
        tmp_path / "R", ca=c.ownerca, registrar=c.jrc, manufacturer_cas=[c.vendor.cert],
        masa_trust=[c.vendor.cert], masa_url=MASA_URL,
    )  # fmt: skip
    config = load_config(RegistrarConfig, registrar / "registrar.toml", {})
    assert config.masa_url == MASA_URL and config.manufacturer_cas == ("manufacturer-cas.pem",)
    loaded = load_registrar(registrar, config)
    try:
        assert loaded.context.registrar.cert == c.jrc.x509()
        assert loaded.context.domain_ca.cert == c.ownerca.x509()
    finally:
        asyncio.run(loaded.close())


def test_registrar_folder_with_a_sub_ca(material: Material, tmp_path: Path) -> None:
    from zerotouch_plugin.services.registrar import load_registrar

    domain = material.domain
    folder = ip.write_registrar_folder(
        tmp_path / "R", ca=domain.ca, registrar=domain.registrar_via_sub_ca,
        manufacturer_cas=[v.ca.cert for v in material.vendors.values()],
    )  # fmt: skip
    loaded = load_registrar(folder, load_config(RegistrarConfig, folder / "registrar.toml", {}))
    try:
        assert loaded.context.registrar.chain == (domain.sub_ca.x509(),)
        assert loaded.context.manufacturer_cas == tuple(
            v.ca.x509() for v in material.vendors.values()
        )
        assert loaded.context.registrar.cert == domain.registrar_via_sub_ca.x509()
    finally:
        asyncio.run(loaded.close())


def test_appendix_c_lab_serves_a_voucher(material: Material, tmp_path: Path) -> None:
    """``zerotouch masa serve`` from the vendor folder of the re-issued Appendix C PKI: a
    registrar voucher-request made with OpenSSL and the published jrc/IDevID keys (id-data,
    the Appendix C nonce) gets a voucher signed with the published MASA key that
    ``openssl cms -verify`` accepts under the re-issued vendor CA."""
    c = material.appendix_c
    vendor = ip.write_vendor_folder(
        tmp_path / "V", ca=c.vendor, masa=c.masa, masa_tls=c.masa_tls, masa_url=MASA_URL,
        key_type="p384",
    )  # fmt: skip
    created = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    pledge = ip.cms_sign(
        {
            "ietf-voucher-request:voucher": {
                "assertion": "proximity",
                "created-on": created,
                "serial-number": c.serial,
                "nonce": c.nonce,
                "proximity-registrar-cert": base64.b64encode(c.jrc.der).decode(),
            }
        },
        c.idevid,
    )
    ip.cms_sign(
        {
            "ietf-voucher-request:voucher": {
                "assertion": "proximity",
                "created-on": created,
                "serial-number": c.serial,
                "nonce": c.nonce,
                "prior-signed-voucher-request": base64.b64encode(pledge).decode(),
            }
        },
        c.jrc,
        include_root=True,  # the MASA pins the farthest certificate: the owner CA
        out=tmp_path / "rvr.der",
    )
    masa = start_server("masa", "masa", "serve", "--dir", vendor, "--listen", "127.0.0.1:0")
    try:
        answer = subprocess.run(
            ["curl", "-sS", "--fail-with-body", "--cacert", str(c.vendor.cert),
             "-H", "Content-Type: application/voucher-cms+json",
             "-H", "Accept: application/voucher-cms+json",
             "--data-binary", f"@{tmp_path / 'rvr.der'}",
             "-o", str(tmp_path / "voucher.der"),
             f"{masa.url}/.well-known/brski/requestvoucher"],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        assert answer.returncode == 0, answer.stdout + answer.stderr + masa.stderr
    finally:
        masa.stop()
    voucher = json.loads(ip.cms_verify((tmp_path / "voucher.der").read_bytes(), c.vendor.cert))
    inner = voucher["ietf-voucher:voucher"]
    assert inner["nonce"] == c.nonce and inner["serial-number"] == c.serial
    assert base64.b64decode(inner["pinned-domain-cert"]) == c.ownerca.der
    signer = cms.inspect((tmp_path / "voucher.der").read_bytes()).signer
    assert signer.public_key() == c.masa.x509().public_key()
