"""State machines of the roles, as data.

Each role has a transition table ``(state, event) -> next state``; anything not in a table is
an illegal transition. The documentation's state diagrams are generated from these tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import TypeVar

from zerotouch_plugin.errors import Conflict

__all__ = [
    "DISCOVERY_TRANSITIONS",
    "PLEDGE_TRANSITIONS",
    "REGISTRAR_TRANSITIONS",
    "DiscoveryEvent",
    "DiscoveryState",
    "PledgeEvent",
    "PledgeState",
    "RegistrarDeviceState",
    "RegistrarEvent",
    "render_mermaid",
    "transition",
]

S = TypeVar("S")
E = TypeVar("E")
K = TypeVar("K")  # the source-state type: S, or S | None where "no record yet" is a state


def transition(table: Mapping[tuple[K, E], S], state: K, event: E) -> S:
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


class PledgeState(StrEnum):
    """Where a pledge stands in its bootstrap (RFC 8995 §5, client side)."""

    IDLE = "idle"
    CONNECTING = "connecting"  # provisional TLS to the registrar (§5.1)
    REQUESTING_VOUCHER = "requesting-voucher"  # pledge voucher-request sent (§5.2)
    REPORTING_VOUCHER = "reporting-voucher"  # voucher accepted, voucher_status true (§5.7)
    REPORTING_VOUCHER_FAILURE = "reporting-voucher-failure"  # voucher refused (§5.6.1, §5.7)
    FETCHING_CACERTS = "fetching-cacerts"  # EST /cacerts (RFC 7030 §4.1, RFC 8995 §5.9.1)
    FETCHING_CSRATTRS = "fetching-csrattrs"  # EST /csrattrs (RFC 7030 §4.5, RFC 8995 §5.9.2)
    ENROLLING = "enrolling"  # EST /simpleenroll (RFC 7030 §4.2)
    INSTALLING = "installing"  # LDevID and trust anchors handed to the host (§5.9.4)
    REPORTING_ENROLLMENT = "reporting-enrollment"  # enrollstatus true (§5.9.4)
    REPORTING_ENROLLMENT_FAILURE = "reporting-enrollment-failure"  # enrollstatus false
    ENROLLED = "enrolled"
    FAILED = "failed"


class PledgeEvent(StrEnum):
    START = "start"
    CONNECTED = "connected"  # registrar certificate recorded on provisional TLS
    VOUCHER_VALID = "voucher-valid"
    VOUCHER_INVALID = "voucher-invalid"
    STATUS_SENT = "status-sent"  # any HTTP answer to a status report (§5.7: may be ignored)
    CACERTS_VALID = "cacerts-valid"
    CACERTS_INVALID = "cacerts-invalid"
    CSRATTRS_DONE = "csrattrs-done"  # any answer: honoured, or defaults when there are none
    CERT_VALID = "cert-valid"
    CERT_INVALID = "cert-invalid"
    INSTALLED = "installed"  # the host stored the identity and switched to it
    INSTALL_FAILED = "install-failed"
    RETRY = "retry"  # transient: unreachable, 503 or 202 with Retry-After
    REFUSED = "refused"  # the registrar answered with a refusal
    GAVE_UP = "gave-up"  # retries exhausted
    REDIRECTED = "redirected"  # the one 3xx a pledge follows (RFC 8995 §5.6)


_P = PledgeState
_PE = PledgeEvent
_ACTIVE = (
    _P.CONNECTING,
    _P.REQUESTING_VOUCHER,
    _P.REPORTING_VOUCHER,
    _P.REPORTING_VOUCHER_FAILURE,
    _P.FETCHING_CACERTS,
    _P.FETCHING_CSRATTRS,
    _P.ENROLLING,
    _P.REPORTING_ENROLLMENT,
    _P.REPORTING_ENROLLMENT_FAILURE,
)

PLEDGE_TRANSITIONS: Mapping[tuple[PledgeState, PledgeEvent], PledgeState] = {
    # every active step retries in place and fails for good once retries run out
    **{(state, _PE.RETRY): state for state in _ACTIVE},
    **{(state, _PE.GAVE_UP): _P.FAILED for state in _ACTIVE},
    # a redirected request goes to the new origin as it is (verified TLS checks the new
    # server against the pin like any other); the voucher-request is the exception below
    **{(state, _PE.REDIRECTED): state for state in _ACTIVE if state is not _P.CONNECTING},
    (_P.IDLE, _PE.START): _P.CONNECTING,
    (_P.CONNECTING, _PE.CONNECTED): _P.REQUESTING_VOUCHER,
    (_P.CONNECTING, _PE.REFUSED): _P.FAILED,  # TLS alert: the registrar refuses our IDevID
    # every retry reconnects and re-records the registrar certificate (§5.1); after a 202 the
    # same signed voucher-request is resent (§5.6), after anything else a new one with a
    # fresh nonce (§5.2)
    (_P.REQUESTING_VOUCHER, _PE.RETRY): _P.CONNECTING,
    # another origin is another registrar: record its certificate, sign a request for it
    (_P.REQUESTING_VOUCHER, _PE.REDIRECTED): _P.CONNECTING,
    (_P.REQUESTING_VOUCHER, _PE.REFUSED): _P.FAILED,
    (_P.REQUESTING_VOUCHER, _PE.VOUCHER_VALID): _P.REPORTING_VOUCHER,
    (_P.REQUESTING_VOUCHER, _PE.VOUCHER_INVALID): _P.REPORTING_VOUCHER_FAILURE,
    (_P.REPORTING_VOUCHER, _PE.STATUS_SENT): _P.FETCHING_CACERTS,
    (_P.REPORTING_VOUCHER_FAILURE, _PE.STATUS_SENT): _P.FAILED,
    (_P.FETCHING_CACERTS, _PE.CACERTS_VALID): _P.FETCHING_CSRATTRS,
    (_P.FETCHING_CSRATTRS, _PE.CSRATTRS_DONE): _P.ENROLLING,
    (_P.FETCHING_CSRATTRS, _PE.REFUSED): _P.REPORTING_ENROLLMENT_FAILURE,
    (_P.FETCHING_CACERTS, _PE.CACERTS_INVALID): _P.REPORTING_ENROLLMENT_FAILURE,
    (_P.FETCHING_CACERTS, _PE.REFUSED): _P.REPORTING_ENROLLMENT_FAILURE,
    # §5.9.4: enrollstatus reports the installed result, so install comes first
    (_P.ENROLLING, _PE.CERT_VALID): _P.INSTALLING,
    (_P.INSTALLING, _PE.INSTALLED): _P.REPORTING_ENROLLMENT,
    (_P.INSTALLING, _PE.INSTALL_FAILED): _P.REPORTING_ENROLLMENT_FAILURE,
    (_P.ENROLLING, _PE.CERT_INVALID): _P.REPORTING_ENROLLMENT_FAILURE,
    (_P.ENROLLING, _PE.REFUSED): _P.REPORTING_ENROLLMENT_FAILURE,
    (_P.REPORTING_ENROLLMENT, _PE.STATUS_SENT): _P.ENROLLED,
    # the identity is installed: an undeliverable status report (§5.9.4 telemetry) does
    # not undo the enrollment
    (_P.REPORTING_ENROLLMENT, _PE.GAVE_UP): _P.ENROLLED,
    (_P.REPORTING_ENROLLMENT_FAILURE, _PE.STATUS_SENT): _P.FAILED,
}


class DiscoveryState(StrEnum):
    """Where a pledge stands in finding a registrar (RFC 8995 §4.1)."""

    IDLE = "idle"
    SEARCHING = "searching"  # one method looks for candidates, for at most its timeout
    TRYING = "trying"  # the pledge machine runs against one candidate (proxy or registrar)
    WAITING = "waiting"  # every method searched, every candidate set aside: back off
    ENROLLED = "enrolled"
    FAILED = "failed"  # the configured number of cycles ran out


class DiscoveryEvent(StrEnum):
    """What the discovery machine decided after an input (found, search done, candidate
    failed, wait over, enrolled): its transitions are its decisions."""

    START = "start"
    FOUND = "found"  # a search reported candidates
    SEARCH = "search"  # search the next method of this cycle
    TRY = "try"  # connect to the best candidate not set aside
    CYCLE_OVER = "cycle-over"  # nothing left to search or try: wait, then a new cycle
    ENROLLED = "enrolled"
    GAVE_UP = "gave-up"


_D = DiscoveryState
_DE = DiscoveryEvent

# RFC 8995 §4.1.1: methods in order, each candidate tried in turn, a failed one set aside
# for a while, the whole cycle repeated until a candidate enrolls the device.
DISCOVERY_TRANSITIONS: Mapping[tuple[DiscoveryState, DiscoveryEvent], DiscoveryState] = {
    (_D.IDLE, _DE.START): _D.SEARCHING,
    (_D.SEARCHING, _DE.FOUND): _D.SEARCHING,
    (_D.SEARCHING, _DE.SEARCH): _D.SEARCHING,
    (_D.SEARCHING, _DE.TRY): _D.TRYING,
    (_D.SEARCHING, _DE.CYCLE_OVER): _D.WAITING,
    (_D.SEARCHING, _DE.GAVE_UP): _D.FAILED,
    (_D.TRYING, _DE.TRY): _D.TRYING,
    (_D.TRYING, _DE.SEARCH): _D.SEARCHING,
    (_D.TRYING, _DE.CYCLE_OVER): _D.WAITING,
    (_D.TRYING, _DE.GAVE_UP): _D.FAILED,
    (_D.TRYING, _DE.ENROLLED): _D.ENROLLED,
    (_D.WAITING, _DE.SEARCH): _D.SEARCHING,
}


def _node(state: object) -> str:
    return "[*]" if state is None else str(state).replace("-", "_")


def render_mermaid(
    table: Mapping[tuple[K, E], S], *, initial: Iterable[S] = (), final: Iterable[S] = ()
) -> str:
    """A Mermaid ``stateDiagram-v2`` of a transition table, for the documentation.

    Edges between the same two states are merged, their events listed in table order.
    ``None`` as a source state (a record not yet created) is drawn as the start point.
    """
    edges: dict[tuple[str, str], list[str]] = {}
    for (source, event), target in table.items():
        edges.setdefault((_node(source), _node(target)), []).append(str(event))
    lines = ["stateDiagram-v2"]
    lines += [f"    [*] --> {_node(state)}" for state in initial]
    lines += [f"    {a} --> {b}: {', '.join(events)}" for (a, b), events in edges.items()]
    lines += [f"    {_node(state)} --> [*]" for state in final]
    return "\n".join(lines) + "\n"
