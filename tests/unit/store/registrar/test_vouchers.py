"""Voucher requests and relayed vouchers: a nonce gets one voucher across registrar
processes sharing the database; a new MASA voucher waits for its own audit verdict."""

from __future__ import annotations

import pytest

from tests.unit.store.registrar.support import NOW, open_repo, relay, request_voucher, step
from zerotouch_plugin.errors import ReplayedRequest
from zerotouch_plugin.roles.states import RegistrarEvent


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


def test_a_new_masa_voucher_drops_the_last_audit_verdict(db_url: str) -> None:
    """RFC 8995 §5.8.3: the verdict on round 1's audit log does not let round 2's voucher
    enroll (its audit log may never have been read); a held voucher keeps the verdict."""
    db, repo = open_repo(db_url)
    relay(repo, request_voucher(repo, "SN-A", nonce="round-1"), "round-1")
    repo.record_audit("SN-A", judged=b"rvr", level="clean", summary="1 event", log="{}", now=NOW)
    relay(repo, request_voucher(repo, "SN-A", nonce="round-2"), "round-2")
    view = repo.enrollment_view("SN-A").device
    device = repo.device("SN-A")
    assert view is not None and view.audit_level is None
    assert device is not None
    assert (device.audit_level, device.audit_summary, device.audit_at) == (None, None, None)
    repo.record_audit(
        "SN-A", judged=b"rvr", level="alert", summary="another domain", log="{}", now=NOW
    )
    repo.record_voucher(
        request_voucher(repo, "SN-A", nonce="round-3"),
        rvr_cms=b"rvr", voucher_cms=b"held", assertion="logged", nonce=None, expires_on=None,
        advance=step(RegistrarEvent.VOUCHER_RELAYED), now=NOW, from_escrow=True,
    )  # fmt: skip
    view = repo.enrollment_view("SN-A").device
    assert view is not None and view.audit_level == "alert"
    db.dispose()


def test_a_verdict_on_an_earlier_request_is_not_recorded(db_url: str) -> None:
    """An audit log read for round 1 that comes back after round 2's voucher was recorded
    judged round 1's: recorded, it would let round 2's voucher enroll unread (RFC 8995
    §5.8.3). It is dropped; round 2's own verdict counts."""
    db, repo = open_repo(db_url)
    relay(repo, request_voucher(repo, "SN-R", nonce="round-1"), "round-1", rvr=b"rvr-1")
    relay(repo, request_voucher(repo, "SN-R", nonce="round-2"), "round-2", rvr=b"rvr-2")
    events = len(repo.events_after(0, limit=1000))
    late = repo.record_audit(
        "SN-R", judged=b"rvr-1", level="clean", summary="round 1", log="{}", now=NOW
    )
    view = repo.enrollment_view("SN-R").device
    assert late is False and view is not None and view.audit_level is None
    assert len(repo.events_after(0, limit=1000)) == events
    assert repo.record_audit(
        "SN-R", judged=b"rvr-2", level="clean", summary="round 2", log="{}", now=NOW
    )
    view = repo.enrollment_view("SN-R").device
    assert view is not None and view.audit_level == "clean"
    db.dispose()
