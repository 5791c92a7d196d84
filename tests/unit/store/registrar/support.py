"""What the registrar record tests share: a repository opened on a database URL, and the
steps that bring a device into a state (a voucher request, a relayed voucher, an issued LDevID,
day-0 configuration, an enrollstatus)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

from zerotouch_plugin.errors import ReplayedRequest
from zerotouch_plugin.roles.records import ManagementRow
from zerotouch_plugin.roles.states import (
    REGISTRAR_TRANSITIONS,
    RegistrarDeviceState,
    RegistrarEvent,
    transition,
)
from zerotouch_plugin.store.db import Database, open_database
from zerotouch_plugin.store.registrar import Advance, RegistrarRepository

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
LEASE = NOW + timedelta(seconds=60)


def open_repo(url: str) -> tuple[Database, RegistrarRepository]:
    db = open_database(url)
    db.create_all()
    return db, RegistrarRepository(db)


def step(event: RegistrarEvent) -> Advance:
    return lambda state: transition(
        REGISTRAR_TRANSITIONS, RegistrarDeviceState(state) if state else None, event
    )


def anyone(_recorded_idevid: str | None) -> None:
    """A reporter binding that accepts any reporter (the service passes the real check)."""


def refuse_seen(seen: datetime | None) -> None:
    if seen is not None:
        raise ReplayedRequest(f"nonce seen at {seen.isoformat()}")


def request_voucher(
    repo: RegistrarRepository, serial: str, now: datetime = NOW, *, nonce: str | None = None
) -> int:
    return repo.record_voucher_request(
        serial,
        manufacturer="CN=Vendor CA",
        idevid_fingerprint="sha256:aa",
        pvr_cms=b"\x30\x03pvr",
        nonce=nonce or secrets.token_urlsafe(16),
        advance=step(RegistrarEvent.PVR_ACCEPTED),
        fresh=refuse_seen,
        now=now,
    )


def relay(repo: RegistrarRepository, request_id: int, nonce: str, rvr: bytes = b"rvr") -> None:
    repo.record_voucher(
        request_id,
        rvr_cms=rvr,
        voucher_cms=b"voucher",
        assertion="proximity",
        nonce=nonce,
        expires_on=None,
        advance=step(RegistrarEvent.VOUCHER_RELAYED),
        now=NOW,
    )


def enrolled(repo: RegistrarRepository, serial: str, fingerprint: str = "sha256:ld") -> None:
    """A device record with one issued LDevID (the hand-off reads its fingerprints)."""
    request_voucher(repo, serial)
    repo.record_certificate(
        serial, cert_der=b"c", fingerprint=fingerprint, not_after=NOW + timedelta(days=1),
        kind="enroll", advance=lambda _s: "enrolled", now=NOW,
    )  # fmt: skip


def set_config(repo: RegistrarRepository, serial: str | None, name: str) -> None:
    repo.set_day0(serial, text=f'{{"{name}": 1}}', fmt="json", edit_xml=f"<{name}/>", now=NOW)


def enroll_status(
    repo: RegistrarRepository, serial: str, management: ManagementRow | None, *, ok: bool = True
) -> None:
    repo.record_status(
        serial, kind="enrollstatus", status=ok, reason=None if ok else "no key", document="{}",
        advance=lambda _s: "enroll-confirmed" if ok else "enroll-failed", now=NOW,
        bound=anyone, management=management,
    )  # fmt: skip
