"""Issued LDevIDs (RFC 7030 §4.2): each one durable, and the device row pointing at it, before
the EST response leaves (§4.2.3); and each certificate's history: which LDevID authenticated
a renewal (and what it was renewed as), and which were revoked.

The history is a table of its own (``registrar_certificate_events``), so a database made
before it gets it from ``create_all`` without a migration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Integer, String, Text, bindparam, insert, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from zerotouch_plugin.errors import Conflict, NotFound
from zerotouch_plugin.roles.ldevid_records import EVENT_RENEWED, EVENT_REVOKED, IssuedCertificate
from zerotouch_plugin.store.db import Base, UTCDateTime
from zerotouch_plugin.store.hot import HotStatement
from zerotouch_plugin.store.registrar.base import Records
from zerotouch_plugin.store.registrar.devices import (
    advance_device,
    lock_device,
    lock_same_name,
    lock_state,
    move_device,
)
from zerotouch_plugin.store.registrar.models import Advance, CertificateModel

__all__ = ["CertificateEventModel", "CertificateRecords"]


class CertificateEventModel(Base):
    """One event in an issued certificate's life: ``renewed`` (detail: the fingerprint of
    the LDevID it was renewed as) or ``revoked`` (detail: why)."""

    __tablename__ = "registrar_certificate_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(255), index=True)
    fingerprint: Mapped[str] = mapped_column(String(80), index=True)
    event: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    detail: Mapped[str] = mapped_column(Text)


_NEW_CERTIFICATE = HotStatement(insert(CertificateModel))
_ISSUED = HotStatement(
    select(
        CertificateModel.serial,
        CertificateModel.kind,
        CertificateModel.issued_at,
        CertificateModel.not_after,
    ).where(CertificateModel.fingerprint == bindparam("fingerprint"))
)
# The first revocation of a certificate: its time and reason.
_REVOKED = HotStatement(
    select(CertificateEventModel.at, CertificateEventModel.detail)
    .where(
        CertificateEventModel.fingerprint == bindparam("fingerprint"),
        CertificateEventModel.event == EVENT_REVOKED,
    )
    .order_by(CertificateEventModel.id)
    .limit(1)
)


def _revoke(s: Session, row: CertificateModel, *, reason: str, now: datetime) -> None:
    s.add(
        CertificateEventModel(
            serial=row.serial, fingerprint=row.fingerprint, event=EVENT_REVOKED, at=now,
            detail=reason,
        )
    )  # fmt: skip


def _revocation(conn: Connection, fingerprint: str) -> Any:
    """When and why (``at``, ``detail``) the certificate with ``fingerprint`` was revoked
    first, if it was."""
    return _REVOKED(conn, {"fingerprint": fingerprint}).one_or_none()


class CertificateRecords(Records):
    """The certificates issued to each device, in issue order, and their history."""

    def record_certificate(
        self,
        serial: str,
        *,
        cert_der: bytes,
        fingerprint: str,
        not_after: datetime,
        kind: str,
        advance: Advance,
        now: datetime,
        authenticated_by: str | None = None,
        name_free: Callable[[list[str]], None] | None = None,
    ) -> None:
        """An issued LDevID, durable before the EST response is sent (RFC 7030 §4.2.3).
        ``authenticated_by``: the fingerprint of the LDevID the request came with, refused
        (Conflict, nothing written) when it was revoked meanwhile, as a renewal is.
        ``name_free`` raises, nothing written, when it is given serials equal to ``serial``
        but for case that hold an LDevID (``lock_same_name``, under their locks)."""
        values = {
            "enrolled_at": now,
            "ldevid_fingerprint": fingerprint,
            "ldevid_not_after": not_after,
            "enroll_status_at": None,
            "enroll_confirmed": None,
        }
        with self.db.write() as conn:
            if name_free is not None:
                name_free(lock_same_name(conn, serial))
            before = lock_state(conn, serial)
            revoked = None if authenticated_by is None else _revocation(conn, authenticated_by)
            if revoked is not None:
                raise Conflict(f"the LDevID {authenticated_by} was revoked: {revoked.detail}")
            move_device(conn, serial, before, advance, now, None, values)
            _NEW_CERTIFICATE(
                conn,
                {
                    "serial": serial,
                    "fingerprint": fingerprint,
                    "kind": kind,
                    "issued_at": now,
                    "not_after": not_after,
                    "cert_der": cert_der,
                },
            )

    def record_renewal(
        self,
        serial: str,
        *,
        renewed_from: str,
        cert_der: bytes,
        fingerprint: str,
        not_after: datetime,
        advance: Advance,
        now: datetime,
    ) -> None:
        """A renewed LDevID (simplereenroll), in one transaction under the device's lock:
        the new certificate, the device record pointing at it (its state kept by
        ``advance``, its enrollment status untouched), a ``renewed`` event on the LDevID
        that authenticated the request, and every older LDevID of the device revoked as
        superseded, since the device has shown it holds a newer one. Refused (Conflict,
        nothing written) when ``renewed_from`` was revoked meanwhile by a concurrent
        renewal."""
        with self.db.session() as s:
            dev = lock_device(s, serial)
            used = s.scalars(
                select(CertificateModel).where(
                    CertificateModel.fingerprint == renewed_from, CertificateModel.serial == serial
                )
            ).one_or_none()
            if used is None:
                raise NotFound(f"device {serial} holds no LDevID {renewed_from} on record")
            revoked = _revocation(s.connection(), renewed_from)
            if revoked is not None:
                raise Conflict(f"the LDevID {renewed_from} was revoked: {revoked.detail}")
            advance_device(dev, advance, now)
            dev.ldevid_fingerprint = fingerprint
            dev.ldevid_not_after = not_after
            dev.last_error = None
            older = s.scalars(
                select(CertificateModel).where(
                    CertificateModel.serial == serial, CertificateModel.id < used.id
                )
            ).all()
            for row in older:
                if _revocation(s.connection(), row.fingerprint) is None:
                    _revoke(s, row, reason=f"superseded by {renewed_from}", now=now)
            s.add(
                CertificateEventModel(
                    serial=serial, fingerprint=renewed_from, event=EVENT_RENEWED, at=now,
                    detail=fingerprint,
                )
            )  # fmt: skip
            s.add(
                CertificateModel(
                    serial=serial,
                    fingerprint=fingerprint,
                    kind="reenroll",
                    issued_at=now,
                    not_after=not_after,
                    cert_der=cert_der,
                )
            )

    def issued_certificate(self, fingerprint: str) -> IssuedCertificate | None:
        """What is on record for the certificate with ``fingerprint``, revocation included."""
        with self.db.snapshot() as conn:
            row = _ISSUED(conn, {"fingerprint": fingerprint}).one_or_none()
            if row is None:
                return None
            serial, kind, issued_at, not_after = row
            revoked = _revocation(conn, fingerprint)
            return IssuedCertificate(
                serial=serial,
                fingerprint=fingerprint,
                kind=kind,
                issued_at=issued_at,
                not_after=not_after,
                revoked_at=None if revoked is None else revoked.at,
                revoked_reason=None if revoked is None else revoked.detail,
            )

    def revoke_certificate(self, fingerprint: str, *, reason: str, now: datetime) -> None:
        """Revoke an issued certificate: it no longer authenticates a renewal (NotFound
        when none has ``fingerprint``; revoking twice keeps the first reason)."""
        with self.db.session() as s:
            row = s.scalars(
                select(CertificateModel).where(CertificateModel.fingerprint == fingerprint)
            ).one_or_none()
            if row is None:
                raise NotFound(f"no certificate {fingerprint} was issued by this registrar")
            lock_device(s, row.serial)  # a renewal with it either sees this or came before
            if _revocation(s.connection(), fingerprint) is None:
                _revoke(s, row, reason=reason, now=now)

    def revoke_device_certificates(self, serial: str, *, reason: str, now: datetime) -> list[str]:
        """Revoke every LDevID of ``serial`` not revoked yet, under the device's lock (so no
        renewal slips in between): the fingerprints revoked, oldest first (NotFound for an
        unknown device)."""
        with self.db.session() as s:
            lock_device(s, serial)
            rows = s.scalars(
                select(CertificateModel)
                .where(CertificateModel.serial == serial)
                .order_by(CertificateModel.id)
            ).all()
            revoked = []
            for row in rows:
                if _revocation(s.connection(), row.fingerprint) is None:
                    _revoke(s, row, reason=reason, now=now)
                    revoked.append(row.fingerprint)
            return revoked

    def certificate_events(self, fingerprint: str) -> list[tuple[str, datetime, str]]:
        """The history of one certificate: (event, when, detail), oldest first."""
        with self.db.read() as s:
            rows = s.scalars(
                select(CertificateEventModel)
                .where(CertificateEventModel.fingerprint == fingerprint)
                .order_by(CertificateEventModel.id)
            ).all()
            return [(r.event, r.at, r.detail) for r in rows]

    def certificates(self, serial: str) -> Iterator[bytes]:
        with self.db.read() as s:
            rows = s.scalars(
                select(CertificateModel.cert_der)
                .where(CertificateModel.serial == serial)
                .order_by(CertificateModel.id)
            ).all()
        yield from rows
