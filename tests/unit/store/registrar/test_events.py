"""Device events: written with the change they report (and rolled back with it), ids in
commit order, pruning bounded, webhook cursors kept."""

from __future__ import annotations

import threading
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import func, select

from tests.unit.store.registrar.handoff_support import claim, finish
from tests.unit.store.registrar.support import (
    LEASE,
    NOW,
    enrolled,
    open_repo,
    relay,
    request_voucher,
    set_config,
)
from zerotouch_plugin.errors import Conflict
from zerotouch_plugin.store.registrar import RegistrarRepository
from zerotouch_plugin.store.registrar.events import EVENT_TYPES, EventModel, add_event


def kinds(repo: RegistrarRepository, after: int = 0) -> list[tuple[str, str | None]]:
    return [(e.type, e.serial) for e in repo.events_after(after, limit=1000)]


def test_each_change_writes_its_event_once(db_url: str) -> None:
    _, repo = open_repo(db_url)
    repo.set_policy("SN1", "allow", manufacturer=None, now=NOW)
    repo.set_policy("SN1", "allow", manufacturer=None, now=NOW)  # unchanged: no event
    request_id = request_voucher(repo, "SN1", nonce="n1")
    relay(repo, request_id, "n1")
    repo.record_audit(
        "SN1", judged=b"rvr", level="alert", summary="another domain", log="{}", now=NOW
    )
    assert kinds(repo) == [
        ("device-allowed", "SN1"),
        ("voucher-issued", "SN1"),
        ("audit-alert", "SN1"),
    ]
    voucher = repo.events_after(1, limit=1)[0]
    assert voucher.to_json_dict() == {
        "id": voucher.id,
        "type": "voucher-issued",
        "serial": "SN1",
        "at": "2026-11-26T12:00:00Z",
        "data": {"assertion": "proximity", "nonceless": False, "expires_on": None},
    }
    repo.set_policy("SN1", "deny", manufacturer="CN=V", now=NOW)
    assert kinds(repo)[-1] == ("device-denied", "SN1")
    assert repo.events_after(0, limit=1000)[-1].data == {"manufacturer": "CN=V"}


def test_a_refused_transition_writes_no_event(db_url: str) -> None:
    _, repo = open_repo(db_url)
    enrolled(repo, "SN2")
    before = repo.last_event_id()
    assert kinds(repo, 0)[-1] == ("enrolled", "SN2")

    def refuse(_state: str | None) -> str:
        raise Conflict("not now")

    with pytest.raises(Conflict):
        repo.record_certificate(
            "SN2", cert_der=b"c2", fingerprint="sha256:x2", not_after=NOW,
            kind="reenroll", advance=refuse, now=NOW,
        )  # fmt: skip
    assert repo.last_event_id() == before


def test_handoff_outcomes_are_events(db_url: str) -> None:
    _, repo = open_repo(db_url)
    enrolled(repo, "SN3")
    set_config(repo, None, "default")
    repo.queue_handoff("SN3", state="pending", host="127.0.0.1", port=830, error=None, now=NOW)
    assert claim(repo, "SN3", "a", now=NOW, lease_until=LEASE) is not None
    start = repo.last_event_id()
    later = NOW + timedelta(seconds=1)
    finish(repo, "SN3", "a", state="pending", attempts=1, next_at=later, error="x", now=NOW)
    assert repo.last_event_id() == start  # a retry is not an outcome
    assert claim(repo, "SN3", "a", now=later, lease_until=LEASE) is not None
    finish(repo, "SN3", "a", state="failed", attempts=2, next_at=None, error="no", now=NOW)
    [failed] = repo.events_after(start, limit=10)
    assert (failed.type, failed.serial, failed.data) == (
        "handoff-failed",
        "SN3",
        {"attempts": 2, "error": "no"},
    )
    # a lease lost: nothing recorded, no event
    finish(repo, "SN3", "b", state="applied", attempts=3, next_at=None, error=None, now=NOW)
    assert repo.last_event_id() == failed.id


def test_ids_follow_commit_order_under_concurrent_writers(db_url: str) -> None:
    db, repo = open_repo(db_url)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(10):
                with db.session() as s:
                    add_event(s, "device-allowed", f"W{n}-{i}", {"manufacturer": None}, NOW)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ids = [e.id for e in repo.events_after(0, limit=1000)]
    assert len(ids) == 40 and ids == sorted(ids) and len(set(ids)) == 40
    for n in range(4):
        mine = [
            e.serial
            for e in repo.events_after(0, limit=1000)
            if (e.serial or "").startswith(f"W{n}-")
        ]
        assert mine == [f"W{n}-{i}" for i in range(10)]


def test_a_transactions_events_are_written_at_its_end(db_url: str) -> None:
    """An event is queued with its transaction and inserted as its last statement: not there
    while the rest of the transaction runs, there once it commits, gone with a rollback."""
    db, repo = open_repo(db_url)
    with db.write() as conn:
        add_event(conn, "device-allowed", "SN1", {"manufacturer": None}, NOW)
        assert conn.execute(select(func.count()).select_from(EventModel)).scalar_one() == 0
    assert kinds(repo) == [("device-allowed", "SN1")]
    with pytest.raises(RuntimeError), db.write() as conn:
        add_event(conn, "device-allowed", "SN2", {"manufacturer": None}, NOW)
        raise RuntimeError("rolled back")
    assert kinds(repo) == [("device-allowed", "SN1")]


@pytest.mark.postgres
def test_an_open_transaction_with_an_event_keeps_no_other_writer_waiting(
    fresh_pg_url: str,
) -> None:
    """On PostgreSQL a transaction that added an event and is still busy with the rest of
    its work does not hold the event writers' lock over that work: the other writer commits
    meanwhile, and ids still follow commit order."""
    db, repo = open_repo(fresh_pg_url)
    added, other_done = threading.Event(), threading.Event()

    def slow() -> None:
        with db.write() as conn:
            add_event(conn, "device-allowed", "SLOW", {"manufacturer": None}, NOW)
            added.set()
            other_done.wait(10)

    first = threading.Thread(target=slow)
    first.start()
    assert added.wait(10)
    with db.write() as conn:
        add_event(conn, "device-allowed", "FAST", {"manufacturer": None}, NOW)
    other_done.set()
    first.join(10)
    assert [serial for _, serial in kinds(repo)] == ["FAST", "SLOW"]


@pytest.mark.postgres
def test_a_writer_of_events_waits_for_one_that_wrote_its_events_to_commit(
    fresh_pg_url: str,
) -> None:
    """Ids follow commit order on PostgreSQL: a transaction that has written an event
    (inside a savepoint it is written at once) holds the other event writers until it
    commits, and a waiting writer draws its id only once it goes on: the event the first
    transaction adds while the other waits still gets the smaller id. A reader that has seen
    id N never gets a smaller one later."""
    db, repo = open_repo(fresh_pg_url)
    written, committed = threading.Event(), threading.Event()
    order: list[str] = []

    def other() -> None:
        written.wait(10)
        with db.write() as conn:
            add_event(conn, "device-allowed", "SECOND", {"manufacturer": None}, NOW)
        order.append("second committed")
        committed.set()

    second = threading.Thread(target=other)
    second.start()
    with db.write() as conn:
        with conn.begin_nested():
            add_event(conn, "device-allowed", "FIRST", {"manufacturer": None}, NOW)
        written.set()
        assert not committed.wait(0.5)  # the other writer waits for this transaction
        add_event(conn, "device-allowed", "FIRST-AGAIN", {"manufacturer": None}, NOW)
        order.append("first committing")
    second.join(10)
    assert order == ["first committing", "second committed"]
    assert [serial for _, serial in kinds(repo)] == ["FIRST", "FIRST-AGAIN", "SECOND"]


@pytest.mark.postgres
def test_the_lock_that_orders_events_leaves_the_table_to_vacuum(fresh_pg_url: str) -> None:
    """The lock that orders event ids is not a lock on the events table: while a transaction
    holds it, VACUUM (what autovacuum runs) goes on. A table lock would make autovacuum give
    way again and again under a steady stream of events, and the table bloat."""
    db, _ = open_repo(fresh_pg_url)
    with db.write() as conn:
        with conn.begin_nested():  # written at once: the lock is held from here to commit
            add_event(conn, "device-allowed", "HELD", {"manufacturer": None}, NOW)
        with psycopg.connect(fresh_pg_url, autocommit=True) as other:
            other.execute("SET lock_timeout = '2s'")
            other.execute("VACUUM registrar_events")  # LockNotAvailable if it had to wait


@pytest.mark.postgres
def test_registrars_in_other_schemas_of_the_database_do_not_wait_for_each_others_events(
    fresh_pg_url: str, other_fresh_pg_url: str
) -> None:
    """The lock that orders events is one per events table: a registrar whose tables are in
    another schema of the same database writes and commits its events while this one holds
    its lock."""
    db, _ = open_repo(fresh_pg_url)
    other_db, other_repo = open_repo(other_fresh_pg_url)
    with db.write() as conn:
        with conn.begin_nested():  # written at once: the lock is held from here to commit
            add_event(conn, "device-allowed", "HELD", {"manufacturer": None}, NOW)
        done = threading.Event()

        def other() -> None:
            with other_db.write() as other_conn:
                add_event(other_conn, "device-allowed", "OTHER", {"manufacturer": None}, NOW)
            done.set()

        thread = threading.Thread(target=other)
        thread.start()
        assert done.wait(5)  # committed while this transaction is open
    thread.join(10)
    assert kinds(other_repo) == [("device-allowed", "OTHER")]
    other_db.dispose()
    db.dispose()


def test_prune_keeps_newest_and_recent(db_url: str) -> None:
    db, repo = open_repo(db_url)
    for i in range(6):
        with db.session() as s:
            add_event(s, "device-allowed", f"P{i}", {}, NOW + timedelta(days=i))
    assert repo.prune_events(before=NOW + timedelta(days=2), keep_at_most=100) == 2
    assert [e.serial for e in repo.events_after(0, limit=10)] == ["P2", "P3", "P4", "P5"]
    assert repo.prune_events(before=NOW, keep_at_most=3) == 1
    assert [e.serial for e in repo.events_after(0, limit=10)] == ["P3", "P4", "P5"]
    assert repo.event_counts() == {"device-allowed": 3}


def test_webhook_lease_and_cursor(db_url: str) -> None:
    db, repo = open_repo(db_url)
    with db.session() as s:
        add_event(s, "device-allowed", "OLD", {}, NOW)
    later, much_later = NOW + timedelta(seconds=30), NOW + timedelta(seconds=90)
    # a new webhook starts at the newest event
    assert repo.claim_webhook("nms", "a", now=NOW, lease_until=NOW + timedelta(seconds=60)) == 1
    assert repo.claim_webhook("nms", "b", now=later, lease_until=much_later) is None  # held
    assert (
        repo.advance_webhook("nms", "b", 9, now=later, lease_until=later) is False
    )  # not the holder
    assert repo.advance_webhook("nms", "a", 5, now=later, lease_until=later)
    assert repo.advance_webhook("nms", "a", 3, now=later, lease_until=later)  # never goes back
    assert repo.claim_webhook("nms", "a", now=later, lease_until=much_later) == 5  # renewed
    assert repo.claim_webhook("nms", "b", now=later, lease_until=much_later) is None
    # expired: another process takes over where the first stopped
    assert (
        repo.claim_webhook(
            "nms", "b", now=much_later, lease_until=much_later + timedelta(seconds=60)
        )
        == 5
    )
    assert repo.advance_webhook("nms", "a", 7, now=much_later, lease_until=much_later) is False
    repo.release_webhook("nms", "b")
    db.dispose()
    _, again = open_repo(db_url)  # durable, and free after the release
    assert again.claim_webhook("nms", "c", now=much_later, lease_until=much_later) == 5
    assert again.claim_webhook("other", "c", now=NOW, lease_until=NOW) == 1


def test_unknown_event_type_is_refused(db_url: str) -> None:
    db, _ = open_repo(db_url)
    assert "handoff-applied" in EVENT_TYPES
    with pytest.raises(ValueError, match="unknown event type"), db.session() as s:
        add_event(s, "made-up", None, {}, NOW)


def test_voucher_relayed_twice_is_two_events(db_url: str) -> None:
    _, repo = open_repo(db_url)
    for n in ("a", "b"):
        relay(repo, request_voucher(repo, "SN4", nonce=n), n)
    assert kinds(repo) == [("voucher-issued", "SN4"), ("voucher-issued", "SN4")]
