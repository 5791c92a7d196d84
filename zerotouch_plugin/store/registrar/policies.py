"""Allow/deny policy per serial number (and optionally manufacturer): what an operator decided
before a pledge shows up (RFC 8995 §5.3 leaves the registrar's authorization to its policy).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select

from zerotouch_plugin.store.registrar.base import Records, locked_or_created
from zerotouch_plugin.store.registrar.models import PolicyModel
from zerotouch_plugin.store.registrar.views import PolicyRow

__all__ = ["PolicyRecords"]


class PolicyRecords(Records):
    """Allow and deny entries; one per serial and manufacturer (empty: any)."""

    def set_policy(
        self, serial: str, decision: str, *, manufacturer: str | None, now: datetime
    ) -> None:
        """Allow or deny ``serial`` (from ``manufacturer``, or any); replaces an earlier entry."""
        key = manufacturer or ""
        query = (
            select(PolicyModel)
            .where(PolicyModel.serial == serial, PolicyModel.manufacturer == key)
            .with_for_update()
        )
        with self.db.session() as s:
            row = locked_or_created(
                s,
                query,
                lambda: PolicyModel(
                    serial=serial, manufacturer=key, decision=decision, created_at=now
                ),
            )
            row.decision = decision
            row.created_at = now

    def remove_policy(self, serial: str, *, manufacturer: str | None = None) -> int:
        """Drop the entries for ``serial`` (only the one for ``manufacturer`` if given)."""
        stmt = delete(PolicyModel).where(PolicyModel.serial == serial)
        if manufacturer is not None:
            stmt = stmt.where(PolicyModel.manufacturer == manufacturer)
        with self.db.session() as s:
            return int(s.execute(stmt).rowcount)  # type: ignore[attr-defined]

    def policy_for(self, serial: str) -> list[PolicyRow]:
        with self.db.session() as s:
            rows = s.scalars(
                select(PolicyModel).where(PolicyModel.serial == serial).order_by(PolicyModel.id)
            )
            return [policy_row(r) for r in rows]

    def policies(self) -> list[PolicyRow]:
        with self.db.session() as s:
            return [
                policy_row(r) for r in s.scalars(select(PolicyModel).order_by(PolicyModel.serial))
            ]


def policy_row(row: PolicyModel) -> PolicyRow:
    return PolicyRow(row.serial, row.decision, row.manufacturer or None, row.created_at)
