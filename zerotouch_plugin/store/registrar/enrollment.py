"""What an EST enrollment decides on (RFC 7030 §4.2, RFC 8995 §5.9), read in one
transaction: the device, its allow/deny entries, the management address an operator set for
it and the other serials that would give its LDevID the same DNS name."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, select

from zerotouch_plugin.store.registrar.base import Records
from zerotouch_plugin.store.registrar.devices import device_record, same_name_serials
from zerotouch_plugin.store.registrar.models import Day0Model
from zerotouch_plugin.store.registrar.policies import policies_of
from zerotouch_plugin.store.registrar.views import DeviceRecord, PolicyRow

__all__ = ["EnrollmentRecords", "EnrollmentView"]


@dataclass(frozen=True)
class EnrollmentView:
    device: DeviceRecord | None
    policies: list[PolicyRow]
    address: str | None  # HOST:PORT an operator set (``registrar day0 --address``)
    same_name: list[str]  # other serials, equal but for case, that hold an LDevID


class EnrollmentRecords(Records):
    """The one read of an enrollment or re-enrollment request."""

    def enrollment_view(self, serial: str) -> EnrollmentView:
        with self.db.read() as s:
            return EnrollmentView(
                device=device_record(s, serial),
                policies=policies_of(s, serial),
                address=s.connection().execute(_ADDRESS, {"serial": serial}).scalar(),
                same_name=same_name_serials(s, serial),
            )


_ADDRESS = select(Day0Model.address).where(Day0Model.serial == bindparam("serial"))
