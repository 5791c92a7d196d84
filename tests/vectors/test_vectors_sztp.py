"""Every SZTP artifact of the vectors (RFC 8572 examples, sztpd conveyed information, Cisco lab
certs-only bundles, open-sztp onboarding data) read by zerotouch with its expected outcome."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.vectors import provenance
from zerotouch_plugin.artifacts import sztp
from zerotouch_plugin.artifacts.sztp import Encoding
from zerotouch_plugin.errors import ZerotouchError

ZT = "examples/netconf-wg__zero-touch/refs/"
OPI = "examples/opiproject__sztp/extracted/"
CISCO = "examples/jeremycohoe__sztp/local_files/"
GOOGLE = "examples/google__open-sztp/data/"


def _body(data: bytes) -> bytes:
    """The body of an HTTP message example (after the blank line)."""
    return data.split(b"\n\n", 1)[1]


def _conveyed(encoding: Encoding) -> Callable[[bytes], Any]:
    return lambda data: sztp.parse_conveyed_information(data, encoding)


def _payload(cls: type[Any]) -> Callable[[bytes], Any]:
    return lambda data: cls.parse(_body(data), Encoding.of_media_type("application/yang.data+xml"))


def _unsigned(data: bytes) -> sztp.ConveyedInformation:
    return sztp.read_unsigned_conveyed_information(base64.b64decode(data))


def _certs_only(data: bytes) -> tuple[Any, ...]:
    return sztp.decode_certs_only(data)


Reader = Callable[[bytes], Any]
# path -> (how it is read, what comes out: a type, or (error reason, error path or None))
TABLE: dict[str, tuple[Reader, type | tuple[str, str | None]]] = {
    ZT + "ex-api-get-bootstrap-data-rpc-reply-trusted.xml": (
        _payload(sztp.GetBootstrappingDataOutput),
        sztp.GetBootstrappingDataOutput,
    ),
    ZT + "ex-api-get-bootstrap-data-rpc-reply-untrusted.xml": (
        _payload(sztp.GetBootstrappingDataOutput),
        sztp.GetBootstrappingDataOutput,
    ),
    ZT + "ex-api-get-bootstrap-data-rpc-trusted.xml": (
        _payload(sztp.GetBootstrappingDataInput),
        sztp.GetBootstrappingDataInput,
    ),
    ZT + "ex-api-get-bootstrap-data-rpc-untrusted.xml": (
        _payload(sztp.GetBootstrappingDataInput),
        sztp.GetBootstrappingDataInput,
    ),
    ZT + "ex-api-report-progress-rpc.xml": (
        _payload(sztp.ReportProgressInput),
        sztp.ReportProgressInput,
    ),
    ZT + "ex-file-onboarding-information.json": (
        _conveyed(Encoding.JSON),
        sztp.OnboardingInformation,
    ),
    ZT + "ex-file-onboarding-information.xml": (
        _conveyed(Encoding.XML),
        sztp.OnboardingInformation,
    ),
    ZT + "ex-file-redirect-information.json": (_conveyed(Encoding.JSON), ("not-cms", None)),
    ZT + "ex-file-redirect-information.xml": (_conveyed(Encoding.XML), ("not-cms", None)),
    OPI + "daemon_test_L253_b351d208.b64": (_unsigned, sztp.OnboardingInformation),
    OPI + "daemon_test_L260_cf6655f2.b64": (_unsigned, sztp.RedirectInformation),
    OPI + "daemon_test_L453_1dd6dde7.b64": (_unsigned, sztp.OnboardingInformation),
    OPI + "daemon_test_L460_8cea2342.b64": (_unsigned, sztp.OnboardingInformation),
    OPI + "daemon_test_L481_0c9e8de0.b64": (_unsigned, sztp.OnboardingInformation),
    OPI + "daemon_test_L488_84f501ab.b64": (_unsigned, sztp.OnboardingInformation),
    OPI + "daemon_test_L260_cf6655f2.trust-anchor.p7b.der": (_certs_only, tuple),
    CISCO + "act2_sudi_chain.cms": (_certs_only, tuple),
    CISCO + "cert_chain.cms": (_certs_only, tuple),
    CISCO + "cisco_sudi_ta_chain.cms": (_certs_only, tuple),
    CISCO + "ha_sudi_chain.cms": (_certs_only, tuple),
    CISCO + "owner_cert_chain.cms": (_certs_only, tuple),
    CISCO + "ta_cert_chain.cms": (_certs_only, tuple),
    GOOGLE + "12345/onboardingData.json": (_conveyed(Encoding.JSON), ("schema-error", "/")),
    GOOGLE + "67890/onboardingData.json": (_conveyed(Encoding.JSON), ("schema-error", "/")),
}


def test_the_table_covers_every_sztp_file() -> None:
    sztp_kinds = provenance.of_kind("SZTP conveyed information", "RESTCONF message")
    sztp_cms = {
        row.path
        for row in provenance.rows()
        if row.kind == "CMS" and ("sztp" in row.path and "ownershipVoucher" not in row.path)
    }
    assert sztp_kinds | sztp_cms == set(TABLE)


@pytest.mark.parametrize("relative", sorted(TABLE))
def test_sztp_vector(vectors_dir: Path, relative: str) -> None:
    read, expected = TABLE[relative]
    data = (vectors_dir / relative).read_bytes()
    if isinstance(expected, tuple):
        reason, path = expected
        with pytest.raises(ZerotouchError) as caught:
            read(data)
        assert caught.value.reason == reason, caught.value
        assert caught.value.path == path
    else:
        assert isinstance(read(data), expected)


def test_rfc_xml_onboarding_needs_the_inline_configuration_tolerance(vectors_dir: Path) -> None:
    data = (vectors_dir / ZT / "ex-file-onboarding-information.xml").read_bytes()
    info = sztp.parse_conveyed_information(data, Encoding.XML)
    assert isinstance(info, sztp.OnboardingInformation)
    assert info.configuration is not None
    assert b"<system" in info.configuration
    assert info.boot_image is not None
    assert info.boot_image.image_verifications[0].hash_algorithm == sztp.SHA_256
    with pytest.raises(ZerotouchError, match="XML elements"):
        sztp.parse_conveyed_information(data, Encoding.XML, tolerances=sztp.STRICT)


def test_sztpd_redirect_trust_anchor_matches_the_extracted_bundle(vectors_dir: Path) -> None:
    info = _unsigned((vectors_dir / OPI / "daemon_test_L260_cf6655f2.b64").read_bytes())
    assert isinstance(info, sztp.RedirectInformation)
    bundle = sztp.decode_certs_only(
        (vectors_dir / OPI / "daemon_test_L260_cf6655f2.trust-anchor.p7b.der").read_bytes()
    )
    assert info.bootstrap_servers[0].trust_anchor_certificates() == bundle
    # re-encoded by zerotouch, the same information reads back identical
    again = sztp.encode_unsigned_conveyed_information(info)
    assert sztp.read_unsigned_conveyed_information(again) == info


def test_rfc_rpc_examples_carry_what_the_rfc_shows(vectors_dir: Path) -> None:
    trusted = _payload(sztp.GetBootstrappingDataInput)(
        (vectors_dir / ZT / "ex-api-get-bootstrap-data-rpc-trusted.xml").read_bytes()
    )
    assert (trusted.hw_model, trusted.os_name, trusted.os_version) == (
        "model-x",
        "vendor-os",
        "17.3R2.1",
    )
    untrusted = _payload(sztp.GetBootstrappingDataInput)(
        (vectors_dir / ZT / "ex-api-get-bootstrap-data-rpc-untrusted.xml").read_bytes()
    )
    assert untrusted.signed_data_preferred and untrusted.nonce is None
    progress = _payload(sztp.ReportProgressInput)(
        (vectors_dir / ZT / "ex-api-report-progress-rpc.xml").read_bytes()
    )
    assert progress.progress_type is sztp.ProgressType.BOOTSTRAP_COMPLETE
    assert [k.algorithm for k in progress.ssh_host_keys] == ["ssh-rsa", "rsa-sha2-256"]
