"""Management addresses: what the last successful enrollstatus reported, kept with or
without a hand-off, and the extra ports in their own table."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from tests.unit.store.registrar.support import NOW, enroll_status, enrolled, open_repo
from zerotouch_plugin.roles.records import ManagementRow


def test_reported_management_address_is_kept_without_configuration(db_url: str) -> None:
    """Recorded with the enrollstatus whether or not a hand-off follows, replaced by the next
    report, shown in the device record, and still there after reopening the database."""
    db, repo = open_repo(db_url)
    enrolled(repo, "SN1")
    assert repo.management("SN1") is None
    assert repo.device("SN1").to_json_dict()["management"] is None  # type: ignore[union-attr]
    first = ManagementRow("2001:db8::7", 6513, None, NOW)
    enroll_status(repo, "SN1", first)
    assert repo.management("SN1") == first and first.address == "[2001:db8::7]:6513"
    assert repo.handoff("SN1").state == "none"  # no day-0 configuration: nothing queued
    later = NOW + timedelta(seconds=9)
    enroll_status(repo, "SN1", ManagementRow("192.0.2.9", 830, 8443, later))
    enroll_status(repo, "SN1", None, ok=False)  # a failed report leaves the address alone
    db.dispose()

    db, repo = open_repo(db_url)
    [device] = repo.devices()
    assert device.to_json_dict()["management"] == {
        "host": "192.0.2.9", "netconf_tls_port": 830, "restconf_port": 8443,
        "reported_at": "2026-11-26T12:00:09Z", "netconf_ssh_port": None,
        "address": "192.0.2.9:830",
    }  # fmt: skip
    enroll_status(repo, "SN1", ManagementRow("192.0.2.9", None, 8443, later))
    record = repo.device("SN1")
    assert record is not None and record.management is not None
    assert record.management.address is None  # no NETCONF/TLS port reported this time
    db.dispose()


def test_netconf_ssh_port_is_kept_replaced_and_dropped(db_url: str) -> None:
    """The SSH listener of the last successful enrollstatus, in its own table
    (registrar_management_ports), shown with the other ports, gone when no longer reported."""
    db, repo = open_repo(db_url)
    enrolled(repo, "SN1")
    enrolled(repo, "SN2", "sha256:ld2")
    enroll_status(repo, "SN1", ManagementRow("192.0.2.9", 6513, 8443, NOW, netconf_ssh_port=830))
    enroll_status(repo, "SN2", ManagementRow("192.0.2.8", 6513, None, NOW, netconf_ssh_port=2222))
    db.dispose()
    db, repo = open_repo(db_url)
    assert repo.management("SN1") == ManagementRow(
        "192.0.2.9", 6513, 8443, NOW, netconf_ssh_port=830
    )
    shown = {d.serial: d.to_json_dict()["management"]["netconf_ssh_port"] for d in repo.devices()}
    assert shown == {"SN1": 830, "SN2": 2222}
    enroll_status(repo, "SN1", ManagementRow("192.0.2.9", 6513, 8443, NOW, netconf_ssh_port=22))
    assert repo.device("SN1").management.netconf_ssh_port == 22  # type: ignore[union-attr]
    enroll_status(repo, "SN1", ManagementRow("192.0.2.9", 6513, 8443, NOW))
    assert repo.device("SN1").management.netconf_ssh_port is None  # type: ignore[union-attr]
    assert repo.management("SN2").netconf_ssh_port == 2222  # type: ignore[union-attr]
    db.dispose()


def test_a_database_made_before_the_ports_table_gets_it(db_url: str) -> None:
    """No migrations: a database of the previous version (no registrar_management_ports, a
    management row already there) gains the table on open, and its rows read as before."""
    db, repo = open_repo(db_url)
    enrolled(repo, "SN1")
    enroll_status(repo, "SN1", ManagementRow("192.0.2.9", 6513, 8443, NOW))
    with db.session() as s:
        s.execute(text("DROP TABLE registrar_management_ports"))
    db.dispose()
    db, repo = open_repo(db_url)
    assert repo.management("SN1") == ManagementRow("192.0.2.9", 6513, 8443, NOW)
    enroll_status(repo, "SN1", ManagementRow("192.0.2.9", 6513, 8443, NOW, netconf_ssh_port=830))
    assert repo.management("SN1").netconf_ssh_port == 830  # type: ignore[union-attr]
    db.dispose()
