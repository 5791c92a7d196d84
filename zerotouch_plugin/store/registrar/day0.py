"""Day-0 configuration per serial, the default for every device without one, and the
management address override; kept apart from the device row so an operator can set them
before the device ever shows up.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, bindparam, delete, select
from sqlalchemy.orm import Session

from zerotouch_plugin.store.hot import HotStatement
from zerotouch_plugin.store.registrar.base import Records, locked_or_created
from zerotouch_plugin.store.registrar.models import DEFAULT_DAY0, Day0Model
from zerotouch_plugin.store.registrar.views import Day0Row

__all__ = ["Day0Records", "day0_of"]


class Day0Records(Records):
    """Day-0 entries: the document as given, its canonical XML and the address override."""

    def set_day0(
        self, serial: str | None, *, text: str, fmt: str, edit_xml: str, now: datetime
    ) -> None:
        """Store a validated day-0 document for ``serial`` (None: the default)."""
        with self.db.session() as s:
            row = day0_row(s, serial, now)
            row.config, row.format, row.edit_xml, row.updated_at = text, fmt, edit_xml, now

    def set_day0_address(self, serial: str, address: str | None, *, now: datetime) -> None:
        """The management address override (HOST:PORT) of ``serial``; None drops it."""
        with self.db.session() as s:
            row = day0_row(s, serial, now)
            row.address, row.updated_at = address, now

    def clear_day0(self, serial: str | None) -> bool:
        """Drop the configuration and address of ``serial`` (None: the default)."""
        key = DEFAULT_DAY0 if serial is None else serial
        with self.db.session() as s:
            return bool(s.execute(delete(Day0Model).where(Day0Model.serial == key)).rowcount)  # type: ignore[attr-defined]

    def day0(self, serial: str | None) -> Day0Row | None:
        """The entry of ``serial`` itself (None: the default), no fallback."""
        key = DEFAULT_DAY0 if serial is None else serial
        with self.db.read() as s:
            row = s.scalars(select(Day0Model).where(Day0Model.serial == key)).one_or_none()
            return None if row is None else Day0Row.from_model(row)

    def day0_entries(self) -> list[Day0Row]:
        with self.db.read() as s:
            return [
                Day0Row.from_model(r)
                for r in s.scalars(select(Day0Model).order_by(Day0Model.serial))
            ]

    def day0_plan(self, serial: str) -> tuple[bool, str | None]:
        """Whether ``serial`` has configuration to push (its own or the default), and its
        address override."""
        with self.db.snapshot() as conn:
            return day0_of(conn, serial)


def day0_of(conn: Connection, serial: str) -> tuple[bool, str | None]:
    """``day0_plan`` within the caller's transaction: one statement for the serial's own row
    and the default, no ORM objects (the enrollstatus of every device asks)."""
    configured, address = False, None
    for key, has_config, override in _PLAN(conn, {"serial": serial}):
        configured = configured or bool(has_config)
        if key == serial:
            address = override
    return configured, address


_PLAN = HotStatement(
    select(Day0Model.serial, Day0Model.config.is_not(None), Day0Model.address).where(
        (Day0Model.serial == bindparam("serial")) | (Day0Model.serial == DEFAULT_DAY0)
    )
)


def day0_row(s: Session, serial: str | None, now: datetime) -> Day0Model:
    key = DEFAULT_DAY0 if serial is None else serial
    query = select(Day0Model).where(Day0Model.serial == key).with_for_update()
    return locked_or_created(s, query, lambda: Day0Model(serial=key, updated_at=now))
