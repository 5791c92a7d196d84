"""Counts over the registrar's tables for its Prometheus metrics: devices by state, hand-offs
by state (the hand-off queue's depth). One query each, read at scrape time."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from zerotouch_plugin.store.registrar.base import Records
from zerotouch_plugin.store.registrar.models import DeviceModel, HandoffModel

__all__ = ["CountRecords"]


class CountRecords(Records):
    """Rows per state of the device and hand-off tables."""

    def _by(self, column: Any) -> dict[str, int]:
        with self.db.read() as s:
            rows = s.execute(select(column, func.count()).group_by(column))
            return {str(value): int(n) for value, n in rows}

    def devices_by_state(self) -> dict[str, int]:
        return self._by(DeviceModel.state)

    def handoffs_by_state(self) -> dict[str, int]:
        return self._by(HandoffModel.state)
