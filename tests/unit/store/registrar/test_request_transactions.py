"""One transaction per registrar request: voucher_status reads back the voucher-request whose
audit log is next, enrollstatus queues its hand-off with the report, an EST request reads all
it decides on at once; a refused transition writes none of it. Each is checked to run as
exactly one transaction (BEGIN counted on the engine)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from tests.unit.store.registrar.support import (
    NOW,
    anyone,
    enrolled,
    open_repo,
    relay,
    request_voucher,
    set_config,
    step,
)
from zerotouch_plugin.errors import CertificateError, Conflict, NotFound
from zerotouch_plugin.roles import handoff as handoff_role
from zerotouch_plugin.roles.records import ManagementRow
from zerotouch_plugin.roles.states import RegistrarEvent
from zerotouch_plugin.store.db import Database
from zerotouch_plugin.store.registrar import RegistrarRepository, StatusEntry


@contextmanager
def transactions(db: Database) -> Iterator[list[str]]:
    """The BEGIN of every transaction started on ``db`` within the block."""
    begun: list[str] = []

    def on_begin(_conn: Any) -> None:
        begun.append("begin")

    event.listen(db.engine, "begin", on_begin)
    try:
        yield begun
    finally:
        event.remove(db.engine, "begin", on_begin)


def _report(kind: str, ok: bool, event: RegistrarEvent) -> StatusEntry:
    reason = None if ok else "bad"
    return StatusEntry(kind, ok, reason, "{}", step(event), NOW, bound=anyone)


def test_voucher_status_returns_the_request_to_audit_in_one_transaction(db_url: str) -> None:
    db, repo = open_repo(db_url)
    request_id = request_voucher(repo, "SN1", nonce="n1")
    relay(repo, request_id, "n1")
    with transactions(db) as begun:
        rvr = repo.record_voucher_status(
            "SN1", _report("voucher_status", True, RegistrarEvent.VOUCHER_STATUS_SUCCESS)
        )
    assert rvr == b"rvr" == repo.latest_registrar_request("SN1")
    assert len(begun) == 1
    device = repo.device("SN1")
    assert device is not None and device.voucher_accepted is True
    assert [(r.kind, r.status) for r in repo.status_reports("SN1")] == [("voucher_status", True)]
    relay(repo, request_voucher(repo, "SN2", nonce="n2"), "n2")
    failed = repo.record_voucher_status(
        "SN2", _report("voucher_status", False, RegistrarEvent.VOUCHER_STATUS_FAILURE)
    )
    assert failed is None  # a failure has no audit log to judge
    db.dispose()


def test_a_report_its_reporter_may_not_make_writes_nothing(db_url: str) -> None:
    """The binding check gets the fingerprint of the IDevID that obtained the voucher, under
    the device lock, before anything is written (RFC 8995 §5.7): its refusal leaves the
    device as it was."""
    db, repo = open_repo(db_url)
    relay(repo, request_voucher(repo, "SN1", nonce="n1"), "n1")
    seen: list[str | None] = []

    def other_idevid(recorded: str | None) -> None:
        seen.append(recorded)
        raise CertificateError("this IDevID is not the one that obtained the voucher")

    report = replace(
        _report("voucher_status", False, RegistrarEvent.VOUCHER_STATUS_FAILURE),
        bound=other_idevid,
    )
    with pytest.raises(CertificateError):
        repo.record_voucher_status("SN1", report)
    assert seen == ["sha256:aa"]
    device = repo.device("SN1")
    assert device is not None
    assert (device.state, device.voucher_accepted, device.last_error) == (
        "voucher-issued",
        None,
        None,
    )
    assert repo.status_reports("SN1") == []
    db.dispose()


def _plan(peer: str) -> Callable[[bool, str | None], handoff_role.Plan | None]:
    def plan(configured: bool, override: str | None) -> handoff_role.Plan | None:
        return handoff_role.plan_after_enrollstatus(
            status=True, configured=configured, override=override, peer_host=peer, document={}
        )

    return plan


def _confirm(
    db: Database, repo: RegistrarRepository, serial: str, peer: str
) -> tuple[handoff_role.Plan | None, int]:
    with transactions(db) as begun:
        entry = StatusEntry(
            "enrollstatus", True, None, "{}", lambda _s: "enroll-confirmed", NOW, bound=anyone
        )
        planned = repo.record_enroll_status(serial, entry, _plan(peer))
    return planned, len(begun)


def test_enrollstatus_queues_the_handoff_it_starts_in_the_same_transaction(db_url: str) -> None:
    db, repo = open_repo(db_url)
    enrolled(repo, "SN1")
    repo.set_day0_address("SN1", "192.0.2.7:6513", now=NOW)
    planned, begun = _confirm(db, repo, "SN1", "198.51.100.1")
    assert begun == 1
    assert planned is None  # an address alone pushes nothing
    assert repo.handoff("SN1").state == "none"
    set_config(repo, "SN1", "hostname")
    planned, begun = _confirm(db, repo, "SN1", "198.51.100.1")
    assert begun == 1
    assert planned is not None and planned.target is not None
    assert (planned.target.host, planned.target.port) == ("192.0.2.7", 6513)  # the override
    queued = repo.handoff("SN1")
    assert (queued.state, queued.target) == ("pending", "192.0.2.7:6513")
    device = repo.device("SN1")
    assert device is not None and (device.state, device.enroll_confirmed) == (
        "enroll-confirmed",
        True,
    )
    db.dispose()


def test_a_refused_enrollstatus_queues_nothing(db_url: str) -> None:
    db, repo = open_repo(db_url)
    request_voucher(repo, "SN1")  # no LDevID yet: the state table refuses enrollstatus
    set_config(repo, None, "default")
    with pytest.raises(Conflict):
        repo.record_enroll_status(
            "SN1",
            _report("enrollstatus", True, RegistrarEvent.ENROLL_STATUS_SUCCESS),
            _plan("198.51.100.1"),
        )
    assert repo.handoff("SN1").state == "none"
    assert repo.status_reports("SN1") == []
    db.dispose()


def test_enrollment_view_reads_what_est_decides_on_in_one_transaction(db_url: str) -> None:
    db, repo = open_repo(db_url)
    enrolled(repo, "sn-case")  # holds an LDevID: its DNS name equals SN-CASE's
    request_voucher(repo, "SN-CASE")
    repo.set_policy("SN-CASE", "allow", manufacturer=None, now=NOW)
    repo.set_day0_address("SN-CASE", "device.example.net:830", now=NOW)
    with transactions(db) as begun:
        view = repo.enrollment_view("SN-CASE")
    assert len(begun) == 1
    assert view.device is not None and view.device.state == "voucher-requested"
    assert [p.decision for p in view.policies] == ["allow"]
    assert view.address == "device.example.net:830"
    assert view.same_name == ["sn-case"]
    empty = repo.enrollment_view("UNKNOWN")
    assert (empty.device, empty.policies, empty.address, empty.same_name) == (None, [], None, [])
    db.dispose()


def test_the_request_paths_of_an_enrollment_open_no_orm_session(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every repository call of one enrollment (voucher, voucher_status, audit verdict, EST,
    enrollstatus) runs on a Core connection: the ORM session's bookkeeping is a quarter of
    the registrar's CPU otherwise. Each statement runs on the driver's cursor (store/hot.py;
    through Connection.execute it cost about 23 us of SQLAlchemy CPU, issue 17), and there
    are as few as the transactions allow: the upsert of a new device returns its locked
    state, the voucher's UPDATE of its request names the device, the audit verdict's UPDATE
    is its row lock, the management address is one upsert and BEGIN goes to the driver: 31
    statements (35 before, and the 8 BEGINs executed as statements on SQLite)."""
    db, repo = open_repo(db_url)
    set_config(repo, None, "default")
    executed: list[str] = []

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("an ORM session was opened on a request path")

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        executed.append(statement)

    monkeypatch.setattr(Session, "__init__", refuse)
    event.listen(db.engine, "before_cursor_execute", count)
    assert repo.policy_for("SN9") == []
    request_id = request_voucher(repo, "SN9", nonce="n9")
    relay(repo, request_id, "n9")
    report = _report("voucher_status", True, RegistrarEvent.VOUCHER_STATUS_SUCCESS)
    assert repo.record_voucher_status("SN9", report) == b"rvr"
    repo.record_audit("SN9", judged=b"rvr", level="ok", summary="clean", log="{}", now=NOW)
    view = repo.enrollment_view("SN9")
    assert view.device is not None and view.device.voucher_source == "masa"
    assert view.device.audit_level == "ok"
    repo.record_certificate(
        "SN9", cert_der=b"c", fingerprint="sha256:n9", not_after=NOW, kind="enroll",
        advance=step(RegistrarEvent.CERT_ISSUED), now=NOW,
    )  # fmt: skip
    entry = replace(
        _report("enrollstatus", True, RegistrarEvent.ENROLL_STATUS_SUCCESS),
        management=ManagementRow("192.0.2.9", 6513, None, NOW),
    )
    planned = repo.record_enroll_status("SN9", entry, lambda configured, _o: None)
    assert planned is None
    event.remove(db.engine, "before_cursor_execute", count)
    assert not [s for s in executed if s.lstrip().upper().startswith("BEGIN")]
    # the same on PostgreSQL: the lock that orders the events is taken in their INSERT
    assert len(executed) == 31, executed
    issued = repo.issued_certificate("sha256:n9")
    assert issued is not None and issued.serial == "SN9" and issued.revoked_at is None
    repo.record_error("SN9", "a refused request", now=NOW)
    with pytest.raises(NotFound, match="SN404"):
        repo.record_audit("SN404", judged=b"rvr", level="ok", summary="clean", log="{}", now=NOW)
    monkeypatch.undo()
    device = repo.device("SN9")
    assert device is not None and device.state == "enroll-confirmed"
    assert device.last_error == "a refused request"
    assert repo.management("SN9") == ManagementRow("192.0.2.9", 6513, None, NOW)
    db.dispose()
