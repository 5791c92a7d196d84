"""The device row: every report of a device's life recorded on it, a transition the state
table refuses writing nothing, and its row lock serializing two registrar processes."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest

from tests.unit.store.registrar.support import NOW, anyone, open_repo, request_voucher, step
from zerotouch_plugin.errors import Conflict, NotFound
from zerotouch_plugin.roles.states import RegistrarEvent
from zerotouch_plugin.store.db import Database
from zerotouch_plugin.store.registrar import RegistrarRepository
from zerotouch_plugin.store.registrar.devices import _SAME_NAME


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
        bound=anyone,
    )
    repo.record_audit("SN1", judged=b"rvr", level="clean", summary="1 event", log="{}", now=later)
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
        bound=anyone,
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
            bound=anyone,
        )
    db.dispose()


def refuse(repo: RegistrarRepository, serial: str, fingerprint: str, error: str) -> None:
    repo.record_refusal(
        serial,
        manufacturer="CN=Vendor CA",
        idevid_fingerprint=fingerprint,
        error=error,
        advance=step(RegistrarEvent.PVR_REFUSED),
        now=NOW,
    )


def test_refusal_recorded_with_reason(db_url: str) -> None:
    db, repo = open_repo(db_url)
    refuse(repo, "SN4", "sha256:dd", "policy-refused: not allowed")
    device = repo.device("SN4")
    assert device is not None
    assert (device.state, device.last_error) == ("refused", "policy-refused: not allowed")
    db.dispose()


def test_refusal_of_another_idevid_leaves_the_device_as_it_is(db_url: str) -> None:
    """RFC 8995 §5.9.1: a refused voucher-request of another IDevID with the device's serial
    changes neither the state, nor the IDevID on record, nor the last error."""
    db, repo = open_repo(db_url)
    refuse(repo, "SN5", "sha256:d1", "wrong-serial: a")
    refuse(repo, "SN5", "sha256:d2", "wrong-serial: b")
    device = repo.device("SN5")
    assert device is not None
    assert (device.idevid_fingerprint, device.last_error) == ("sha256:d1", "wrong-serial: a")
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


def _same_name_plan(db: Database) -> str:
    """The database's plan for the same-name lookup of an enrollment, as text."""
    compiled = _SAME_NAME.statement.compile(dialect=db.engine.dialect)
    values = {"serial": "SN-1", "lower": "sn-1"}
    args: Any = (
        tuple(values[name] for name in compiled.positiontup or ())
        if compiled.positional
        else values
    )
    with db.engine.connect() as conn:
        if db.is_postgresql:  # a few rows: the planner would scan them, index or not
            conn.exec_driver_sql("SET enable_seqscan = off")
            rows = conn.exec_driver_sql(f"EXPLAIN {compiled}", args).all()
        else:
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", args).all()
        return "\n".join(str(row[-1]) for row in rows)


def test_the_same_name_lookup_is_an_index_search_also_on_a_database_made_before(
    db_url: str,
) -> None:
    """Every enrollment looks for devices whose serial differs only in case: by an index on
    lower(serial), not a scan of all devices; create_all adds that index to a database whose
    table was made without it."""
    db, repo = open_repo(db_url)
    request_voucher(repo, "SN-1")
    assert "ix_registrar_devices_lower_serial" in _same_name_plan(db)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("DROP INDEX ix_registrar_devices_lower_serial")
    db.dispose()  # SQLite plans with the schema a connection read last
    assert "ix_registrar_devices_lower_serial" not in _same_name_plan(db)
    db.create_all()
    assert "ix_registrar_devices_lower_serial" in _same_name_plan(db)
