"""Registrar repository on SQLite files and on the real PostgreSQL server (make test)."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from zerotouch_plugin.errors import Conflict, NotFound, ReplayedRequest
from zerotouch_plugin.roles.states import (
    REGISTRAR_TRANSITIONS,
    RegistrarDeviceState,
    RegistrarEvent,
    transition,
)
from zerotouch_plugin.store.db import Database, open_database
from zerotouch_plugin.store.registrar import Advance, RegistrarRepository

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def step(event: RegistrarEvent) -> Advance:
    return lambda state: transition(
        REGISTRAR_TRANSITIONS, RegistrarDeviceState(state) if state else None, event
    )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registrar.db'}"
    else:
        yield request.getfixturevalue("fresh_pg_url")


def open_repo(url: str) -> tuple[Database, RegistrarRepository]:
    db = open_database(url)
    db.create_all()
    return db, RegistrarRepository(db)


def refuse_seen(seen: datetime | None) -> None:
    if seen is not None:
        raise ReplayedRequest(f"nonce seen at {seen.isoformat()}")


def request_voucher(
    repo: RegistrarRepository, serial: str, now: datetime = NOW, *, nonce: str | None = None
) -> int:
    return repo.record_voucher_request(
        serial,
        manufacturer="CN=Vendor CA",
        idevid_fingerprint="sha256:aa",
        pvr_cms=b"\x30\x03pvr",
        nonce=nonce or secrets.token_urlsafe(16),
        advance=step(RegistrarEvent.PVR_ACCEPTED),
        fresh=refuse_seen,
        now=now,
    )


def test_full_device_lifecycle_is_recorded(db_url: str) -> None:
    db, repo = open_repo(db_url)
    request_id = request_voucher(repo, "SN1")
    repo.record_masa_failure(
        request_id, outcome="masa-unavailable", error="MASA down", rvr_cms=None, now=NOW
    )
    device = repo.device("SN1")
    assert device is not None
    assert (device.state, device.last_error) == ("voucher-requested", "MASA down")
    later = NOW + timedelta(seconds=5)
    repo.record_voucher(
        request_id,
        rvr_cms=b"rvr",
        voucher_cms=b"voucher",
        assertion="logged",
        nonce="bm9uY2U=",
        expires_on=None,
        advance=step(RegistrarEvent.VOUCHER_RELAYED),
        now=later,
    )
    repo.record_status(
        "SN1",
        kind="voucher_status",
        status=True,
        reason=None,
        document='{"version":1,"status":true}',
        advance=step(RegistrarEvent.VOUCHER_STATUS_SUCCESS),
        now=later,
    )
    repo.record_audit("SN1", level="clean", summary="1 event", log="{}", now=later)
    repo.record_certificate(
        "SN1",
        cert_der=b"cert",
        fingerprint="sha256:bb",
        not_after=later + timedelta(days=365),
        kind="enroll",
        advance=step(RegistrarEvent.CERT_ISSUED),
        now=later,
    )
    repo.record_status(
        "SN1",
        kind="enrollstatus",
        status=True,
        reason=None,
        document="{}",
        advance=step(RegistrarEvent.ENROLL_STATUS_SUCCESS),
        now=later,
    )
    device = repo.device("SN1")
    assert device is not None
    assert device.state == "enroll-confirmed"
    assert device.voucher_requested_at == NOW and device.voucher_issued_at == later
    assert device.voucher_accepted is True and device.enroll_confirmed is True
    assert (device.audit_level, device.ldevid_fingerprint) == ("clean", "sha256:bb")
    assert device.last_error is None
    assert repo.latest_registrar_request("SN1") == b"rvr"
    assert [v.voucher_cms for v in repo.vouchers("SN1")] == [b"voucher"]
    assert [(r.kind, r.status) for r in repo.status_reports("SN1")] == [
        ("voucher_status", True),
        ("enrollstatus", True),
    ]
    assert list(repo.certificates("SN1")) == [b"cert"]
    assert device.to_json_dict()["voucher_issued_at"] == "2026-11-26T12:00:05Z"
    db.dispose()


def test_illegal_transition_writes_nothing(db_url: str) -> None:
    db, repo = open_repo(db_url)
    request_voucher(repo, "SN2")
    with pytest.raises(Conflict, match="not expected in state voucher-requested"):
        repo.record_certificate(
            "SN2",
            cert_der=b"cert",
            fingerprint="sha256:cc",
            not_after=NOW,
            kind="enroll",
            advance=step(RegistrarEvent.CERT_ISSUED),
            now=NOW,
        )
    device = repo.device("SN2")
    assert device is not None and device.state == "voucher-requested"
    assert list(repo.certificates("SN2")) == []
    with pytest.raises(NotFound):
        repo.record_status(
            "nobody",
            kind="voucher_status",
            status=True,
            reason=None,
            document="{}",
            advance=step(RegistrarEvent.VOUCHER_STATUS_SUCCESS),
            now=NOW,
        )
    db.dispose()


def test_policy_upsert_and_remove(db_url: str) -> None:
    db, repo = open_repo(db_url)
    repo.set_policy("SN3", "allow", manufacturer=None, now=NOW)
    repo.set_policy("SN3", "deny", manufacturer=None, now=NOW)
    repo.set_policy("SN3", "allow", manufacturer="Vendor", now=NOW)
    rows = repo.policy_for("SN3")
    assert [(r.decision, r.manufacturer) for r in rows] == [("deny", None), ("allow", "Vendor")]
    assert repo.remove_policy("SN3", manufacturer="Vendor") == 1
    assert repo.remove_policy("SN3") == 1
    assert repo.policy_for("SN3") == []
    db.dispose()


def test_refusal_recorded_with_reason(db_url: str) -> None:
    db, repo = open_repo(db_url)
    repo.record_refusal(
        "SN4",
        manufacturer="CN=Vendor CA",
        idevid_fingerprint="sha256:dd",
        error="policy-refused: not allowed",
        advance=step(RegistrarEvent.PVR_REFUSED),
        now=NOW,
    )
    device = repo.device("SN4")
    assert device is not None
    assert (device.state, device.last_error) == ("refused", "policy-refused: not allowed")
    db.dispose()


def test_two_processes_racing_on_one_device_serialize(db_url: str) -> None:
    """Two repositories (two engines, as two registrar processes) write the same new device."""
    handles = [open_repo(db_url) for _ in range(2)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def worker(repo: RegistrarRepository) -> None:
        try:
            barrier.wait()
            for _ in range(5):
                request_voucher(repo, "SN-RACE")
                repo.set_policy("SN-RACE", "allow", manufacturer=None, now=NOW)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(repo,)) for _, repo in handles]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    repo = handles[0][1]
    assert [d.serial for d in repo.devices()] == ["SN-RACE"]
    assert len(repo.policy_for("SN-RACE")) == 1
    for db, _ in handles:
        db.dispose()


def relay(repo: RegistrarRepository, request_id: int, nonce: str) -> None:
    repo.record_voucher(
        request_id,
        rvr_cms=b"rvr",
        voucher_cms=b"voucher",
        assertion="proximity",
        nonce=nonce,
        expires_on=None,
        advance=step(RegistrarEvent.VOUCHER_RELAYED),
        now=NOW,
    )


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


def test_escrow_is_held_replaced_used_and_removed(db_url: str) -> None:
    """Issue 9 item 10: a held nonceless voucher per serial (table registrar_escrow), durable
    across a restart; a voucher relayed from it is recorded as from escrow (voucher source,
    use count) and its request is not the one the audit log is asked with."""
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
