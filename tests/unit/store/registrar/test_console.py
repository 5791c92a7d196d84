"""Held devices and the console's login tokens and sessions, on SQLite and PostgreSQL: a
held entry is made once and decided by an operator, whose action is an event; a login token
works once and not after it expires; a session ends when closed or expired."""

from __future__ import annotations

from datetime import timedelta

from tests.unit.store.registrar.support import NOW, open_repo

LATER = NOW + timedelta(minutes=5)


def test_a_held_device_is_decided_once_and_the_operator_recorded(db_url: str) -> None:
    db, repo = open_repo(db_url)
    assert repo.hold_pending("SN-H", manufacturer="CN=Vendor", now=NOW) is True
    assert repo.hold_pending("SN-H", manufacturer="CN=Vendor", now=LATER) is False
    assert [(p.decision, p.manufacturer) for p in repo.policy_for("SN-H")] == [
        ("pending", "CN=Vendor")
    ]
    assert repo.decide_pending("SN-H", "allow", actor="alice", now=LATER) == 1
    assert repo.decide_pending("SN-H", "allow", actor="alice", now=LATER) == 0
    assert [(p.decision, p.manufacturer) for p in repo.policy_for("SN-H")] == [
        ("allow", "CN=Vendor")
    ]
    # an allow entry is not held again
    assert repo.hold_pending("SN-H", manufacturer="CN=Vendor", now=LATER) is False
    events = repo.device_events("SN-H", limit=10)
    assert events[0].type == "device-pending"
    assert sorted(e.type for e in events[1:]) == ["device-allowed", "operator-action"]
    action = next(e for e in events if e.type == "operator-action")
    assert action.data == {
        "action": "allow",
        "by": "alice",
        "manufacturers": ["CN=Vendor"],
    }
    db.dispose()


def test_an_explicit_decision_ends_the_wait(db_url: str) -> None:
    db, repo = open_repo(db_url)
    repo.hold_pending("SN-D", manufacturer="CN=Vendor", now=NOW)
    repo.set_policy("SN-D", "deny", manufacturer=None, now=LATER, actor="cli bob")
    assert [(p.decision, p.manufacturer) for p in repo.policy_for("SN-D")] == [("deny", None)]
    assert repo.remove_policy("SN-D", actor="carol", now=LATER) == 1
    actions = [e.data for e in repo.device_events("SN-D", limit=10) if e.type == "operator-action"]
    assert [(a["action"], a["by"]) for a in actions] == [("deny", "cli bob"), ("clear", "carol")]
    db.dispose()


def test_a_login_token_opens_one_session(db_url: str) -> None:
    db, repo = open_repo(db_url)
    repo.add_login_token("tok-1", who="login link ops", now=NOW, until=LATER)
    session = repo.exchange_login_token("tok-1", "sess-1", "csrf-1", now=NOW, until=LATER)
    assert session is not None and session.who == "login link ops" and session.csrf == "csrf-1"
    assert repo.exchange_login_token("tok-1", "sess-2", "csrf-2", now=NOW, until=LATER) is None
    assert repo.console_session("sess-2", now=NOW) is None
    found = repo.console_session("sess-1", now=NOW)
    assert found is not None and found.csrf == "csrf-1"
    assert repo.console_session("tok-1", now=NOW) is None  # a token is no session
    assert repo.console_session("sess-1", now=LATER) is None  # expired
    repo.close_session("sess-1")
    assert repo.console_session("sess-1", now=NOW) is None
    db.dispose()


def test_an_expired_login_token_is_refused_and_used_up(db_url: str) -> None:
    db, repo = open_repo(db_url)
    repo.add_login_token("tok-old", who="login link ops", now=NOW, until=NOW)
    assert repo.exchange_login_token("tok-old", "s", "c", now=LATER, until=LATER) is None
    # refused, and gone: not even a clock turned back makes it work
    assert (
        repo.exchange_login_token("tok-old", "s", "c", now=NOW - timedelta(1), until=LATER) is None
    )
    db.dispose()
