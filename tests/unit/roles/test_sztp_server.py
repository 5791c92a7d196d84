"""The bootstrap server's decisions (RFC 8572 §7.1): which response, signed or not, voucher."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from zerotouch_plugin.artifacts import certs, cms, sztp
from zerotouch_plugin.artifacts.voucher import (
    Assertion,
    Voucher,
    parse_signed_voucher_request,
    sign_artifact,
)
from zerotouch_plugin.errors import ConfigError, NotFound, UpstreamInvalid
from zerotouch_plugin.roles.sztp_server import (
    DeviceRecord,
    Response,
    VoucherSource,
    check_obtained_voucher,
    plan,
    progress_record,
    voucher_request,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)
ONBOARD = Response("onboard", sztp.OnboardingInformation(post_configuration_script=b"echo"))
DEFAULT = Response("default", sztp.RedirectInformation((sztp.BootstrapServer("next.example"),)))
SIGNED = sztp.GetBootstrappingDataInput(signed_data_preferred=True)
PLAIN = sztp.GetBootstrappingDataInput()
WITH_VOUCHER = DeviceRecord("SN", "onboard", voucher=b"v", voucher_expires=NOW + timedelta(days=1))


def _plan(request: sztp.GetBootstrappingDataInput, device: DeviceRecord | None, **kw: bool):  # type: ignore[no-untyped-def]
    options = {"trusted": False, "owner": True, "masa": False} | kw
    return plan(
        request,
        serial="SN",
        device=device,
        responses={"onboard": ONBOARD, "default": DEFAULT},
        now=NOW,
        **options,
    )


def test_device_gets_its_own_response_signed_with_the_stored_voucher() -> None:
    decided = _plan(PLAIN, WITH_VOUCHER)
    assert decided.response is ONBOARD
    assert decided.signed and decided.voucher is VoucherSource.STORED


def test_unknown_device_gets_the_default_response() -> None:
    decided = _plan(PLAIN, None, trusted=True)
    assert decided.response is DEFAULT and not decided.signed and decided.voucher is None


def test_no_response_at_all_is_not_found() -> None:
    with pytest.raises(NotFound, match="no bootstrapping data for device SN"):
        plan(PLAIN, serial="SN", device=None, responses={}, trusted=True, owner=True,
             masa=False, now=NOW)  # fmt: skip


def test_trusted_server_signs_when_the_device_asks() -> None:
    assert _plan(SIGNED, WITH_VOUCHER, trusted=True).signed
    assert not _plan(PLAIN, WITH_VOUCHER, trusted=True).signed


def test_expired_voucher_is_not_sent() -> None:
    old = DeviceRecord("SN", "onboard", voucher=b"v", voucher_expires=NOW - timedelta(seconds=1))
    with pytest.raises(NotFound, match="no valid ownership voucher"):
        _plan(PLAIN, old)
    assert _plan(PLAIN, old, masa=True).voucher is VoucherSource.MASA_NONCELESS


def test_nonce_asks_the_masa_for_a_bound_voucher() -> None:
    request = sztp.GetBootstrappingDataInput(nonce=b"n" * 16)
    assert _plan(request, WITH_VOUCHER, masa=True).voucher is VoucherSource.MASA_NONCE
    assert _plan(request, WITH_VOUCHER).voucher is VoucherSource.STORED


def test_signing_without_an_owner_identity_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="owner certificate"):
        _plan(SIGNED, WITH_VOUCHER, owner=False)


def test_progress_record() -> None:
    report = sztp.ReportProgressInput(sztp.ProgressType.BOOTSTRAP_COMPLETE, message="done")
    record = progress_record(report, serial="SN", peer="127.0.0.1", now=NOW)
    assert (record.serial, record.progress_type, record.message, record.time) == (
        "SN",
        sztp.ProgressType.BOOTSTRAP_COMPLETE,
        "done",
        NOW,
    )


@pytest.fixture(scope="module")
def pki() -> dict[str, certs.Identity]:
    vendor = certs.make_ca("vendor", now=NOW)
    owner_ca = certs.make_ca("owner", now=NOW)
    return {
        "vendor": vendor,
        "masa": certs.issue_masa_signer(vendor, "masa", now=NOW),
        "owner_ca": owner_ca,
        "other_ca": certs.make_ca("someone else", now=NOW),
        "client": certs.issue_registrar(owner_ca, "reg", hosts=["localhost"], now=NOW),
    }


def _voucher(pki: dict[str, certs.Identity], *, serial: str = "SN", pin: str = "owner_ca") -> bytes:
    voucher = Voucher(
        created_on=NOW,
        assertion=Assertion.VERIFIED,
        serial_number=serial,
        pinned_domain_cert=pki[pin].cert.public_bytes(Encoding.DER),
        expires_on=NOW + timedelta(days=1),
    )
    return sign_artifact(voucher, signer=pki["masa"], now=NOW)


def _check(pki: dict[str, certs.Identity], data: bytes) -> Voucher:
    return check_obtained_voucher(
        data,
        serial="SN",
        nonce=None,
        manufacturer_cas=[pki["vendor"].cert],
        pinnable=[pki["owner_ca"].cert],
        now=NOW,
    )


def test_voucher_request_is_nonceless_or_nonce_bound(pki: dict[str, certs.Identity]) -> None:
    kwargs = {"owner_root": pki["owner_ca"].cert, "serial": "SN", "now": NOW}
    later = NOW + timedelta(days=30)
    nonceless, _ = parse_signed_voucher_request(
        voucher_request(pki["client"], nonce=None, expires_on=later, **kwargs),  # type: ignore[arg-type]
        trust_anchors=[pki["owner_ca"].cert],
        now=NOW,
    )
    assert (nonceless.nonce, nonceless.expires_on) == (None, later)
    bound, signed = parse_signed_voucher_request(
        voucher_request(pki["client"], nonce=b"n" * 16, expires_on=later, **kwargs),  # type: ignore[arg-type]
        trust_anchors=[pki["owner_ca"].cert],
        now=NOW,
    )
    assert bound.nonce is not None and bound.expires_on is None
    assert pki["owner_ca"].cert in signed.certificates  # the MASA pins the top of the chain


def test_obtained_voucher_is_checked_as_the_device_will(pki: dict[str, certs.Identity]) -> None:
    assert _check(pki, _voucher(pki)).serial_number == "SN"
    with pytest.raises(UpstreamInvalid, match="wrong-serial"):
        _check(pki, _voucher(pki, serial="OTHER"))
    with pytest.raises(UpstreamInvalid, match="outside the owner certificate's chain"):
        _check(pki, _voucher(pki, pin="other_ca"))
    forged = sign_artifact(
        Voucher.from_json(cms.inspect(_voucher(pki)).content), signer=pki["other_ca"], now=NOW
    )
    with pytest.raises(UpstreamInvalid, match="refused"):
        _check(pki, forged)
