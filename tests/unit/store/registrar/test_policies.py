"""Enrollment policies per serial and manufacturer: upsert and removal."""

from __future__ import annotations

from tests.unit.store.registrar.support import NOW, open_repo


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
