"""Escrowed nonceless vouchers: held per serial, replaced, used and removed."""

from __future__ import annotations

from datetime import timedelta

from tests.unit.store.registrar.support import NOW, open_repo, request_voucher, step
from zerotouch_plugin.roles.states import RegistrarEvent


def test_escrow_is_held_replaced_used_and_removed(db_url: str) -> None:
    """A held nonceless voucher per serial (table registrar_escrow), durable across a restart;
    a voucher relayed from it is recorded as from escrow (voucher source, use count) and its
    request is not the one the audit log is asked with."""
    expires = NOW + timedelta(days=30)
    db, repo = open_repo(db_url)
    assert repo.escrow("SN1") is None and repo.escrows() == []
    repo.put_escrow("SN1", voucher_cms=b"old", expires_on=expires, signer="CN=MASA", now=NOW)
    repo.put_escrow("SN1", voucher_cms=b"v1", expires_on=expires, signer="CN=MASA", now=NOW)
    db.dispose()
    db, repo = open_repo(db_url)
    held = repo.escrow("SN1")
    assert held is not None and (held.voucher_cms, held.used_count, held.used_at) == (
        b"v1", 0, None,
    )  # fmt: skip
    first = request_voucher(repo, "SN1")
    repo.record_voucher(
        first, rvr_cms=b"rvr-masa", voucher_cms=b"from-masa", assertion="proximity",
        nonce="n1", expires_on=None, advance=step(RegistrarEvent.VOUCHER_RELAYED), now=NOW,
    )  # fmt: skip
    assert repo.device("SN1").voucher_source == "masa"  # type: ignore[union-attr]
    second = request_voucher(repo, "SN1", NOW + timedelta(minutes=1))
    used = NOW + timedelta(minutes=2)
    repo.record_voucher(
        second, rvr_cms=b"rvr-unsent", voucher_cms=b"v1", assertion="verified", nonce=None,
        expires_on=expires, advance=lambda _s: "voucher-issued", now=used, from_escrow=True,
    )  # fmt: skip
    record = repo.device("SN1")
    assert record is not None and record.voucher_source == "escrow"
    shown = record.to_json_dict()
    assert shown["voucher_source"] == "escrow"
    assert shown["escrow"] == {
        "expires_on": "2026-12-26T12:00:00Z", "signer": "CN=MASA",
        "imported_at": "2026-11-26T12:00:00Z", "used_at": "2026-11-26T12:02:00Z",
        "used_count": 1,
    }  # fmt: skip
    assert [v.source for v in repo.vouchers("SN1")] == ["masa", "escrow"]
    assert repo.latest_registrar_request("SN1") == b"rvr-masa"
    assert [e.serial for e in repo.escrows()] == ["SN1"]
    assert repo.remove_escrow("SN1") and not repo.remove_escrow("SN1")
    assert repo.device("SN1").escrow is None  # type: ignore[union-attr]
    db.dispose()
