"""State machines of the roles, as data (DESIGN.md rule 2).

Each role has a transition table ``(state, event) -> next state``; anything not in a table is
an illegal transition. The documentation's state diagrams are generated from these tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar

from zerotouch_plugin.errors import Conflict

__all__ = [
    "REGISTRAR_TRANSITIONS",
    "RegistrarDeviceState",
    "RegistrarEvent",
    "transition",
]

S = TypeVar("S")
E = TypeVar("E")


def transition(table: Mapping[tuple[S | None, E], S], state: S | None, event: E) -> S:
    """Look ``(state, event)`` up in ``table``; an unlisted pair is a protocol-sequence error."""
    try:
        return table[(state, event)]
    except KeyError:
        raise Conflict(f"{event!s} is not expected in state {state or 'unknown'!s}") from None


class RegistrarDeviceState(StrEnum):
    """Where a device stands at the registrar (RFC 8995 §5.3-§5.9)."""

    REFUSED = "refused"  # last voucher-request failed a §5.3 check or policy
    VOUCHER_REQUESTED = "voucher-requested"  # PVR accepted, RVR sent (or to be sent) to the MASA
    VOUCHER_ISSUED = "voucher-issued"  # voucher from the MASA validated and relayed
    VOUCHER_ACCEPTED = "voucher-accepted"  # voucher_status success (§5.7)
    VOUCHER_REJECTED = "voucher-rejected"  # voucher_status failure (§5.7)
    ENROLLED = "enrolled"  # LDevID issued over EST (RFC 7030 §4.2)
    ENROLL_CONFIRMED = "enroll-confirmed"  # enrollstatus success (§5.9.4)
    ENROLL_FAILED = "enroll-failed"  # enrollstatus failure (§5.9.4)


class RegistrarEvent(StrEnum):
    PVR_REFUSED = "pvr-refused"
    PVR_ACCEPTED = "pvr-accepted"
    VOUCHER_RELAYED = "voucher-relayed"
    VOUCHER_STATUS_SUCCESS = "voucher-status-success"
    VOUCHER_STATUS_FAILURE = "voucher-status-failure"
    CERT_ISSUED = "cert-issued"
    ENROLL_STATUS_SUCCESS = "enroll-status-success"
    ENROLL_STATUS_FAILURE = "enroll-status-failure"


_S = RegistrarDeviceState
_E = RegistrarEvent
_NEW: None = None  # a device the registrar has no record of yet

# A pledge may start over at any time (reboot, factory reset): a new voucher-request is
# always legal, from any state, and so is a refusal of it.
_RESTART: dict[tuple[RegistrarDeviceState | None, RegistrarEvent], RegistrarDeviceState] = {
    (state, event): target
    for state in (_NEW, *RegistrarDeviceState)
    for event, target in ((_E.PVR_ACCEPTED, _S.VOUCHER_REQUESTED), (_E.PVR_REFUSED, _S.REFUSED))
}

REGISTRAR_TRANSITIONS: Mapping[
    tuple[RegistrarDeviceState | None, RegistrarEvent], RegistrarDeviceState
] = {
    **_RESTART,
    (_S.VOUCHER_REQUESTED, _E.VOUCHER_RELAYED): _S.VOUCHER_ISSUED,
    # a pledge that lost the response retries; the registrar asks the MASA again
    (_S.VOUCHER_ISSUED, _E.VOUCHER_RELAYED): _S.VOUCHER_ISSUED,
    (_S.VOUCHER_ISSUED, _E.VOUCHER_STATUS_SUCCESS): _S.VOUCHER_ACCEPTED,
    (_S.VOUCHER_ISSUED, _E.VOUCHER_STATUS_FAILURE): _S.VOUCHER_REJECTED,
    (_S.VOUCHER_ACCEPTED, _E.VOUCHER_STATUS_SUCCESS): _S.VOUCHER_ACCEPTED,
    (_S.VOUCHER_ACCEPTED, _E.CERT_ISSUED): _S.ENROLLED,
    (_S.ENROLLED, _E.CERT_ISSUED): _S.ENROLLED,
    (_S.ENROLLED, _E.ENROLL_STATUS_SUCCESS): _S.ENROLL_CONFIRMED,
    (_S.ENROLLED, _E.ENROLL_STATUS_FAILURE): _S.ENROLL_FAILED,
    (_S.ENROLL_FAILED, _E.CERT_ISSUED): _S.ENROLLED,
    (_S.ENROLL_FAILED, _E.ENROLL_STATUS_SUCCESS): _S.ENROLL_CONFIRMED,
    # re-enrollment with a current LDevID (RFC 7030 §4.2.2)
    (_S.ENROLL_CONFIRMED, _E.CERT_ISSUED): _S.ENROLLED,
    (_S.ENROLL_CONFIRMED, _E.ENROLL_STATUS_SUCCESS): _S.ENROLL_CONFIRMED,
}
