"""Management addresses: where a device said, in its last successful enrollstatus (RFC 8995
§5.9.4), its management listeners are: the request's TCP peer and the ports of its
reason-context. Written under the device's row lock, with the status report it came in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection, Select, bindparam, delete, insert, select

from zerotouch_plugin.store.hot import HotStatement
from zerotouch_plugin.store.registrar.base import Records, by_dialect
from zerotouch_plugin.store.registrar.models import (
    EXTRA_PORTS,
    ManagementModel,
    ManagementPortModel,
)
from zerotouch_plugin.store.registrar.views import ManagementRow, management_row

__all__ = ["PORTS", "AddressRecords", "ports_of", "set_management"]


class AddressRecords(Records):
    """The management address each device reported last."""

    def management(self, serial: str) -> ManagementRow | None:
        """The management address ``serial`` reported last, if any."""
        with self.db.read() as s:
            return management_row(
                s.scalars(
                    select(ManagementModel).where(ManagementModel.serial == serial)
                ).one_or_none(),
                ports_of(s.connection(), PORTS.where(ManagementPortModel.serial == serial)).get(
                    serial
                ),
            )


def set_management(conn: Connection, serial: str, reported: ManagementRow) -> None:
    """One INSERT ... ON CONFLICT DO UPDATE under the device's row lock, which every writer
    of this serial takes first, then the extra ports replaced."""
    address = {
        "serial": serial,
        "host": reported.host,
        "reported_at": reported.reported_at,
        "netconf_tls_port": reported.netconf_tls_port,
        "restconf_port": reported.restconf_port,
    }
    _SET_MANAGEMENT[conn.dialect.name](conn, address)
    _DROP_PORTS(conn, {"serial": serial})
    ports = [
        {"serial": serial, "listener": name, "port": getattr(reported, field)}
        for name, field in EXTRA_PORTS.items()
        if getattr(reported, field) is not None
    ]
    if ports:
        conn.execute(_NEW_PORT, ports)


def _upsert(dialect_insert: Callable[..., Any]) -> HotStatement:
    """The dialect's INSERT of a management row, updating the row of a serial already there
    instead."""
    new = dialect_insert(ManagementModel)
    replaced = ("host", "reported_at", "netconf_tls_port", "restconf_port")
    return HotStatement(
        new.on_conflict_do_update(
            index_elements=[ManagementModel.serial],
            set_={column: new.excluded[column] for column in replaced},
        )
    )


_SET_MANAGEMENT = by_dialect(_upsert)
_NEW_PORT = insert(ManagementPortModel)
_DROP_PORTS = HotStatement(
    delete(ManagementPortModel).where(ManagementPortModel.serial == bindparam("serial"))
)


def ports_of(
    conn: Connection, ports: Select[str, str, int], params: Mapping[str, object] | None = None
) -> dict[str, dict[str, int]]:
    """serial -> {listener: port} of the registrar_management_ports rows ``ports`` (``PORTS``
    with a WHERE, built once where it is hot) selects with its bound ``params``."""
    found: dict[str, dict[str, int]] = {}
    for serial, listener, port in conn.execute(ports, params):
        found.setdefault(serial, {})[listener] = port
    return found


# (serial, listener, port) rows; ``ports_of`` callers add their WHERE.
PORTS = select(ManagementPortModel.serial, ManagementPortModel.listener, ManagementPortModel.port)
