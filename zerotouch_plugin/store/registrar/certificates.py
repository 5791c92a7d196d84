"""Issued LDevIDs (RFC 7030 §4.2): each one durable, and the device row pointing at it, before
the EST response leaves (§4.2.3).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import select

from zerotouch_plugin.store.registrar.base import Records
from zerotouch_plugin.store.registrar.devices import advance_device, lock_device
from zerotouch_plugin.store.registrar.models import Advance, CertificateModel

__all__ = ["CertificateRecords"]


class CertificateRecords(Records):
    """The certificates issued to each device, in issue order."""

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
    ) -> None:
        """An issued LDevID, durable before the EST response is sent (RFC 7030 §4.2.3)."""
        with self.db.session() as s:
            dev = lock_device(s, serial)
            advance_device(dev, advance, now)
            dev.enrolled_at = now
            dev.ldevid_fingerprint = fingerprint
            dev.ldevid_not_after = not_after
            dev.enroll_status_at = dev.enroll_confirmed = None
            dev.last_error = None
            s.add(
                CertificateModel(
                    serial=serial,
                    fingerprint=fingerprint,
                    kind=kind,
                    issued_at=now,
                    not_after=not_after,
                    cert_der=cert_der,
                )
            )

    def certificates(self, serial: str) -> Iterator[bytes]:
        with self.db.session() as s:
            rows = s.scalars(
                select(CertificateModel.cert_der)
                .where(CertificateModel.serial == serial)
                .order_by(CertificateModel.id)
            ).all()
        yield from rows
