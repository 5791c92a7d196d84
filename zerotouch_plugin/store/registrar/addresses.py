"""Management addresses: where a device said, in its last successful enrollstatus (RFC 8995
§5.9.4), its management listeners are: the request's TCP peer and the ports of its
reason-context. Written under the device's row lock, with the status report it came in.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import ColumnElement

from zerotouch_plugin.store.registrar.base import Records
from zerotouch_plugin.store.registrar.models import (
    EXTRA_PORTS,
    ManagementModel,
    ManagementPortModel,
)
from zerotouch_plugin.store.registrar.views import ManagementRow, management_row

__all__ = ["AddressRecords", "ports_of", "set_management"]


class AddressRecords(Records):
    """The management address each device reported last."""

    def management(self, serial: str) -> ManagementRow | None:
        """The management address ``serial`` reported last, if any."""
        with self.db.read() as s:
            return management_row(
                s.scalars(
                    select(ManagementModel).where(ManagementModel.serial == serial)
                ).one_or_none(),
                ports_of(s, ManagementPortModel.serial == serial).get(serial),
            )


def set_management(s: Session, serial: str, reported: ManagementRow) -> None:
    """Upsert under the device's row lock, which every writer of this serial takes first."""
    key = {"serial": serial}
    row = s.scalars(_MANAGEMENT, key).one_or_none()
    if row is None:
        row = ManagementModel(serial=serial)
        s.add(row)
    row.host, row.reported_at = reported.host, reported.reported_at
    row.netconf_tls_port, row.restconf_port = reported.netconf_tls_port, reported.restconf_port
    s.execute(_DROP_PORTS, key)
    for name, field in EXTRA_PORTS.items():
        port = getattr(reported, field)
        if port is not None:
            s.add(ManagementPortModel(serial=serial, listener=name, port=port))


_MANAGEMENT = select(ManagementModel).where(ManagementModel.serial == bindparam("serial"))
_DROP_PORTS = delete(ManagementPortModel).where(ManagementPortModel.serial == bindparam("serial"))


def ports_of(
    s: Session, where: ColumnElement[bool], params: Mapping[str, object] | None = None
) -> dict[str, dict[str, int]]:
    """serial -> {listener: port} of registrar_management_ports rows matching ``where``
    (with its bound ``params``)."""
    found: dict[str, dict[str, int]] = {}
    for row in s.scalars(select(ManagementPortModel).where(where), params):
        found.setdefault(row.serial, {})[row.listener] = row.port
    return found
