"""Allow/deny policy per serial number (and optionally manufacturer): what an operator decided
before a pledge shows up (RFC 8995 §5.3 leaves the registrar's authorization to its policy),
and, with the registrar policy ``ask``, the devices held until an operator decides (a
``pending`` entry, RFC 8995 §5.5's 202). Entries live in the database, so every registrar
process on it sees the same decision. What an operator did is an ``operator-action`` event
naming who, written in the transaction of the change it reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select
from sqlalchemy.orm import Session

from zerotouch_plugin.store.hot import HotStatement
from zerotouch_plugin.store.registrar.base import Records, locked_or_created
from zerotouch_plugin.store.registrar.events import add_event
from zerotouch_plugin.store.registrar.models import PolicyModel
from zerotouch_plugin.store.registrar.views import PolicyRow

__all__ = ["PENDING", "PolicyRecords"]

PENDING = "pending"


class PolicyRecords(Records):
    """Allow, deny and pending entries; one per serial and manufacturer (empty: any)."""

    def set_policy(
        self,
        serial: str,
        decision: str,
        *,
        manufacturer: str | None,
        now: datetime,
        actor: str | None = None,
    ) -> None:
        """Allow or deny ``serial`` (from ``manufacturer``, or any); replaces an earlier entry
        and ends a wait for approval. With ``actor`` the change is recorded as that operator's
        action."""
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
            s.execute(
                delete(PolicyModel).where(
                    PolicyModel.serial == serial,
                    PolicyModel.decision == PENDING,
                    PolicyModel.id != row.id,
                )
            )
            if actor is not None:
                _action(s, serial, decision, actor, {"manufacturer": manufacturer}, now)

    def hold_pending(self, serial: str, *, manufacturer: str, now: datetime) -> bool:
        """Hold ``serial`` for an operator's decision unless an entry for it and this
        manufacturer exists already; True when it is newly held."""
        query = (
            select(PolicyModel)
            .where(PolicyModel.serial == serial, PolicyModel.manufacturer == manufacturer)
            .with_for_update()
        )
        created: list[PolicyModel] = []

        def make() -> PolicyModel:
            row = PolicyModel(
                serial=serial, manufacturer=manufacturer, decision=PENDING, created_at=now
            )
            created.append(row)
            return row

        with self.db.session() as s:
            return locked_or_created(s, query, make) in created

    def decide_pending(self, serial: str, decision: str, *, actor: str, now: datetime) -> int:
        """Turn the held entries of ``serial`` into ``decision`` (allow or deny), recorded as
        ``actor``'s action; the number of entries decided (0: nothing was held)."""
        with self.db.session() as s:
            rows = list(
                s.scalars(
                    select(PolicyModel)
                    .where(PolicyModel.serial == serial, PolicyModel.decision == PENDING)
                    .with_for_update()
                )
            )
            for row in rows:
                row.decision = decision
                row.created_at = now
            if rows:
                manufacturers = [r.manufacturer or None for r in rows]
                _action(s, serial, decision, actor, {"manufacturers": manufacturers}, now)
            return len(rows)

    def record_action(
        self, serial: str | None, action: str, *, actor: str, now: datetime, **data: Any
    ) -> None:
        """Record that ``actor`` did ``action`` (after a change made in its own transaction)."""
        with self.db.session() as s:
            _action(s, serial, action, actor, data, now)

    def remove_policy(
        self,
        serial: str,
        *,
        manufacturer: str | None = None,
        actor: str | None = None,
        now: datetime | None = None,
    ) -> int:
        """Drop the entries for ``serial`` (only the one for ``manufacturer`` if given)."""
        stmt = delete(PolicyModel).where(PolicyModel.serial == serial)
        if manufacturer is not None:
            stmt = stmt.where(PolicyModel.manufacturer == manufacturer)
        with self.db.session() as s:
            removed = int(s.execute(stmt).rowcount)  # type: ignore[attr-defined]
            if removed and actor is not None and now is not None:
                _action(s, serial, "clear", actor, {"removed": removed}, now)
            return removed

    def policy_for(self, serial: str) -> list[PolicyRow]:
        with self.db.snapshot() as conn:
            return policies_of(conn, serial)

    def policies(self) -> list[PolicyRow]:
        with self.db.read() as s:
            return [
                policy_row(r) for r in s.scalars(select(PolicyModel).order_by(PolicyModel.serial))
            ]


def _action(
    session: Session,
    serial: str | None,
    action: str,
    actor: str,
    data: Mapping[str, Any],
    now: datetime,
) -> None:
    add_event(session, "operator-action", serial, {"action": action, "by": actor, **data}, now)


def policies_of(conn: Connection, serial: str) -> list[PolicyRow]:
    """``policy_for`` within the caller's transaction."""
    found = _POLICIES_OF(conn, {"serial": serial})
    return [PolicyRow(serial, decision, by or None, at) for serial, decision, by, at in found]


_POLICY = PolicyModel
_POLICIES_OF = HotStatement(
    select(_POLICY.serial, _POLICY.decision, _POLICY.manufacturer, _POLICY.created_at)
    .where(PolicyModel.serial == bindparam("serial"))
    .order_by(PolicyModel.id)
)


def policy_row(row: PolicyModel) -> PolicyRow:
    return PolicyRow(row.serial, row.decision, row.manufacturer or None, row.created_at)
