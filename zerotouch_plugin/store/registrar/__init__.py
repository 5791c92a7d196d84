"""The registrar's records over one database, one concern per module: ``devices`` (the
device row, its reports and the row lock every writer takes), ``policies``, ``vouchers``,
``escrow``, ``certificates``, ``enrollment`` (what an EST request decides on), ``day0``,
``handoff_queue``, ``addresses``, ``events``, ``console`` (login tokens and sessions) and
``client_certs`` (client certificates issued from the domain CA, and their revocation);
the tables are in ``models`` and what reads answer in ``views``.
"""

from __future__ import annotations

from zerotouch_plugin.store.registrar.addresses import AddressRecords
from zerotouch_plugin.store.registrar.certificates import CertificateRecords
from zerotouch_plugin.store.registrar.client_certs import ClientCertificateRecords
from zerotouch_plugin.store.registrar.console import ConsoleRecords
from zerotouch_plugin.store.registrar.counts import CountRecords
from zerotouch_plugin.store.registrar.day0 import Day0Records
from zerotouch_plugin.store.registrar.devices import DeviceRecords
from zerotouch_plugin.store.registrar.enrollment import (
    EnrollmentDevice,
    EnrollmentRecords,
    EnrollmentView,
)
from zerotouch_plugin.store.registrar.escrow import EscrowRecords
from zerotouch_plugin.store.registrar.events import EventRecords, EventRow
from zerotouch_plugin.store.registrar.handoff_queue import HandoffQueue
from zerotouch_plugin.store.registrar.models import DEFAULT_DAY0, Advance
from zerotouch_plugin.store.registrar.policies import PolicyRecords
from zerotouch_plugin.store.registrar.views import (
    Day0Row,
    DeviceRecord,
    EscrowRow,
    HandoffJob,
    HandoffRow,
    ManagementRow,
    PolicyRow,
    StatusEntry,
    StatusRow,
    VoucherRow,
    ldevid_dns_name,
)
from zerotouch_plugin.store.registrar.vouchers import VoucherRecords

__all__ = [
    "DEFAULT_DAY0",
    "Advance",
    "Day0Row",
    "DeviceRecord",
    "EnrollmentDevice",
    "EnrollmentView",
    "EscrowRow",
    "EventRow",
    "HandoffJob",
    "HandoffRow",
    "ManagementRow",
    "PolicyRow",
    "RegistrarRepository",
    "StatusEntry",
    "StatusRow",
    "VoucherRow",
    "ldevid_dns_name",
]


class RegistrarRepository(
    DeviceRecords,
    EnrollmentRecords,
    PolicyRecords,
    VoucherRecords,
    EscrowRecords,
    CertificateRecords,
    Day0Records,
    HandoffQueue,
    AddressRecords,
    EventRecords,
    CountRecords,
    ConsoleRecords,
    ClientCertificateRecords,
):
    """Every read and write the registrar service and CLI make, over one database; each
    method is one transaction of the concern's class it comes from."""
