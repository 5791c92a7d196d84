"""What the registrar console keeps: one-time login tokens and browser sessions, and the reads
its pages make (a device's events, the MASA audit logs judged for it, events since a time).

Tokens and sessions are rows of the registrar's database, so they survive a restart and
every registrar process on the database honours them; only a SHA-256 of each secret is
stored. A login token is consumed by deleting its row: of two processes that race for it,
one deletes it and the other finds nothing, so it works once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Integer, String, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from zerotouch_plugin.store.db import Base, UTCDateTime
from zerotouch_plugin.store.registrar.base import Records
from zerotouch_plugin.store.registrar.events import EventModel, EventRow, event_row
from zerotouch_plugin.store.registrar.models import AuditVerdictModel

__all__ = [
    "LOGIN",
    "SESSION",
    "AuditLogRow",
    "ConsoleRecords",
    "ConsoleSessionCertModel",
    "ConsoleSessionModel",
    "SessionRow",
]

LOGIN = "login"  # a one-time link's token, exchanged for a session
SESSION = "session"  # a browser's session cookie


class ConsoleSessionModel(Base):
    """A login token or a session: the SHA-256 of its secret, whose it is, when it ends, and
    (sessions) the CSRF token its forms carry."""

    __tablename__ = "registrar_console_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(8))
    who: Mapped[str] = mapped_column(String(255))
    csrf: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class ConsoleSessionCertModel(Base):
    """The client certificate a session was opened with, so that revoking the certificate
    ends the session (store/registrar/client_certs.py). A table of its own: ``create_all``
    adds it to a database made before, never a column to ``registrar_console_sessions``."""

    __tablename__ = "registrar_console_session_certs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    fingerprint: Mapped[str] = mapped_column(String(80), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


@dataclass(frozen=True)
class SessionRow:
    who: str
    csrf: str
    expires_at: datetime


@dataclass(frozen=True)
class AuditLogRow:
    checked_at: datetime
    level: str
    summary: str
    log: str  # the MASA's audit log as it answered (JSON)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ConsoleRecords(Records):
    """Login tokens, sessions and the console's reads."""

    def add_login_token(self, secret: str, *, who: str, now: datetime, until: datetime) -> None:
        with self.db.session() as s:
            s.execute(delete(ConsoleSessionModel).where(ConsoleSessionModel.expires_at < now))
            s.add(
                ConsoleSessionModel(
                    digest=digest(secret), kind=LOGIN, who=who, created_at=now, expires_at=until
                )
            )

    def exchange_login_token(
        self, secret: str, session_secret: str, csrf: str, *, now: datetime, until: datetime
    ) -> SessionRow | None:
        """Consume the login token ``secret`` and open a session in its place; None when the
        token is unknown, used or expired."""
        with self.db.session() as s:
            token = s.scalars(
                select(ConsoleSessionModel)
                .where(
                    ConsoleSessionModel.digest == digest(secret),
                    ConsoleSessionModel.kind == LOGIN,
                )
                .with_for_update()
            ).one_or_none()
            if token is None:
                return None
            gone = s.execute(
                delete(ConsoleSessionModel).where(ConsoleSessionModel.id == token.id)
            ).rowcount  # type: ignore[attr-defined]
            if gone != 1 or token.expires_at <= now:
                return None
            s.add(
                ConsoleSessionModel(
                    digest=digest(session_secret),
                    kind=SESSION,
                    who=token.who,
                    csrf=csrf,
                    created_at=now,
                    expires_at=until,
                )
            )
            return SessionRow(token.who, csrf, until)

    def open_session(
        self,
        session_secret: str,
        csrf: str,
        *,
        who: str,
        fingerprint: str,
        now: datetime,
        until: datetime,
    ) -> SessionRow:
        """A session for a visitor already known by the admin client certificate with
        ``fingerprint``: revoking it ends the session."""
        with self.db.session() as s:
            s.execute(delete(ConsoleSessionModel).where(ConsoleSessionModel.expires_at < now))
            s.execute(
                delete(ConsoleSessionCertModel).where(ConsoleSessionCertModel.expires_at < now)
            )
            s.add(
                ConsoleSessionCertModel(
                    digest=digest(session_secret), fingerprint=fingerprint, expires_at=until
                )
            )
            s.add(
                ConsoleSessionModel(
                    digest=digest(session_secret),
                    kind=SESSION,
                    who=who,
                    csrf=csrf,
                    created_at=now,
                    expires_at=until,
                )
            )
        return SessionRow(who, csrf, until)

    def console_session(self, session_secret: str, *, now: datetime) -> SessionRow | None:
        with self.db.read() as s:
            row = s.scalars(
                select(ConsoleSessionModel).where(
                    ConsoleSessionModel.digest == digest(session_secret),
                    ConsoleSessionModel.kind == SESSION,
                )
            ).one_or_none()
            if row is None or row.expires_at <= now or row.csrf is None:
                return None
            return SessionRow(row.who, row.csrf, row.expires_at)

    def close_session(self, session_secret: str) -> None:
        with self.db.session() as s:
            s.execute(
                delete(ConsoleSessionModel).where(
                    ConsoleSessionModel.digest == digest(session_secret)
                )
            )

    def device_events(self, serial: str, *, limit: int) -> list[EventRow]:
        """The newest ``limit`` events of a device, oldest first."""
        query = (
            select(EventModel)
            .where(EventModel.serial == serial)
            .order_by(EventModel.id.desc())
            .limit(limit)
        )
        with self.db.read() as s:
            return [event_row(m) for m in reversed(list(s.scalars(query)))]

    def events_since(self, since: datetime, *, limit: int) -> list[EventRow]:
        """Events at or after ``since`` (at most ``limit``, the newest), oldest first."""
        query = (
            select(EventModel)
            .where(EventModel.at >= since)
            .order_by(EventModel.id.desc())
            .limit(limit)
        )
        with self.db.read() as s:
            return [event_row(m) for m in reversed(list(s.scalars(query)))]

    def audit_logs(self, serial: str, *, limit: int) -> list[AuditLogRow]:
        """The newest ``limit`` audit-log verdicts of a device, newest first."""
        query = (
            select(AuditVerdictModel)
            .where(AuditVerdictModel.serial == serial)
            .order_by(AuditVerdictModel.id.desc())
            .limit(limit)
        )
        with self.db.read() as s:
            return [AuditLogRow(m.checked_at, m.level, m.summary, m.log) for m in s.scalars(query)]
