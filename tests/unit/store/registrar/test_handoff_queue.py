"""The hand-off queue: leases taken by exactly one process, expired leases taken over,
state kept across a restart, and the server named by the LDevID the device holds now."""

from __future__ import annotations

import threading
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from tests.unit.store.registrar.handoff_support import claim, finish
from tests.unit.store.registrar.support import LEASE, NOW, enrolled, open_repo, set_config
from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.store.registrar import HandoffJob, RegistrarRepository
from zerotouch_plugin.store.registrar.handoff_queue import HandoffOutcome


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

    job = claim(repo, "SN1", "a", now=NOW, lease_until=LEASE)
    assert job == HandoffJob(
        serial="SN1", attempts=0, host="127.0.0.1", port=830, address=None,
        edit_xml="<default/>", issued_fingerprints=frozenset({"sha256:ld"}),
    )  # fmt: skip
    assert claim(repo, "SN1", "b", now=NOW, lease_until=LEASE) is None  # leased
    assert repo.due_handoffs(NOW) == ([], LEASE)
    assert (
        finish(repo, "SN1", "b", state="applied", attempts=1, next_at=None, error=None, now=NOW)
        is False
    )  # not the lease holder
    later = NOW + timedelta(seconds=3)
    assert finish(
        repo,
        "SN1",
        "a",
        state="pending",
        attempts=1,
        next_at=later,
        error="attempt 1/8: x",
        now=NOW,
    )
    assert repo.due_handoffs(NOW) == ([], later)
    assert claim(repo, "SN1", "b", now=NOW, lease_until=LEASE) is None  # not due yet
    job = claim(repo, "SN1", "b", now=later, lease_until=LEASE)
    assert job is not None and job.attempts == 1
    finish(repo, "SN1", "b", state="applied", attempts=2, next_at=None, error=None, now=later)
    assert repo.due_handoffs(later + timedelta(hours=1)) == ([], None)

    [device] = repo.devices()
    assert device.to_json_dict()["handoff"] == {
        "state": "applied", "attempts": 2, "at": "2026-11-26T12:00:03Z", "error": None,
        "target": "127.0.0.1:830", "next_attempt_at": None,
    }  # fmt: skip
    db.dispose()


def test_an_expired_lease_is_taken_over_and_a_new_enrollstatus_starts_over(db_url: str) -> None:
    db, repo = open_repo(db_url)
    enrolled(repo, "SN1")
    repo.queue_handoff("SN1", state="pending", host="127.0.0.1", port=830, error=None, now=NOW)
    assert claim(repo, "SN1", "crashed", now=NOW, lease_until=NOW + timedelta(seconds=5))
    expired = NOW + timedelta(seconds=5)
    assert repo.due_handoffs(expired) == (["SN1"], None)
    job = claim(repo, "SN1", "b", now=expired, lease_until=expired + timedelta(seconds=60))
    assert job is not None and job.edit_xml is None  # configuration removed meanwhile
    # a new successful enrollstatus while b works: b's outcome is dropped, the new one runs
    repo.queue_handoff("SN1", state="pending", host="127.0.0.2", port=831, error=None, now=expired)
    assert not finish(
        repo, "SN1", "b", state="failed", attempts=1, next_at=None, error="x", now=expired
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
                if claim(repo, serial, owner, now=NOW, lease_until=LEASE) is not None:
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


def test_a_claimed_handoff_names_the_server_by_its_current_ldevid(db_url: str) -> None:
    """The hand-off checks the server by the dNSName of the LDevID the device holds now (an
    older LDevID without a name: None, only the fingerprint pinning applies)."""
    ca = certs.make_ca("Domain CA", now=NOW)
    named = certs.issue_from_csr(
        ca, certs.make_csr(ec.generate_private_key(ec.SECP256R1()), serial="SN1"),
        subject=x509.Name([]), san=[x509.DNSName("sn1.devices.example.net")], now=NOW,
    )  # fmt: skip
    db, repo = open_repo(db_url)
    enrolled(repo, "SN1")  # an LDevID record without a name
    set_config(repo, "SN1", "own")
    repo.queue_handoff("SN1", state="pending", host="192.0.2.1", port=6513, error=None, now=NOW)
    job = claim(repo, "SN1", "me", now=NOW, lease_until=LEASE)
    assert job is not None and job.server_name is None
    repo.record_certificate(
        "SN1", cert_der=named.public_bytes(Encoding.DER), fingerprint=certs.fingerprint(named),
        not_after=NOW + timedelta(days=1), kind="reenroll", advance=lambda _s: "enrolled",
        now=NOW,
    )  # fmt: skip
    repo.queue_handoff("SN1", state="pending", host="192.0.2.1", port=6513, error=None, now=NOW)
    job = claim(repo, "SN1", "me", now=NOW, lease_until=LEASE)
    assert job is not None and job.server_name == "sn1.devices.example.net"
    assert repo.device("SN1").dns_name == "sn1.devices.example.net"  # type: ignore[union-attr]
    db.dispose()


def test_a_batch_is_claimed_and_finished_in_one_transaction_each(db_url: str) -> None:
    """The worker's round: the due hand-offs leased together (those another process holds
    left out), the outcomes recorded together (a lost lease records nothing)."""
    db, repo = open_repo(db_url)
    set_config(repo, None, "default")
    set_config(repo, "SN2", "own")
    for serial in ("SN1", "SN2", "SN3"):
        enrolled(repo, serial, f"sha256:{serial}")
        repo.queue_handoff(serial, state="pending", host="127.0.0.1", port=830, error=None, now=NOW)
    assert claim(repo, "SN3", "other", now=NOW, lease_until=LEASE) is not None
    jobs = repo.claim_handoffs(["SN1", "SN2", "SN3"], "me", now=NOW, lease_until=LEASE)
    assert [(j.serial, j.edit_xml, j.issued_fingerprints) for j in jobs] == [
        ("SN1", "<default/>", frozenset({"sha256:SN1"})),
        ("SN2", "<own/>", frozenset({"sha256:SN2"})),
    ]
    assert repo.claim_handoffs(["SN1", "SN2"], "again", now=NOW, lease_until=LEASE) == []
    later = NOW + timedelta(seconds=3)
    outcomes = [
        HandoffOutcome("SN1", "applied", 1, None, None),
        HandoffOutcome("SN2", "pending", 1, later, "attempt 1/8: x"),
        HandoffOutcome("SN3", "applied", 1, None, None),  # "other" holds it
    ]
    assert repo.finish_handoffs("me", outcomes, now=NOW) == [True, True, False]
    states = [(h.state, h.attempts) for h in map(repo.handoff, ("SN1", "SN2", "SN3"))]
    assert states == [("applied", 1), ("pending", 1), ("pending", 0)]
    assert repo.due_handoffs(later) == (["SN2"], LEASE)
    db.dispose()
