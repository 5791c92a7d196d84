"""Issued LDevIDs and their history: a renewal recorded in one transaction (new certificate,
device record, ``renewed`` event, older LDevIDs revoked as superseded) that keeps the
device's state and enrollment status; revocation by fingerprint; nothing written when a
renewal is refused."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from tests.unit.store.registrar.support import NOW, enroll_status, enrolled, open_repo
from zerotouch_plugin.errors import Conflict, NotFound
from zerotouch_plugin.roles.ldevid_records import IssuedCertificate
from zerotouch_plugin.roles.reenrollment import keep_state
from zerotouch_plugin.store.registrar import RegistrarRepository

LATER = NOW + timedelta(hours=1)


def renew(repo: RegistrarRepository, serial: str, old: str, new: str, at: int = 1) -> None:
    repo.record_renewal(
        serial, renewed_from=old, cert_der=new.encode(), fingerprint=new,
        not_after=NOW + timedelta(days=2), advance=keep_state, now=NOW + timedelta(hours=at),
    )  # fmt: skip


def test_a_renewal_keeps_state_and_supersedes_older_ldevids(db_url: str) -> None:
    db, repo = open_repo(db_url)
    enrolled(repo, "SN1", "sha256:l1")
    enroll_status(repo, "SN1", None)
    renew(repo, "SN1", "sha256:l1", "sha256:l2", at=1)
    device = repo.device("SN1")
    assert device is not None
    assert (device.state, device.enroll_confirmed) == ("enroll-confirmed", True)
    assert device.ldevid_fingerprint == "sha256:l2"
    assert device.ldevid_not_after == NOW + timedelta(days=2)
    first = repo.issued_certificate("sha256:l1")
    assert first == IssuedCertificate("SN1", "sha256:l1", "enroll", NOW, NOW + timedelta(days=1))
    second = repo.issued_certificate("sha256:l2")
    assert second is not None and (second.kind, second.issued_at) == ("reenroll", LATER)
    assert repo.certificate_events("sha256:l1") == [("renewed", LATER, "sha256:l2")]
    # the second authenticates a renewal: the first is now superseded
    renew(repo, "SN1", "sha256:l2", "sha256:l3", at=2)
    revoked = repo.issued_certificate("sha256:l1")
    assert revoked is not None
    assert revoked.revoked_at == NOW + timedelta(hours=2)
    assert revoked.revoked_reason == "superseded by sha256:l2"
    assert [e for e, _, _ in repo.certificate_events("sha256:l1")] == ["renewed", "revoked"]
    assert list(repo.certificates("SN1")) == [b"c", b"sha256:l2", b"sha256:l3"]
    db.dispose()


def test_a_revoked_ldevid_cannot_renew_and_nothing_is_written(db_url: str) -> None:
    db, repo = open_repo(db_url)
    enrolled(repo, "SN1", "sha256:l1")
    repo.revoke_certificate("sha256:l1", reason="key compromised", now=LATER)
    repo.revoke_certificate("sha256:l1", reason="again", now=LATER + timedelta(hours=1))
    issued = repo.issued_certificate("sha256:l1")
    assert issued is not None and issued.revoked_reason == "key compromised"
    with pytest.raises(Conflict, match="was revoked: key compromised"):
        renew(repo, "SN1", "sha256:l1", "sha256:l2")
    assert repo.issued_certificate("sha256:l2") is None
    device = repo.device("SN1")
    assert device is not None and device.ldevid_fingerprint == "sha256:l1"
    db.dispose()


def test_renewals_refused_for_unknown_certificates_and_states(db_url: str) -> None:
    db, repo = open_repo(db_url)
    enrolled(repo, "SN1", "sha256:l1")
    enrolled(repo, "SN2", "sha256:m1")
    with pytest.raises(NotFound, match="holds no LDevID sha256:m1"):
        renew(repo, "SN1", "sha256:m1", "sha256:x")
    with pytest.raises(NotFound, match="no certificate sha256:zz"):
        repo.revoke_certificate("sha256:zz", reason="r", now=NOW)
    assert repo.issued_certificate("sha256:zz") is None

    def refuse(_state: str | None) -> str:
        raise Conflict("no")

    with pytest.raises(Conflict):
        repo.record_renewal(
            "SN1", renewed_from="sha256:l1", cert_der=b"n", fingerprint="sha256:n",
            not_after=LATER, advance=refuse, now=LATER,
        )  # fmt: skip
    assert repo.issued_certificate("sha256:n") is None
    assert repo.certificate_events("sha256:l1") == []
    db.dispose()


def race(repo: RegistrarRepository, serial: str) -> dict[str, object]:
    """A renewal and a revocation of ``serial`` started together, as two processes would."""
    start = threading.Barrier(2)
    outcome: dict[str, object] = {}

    def renewal() -> None:
        start.wait()
        try:
            renew(repo, serial, f"sha256:{serial}-old", f"sha256:{serial}-new")
            outcome["renewal"] = "done"
        except Conflict as exc:
            outcome["renewal"] = exc

    def revocation() -> None:
        start.wait()
        outcome["revoked"] = repo.revoke_device_certificates(serial, reason="stolen", now=LATER)

    threads = [threading.Thread(target=renewal), threading.Thread(target=revocation)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcome


def test_revoking_a_device_during_renewals_leaves_nothing_valid(db_url: str) -> None:
    """One registrar process revokes the device while another renews: the device lock
    orders them, a renewal first gets its new LDevID revoked too, a renewal second is
    refused; either way no LDevID of the device stays valid."""
    db, repo = open_repo(db_url)
    for round_ in range(5):
        serial = f"SN{round_}"
        enrolled(repo, serial, f"sha256:{serial}-old")
        outcome = race(repo, serial)
        assert set(outcome) == {"renewal", "revoked"}, outcome
        for fingerprint in (f"sha256:{serial}-old", f"sha256:{serial}-new"):
            issued = repo.issued_certificate(fingerprint)
            assert issued is None or issued.revoked_reason == "stolen", (outcome, issued)
        if outcome["renewal"] == "done":
            assert f"sha256:{serial}-new" in outcome["revoked"]  # type: ignore[operator]
    db.dispose()
