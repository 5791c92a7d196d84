"""Every voucher / voucher-request JSON payload in tests/vectors/data, through the model.

Each file that claims to be a voucher or voucher-request (a ``*.payload.json`` with one of
the two top-level members, or a file of kind "voucher JSON" or "voucher-request JSON" in
PROVENANCE.md) either parses with the default tolerances or is rejected for a named reason,
as the table below says. The RFC 8995 Appendix C artifacts are also verified as CMS at their
signing time and parsed in full.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509

from tests.vectors import provenance
from zerotouch_plugin.artifacts import certs, cms
from zerotouch_plugin.artifacts.voucher import (
    DEFAULT_TOLERANCES,
    STRICT,
    Tolerance,
    Voucher,
    VoucherRequest,
    parse_signed_voucher,
    parse_signed_voucher_request,
)
from zerotouch_plugin.errors import ArtifactKindMismatch, Expired, SchemaError, ZerotouchError

V = "/ietf-voucher:voucher"
VR = "/ietf-voucher-request:voucher"
OK = ("ok", None)
FOUNTAIN = "AnimaGUS-minerva__fountain/spec/files/"
REACH = "AnimaGUS-minerva__reach/spec/files/"
HIGHWAY = "CIRALabs__highway/spec/files/"
BOOT = "anima-bootstrap/"
WG = "anima-wg__voucher/"
SZTP = "google__open-sztp/"
NO_SERIAL = ("schema-error", f"{VR}/serial-number")  # mandatory leaf (RFC 8366 §5.3)

# file (under examples/) -> (error reason or "ok", error path). Quirks the default tolerances
# accept: opaque nonces (nearly all), date-only created-on, "true" string, missing assertion.
EXPECTED: dict[str, tuple[str, str | None]] = {
    FOUNTAIN + "model_request_081196FFFE0181E0.txt": OK,
    FOUNTAIN + "parboiled_vr_00123456789A.txt": OK,
    FOUNTAIN + "parboiled_vr_081196FFFE0181E0.txt": OK,
    FOUNTAIN + "product/00-D0-E5-03-00-03/voucher_00-D0-E5-03-00-03.pkcs.payload.json": OK,
    FOUNTAIN + "product/Smarkaklink-n3ce618/voucher_3c-97-0e-b9-cd-98.pkcs.payload.json": OK,
    # Siemens BT pledge: no serial-number at all.
    FOUNTAIN + "product_119/siemens-bt-voucher-request1.pkcs.payload.json": NO_SERIAL,
    FOUNTAIN + "raw_unsigned_vr-00-12-34-56-78-9A.json": NO_SERIAL,
    FOUNTAIN + "raw_unsigned_vr_00-D0-E5-F2-00-01.json": NO_SERIAL,
    FOUNTAIN + "voucher-00-D0-E5-F2-00-02.pkcs.payload.json": OK,
    FOUNTAIN + "voucher-00-D0-E5-F2-00-03.vch.payload.json": OK,
    FOUNTAIN + "voucher-request-siemens-bt.pkcs.payload.json": OK,  # missing assertion
    FOUNTAIN + "voucher_00123456789A.pkcs.payload.json": OK,
    FOUNTAIN + "voucher_081196FFFE0181E0.pkcs.payload.json": OK,
    # pinned-domain-cert is PEM text with line breaks, not RFC 7951 binary.
    FOUNTAIN + "voucher_JADA_f2-00-01.der.payload.json": (
        "schema-error",
        f"{V}/pinned-domain-cert",
    ),
    FOUNTAIN + "voucher_JADA_f2-00-01.pkcs.payload.json": OK,
    FOUNTAIN + "voucher_request-00-D0-E5-F2-00-01.pkcs.payload.json": OK,
    FOUNTAIN + "voucher_request-00-D0-E5-F2-00-02.pkcs.payload.json": OK,
    FOUNTAIN + "voucher_request-00-D0-E5-F2-00-02.pkcs.txt": OK,
    FOUNTAIN + "voucher_request-00-D0-E5-F2-00-02.txt": OK,
    FOUNTAIN + "voucher_request-00-D0-E5-F2-00-03.pkcs.payload.json": OK,
    FOUNTAIN + "voucher_request-00-D0-E5-F2-00-03.pkcs.txt": OK,
    FOUNTAIN + "voucher_request_081196FFFE0181E0.txt": OK,
    FOUNTAIN + "vr-00-D0-E5-F2-00-03.b64.payload.json": OK,
    FOUNTAIN + "vr_00-D0-E5-03-00-03.b64.payload.json": OK,
    FOUNTAIN + "vr_00-D0-E5-03-00-03.pkcs.payload.json": OK,
    FOUNTAIN + "vr_081196FFFE0181E0.b64.payload.json": OK,  # date-only created-on
    REACH + "pledge_request01.txt": OK,
    REACH + "product/00-D0-E5-02-00-2D/parboiled_vr_00-d0-e5-02-00-2d.b64.payload.json": OK,
    REACH
    + "product/00-D0-E5-02-00-2D/parboiled_vr_00-d0-e5-02-00-2d.b64"
    + ".prior-signed-voucher-request.payload.json": OK,
    REACH + "product/00-D0-E5-02-00-2D/voucher_00-d0-e5-02-00-2d.b64.payload.json": OK,
    REACH + "product/00-D0-E5-02-00-2D/vr_00-d0-e5-02-00-2d.b64.payload.json": OK,
    REACH + "product/00-D0-E5-02-00-2D/vr_00-d0-e5-02-00-2d.pkcs.payload.json": OK,
    REACH + "product/00-D0-E5-F2-00-02/parboiled_vr_00-D0-E5-F2-00-02.b64.payload.json": OK,
    REACH
    + "product/00-D0-E5-F2-00-02/parboiled_vr_00-D0-E5-F2-00-02.b64"
    + ".prior-signed-voucher-request.payload.json": OK,
    REACH + "product/00-D0-E5-F2-00-02/voucher_00-D0-E5-F2-00-02.pkcs.payload.json": OK,
    REACH + "product/00-D0-E5-F2-00-02/vr_00-D0-E5-F2-00-02.pkcs.payload.json": OK,
    # Both nonce and expires-on (RFC 8366 §5.3 must: mutually exclusive).
    HIGHWAY + "almec_voucher.txt": ("schema-error", f"{V}/expires-on"),
    # pinned-domain-cert is not base64 (and assertion is "").
    HIGHWAY + "jada_abcd.jwt.payload.json": ("schema-error", f"{V}/pinned-domain-cert"),
    HIGHWAY + "mranga-1-vr.vrq.payload.json": OK,
    # prior-signed-voucher-request given as a JSON object instead of binary.
    HIGHWAY + "parboiled_00-D0-E5-F2-00-03.txt": (
        "schema-error",
        f"{VR}/prior-signed-voucher-request",
    ),
    HIGHWAY + "parboiled_unsigned_00-D0-E5-F2-00-01.vrq.payload.json": (
        "schema-error",
        f"{VR}/prior-signed-voucher-request",
    ),
    HIGHWAY + "parboiled_vr-00-D0-E5-02-00-20.b64.payload.json": OK,
    HIGHWAY + "parboiled_vr-00-D0-E5-02-00-20.b64.prior-signed-voucher-request.payload.json": OK,
    HIGHWAY + "parboiled_vr-00-D0-E5-F2-00-01.pkcs.payload.json": OK,
    HIGHWAY + "parboiled_vr-00-D0-E5-F2-00-01.pkcs.prior-signed-voucher-request.payload.json": OK,
    HIGHWAY + "parboiled_vr-00-D0-E5-F2-00-02.b64.payload.json": OK,
    HIGHWAY + "parboiled_vr-00-D0-E5-F2-00-02.b64.prior-signed-voucher-request.payload.json": OK,
    HIGHWAY + "parboiled_vr-9730-siemens-bt.pkcs.payload.json": OK,  # missing assertion
    HIGHWAY + "parboiled_vr_00-12-34-56-78-9A.vrq.payload.json": OK,
    HIGHWAY + "product/00-D0-E5-03-00-03/vr92-from-siemens-jrc.pkcs.payload.json": OK,
    HIGHWAY
    + "product/00-D0-E5-03-00-03/vr92-from-siemens-jrc.pkcs"
    + ".prior-signed-voucher-request.payload.json": OK,
    HIGHWAY + "raw_unsigned_vr-00-12-34-56-78-9A.json": NO_SERIAL,
    HIGHWAY + "voucher_00-D0-E5-F2-00-02.txt": OK,
    HIGHWAY + "vr_JADA123456789.pkcs.payload.json": OK,
    HIGHWAY + "vr_JADA123456789.pkcs.prior-signed-voucher-request.payload.json": OK,
    BOOT + "examples/parboiled_00-D0-E5-F2-00-02.b64.payload.json": OK,
    BOOT + "examples/parboiled_00-D0-E5-F2-00-02.b64.prior-signed-voucher-request.payload.json": OK,
    BOOT + "examples/parboiled_vr_00-D0-E5-F2-00-02.b64.payload.json": OK,
    BOOT
    + "examples/parboiled_vr_00-D0-E5-F2-00-02.b64.prior-signed-voucher-request.payload.json": OK,
    BOOT + "examples/parboiled_vr_00-D0-E5-F2-00-02.json": OK,  # wrapped at 60 columns
    BOOT + "examples/parboiled_vr_00-D0-E5-F2-00-02.pkcs.payload.json": OK,
    BOOT
    + "examples/parboiled_vr_00-D0-E5-F2-00-02.pkcs.prior-signed-voucher-request.payload.json": OK,
    BOOT + "examples/voucher_00-D0-E5-F2-00-02.b64.payload.json": OK,
    BOOT + "examples/voucher_00-D0-E5-F2-00-02.json": OK,  # wrapped at 60 columns
    BOOT + "examples/voucher_00-D0-E5-F2-00-02.pkcs.payload.json": OK,
    BOOT + "examples/vr_00-D0-E5-F2-00-02.b64.payload.json": OK,
    BOOT + "examples/vr_00-D0-E5-F2-00-02.json": OK,  # wrapped at 60 columns
    BOOT + "examples/vr_00-D0-E5-F2-00-02.pkcs.payload.json": OK,
    # Draft-era figure without created-on (mandatory in a voucher).
    BOOT + "meta/example-voucher.json": ("schema-error", f"{V}/created-on"),
    BOOT + "refs/ex-file-voucher-request-constrained.json": OK,
    BOOT + "refs/ex-file-voucher-request-offline.json": OK,
    BOOT + "refs/ex-file-voucher-request-prior.json": OK,
    BOOT + "refs/ex-file-voucher-request-proximity.json": OK,
    BOOT + "refs/ex-file-voucher-request.json": OK,
    BOOT + "rfc8995-xml-extract/parboiled_vr_00-D0-E5-F2-00-02.b64.payload.json": OK,
    BOOT
    + "rfc8995-xml-extract/parboiled_vr_00-D0-E5-F2-00-02.b64"
    + ".prior-signed-voucher-request.payload.json": OK,
    BOOT + "rfc8995-xml-extract/voucher_00-D0-E5-F2-00-02.b64.payload.json": OK,
    BOOT + "rfc8995-xml-extract/vr_00-D0-E5-F2-00-02.b64.payload.json": OK,
    WG + "draft-inline/ex-voucher-ephemeral.json": OK,
    # rfc8366bis "extensions" container: not in the RFC 8366 schema.
    WG + "draft-inline/ex-voucher-extension.json": ("schema-error", f"{V}/extensions"),
    WG + "draft-inline/ex-voucher-jws.folded.json.payload.json": OK,
    WG + "draft-inline/ex-voucher-jws.json.payload.json": OK,
    WG + "draft-inline/ex-voucher-nonceless.json": OK,
    WG + "examples/voucher_00-D0-E5-F2-00-02.b64.payload.json": OK,
    WG + "examples/voucher_00-D0-E5-F2-00-02.pkcs.payload.json": OK,
    WG + "examples/vr_00-D0-E5-F2-00-02.b64.payload.json": OK,
    WG + "examples/vr_00-D0-E5-F2-00-02.pkcs.payload.json": OK,
    WG + "refs/ex-file-voucher-ephemeral.json": OK,
    WG + "refs/ex-file-voucher-long-lived.json": OK,
    # Go artefact "XMLName" member (and assertion "").
    SZTP + "data/12345/ownershipVoucher.base64.payload.json": ("schema-error", f"{V}/XMLName"),
    SZTP + "data/67890/ownershipVoucher.base64.payload.json": ("schema-error", f"{V}/XMLName"),
    SZTP + "util/testdata/12345/ownershipVoucher.base64.payload.json": (
        "schema-error",
        f"{V}/XMLName",
    ),
    # Template with a placeholder ("...") where idevid-issuer's base64 should be.
    "netconf-wg__zero-touch/openssl-test/device/ownership-voucher/"
    ".ownership-voucher-template.json": ("schema-error", f"{V}/idevid-issuer"),
    "rfc8366/ex-voucher-ephemeral.json": OK,
    "rfc8366/ex-voucher-nonceless.json": OK,  # "true" string for a boolean
    "rfc8995-inline/voucherjsonexample.json": ("schema-error", f"{V}/created-on"),
    "rfc8995-inline/voucherrequest_example1.json": OK,
    "rfc8995-inline/voucherrequest_offline_example1.json": OK,  # no assertion
    "rfc8995-inline/voucherrequest_prior_example1.json": OK,
}

_MEMBERS = {"ietf-voucher:voucher": Voucher, "ietf-voucher-request:voucher": VoucherRequest}


def _claimed_files(vectors: Path) -> set[str]:
    """Files that PROVENANCE.md or their own top-level member say are vouchers/requests."""
    found = {
        path.removeprefix("examples/")
        for path in provenance.of_kind("voucher JSON", "voucher-request JSON")
    }
    examples = vectors / "examples"
    for path in examples.glob("**/*.payload.json"):
        obj = json.loads(path.read_bytes())
        if isinstance(obj, dict) and set(obj) & set(_MEMBERS):
            found.add(str(path.relative_to(examples)))
    return found


def _load(path: Path) -> bytes:
    """The JSON bytes; the RFC figures in anima-bootstrap/examples are wrapped at 60 columns."""
    data = path.read_bytes()
    try:
        json.loads(data)
    except json.JSONDecodeError:
        data = data.replace(b"\n", b"")
    return data


def _outcome(data: bytes, tolerances: frozenset[Tolerance]) -> tuple[str, str | None]:
    obj = json.loads(data)
    model = _MEMBERS[next(iter(obj))]
    try:
        model.from_json(data, tolerances=tolerances)
    except ZerotouchError as exc:
        return exc.reason, exc.path
    return OK


def test_the_table_covers_every_claimed_payload(vectors_dir: Path) -> None:
    claimed = _claimed_files(vectors_dir)
    assert claimed == set(EXPECTED), {
        "missing from table": sorted(claimed - set(EXPECTED)),
        "not claimed": sorted(set(EXPECTED) - claimed),
    }


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_payload_outcome(vectors_dir: Path, name: str) -> None:
    data = _load(vectors_dir / "examples" / name)
    assert _outcome(data, DEFAULT_TOLERANCES) == EXPECTED[name]


def test_tolerances_are_what_lets_real_payloads_in(vectors_dir: Path) -> None:
    """Without tolerances most real payloads fail: the table is not trivially 'ok'."""
    strict_ok = [
        name
        for name, expected in EXPECTED.items()
        if expected == OK and _outcome(_load(vectors_dir / "examples" / name), STRICT) == OK
    ]
    accepted = [name for name, expected in EXPECTED.items() if expected == OK]
    assert 0 < len(strict_ok) < len(accepted) / 2


# --- RFC 8995 Appendix C: pledge -> registrar -> MASA -> pledge ----------------------------

SERIAL = "00-D0-E5-F2-00-02"
NONCE = "-_XE9zK9q8Ll1qylMtLKeg"
TODAY = datetime(2026, 11, 26, tzinfo=UTC)


@pytest.fixture(scope="module")
def appendix_c(vectors_dir: Path) -> Path:
    return vectors_dir / "examples" / "anima-bootstrap" / "examples"


def _anchor(folder: Path, name: str) -> list[x509.Certificate]:
    return certs.load_certs((folder / name).read_bytes())


def test_appendix_c_pledge_voucher_request(appendix_c: Path) -> None:
    data = (appendix_c / "vr_00-D0-E5-F2-00-02.b64").read_bytes()
    at = cms.inspect(data).signing_time
    assert at is not None
    request, signed = parse_signed_voucher_request(
        data, trust_anchors=_anchor(appendix_c, "vendor.crt"), now=at
    )
    assert signed.content_type == cms.OID_DATA
    assert certs.serial_number_of(signed.signer) == SERIAL
    assert request.serial_number == SERIAL
    assert request.nonce == NONCE
    assert request.assertion == "proximity"
    assert request.created_on == datetime(2021, 4, 13, 21, 43, 23, 747000, tzinfo=UTC)
    registrar = request.proximity_registrar_certificate()
    assert registrar is not None
    assert registrar == _anchor(appendix_c, "jrc_prime256v1.crt")[0]
    request.check(now=at, serial=SERIAL, nonce=NONCE)


def test_appendix_c_registrar_voucher_request(appendix_c: Path) -> None:
    data = (appendix_c / "parboiled_vr_00-D0-E5-F2-00-02.b64").read_bytes()
    at = cms.inspect(data).signing_time
    assert at is not None
    request, signed = parse_signed_voucher_request(
        data, trust_anchors=_anchor(appendix_c, "ownerca_secp384r1.crt"), now=at
    )
    assert "CN=fountain-test.example.com" in signed.signer.subject.rfc4514_string()
    assert request.serial_number == SERIAL
    assert request.nonce == NONCE
    assert request.idevid_issuer is None  # Appendix C: no idevid-issuer
    assert request.prior_signed_voucher_request is not None
    inner, inner_signed = parse_signed_voucher_request(
        request.prior_signed_voucher_request,
        trust_anchors=_anchor(appendix_c, "vendor.crt"),
        now=at,
    )
    pledge = cms.decode((appendix_c / "vr_00-D0-E5-F2-00-02.b64").read_bytes())
    assert inner_signed.der == pledge  # the pledge's request, byte for byte
    assert inner.nonce == request.nonce


def test_appendix_c_voucher(appendix_c: Path) -> None:
    data = (appendix_c / "voucher_00-D0-E5-F2-00-02.b64").read_bytes()
    at = cms.inspect(data).signing_time
    assert at is not None
    voucher, signed = parse_signed_voucher(
        data, trust_anchors=_anchor(appendix_c, "vendor.crt"), now=at
    )
    assert signed.signer.subject.rfc4514_string() == "CN=highway-test.example.com MASA"
    assert voucher.assertion == "logged"
    assert voucher.serial_number == SERIAL
    voucher.check(now=at, serial=SERIAL, nonce=NONCE)
    assert voucher.pinned_domain_certificate() == _anchor(appendix_c, "jrc_prime256v1.crt")[0]


@pytest.mark.parametrize(
    ("name", "anchor", "parse"),
    [
        ("vr_00-D0-E5-F2-00-02.b64", "vendor.crt", parse_signed_voucher_request),
        (
            "parboiled_vr_00-D0-E5-F2-00-02.b64",
            "ownerca_secp384r1.crt",
            parse_signed_voucher_request,
        ),
        ("voucher_00-D0-E5-F2-00-02.b64", "vendor.crt", parse_signed_voucher),
    ],
)
def test_appendix_c_is_rejected_today_and_without_the_id_data_tolerance(
    appendix_c: Path, name: str, anchor: str, parse: Callable[..., object]
) -> None:
    data = (appendix_c / name).read_bytes()
    anchors = _anchor(appendix_c, anchor)
    with pytest.raises(Expired):
        parse(data, trust_anchors=anchors, now=TODAY)
    at = cms.inspect(data).signing_time
    no_id_data = DEFAULT_TOLERANCES - {Tolerance.ID_DATA_CONTENT_TYPE}
    with pytest.raises(ArtifactKindMismatch):
        parse(data, trust_anchors=anchors, now=at, tolerances=no_id_data)
    no_opaque_nonce = DEFAULT_TOLERANCES - {Tolerance.OPAQUE_NONCE}
    with pytest.raises(SchemaError, match="nonce"):
        parse(data, trust_anchors=anchors, now=at, tolerances=no_opaque_nonce)
