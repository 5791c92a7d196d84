"""Day-0 configuration and hand-off records on SQLite files and on the real PostgreSQL server:
entries and fallback to the default, the queue, leases taken by exactly one process."""

from __future__ import annotations

import threading
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import text

from tests.unit.store.test_registrar_store import NOW, db_url, open_repo, request_voucher
from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.store.registrar import HandoffJob, ManagementRow, RegistrarRepository

__all__ = ["db_url"]  # the parametrised SQLite / PostgreSQL fixture

LEASE = NOW + timedelta(seconds=60)


def enrolled(repo: RegistrarRepository, serial: str, fingerprint: str = "sha256:ld") -> None:
    """A device record with one issued LDevID (the hand-off reads its fingerprints)."""
    request_voucher(repo, serial)
    repo.record_certificate(
        serial, cert_der=b"c", fingerprint=fingerprint, not_after=NOW + timedelta(days=1),
        kind="enroll", advance=lambda _s: "enrolled", now=NOW,
    )  # fmt: skip


def set_config(repo: RegistrarRepository, serial: str | None, name: str) -> None:
    repo.set_day0(serial, text=f'{{"{name}": 1}}', fmt="json", edit_xml=f"<{name}/>", now=NOW)


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


def test_queue_claim_finish_and_the_device_record(db_url: str) -> None:
    db, repo = open_repo(db_url)
    enrolled(repo, "SN1")
    record = repo.device("SN1")
    assert record is not None and record.handoff.state == "none"
    assert record.to_json_dict()["handoff"] == {
        "state": "none", "attempts": 0, "at": None, "error": None, "target": None,
        "next_attempt_at": None,
    }  # fmt: skip
    set_config(repo, None, "default")
    repo.queue_handoff("SN1", state="pending", host="127.0.0.1", port=830, error=None, now=NOW)
    assert repo.due_handoffs(NOW) == (["SN1"], None)
    assert repo.due_handoffs(NOW - timedelta(seconds=1)) == ([], NOW)

    job = repo.claim_handoff("SN1", "a", now=NOW, lease_until=LEASE)
    assert job == HandoffJob(
        serial="SN1", attempts=0, host="127.0.0.1", port=830, address=None,
        edit_xml="<default/>", issued_fingerprints=frozenset({"sha256:ld"}),
    )  # fmt: skip
    assert repo.claim_handoff("SN1", "b", now=NOW, lease_until=LEASE) is None  # leased
    assert repo.due_handoffs(NOW) == ([], LEASE)
    assert (
        repo.finish_handoff(
            "SN1", "b", state="applied", attempts=1, next_at=None, error=None, now=NOW
        )
        is False
    )  # not the lease holder
    later = NOW + timedelta(seconds=3)
    assert repo.finish_handoff(
        "SN1", "a", state="pending", attempts=1, next_at=later, error="attempt 1/8: x", now=NOW
    )
    assert repo.due_handoffs(NOW) == ([], later)
    assert repo.claim_handoff("SN1", "b", now=NOW, lease_until=LEASE) is None  # not due yet
    job = repo.claim_handoff("SN1", "b", now=later, lease_until=LEASE)
    assert job is not None and job.attempts == 1
    repo.finish_handoff(
        "SN1", "b", state="applied", attempts=2, next_at=None, error=None, now=later
    )
    assert repo.due_handoffs(later + timedelta(hours=1)) == ([], None)

    [device] = repo.devices()
    assert device.to_json_dict()["handoff"] == {
        "state": "applied", "attempts": 2, "at": "2026-11-26T12:00:03Z", "error": None,
        "target": "127.0.0.1:830", "next_attempt_at": None,
    }  # fmt: skip
    db.dispose()


def test_own_configuration_and_address_win_over_the_default(db_url: str) -> None:
    db, repo = open_repo(db_url)
    enrolled(repo, "SN1", "sha256:one")
    set_config(repo, None, "default")
    set_config(repo, "SN1", "own")
    repo.set_day0_address("SN1", "[::1]:6513", now=NOW)
    repo.queue_handoff("SN1", state="pending", host="::1", port=830, error=None, now=NOW)
    job = repo.claim_handoff("SN1", "a", now=NOW, lease_until=LEASE)
    assert job is not None
    assert (job.edit_xml, job.address) == ("<own/>", "[::1]:6513")
    assert repo.handoff("SN1").target == "[::1]:830"
    db.dispose()


def test_an_expired_lease_is_taken_over_and_a_new_enrollstatus_starts_over(db_url: str) -> None:
    db, repo = open_repo(db_url)
    enrolled(repo, "SN1")
    repo.queue_handoff("SN1", state="pending", host="127.0.0.1", port=830, error=None, now=NOW)
    assert repo.claim_handoff("SN1", "crashed", now=NOW, lease_until=NOW + timedelta(seconds=5))
    expired = NOW + timedelta(seconds=5)
    assert repo.due_handoffs(expired) == (["SN1"], None)
    job = repo.claim_handoff("SN1", "b", now=expired, lease_until=expired + timedelta(seconds=60))
    assert job is not None and job.edit_xml is None  # configuration removed meanwhile
    # a new successful enrollstatus while b works: b's outcome is dropped, the new one runs
    repo.queue_handoff("SN1", state="pending", host="127.0.0.2", port=831, error=None, now=expired)
    assert not repo.finish_handoff(
        "SN1", "b", state="failed", attempts=1, next_at=None, error="x", now=expired
    )
    handoff = repo.handoff("SN1")
    assert (handoff.state, handoff.attempts, handoff.target) == ("pending", 0, "127.0.0.2:831")
    db.dispose()


def test_queue_without_target_is_failed_at_once(db_url: str) -> None:
    db, repo = open_repo(db_url)
    enrolled(repo, "SN1")
    repo.queue_handoff("SN1", state="failed", host=None, port=None, error="no address", now=NOW)
    assert repo.due_handoffs(NOW) == ([], None)
    handoff = repo.handoff("SN1")
    assert (handoff.state, handoff.error, handoff.target) == ("failed", "no address", None)
    db.dispose()


def test_two_processes_claiming_one_handoff_get_it_once(db_url: str) -> None:
    """Two repositories (two engines, as two registrar processes) race for every lease."""
    handles = [open_repo(db_url) for _ in range(2)]
    repo = handles[0][1]
    serials = [f"SN{i}" for i in range(8)]
    for serial in serials:
        enrolled(repo, serial, f"sha256:{serial}")
        repo.queue_handoff(serial, state="pending", host="127.0.0.1", port=1, error=None, now=NOW)
    won: dict[str, list[str]] = {"a": [], "b": []}
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def worker(owner: str, repo: RegistrarRepository) -> None:
        try:
            barrier.wait()
            for serial in serials:
                if repo.claim_handoff(serial, owner, now=NOW, lease_until=LEASE) is not None:
                    won[owner].append(serial)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=(owner, r))
        for owner, (_, r) in zip(won, handles, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(won["a"] + won["b"]) == serials  # each exactly once
    for db, _ in handles:
        db.dispose()


def test_handoff_state_survives_reopening(db_url: str) -> None:
    db, repo = open_repo(db_url)
    enrolled(repo, "SN1")
    set_config(repo, "SN1", "own")
    repo.queue_handoff("SN1", state="pending", host="127.0.0.1", port=830, error=None, now=NOW)
    db.dispose()
    db, repo = open_repo(db_url)  # a registrar restart
    assert repo.due_handoffs(NOW) == (["SN1"], None)
    assert repo.day0_plan("SN1") == (True, None)
    db.dispose()


def enroll_status(
    repo: RegistrarRepository, serial: str, management: ManagementRow | None, *, ok: bool = True
) -> None:
    repo.record_status(
        serial, kind="enrollstatus", status=ok, reason=None if ok else "no key", document="{}",
        advance=lambda _s: "enroll-confirmed" if ok else "enroll-failed", now=NOW,
        management=management,
    )  # fmt: skip


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
    """Issue 9 item 14: the SSH listener of the last successful enrollstatus, in its own table
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


def test_a_claimed_handoff_names_the_server_by_its_current_ldevid(db_url: str) -> None:
    """Issue 9 item 13: the hand-off checks the server by the dNSName of the LDevID the device
    holds now (an older LDevID without a name: None, only the fingerprint pinning applies)."""
    ca = certs.make_ca("Domain CA", now=NOW)
    named = certs.issue_from_csr(
        ca, certs.make_csr(ec.generate_private_key(ec.SECP256R1()), serial="SN1"),
        subject=x509.Name([]), san=[x509.DNSName("sn1.devices.example.net")], now=NOW,
    )  # fmt: skip
    db, repo = open_repo(db_url)
    enrolled(repo, "SN1")  # an LDevID record without a name
    set_config(repo, "SN1", "own")
    repo.queue_handoff("SN1", state="pending", host="192.0.2.1", port=6513, error=None, now=NOW)
    job = repo.claim_handoff("SN1", "me", now=NOW, lease_until=LEASE)
    assert job is not None and job.server_name is None
    repo.record_certificate(
        "SN1", cert_der=named.public_bytes(Encoding.DER), fingerprint=certs.fingerprint(named),
        not_after=NOW + timedelta(days=1), kind="reenroll", advance=lambda _s: "enrolled",
        now=NOW,
    )  # fmt: skip
    repo.queue_handoff("SN1", state="pending", host="192.0.2.1", port=6513, error=None, now=NOW)
    job = repo.claim_handoff("SN1", "me", now=NOW, lease_until=LEASE)
    assert job is not None and job.server_name == "sn1.devices.example.net"
    assert repo.device("SN1").dns_name == "sn1.devices.example.net"  # type: ignore[union-attr]
    db.dispose()
