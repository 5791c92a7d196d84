"""Day-0 configuration: per-device entries, the default they fall back to, and the
address a hand-off uses."""

from __future__ import annotations

from tests.unit.store.registrar.handoff_support import claim
from tests.unit.store.registrar.support import LEASE, NOW, enrolled, open_repo, set_config


def test_day0_entries_default_fallback_and_clear(db_url: str) -> None:
    db, repo = open_repo(db_url)
    assert repo.day0_plan("SN1") == (False, None)
    repo.set_day0_address("SN1", "10.0.0.1:830", now=NOW)
    assert repo.day0_plan("SN1") == (False, "10.0.0.1:830")  # an address alone pushes nothing
    set_config(repo, None, "default")
    assert repo.day0_plan("SN1") == (True, "10.0.0.1:830")
    assert repo.day0_plan("SN2") == (True, None)
    set_config(repo, "SN1", "own")
    entry = repo.day0("SN1")
    assert entry is not None
    assert (entry.serial, entry.format, entry.address) == ("SN1", "json", "10.0.0.1:830")
    assert entry.config == '{"own": 1}'
    default = repo.day0(None)
    assert default is not None and default.serial is None and default.address is None
    assert [e.serial for e in repo.day0_entries()] == [None, "SN1"]
    assert repo.clear_day0(None) is True
    assert repo.clear_day0(None) is False
    assert repo.day0_plan("SN2") == (False, None)
    assert repo.clear_day0("SN1") is True and repo.day0("SN1") is None
    db.dispose()


def test_own_configuration_and_address_win_over_the_default(db_url: str) -> None:
    db, repo = open_repo(db_url)
    enrolled(repo, "SN1", "sha256:one")
    set_config(repo, None, "default")
    set_config(repo, "SN1", "own")
    repo.set_day0_address("SN1", "[::1]:6513", now=NOW)
    repo.queue_handoff("SN1", state="pending", host="::1", port=830, error=None, now=NOW)
    job = claim(repo, "SN1", "a", now=NOW, lease_until=LEASE)
    assert job is not None
    assert (job.edit_xml, job.address) == ("<own/>", "[::1]:6513")
    assert repo.handoff("SN1").target == "[::1]:830"
    db.dispose()
