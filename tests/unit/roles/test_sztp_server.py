"""The bootstrap server's decisions (RFC 8572 §7.1): which response, signed or not, voucher."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from zerotouch_plugin.artifacts import sztp
from zerotouch_plugin.errors import ConfigError, NotFound
from zerotouch_plugin.roles.sztp_server import (
    DeviceRecord,
    Response,
    VoucherSource,
    plan,
    progress_record,
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
