"""MasaRepository.audit_view: what an audit-log request is answered from (RFC 8995 §5.8.1),
read in one transaction, on a real SQLite file and the real PostgreSQL server (make test)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from tests.unit.store.test_masa import NOW, db_url, issue, repo  # noqa: F401  (fixtures)
from zerotouch_plugin.store.masa import AuditEntry, MasaRepository


def test_audit_view_reads_device_vouchers_and_log_in_one_transaction(
    repo: MasaRepository,  # noqa: F811
) -> None:
    issue(repo, "SN1", "dom-a", nonce="n1")
    issue(repo, "SN1", "dom-a", nonce="n2")
    issue(repo, "SN2", "dom-b", nonce="n1")
    begun: list[int] = []

    def on_begin(_conn: Any) -> None:
        begun.append(1)

    event.listen(repo.db.engine, "begin", on_begin)
    try:
        view = repo.audit_view("SN1")
    finally:
        event.remove(repo.db.engine, "begin", on_begin)
    assert len(begun) == 1
    assert view.device.owner_domain_id == "dom-a"
    assert view.voucher_cms == [b"cms-dom-a-n1", b"cms-dom-a-n2"]  # oldest first
    assert view.entries == [
        AuditEntry(NOW, "dom-a", "n2", "proximity"),
        AuditEntry(NOW, "dom-a", "n1", "proximity"),
    ]  # newest first
    assert view.entries == repo.audit_entries("SN1")
    assert view.voucher_cms == [v.cms for v in repo.vouchers("SN1")]
    unknown = repo.audit_view("NONE")
    assert (unknown.device.owner_domain_id, unknown.voucher_cms, unknown.entries) == (
        None,
        [],
        [],
    )
