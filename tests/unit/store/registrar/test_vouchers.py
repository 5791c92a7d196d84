"""Voucher requests and relayed vouchers: a nonce gets one voucher across registrar
processes sharing the database."""

from __future__ import annotations

import pytest

from tests.unit.store.registrar.support import open_repo, relay, request_voucher
from zerotouch_plugin.errors import ReplayedRequest


def test_a_nonce_gets_one_voucher_across_processes(db_url: str) -> None:
    """A nonce that got a voucher through one registrar process is refused by another (the
    shared database, read under the device lock); one that got none may be sent again."""
    (db_a, first), (db_b, second) = open_repo(db_url), open_repo(db_url)
    request_voucher(first, "SN-NONCE", nonce="retried")  # MASA down: no voucher
    relay(second, request_voucher(second, "SN-NONCE", nonce="retried"), "retried")
    with pytest.raises(ReplayedRequest, match="nonce seen at 2026-11-26T12:00:00"):
        request_voucher(first, "SN-NONCE", nonce="retried")
    request_voucher(first, "SN-NONCE", nonce="another-nonce")  # a fresh nonce is fine
    request_voucher(first, "SN-OTHER", nonce="retried")  # so is another device
    device = first.device("SN-NONCE")
    assert device is not None and device.state == "voucher-requested"
    db_a.dispose()
    db_b.dispose()
