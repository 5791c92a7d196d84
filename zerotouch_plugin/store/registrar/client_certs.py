"""Client certificates issued by ``registrar issue-client-cert`` (an NMS's, an admin's), each
recorded before its files are written, and their revocation, which also ends the console
sessions opened with the certificate.

A table of its own (``registrar_client_certificates``), so a database made before it gets it
from ``create_all`` without a migration.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from datetime import datetime

from sqlalchemy import Boolean, Integer, String, Text, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from zerotouch_plugin.roles.client_certs import ClientCertificate
from zerotouch_plugin.store.db import Base, UTCDateTime
from zerotouch_plugin.store.registrar.base import Records
from zerotouch_plugin.store.registrar.console import ConsoleSessionCertModel, ConsoleSessionModel

__all__ = ["ClientCertificateModel", "ClientCertificateRecords"]


class ClientCertificateModel(Base):
    """A client certificate issued from the domain CA, and its revocation if any."""

    __tablename__ = "registrar_client_certificates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    admin: Mapped[bool] = mapped_column(Boolean)  # OU=zerotouch-admin
    fingerprint: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(Text)


def _value(row: ClientCertificateModel) -> ClientCertificate:
    return ClientCertificate(**{f.name: getattr(row, f.name) for f in fields(ClientCertificate)})


class ClientCertificateRecords(Records):
    """The client certificates issued, and the revoked ones a running registrar refuses."""

    def record_client_certificate(self, cert: ClientCertificate) -> None:
        """Durable before the CLI writes the certificate out, so none is in use unrecorded."""
        with self.db.session() as s:
            s.add(ClientCertificateModel(**asdict(cert)))

    def client_certificates(self) -> list[ClientCertificate]:
        """Every client certificate issued, in issue order."""
        with self.db.read() as s:
            rows = s.scalars(select(ClientCertificateModel).order_by(ClientCertificateModel.id))
            return [_value(r) for r in rows]

    def revoke_client_certificate(
        self, fingerprint: str, *, reason: str, now: datetime
    ) -> ClientCertificate | None:
        """Revoke the client certificate with ``fingerprint`` (revoking twice keeps the first
        reason) and end the console sessions opened with it, in one transaction; None when
        no client certificate has that fingerprint."""
        with self.db.session() as s:
            row = s.scalars(
                select(ClientCertificateModel)
                .where(ClientCertificateModel.fingerprint == fingerprint)
                .with_for_update()
            ).one_or_none()
            if row is None:
                return None
            if row.revoked_at is None:
                row.revoked_at, row.revoked_reason = now, reason
            opened = select(ConsoleSessionCertModel.digest).where(
                ConsoleSessionCertModel.fingerprint == fingerprint
            )
            s.execute(delete(ConsoleSessionModel).where(ConsoleSessionModel.digest.in_(opened)))
            s.execute(
                delete(ConsoleSessionCertModel).where(
                    ConsoleSessionCertModel.fingerprint == fingerprint
                )
            )
            return _value(row)

    def revoked_client_fingerprints(self, *, now: datetime) -> frozenset[str]:
        """The fingerprints of the revoked client certificates not expired at ``now`` (an
        expired one is refused by path validation already)."""
        with self.db.read() as s:
            return frozenset(
                s.scalars(
                    select(ClientCertificateModel.fingerprint).where(
                        ClientCertificateModel.revoked_at.is_not(None),
                        ClientCertificateModel.not_after > now,
                    )
                )
            )
