"""Real CMS artifacts from tests/vectors/data (PROVENANCE.md): RFC 8995 Appendix C at its
signing time and today, every CMS file in signature-only mode, and the other test PKIs' chains."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509

from tests.vectors import provenance
from zerotouch_plugin.artifacts import _cms, certs, cms
from zerotouch_plugin.errors import Expired, NotCMS, UntrustedSigner, ZerotouchError
from zerotouch_plugin.services import certfiles

pytestmark = pytest.mark.filterwarnings(
    # Some vector certificates carry a countryName longer than two letters.
    "ignore:Attribute's length must be:UserWarning"
)

APPENDIX_C = "examples/anima-bootstrap/examples/"
TODAY = datetime(2026, 11, 26, tzinfo=UTC)

# RFC 8995 Appendix C: artifact -> (its CA, signing time).
RFC8995_ARTIFACTS = {
    "vr_00-D0-E5-F2-00-02.b64": ("vendor.crt", datetime(2021, 4, 13, 21, 43, 23, tzinfo=UTC)),
    "parboiled_vr_00-D0-E5-F2-00-02.b64": (
        "ownerca_secp384r1.crt",
        datetime(2021, 4, 13, 21, 43, 23, tzinfo=UTC),
    ),
    "voucher_00-D0-E5-F2-00-02.b64": ("vendor.crt", datetime(2021, 4, 13, 21, 43, 24, tzinfo=UTC)),
}

ACCEPTED = None
DETACHED = (NotCMS, "detached")
UNSIGNED_SZTP = (NotCMS, "not SignedData")
CERTS_ONLY = (NotCMS, "no SignerInfo")

# Every CMS ContentInfo under examples/ (PROVENANCE.md rows of kind CMS), signature-only
# verification (trust_anchors=None, now=None) with the default eContentTypes
# (id-ct-animaJSONVoucher, id-data): None = accepted, else (error class, message fragment).
SIGNATURE_ONLY: dict[str, tuple[type[ZerotouchError], str] | None] = {
    "examples/anima-bootstrap/examples/parboiled_00-D0-E5-F2-00-02.b64": ACCEPTED,
    "examples/anima-bootstrap/examples/parboiled_vr_00-D0-E5-F2-00-02.b64": ACCEPTED,
    "examples/anima-bootstrap/examples/parboiled_vr_00-D0-E5-F2-00-02.pkcs": ACCEPTED,
    "examples/anima-bootstrap/examples/voucher_00-D0-E5-F2-00-02.b64": ACCEPTED,
    "examples/anima-bootstrap/examples/voucher_00-D0-E5-F2-00-02.pkcs": ACCEPTED,
    "examples/anima-bootstrap/examples/vr_00-D0-E5-F2-00-02.b64": ACCEPTED,
    "examples/anima-bootstrap/examples/vr_00-D0-E5-F2-00-02.pkcs": ACCEPTED,
    "examples/anima-bootstrap/rfc8995-xml-extract/parboiled_vr_00-D0-E5-F2-00-02.b64": ACCEPTED,
    "examples/anima-bootstrap/rfc8995-xml-extract/voucher_00-D0-E5-F2-00-02.b64": ACCEPTED,
    "examples/anima-bootstrap/rfc8995-xml-extract/vr_00-D0-E5-F2-00-02.b64": ACCEPTED,
    "examples/anima-wg__voucher/examples/voucher_00-D0-E5-F2-00-02.b64": ACCEPTED,
    "examples/anima-wg__voucher/examples/voucher_00-D0-E5-F2-00-02.pkcs": ACCEPTED,
    "examples/anima-wg__voucher/examples/vr_00-D0-E5-F2-00-02.b64": ACCEPTED,
    "examples/anima-wg__voucher/examples/vr_00-D0-E5-F2-00-02.pkcs": ACCEPTED,
    "examples/AnimaGUS-minerva__fountain/spec/files/product/00-D0-E5-03-00-03/"
    "voucher_00-D0-E5-03-00-03.pkcs": ACCEPTED,
    "examples/AnimaGUS-minerva__fountain/spec/files/product/Smarkaklink-n3ce618/"
    "voucher_3c-97-0e-b9-cd-98.pkcs": ACCEPTED,
    "examples/AnimaGUS-minerva__fountain/spec/files/product_119/"
    "siemens-bt-voucher-request1.pkcs": ACCEPTED,
    "examples/AnimaGUS-minerva__fountain/spec/files/voucher-00-D0-E5-F2-00-02.pkcs": ACCEPTED,
    "examples/AnimaGUS-minerva__fountain/spec/files/voucher-00-D0-E5-F2-00-03.vch": ACCEPTED,
    "examples/AnimaGUS-minerva__fountain/spec/files/voucher-request-siemens-bt.pkcs": ACCEPTED,
    "examples/AnimaGUS-minerva__fountain/spec/files/voucher_00123456789A.pkcs": ACCEPTED,
    "examples/AnimaGUS-minerva__fountain/spec/files/voucher_081196FFFE0181E0.pkcs": ACCEPTED,
    "examples/AnimaGUS-minerva__fountain/spec/files/voucher_JADA_f2-00-01.der": ACCEPTED,
    "examples/AnimaGUS-minerva__fountain/spec/files/voucher_JADA_f2-00-01.pkcs": ACCEPTED,
    "examples/AnimaGUS-minerva__fountain/spec/files/voucher_request-00-D0-E5-F2-00-01.pkcs": (
        ACCEPTED
    ),
    "examples/AnimaGUS-minerva__fountain/spec/files/voucher_request-00-D0-E5-F2-00-02.pkcs": (
        ACCEPTED
    ),
    "examples/AnimaGUS-minerva__fountain/spec/files/voucher_request-00-D0-E5-F2-00-03.pkcs": (
        ACCEPTED
    ),
    "examples/AnimaGUS-minerva__fountain/spec/files/vr-00-D0-E5-F2-00-03.b64": ACCEPTED,
    "examples/AnimaGUS-minerva__fountain/spec/files/vr_00-D0-E5-03-00-03.b64": ACCEPTED,
    "examples/AnimaGUS-minerva__fountain/spec/files/vr_00-D0-E5-03-00-03.pkcs": ACCEPTED,
    "examples/AnimaGUS-minerva__fountain/spec/files/vr_081196FFFE0181E0.b64": ACCEPTED,
    "examples/CIRALabs__highway/spec/files/mranga-1-vr.vrq": ACCEPTED,
    "examples/CIRALabs__highway/spec/files/parboiled_unsigned_00-D0-E5-F2-00-01.vrq": ACCEPTED,
    "examples/CIRALabs__highway/spec/files/parboiled_vr-00-D0-E5-02-00-20.b64": ACCEPTED,
    "examples/CIRALabs__highway/spec/files/parboiled_vr-00-D0-E5-F2-00-01.pkcs": ACCEPTED,
    "examples/CIRALabs__highway/spec/files/parboiled_vr-00-D0-E5-F2-00-02.b64": ACCEPTED,
    "examples/CIRALabs__highway/spec/files/parboiled_vr-9730-siemens-bt.pkcs": ACCEPTED,
    "examples/CIRALabs__highway/spec/files/parboiled_vr_00-12-34-56-78-9A.vrq": ACCEPTED,
    # The only id-ct-animaJSONVoucher artifact (Siemens registrar).
    "examples/CIRALabs__highway/spec/files/product/00-D0-E5-03-00-03/"
    "vr92-from-siemens-jrc.pkcs": ACCEPTED,
    "examples/CIRALabs__highway/spec/files/vr_JADA123456789.pkcs": ACCEPTED,
    "examples/AnimaGUS-minerva__reach/spec/files/product/00-D0-E5-02-00-2D/"
    "parboiled_vr_00-d0-e5-02-00-2d.b64": ACCEPTED,
    "examples/AnimaGUS-minerva__reach/spec/files/product/00-D0-E5-02-00-2D/"
    "voucher_00-d0-e5-02-00-2d.b64": ACCEPTED,
    "examples/AnimaGUS-minerva__reach/spec/files/product/00-D0-E5-02-00-2D/"
    "vr_00-d0-e5-02-00-2d.b64": ACCEPTED,
    "examples/AnimaGUS-minerva__reach/spec/files/product/00-D0-E5-02-00-2D/"
    "vr_00-d0-e5-02-00-2d.pkcs": ACCEPTED,
    "examples/AnimaGUS-minerva__reach/spec/files/product/00-D0-E5-F2-00-02/"
    "parboiled_vr_00-D0-E5-F2-00-02.b64": ACCEPTED,
    # Signed 2022-07-29 with a MASA certificate that expired 2021-02-03: the signature itself
    # is fine, so signature-only mode (no time) accepts it; see CHAIN_AT_SIGNING_TIME.
    "examples/AnimaGUS-minerva__reach/spec/files/product/00-D0-E5-F2-00-02/"
    "voucher_00-D0-E5-F2-00-02.pkcs": ACCEPTED,
    "examples/AnimaGUS-minerva__reach/spec/files/product/00-D0-E5-F2-00-02/"
    "vr_00-D0-E5-F2-00-02.pkcs": ACCEPTED,
    # Constrained-voucher draft: SignedData with detached content (no eContent).
    "examples/anima-wg__constrained-voucher/examples/cms-parboiled-request.b64": DETACHED,
    "examples/anima-wg__constrained-voucher/examples/cms-parboiled-request.bin": DETACHED,
    "examples/anima-wg__constrained-voucher/examples/cms-voucher2.b64": DETACHED,
    "examples/anima-wg__constrained-voucher/examples/cms-voucher2.bin": DETACHED,
    # sztpd: unsigned conveyed information (ContentInfo of id-ct-sztpConveyedInfoJSON).
    "examples/opiproject__sztp/extracted/daemon_test_L253_b351d208.b64": UNSIGNED_SZTP,
    "examples/opiproject__sztp/extracted/daemon_test_L260_cf6655f2.b64": UNSIGNED_SZTP,
    "examples/opiproject__sztp/extracted/daemon_test_L453_1dd6dde7.b64": UNSIGNED_SZTP,
    "examples/opiproject__sztp/extracted/daemon_test_L460_8cea2342.b64": UNSIGNED_SZTP,
    "examples/opiproject__sztp/extracted/daemon_test_L481_0c9e8de0.b64": UNSIGNED_SZTP,
    "examples/opiproject__sztp/extracted/daemon_test_L488_84f501ab.b64": UNSIGNED_SZTP,
    # certs-only PKCS#7 bundles: SignedData without a signer.
    "examples/opiproject__sztp/extracted/daemon_test_L260_cf6655f2.trust-anchor.p7b.der": (
        CERTS_ONLY
    ),
    "examples/jeremycohoe__sztp/local_files/act2_sudi_chain.cms": CERTS_ONLY,
    "examples/jeremycohoe__sztp/local_files/cert_chain.cms": CERTS_ONLY,
    "examples/jeremycohoe__sztp/local_files/cisco_sudi_ta_chain.cms": CERTS_ONLY,
    "examples/jeremycohoe__sztp/local_files/ha_sudi_chain.cms": CERTS_ONLY,
    "examples/jeremycohoe__sztp/local_files/owner_cert_chain.cms": CERTS_ONLY,
    "examples/jeremycohoe__sztp/local_files/ta_cert_chain.cms": CERTS_ONLY,
    # google/open-sztp ownership vouchers (RSA, self-signed signer, id-data).
    "examples/google__open-sztp/data/12345/ownershipVoucher.base64": ACCEPTED,
    "examples/google__open-sztp/data/67890/ownershipVoucher.base64": ACCEPTED,
    "examples/google__open-sztp/util/testdata/12345/ownershipVoucher.base64": ACCEPTED,
}

_FOUNTAIN = "examples/AnimaGUS-minerva__fountain/spec/"
_REACH = "examples/AnimaGUS-minerva__reach/spec/files/product/"
_F2_01_VENDOR = _FOUNTAIN + "files/product/00-D0-E5-F2-00-01/vendor.crt"
_F2_03_VENDOR = _FOUNTAIN + "files/product/00-D0-E5-F2-00-03/vendor.crt"
_P384_VENDOR = _FOUNTAIN + "certs/vendor_secp384r1.crt"

# Full path validation at each artifact's own signingTime against its issuer's CA file:
# artifact -> (CA file, expected outcome). Covers P-384 CAs, GeneralizedTime (2999, 9999)
# notAfter, old Sandelman issuer names.
CHAIN_AT_SIGNING_TIME: dict[str, tuple[str, type[ZerotouchError] | None]] = {
    APPENDIX_C + "parboiled_00-D0-E5-F2-00-02.b64": (APPENDIX_C + "ownerca_secp384r1.cert", None),
    APPENDIX_C + "parboiled_vr_00-D0-E5-F2-00-02.pkcs": (
        APPENDIX_C + "ownerca_secp384r1.cert",
        None,
    ),
    APPENDIX_C + "voucher_00-D0-E5-F2-00-02.pkcs": (APPENDIX_C + "vendor.cert", None),
    APPENDIX_C + "vr_00-D0-E5-F2-00-02.pkcs": (APPENDIX_C + "vendor.cert", None),
    "examples/anima-wg__voucher/examples/voucher_00-D0-E5-F2-00-02.b64": (_F2_01_VENDOR, None),
    "examples/anima-wg__voucher/examples/vr_00-D0-E5-F2-00-02.pkcs": (_F2_01_VENDOR, None),
    _FOUNTAIN + "files/product/00-D0-E5-03-00-03/voucher_00-D0-E5-03-00-03.pkcs": (
        _FOUNTAIN + "files/product/00-D0-E5-03-00-03/vendor.crt",
        None,
    ),
    _FOUNTAIN + "files/product/Smarkaklink-n3ce618/voucher_3c-97-0e-b9-cd-98.pkcs": (
        _F2_03_VENDOR,
        None,
    ),
    _FOUNTAIN + "files/voucher-00-D0-E5-F2-00-03.vch": (_F2_03_VENDOR, None),
    _FOUNTAIN + "files/voucher_00123456789A.pkcs": (_P384_VENDOR, None),
    _FOUNTAIN + "files/voucher_JADA_f2-00-01.der": (_P384_VENDOR, None),
    _FOUNTAIN + "files/vr_081196FFFE0181E0.b64": (_P384_VENDOR, None),
    _FOUNTAIN + "files/voucher_request-00-D0-E5-F2-00-02.pkcs": (_F2_01_VENDOR, None),
    _FOUNTAIN + "files/vr-00-D0-E5-F2-00-03.b64": (
        _FOUNTAIN + "files/product/00-D0-E5-F2-00-02/vendor.crt",
        None,
    ),
    _REACH + "00-D0-E5-02-00-2D/voucher_00-d0-e5-02-00-2d.b64": (
        _REACH + "00-D0-E5-02-00-2E/vendor.crt",
        None,
    ),
    _REACH + "00-D0-E5-F2-00-02/parboiled_vr_00-D0-E5-F2-00-02.b64": (
        _REACH + "00-D0-E5-F2-00-02/ownerca_secp384r1.crt",
        None,
    ),
    # Signed 2022-07-29 by a MASA certificate that had expired on 2021-02-03.
    _REACH + "00-D0-E5-F2-00-02/voucher_00-D0-E5-F2-00-02.pkcs": (
        _REACH + "00-D0-E5-90-00-1A/vendor.crt",
        Expired,
    ),
}


def _anchors(vectors_dir: Path, relative: str) -> list[x509.Certificate]:
    return certs.load_certs((vectors_dir / relative).read_bytes())


@pytest.mark.parametrize("name", sorted(RFC8995_ARTIFACTS))
def test_rfc8995_appendix_c_at_signing_time(vectors_dir: Path, name: str) -> None:
    ca_name, signed_at = RFC8995_ARTIFACTS[name]
    data = (vectors_dir / APPENDIX_C / name).read_bytes()
    anchors = _anchors(vectors_dir, APPENDIX_C + ca_name)
    result = cms.verify(data, trust_anchors=anchors, now=signed_at)
    assert result.content_type == cms.OID_DATA  # RFC 8995 Appendix C uses id-data
    assert result.signing_time == signed_at
    expected = json.loads((vectors_dir / APPENDIX_C / f"{name}.payload.json").read_bytes())
    assert json.loads(result.content) == expected


@pytest.mark.parametrize("name", sorted(RFC8995_ARTIFACTS))
def test_rfc8995_appendix_c_expired_today(vectors_dir: Path, name: str) -> None:
    ca_name, _ = RFC8995_ARTIFACTS[name]
    data = (vectors_dir / APPENDIX_C / name).read_bytes()
    with pytest.raises(Expired, match="not valid at 2026-11-26"):
        cms.verify(data, trust_anchors=_anchors(vectors_dir, APPENDIX_C + ca_name), now=TODAY)


@pytest.mark.parametrize("name", sorted(RFC8995_ARTIFACTS))
def test_rfc8995_appendix_c_wrong_ca_is_untrusted(vectors_dir: Path, name: str) -> None:
    ca_name, signed_at = RFC8995_ARTIFACTS[name]
    other = "ownerca_secp384r1.crt" if ca_name == "vendor.crt" else "vendor.crt"
    data = (vectors_dir / APPENDIX_C / name).read_bytes()
    with pytest.raises(UntrustedSigner):
        cms.verify(data, trust_anchors=_anchors(vectors_dir, APPENDIX_C + other), now=signed_at)


def test_rfc8995_voucher_is_rejected_when_only_anima_content_type_is_allowed(
    vectors_dir: Path,
) -> None:
    data = (vectors_dir / APPENDIX_C / "voucher_00-D0-E5-F2-00-02.b64").read_bytes()
    with pytest.raises(cms.ArtifactKindMismatch):
        cms.verify(data, trust_anchors=None, now=None, content_types=[cms.OID_ANIMA_JSON_VOUCHER])


@pytest.mark.parametrize("relative", sorted(SIGNATURE_ONLY))
def test_every_cms_artifact_signature_only(vectors_dir: Path, relative: str) -> None:
    data = (vectors_dir / relative).read_bytes()
    expected = SIGNATURE_ONLY[relative]
    if expected is None:
        result = cms.verify(data, trust_anchors=None, now=None)
        payload_file = vectors_dir / f"{relative}.payload.json"
        assert json.loads(result.content) == json.loads(payload_file.read_bytes())
        assert result.signer in result.certificates
    else:
        error, fragment = expected
        with pytest.raises(error, match=fragment):
            cms.verify(data, trust_anchors=None, now=None)


@pytest.mark.parametrize(
    "relative", sorted(name for name, outcome in SIGNATURE_ONLY.items() if outcome is None)
)
def test_fast_and_general_decoders_agree_on_vectors(vectors_dir: Path, relative: str) -> None:
    der = cms.decode((vectors_dir / relative).read_bytes())
    assert _cms.parse_signed_data(der) == _cms.parse_signed_data_asn1crypto(der)


def test_signature_only_table_covers_every_cms_file_kept() -> None:
    """The table above lists exactly the files PROVENANCE.md says are CMS (and
    test_provenance.py checks that says so of every file that decodes as CMS)."""
    assert provenance.of_kind("CMS") == set(SIGNATURE_ONLY)


@pytest.mark.parametrize("relative", sorted(CHAIN_AT_SIGNING_TIME))
def test_chain_at_signing_time(vectors_dir: Path, relative: str) -> None:
    ca, expected = CHAIN_AT_SIGNING_TIME[relative]
    data = (vectors_dir / relative).read_bytes()
    signed_at = cms.inspect(data).signing_time
    assert signed_at is not None
    anchors = _anchors(vectors_dir, ca)
    if expected is None:
        assert cms.verify(data, trust_anchors=anchors, now=signed_at).signing_time == signed_at
    else:
        with pytest.raises(expected):
            cms.verify(data, trust_anchors=anchors, now=signed_at)


def test_idevid_vector_extensions(vectors_dir: Path) -> None:
    """The RFC 8995 IDevID (repo HEAD) has the serialNumber and verifies under vendor.crt."""
    idevid = certfiles.load_cert_file(vectors_dir / APPENDIX_C / "idevid_00-D0-E5-F2-00-02.crt")
    assert certs.serial_number_of(idevid) == "00-D0-E5-F2-00-02"
    # RFC 8995 §2.3.2 extension as published: an IA5String without the https:// scheme.
    assert certs.masa_url_of(idevid) == "highway-test.example.com:9443"
    vendor = _anchors(vectors_dir, APPENDIX_C + "vendor.crt")
    at = datetime(2021, 5, 1, tzinfo=UTC)
    assert certs.verify_chain(idevid, trust_anchors=vendor, now=at)[-1] == vendor[0]
    assert idevid.not_valid_after_utc.year == 2999  # GeneralizedTime notAfter


def test_sztp_ownership_voucher_trust(vectors_dir: Path) -> None:
    """google/open-sztp: the voucher verifies when its own (self-signed, RSA) signer is the
    pinned anchor; trustAnchorCertificate.pem has the same name but another key."""
    relative = "examples/google__open-sztp/data/12345/ownershipVoucher.base64"
    data = (vectors_dir / relative).read_bytes()
    signer = cms.inspect(data).signer
    assert cms.verify(data, trust_anchors=[signer], now=TODAY).signer == signer
    same_name = _anchors(vectors_dir, "examples/google__open-sztp/data/trustAnchorCertificate.pem")
    assert same_name[0].subject == signer.subject
    with pytest.raises(UntrustedSigner, match="did not sign"):
        cms.verify(data, trust_anchors=same_name, now=TODAY)


def test_masa_url_as_utf8string_is_read(vectors_dir: Path) -> None:
    """Sandelman reach IDevIDs encode id-pe-masa-url as UTF8String, not IA5String (tolerated)."""
    device = certfiles.load_cert_file(
        vectors_dir
        / "examples/AnimaGUS-minerva__reach/spec/files/product/00-D0-E5-F2-00-10/device.crt"
    )
    ext = device.extensions.get_extension_for_oid(certs.OID_MASA_URL).value
    assert isinstance(ext, x509.UnrecognizedExtension) and ext.value[:1] == b"\x0c"
    assert certs.masa_url_of(device) == "highway-test.example.com:9443"
    assert certs.serial_number_of(device) == "00-d0-e5-f2-00-10"
