"""Vouchers held in escrow: one verified nonceless voucher per serial (RFC 8366 §5.3, RFC 8995
§7.2), relayed when the device's MASA is unreachable; verified before it is stored
(``roles.registrar.check_escrow_voucher``), its uses counted when a voucher is recorded.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import delete, select

from zerotouch_plugin.store.registrar.base import Records, locked_or_created
from zerotouch_plugin.store.registrar.devices import lock_or_create_device
from zerotouch_plugin.store.registrar.models import EscrowModel
from zerotouch_plugin.store.registrar.views import EscrowRow

if TYPE_CHECKING:
    from zerotouch_plugin.roles.registrar import EscrowVoucher

__all__ = ["EscrowRecords"]


class EscrowRecords(Records):
    """The nonceless vouchers held per serial."""

    def put_escrow(
        self, serial: str, *, voucher_cms: bytes, expires_on: datetime, signer: str, now: datetime
    ) -> None:
        """Hold a verified nonceless voucher for ``serial``, replacing an earlier one; a
        device not seen yet gets its record (state "new"), so the devices list shows it."""
        values = {
            "voucher_cms": voucher_cms,
            "expires_on": expires_on,
            "signer": signer,
            "imported_at": now,
            "used_at": None,
            "used_count": 0,
        }
        with self.db.session() as s:
            lock_or_create_device(s, serial, "", now)
            query = select(EscrowModel).where(EscrowModel.serial == serial).with_for_update()
            row = locked_or_created(s, query, lambda: EscrowModel(serial=serial, **values))
            for name, value in values.items():
                setattr(row, name, value)

    def hold_escrow(self, held: EscrowVoucher, *, now: datetime) -> None:
        """``put_escrow`` of a voucher ``check_escrow_voucher`` accepted."""
        self.put_escrow(
            held.serial,
            voucher_cms=held.cms_der,
            expires_on=held.expires_on,
            signer=held.signer,
            now=now,
        )

    def escrow(self, serial: str) -> EscrowRow | None:
        with self.db.read() as s:
            return EscrowRow.from_model(
                s.scalars(select(EscrowModel).where(EscrowModel.serial == serial)).one_or_none()
            )

    def escrows(self) -> list[EscrowRow]:
        with self.db.read() as s:
            rows = s.scalars(select(EscrowModel).order_by(EscrowModel.serial)).all()
            return [row for row in map(EscrowRow.from_model, rows) if row is not None]

    def remove_escrow(self, serial: str) -> bool:
        with self.db.session() as s:
            return bool(s.execute(delete(EscrowModel).where(EscrowModel.serial == serial)).rowcount)  # type: ignore[attr-defined]
