"""MasaRepository on a real SQLite file and on the real PostgreSQL server (make test)."""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from zerotouch_plugin.errors import PolicyRefused
from zerotouch_plugin.store.db import Database, open_database
from zerotouch_plugin.store.masa import DeviceState, IssueRecord, MasaRepository

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "masa.db")
    return str(request.getfixturevalue("fresh_pg_url"))


@pytest.fixture
def repo(db_url: str) -> Iterator[MasaRepository]:
    repository = MasaRepository(open_database(db_url))
    yield repository
    repository.db.dispose()


def first_come(domain: str, *, nonce: str | None = "n1", when: datetime = NOW):  # type: ignore[no-untyped-def]
    """A ``decide`` that gives the device to ``domain`` unless another domain owns it."""

    def decide(state: DeviceState) -> IssueRecord:
        if state.owner_domain_id not in (None, domain):
            raise PolicyRefused(f"owned by {state.owner_domain_id}")
        return IssueRecord(
            voucher_cms=f"cms-{domain}-{nonce}".encode(),
            created_on=when,
            expires_on=None if nonce else when + timedelta(hours=1),
            domain_id=domain,
            domain_cert=f"cert-{domain}".encode(),
            nonce=nonce,
            assertion="proximity",
            take_ownership=state.owner_domain_id is None,
            request_cms=b"rvr",
            idevid_issuer="abcd",
        )

    return decide


def issue(repo: MasaRepository, serial: str, domain: str, **kwargs: object) -> object:
    return repo.issue_voucher(
        serial,
        nonce=kwargs.get("nonce", "n1"),  # type: ignore[arg-type]
        now=NOW,
        decide=first_come(domain, **kwargs),  # type: ignore[arg-type]
    )


def test_issue_records_voucher_audit_and_owner(repo: MasaRepository) -> None:
    issued = issue(repo, "SN1", "dom-a")
    state = repo.device("SN1")
    assert state.owner_domain_id == "dom-a" and state.owner_domain_cert == b"cert-dom-a"
    assert state.owner_since == NOW
    [voucher] = repo.vouchers("SN1")
    assert voucher == issued and voucher.cms == b"cms-dom-a-n1"
    [entry] = repo.audit_entries("SN1")
    assert (entry.date, entry.domain_id, entry.nonce, entry.assertion) == (
        NOW,
        "dom-a",
        "n1",
        "proximity",
    )


def test_refusal_writes_nothing(repo: MasaRepository) -> None:
    issue(repo, "SN2", "dom-a")
    with pytest.raises(PolicyRefused):
        issue(repo, "SN2", "dom-b")
    assert len(repo.vouchers("SN2")) == 1
    assert [e.domain_id for e in repo.audit_entries("SN2")] == ["dom-a"]
    assert repo.device("SN2").owner_domain_id == "dom-a"


def test_audit_entries_newest_first_and_nonceless_kept_as_null(repo: MasaRepository) -> None:
    issue(repo, "SN3", "dom-a", nonce="first")
    issue(repo, "SN3", "dom-a", nonce=None, when=NOW + timedelta(minutes=1))
    entries = repo.audit_entries("SN3")
    assert [e.nonce for e in entries] == [None, "first"]
    assert repo.vouchers("SN3")[1].expires_on == NOW + timedelta(minutes=61)
    assert repo.audit_entries("unknown") == [] and repo.vouchers("unknown") == []


def test_decide_is_told_when_the_nonce_was_used_before(repo: MasaRepository) -> None:
    """The replay fact (RFC 8995 §5.6 "stale") is read under the device lock, per device."""
    issue(repo, "SN6", "dom-a", nonce="used")
    seen: list[datetime | None] = []

    def spy(nonce: str | None, serial: str = "SN6") -> None:
        def decide(state: DeviceState) -> IssueRecord:
            seen.append(state.nonce_used_at)
            raise PolicyRefused("only looking")

        with pytest.raises(PolicyRefused):
            repo.issue_voucher(serial, nonce=nonce, now=NOW, decide=decide)

    spy("used")
    spy("fresh")
    spy(None)
    spy("used", serial="SN7")  # the same nonce for another device is no replay
    assert seen == [NOW, None, None, None]
    assert repo.device("SN6").nonce_used_at is None  # only issue_voucher asks about a nonce


def test_claims_are_replaced_on_resale(repo: MasaRepository) -> None:
    assert repo.claim_for("SN4") is None
    repo.claim("SN4", domain_id="dom-a", domain_cert=b"A", now=NOW)
    repo.claim("SN4", domain_id="dom-b", domain_cert=b"B", now=NOW + timedelta(days=1))
    claim = repo.claim_for("SN4")
    assert claim is not None and (claim.domain_id, claim.domain_cert) == ("dom-b", b"B")
    state = repo.device("SN4")
    assert state.claim == claim and state.owner_domain_id is None


def test_state_survives_reopening(db_url: str) -> None:
    first = MasaRepository(open_database(db_url))
    issue(first, "SN5", "dom-a")
    first.db.dispose()
    again = MasaRepository(open_database(db_url))
    assert again.device("SN5").owner_domain_id == "dom-a"
    assert len(again.audit_entries("SN5")) == 1
    again.db.dispose()


def _race(url: str, domain: str, serials: list[str], start: object) -> None:
    """Child process: try to take every serial for ``domain``."""
    start.wait()  # type: ignore[attr-defined]
    repo = MasaRepository(open_database(url))
    for serial in serials:
        with contextlib.suppress(PolicyRefused):
            issue(repo, serial, domain)
    repo.db.dispose()


def test_processes_racing_first_come_never_share_a_device(db_url: str) -> None:
    """Several processes, one database: each device ends with exactly one owner and one
    voucher (row lock / BEGIN IMMEDIATE, not memory)."""
    serials = [f"RACE-{i}" for i in range(15)]
    setup = MasaRepository(open_database(db_url))
    for serial in serials:  # rows exist already: only the row lock can serialize the race
        setup.claim(serial, domain_id="dom-x", domain_cert=b"X", now=NOW)
    setup.db.dispose()
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=_race, args=(db_url, f"dom-{n}", serials, start)) for n in range(3)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    db: Database = open_database(db_url)
    repo = MasaRepository(db)
    for serial in serials:
        vouchers = repo.vouchers(serial)
        assert len(vouchers) == 1, serial
        assert repo.device(serial).owner_domain_id == vouchers[0].domain_id
        assert [e.domain_id for e in repo.audit_entries(serial)] == [vouchers[0].domain_id]
    db.dispose()


def test_decide_runs_after_one_statement_for_a_new_device_and_two_for_a_known_one(
    repo: MasaRepository,
) -> None:
    """The device row, its claim and the nonce fact are read with as few statements as the
    lock allows: a row just created has no claim and no vouchers."""
    repo.claim("SN9", domain_id="dom-a", domain_cert=b"A", now=NOW)
    statements: list[str] = []
    before: list[list[str]] = []
    states: list[DeviceState] = []

    def on_execute(*args: Any) -> None:
        sql = str(args[2]).lstrip().upper()
        if not sql.startswith("BEGIN"):
            statements.append(sql.split()[0])

    def decide(state: DeviceState) -> IssueRecord:
        before.append(list(statements))
        states.append(state)
        return first_come("dom-a")(state)  # type: ignore[no-any-return]

    event.listen(repo.db.engine, "before_cursor_execute", on_execute)
    try:
        for serial in ("SN8", "SN9"):
            statements.clear()
            repo.issue_voucher(serial, nonce="n1", now=NOW, decide=decide)
    finally:
        event.remove(repo.db.engine, "before_cursor_execute", on_execute)
    assert before == [["INSERT"], ["INSERT", "SELECT"]]
    assert states[0] == DeviceState("SN8", None, None, None, None)
    assert states[1].claim == repo.claim_for("SN9") and states[1].nonce_used_at is None
