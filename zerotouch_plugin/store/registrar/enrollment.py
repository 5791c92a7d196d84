"""What an EST enrollment decides on (RFC 7030 §4.2, RFC 8995 §5.9), read in one
transaction: the device, its allow/deny entries, the management address an operator set for
it and the other serials that would give its LDevID the same DNS name."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, select

from zerotouch_plugin.store.hot import HotStatement
from zerotouch_plugin.store.registrar.base import Records
from zerotouch_plugin.store.registrar.devices import LAST_VOUCHER_OUTCOME, same_name_serials
from zerotouch_plugin.store.registrar.models import VOUCHER_SOURCES, Day0Model, DeviceModel
from zerotouch_plugin.store.registrar.policies import policies_of
from zerotouch_plugin.store.registrar.views import PolicyRow

__all__ = ["EnrollmentDevice", "EnrollmentRecords", "EnrollmentView"]


@dataclass(frozen=True)
class EnrollmentDevice:
    """What of the device record an enrollment decides on (``roles.registrar.DeviceFacts``)."""

    serial: str
    state: str
    idevid_fingerprint: str | None
    audit_level: str | None
    voucher_source: str | None  # "masa" or "escrow": where its last voucher came from


@dataclass(frozen=True)
class EnrollmentView:
    device: EnrollmentDevice | None
    policies: list[PolicyRow]
    address: str | None  # HOST:PORT an operator set (``registrar day0 --address``)
    same_name: list[str]  # other serials, equal but for case, that hold an LDevID


class EnrollmentRecords(Records):
    """The one read of an enrollment or re-enrollment request."""

    def enrollment_view(self, serial: str) -> EnrollmentView:
        params = {"serial": serial}
        with self.db.snapshot() as conn:
            found = _DEVICE(conn, params).one_or_none()
            return EnrollmentView(
                device=None if found is None else _device(*found),
                policies=policies_of(conn, serial),
                address=_ADDRESS(conn, params).scalar(),
                same_name=same_name_serials(conn, serial),
            )


def _device(
    serial: str, state: str, idevid: str | None, audit: str | None, outcome: str | None
) -> EnrollmentDevice:
    return EnrollmentDevice(serial, state, idevid, audit, VOUCHER_SOURCES.get(outcome or ""))


_ADDRESS = HotStatement(select(Day0Model.address).where(Day0Model.serial == bindparam("serial")))
_DEVICE = HotStatement(
    select(
        DeviceModel.serial,
        DeviceModel.state,
        DeviceModel.idevid_fingerprint,
        DeviceModel.audit_level,
        LAST_VOUCHER_OUTCOME,
    ).where(DeviceModel.serial == bindparam("serial"))
)
