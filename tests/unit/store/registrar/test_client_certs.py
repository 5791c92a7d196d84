"""Client certificates of ``registrar issue-client-cert``, on SQLite and PostgreSQL: each is
listed in issue order; revoking one keeps its first reason, puts it in the set a running
registrar refuses (until it expires), ends the console sessions opened with it and no other;
an unknown fingerprint is not revoked; two processes on one database see one revocation."""

from __future__ import annotations

from datetime import timedelta

from tests.unit.store.registrar.support import NOW, open_repo
from zerotouch_plugin.roles.client_certs import ClientCertificate

YEAR = timedelta(days=365)
ADMIN = ClientCertificate("sha256:aa", "ops", admin=True, issued_at=NOW, not_after=NOW + YEAR)
NMS = ClientCertificate("sha256:bb", "nms", admin=False, issued_at=NOW, not_after=NOW + YEAR)
SHORT = ClientCertificate(
    "sha256:cc", "short", admin=True, issued_at=NOW, not_after=NOW + timedelta(days=1)
)
LATER = NOW + timedelta(minutes=5)


def test_issued_client_certificates_are_listed_and_revoked(db_url: str) -> None:
    db, repo = open_repo(db_url)
    for cert in (ADMIN, NMS, SHORT):
        repo.record_client_certificate(cert)
    assert repo.client_certificates() == [ADMIN, NMS, SHORT]
    assert repo.revoked_client_fingerprints(now=LATER) == frozenset()
    revoked = repo.revoke_client_certificate("sha256:aa", reason="lost", now=LATER)
    assert revoked is not None and revoked.revoked_at == LATER and revoked.revoked_reason == "lost"
    again = repo.revoke_client_certificate("sha256:aa", reason="again", now=LATER + YEAR / 2)
    assert again == revoked
    repo.revoke_client_certificate("sha256:cc", reason="left", now=LATER)
    assert repo.revoke_client_certificate("sha256:dd", reason="x", now=LATER) is None
    listed = repo.client_certificates()
    assert [(c.fingerprint, c.revoked_reason) for c in listed] == [
        ("sha256:aa", "lost"),
        ("sha256:bb", None),
        ("sha256:cc", "left"),
    ]
    assert repo.revoked_client_fingerprints(now=LATER) == {"sha256:aa", "sha256:cc"}
    # an expired certificate is refused by path validation: no longer in the set
    assert repo.revoked_client_fingerprints(now=NOW + timedelta(days=2)) == {"sha256:aa"}
    db.dispose()


def test_revoking_ends_the_console_sessions_opened_with_the_certificate(db_url: str) -> None:
    db, repo = open_repo(db_url)
    repo.record_client_certificate(ADMIN)
    until = NOW + timedelta(hours=8)
    for secret, fingerprint in (("s-admin", "sha256:aa"), ("s-other", "sha256:ee")):
        repo.open_session(secret, "csrf", who="ops", fingerprint=fingerprint, now=NOW, until=until)
    repo.add_login_token("token", who="cli", now=NOW, until=until)
    assert repo.exchange_login_token("token", "s-link", "csrf", now=NOW, until=until)
    repo.revoke_client_certificate("sha256:aa", reason="lost", now=LATER)
    assert repo.console_session("s-admin", now=LATER) is None
    assert repo.console_session("s-other", now=LATER) is not None
    assert repo.console_session("s-link", now=LATER) is not None
    db.dispose()


def test_a_revocation_by_one_process_reaches_another(db_url: str) -> None:
    db, cli = open_repo(db_url)
    other_db, serving = open_repo(db_url)
    cli.record_client_certificate(ADMIN)
    assert serving.revoked_client_fingerprints(now=LATER) == frozenset()
    cli.revoke_client_certificate("sha256:aa", reason="lost", now=LATER)
    assert serving.revoked_client_fingerprints(now=LATER) == {"sha256:aa"}
    db.dispose()
    other_db.dispose()
