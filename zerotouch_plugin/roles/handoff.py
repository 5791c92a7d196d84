"""Day-0 hand-off decisions at the registrar, sans-IO.

After a successful enrollstatus (RFC 8995 §5.9.4) the registrar pushes the device's day-0
configuration over NETCONF/TLS (RFC 7589). This module decides, from data handed in, where
to connect, which RPCs to send, whether the server is the device we enrolled, and what to do
after an attempt (done, retry at a given time, or give up); ``services/handoff.py`` does the
I/O. Nothing here opens a socket or reads the clock: ``now`` and a random number come in.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from cryptography import x509

from zerotouch_plugin._checks import require_count, require_positive
from zerotouch_plugin._text import is_decimal
from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.config import is_dns_label
from zerotouch_plugin.errors import (
    CertificateError,
    Conflict,
    InvalidInput,
    NotFound,
    UnsupportedOperation,
    ZerotouchError,
)
from zerotouch_plugin.roles.backoff import Backoff
from zerotouch_plugin.roles.records import ManagementRow
from zerotouch_plugin.roles.states import RegistrarDeviceState, transition

__all__ = [
    "HANDOFF_TRANSITIONS",
    "STARTUP_CAPABILITY",
    "WRITABLE_RUNNING_CAPABILITY",
    "AttemptFailure",
    "Decision",
    "FailureKind",
    "HandoffEvent",
    "HandoffPolicy",
    "HandoffState",
    "Plan",
    "Target",
    "after_attempt",
    "backoff_delay",
    "check_device_certificate",
    "handoff_rpcs",
    "management_target",
    "parse_address",
    "plan_after_enrollstatus",
    "plan_repush",
    "reported_management",
    "unusable_ports",
]

WRITABLE_RUNNING_CAPABILITY = "urn:ietf:params:netconf:capability:writable-running:1.0"
STARTUP_CAPABILITY = "urn:ietf:params:netconf:capability:startup:1.0"
_NETCONF_NS = "urn:ietf:params:xml:ns:netconf:base:1.0"


class HandoffState(StrEnum):
    """What the admin API shows for a device's hand-off."""

    NONE = "none"  # nothing to push (no day-0 configuration, or no successful enrollstatus)
    PENDING = "pending"  # queued or waiting for its next attempt
    APPLIED = "applied"  # edit-config and copy-config succeeded
    FAILED = "failed"  # gave up: retries exhausted, or a failure retrying cannot fix


class HandoffEvent(StrEnum):
    QUEUED = "queued"  # successful enrollstatus with configuration and an address
    NO_TARGET = "no-target"  # successful enrollstatus with configuration but no address
    APPLIED = "applied"
    RETRY = "retry"
    GAVE_UP = "gave-up"
    REPUSHED = "repushed"  # the operator asked for the configuration to be pushed again


_S = HandoffState
_E = HandoffEvent

HANDOFF_TRANSITIONS: Mapping[tuple[HandoffState, HandoffEvent], HandoffState] = {
    # a new successful enrollstatus (re-bootstrap, re-enrollment) starts over from any state
    **{(state, _E.QUEUED): _S.PENDING for state in HandoffState},
    **{(state, _E.NO_TARGET): _S.FAILED for state in HandoffState},
    # a re-push (the configuration changed) starts over from any state as well
    **{(state, _E.REPUSHED): _S.PENDING for state in HandoffState},
    (_S.PENDING, _E.APPLIED): _S.APPLIED,
    (_S.PENDING, _E.RETRY): _S.PENDING,
    (_S.PENDING, _E.GAVE_UP): _S.FAILED,
}


@dataclass(frozen=True)
class HandoffPolicy:
    """Retry schedule: attempt n+1 waits ``base_delay * 2**(n-1)`` s (capped), with jitter."""

    max_attempts: int = 8
    base_delay: float = 2.0
    max_delay: float = 300.0

    def __post_init__(self) -> None:
        require_count(self.max_attempts, "max_attempts")
        for name in ("base_delay", "max_delay"):
            require_positive(getattr(self, name), name, "a number of seconds")
        if self.max_delay < self.base_delay:
            raise ValueError("max_delay must not be below base_delay")


def backoff_delay(policy: HandoffPolicy, attempts: int, rand: float) -> float:
    """Seconds to wait after ``attempts`` failed attempts: exponential, capped, and spread
    over [d/2, d] by ``rand`` in [0, 1) so that many devices failing together (a switch
    reboot) do not retry in lockstep."""
    backoff = Backoff(policy.base_delay, 2.0, policy.max_delay, 0.5)
    return backoff.delay(max(attempts, 1), rand)


# ---------------------------------------------------------------------------------------------
# where to connect


@dataclass(frozen=True)
class Target:
    host: str
    port: int

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not isinstance(self.port, int):
            raise TypeError("host must be a string and port an integer")
        if not self.host or not 0 < self.port < 65536:
            raise ValueError(f"{self.host}:{self.port} is not a usable address")

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _is_host(text: str) -> bool:
    """An IPv4 address or a DNS host name (RFC 1123 §2.1: labels, at most 253 octets)."""
    name = text.lower().removesuffix(".")
    return 0 < len(name) <= 253 and all(is_dns_label(label) for label in name.split("."))


def parse_address(text: str) -> Target:
    """``HOST:PORT`` or ``[V6]:PORT`` (RFC 3986 §3.2.2: an IPv6 literal in brackets) as a
    Target; InvalidInput for anything else, a port of other than ASCII digits included."""
    host, sep, port = text.strip().rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    usable = (":" in host and _is_ip(host)) if bracketed else _is_host(host)
    digits = is_decimal(port) and len(port) <= 5
    if not sep or not usable or not digits or not 0 < int(port) < 65536:
        raise InvalidInput(f"{text!r} is not HOST:PORT")
    return Target(host, int(port))


# The listener ports an enrollstatus may report in reason-context.zerotouch-management.
_REPORTED_PORTS = ("netconf-tls-port", "netconf-ssh-port", "restconf-port")


def _reported(document: Mapping[str, Any]) -> Mapping[str, Any]:
    context = document.get("reason-context")
    management = context.get("zerotouch-management") if isinstance(context, Mapping) else None
    return management if isinstance(management, Mapping) else {}


def _usable_port(port: object) -> bool:
    return isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536


def _report_port(document: Mapping[str, Any], name: str = "netconf-tls-port") -> int | None:
    """``reason-context.zerotouch-management.<name>`` of an enrollstatus body, if usable."""
    port = _reported(document).get(name)
    return port if isinstance(port, int) and _usable_port(port) else None


def unusable_ports(document: Mapping[str, Any]) -> tuple[str, ...]:
    """The reported ports the device sent but that are no TCP port (1..65535 as a JSON
    integer): ignored, and worth a log line since the device's own report is wrong."""
    reported = _reported(document)
    return tuple(n for n in _REPORTED_PORTS if n in reported and not _usable_port(reported[n]))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def reported_management(
    *, peer_host: str | None, document: Mapping[str, Any], now: datetime
) -> ManagementRow | None:
    """What a successful enrollstatus (RFC 8995 §5.9.4) tells of the device's management
    listeners: the request's TCP peer with the ports of its reason-context (None for a port
    not reported). Recorded whether or not the device has day-0 configuration yet, so a later
    re-push can find it; None when the peer is not an IP address."""
    if peer_host is None or not _is_ip(peer_host):
        return None
    return ManagementRow(
        peer_host,
        _report_port(document),
        _report_port(document, "restconf-port"),
        now,
        netconf_ssh_port=_report_port(document, "netconf-ssh-port"),
    )


def management_target(
    *, override: str | None, peer_host: str | None, document: Mapping[str, Any]
) -> Target:
    """Where the device's NETCONF/TLS server is: the configured override (devices behind a
    proxy or NAT), else the TCP peer of the enrollstatus request with the port the device
    reported in its reason-context. InvalidInput when neither is known."""
    if override:
        return parse_address(override)
    port = _report_port(document)
    if port is None or not peer_host:
        raise InvalidInput(
            "no management address: the enrollstatus carries no "
            "reason-context.zerotouch-management.netconf-tls-port and no address override is "
            "set ('zerotouch registrar day0 --serial SN --address HOST:PORT')"
        )
    if not _is_ip(peer_host):
        raise InvalidInput(f"the enrollstatus peer {peer_host!r} is not an IP address")
    return Target(peer_host, port)


@dataclass(frozen=True)
class Plan:
    """What a successful enrollstatus starts: a pending hand-off to ``target``, or a failed
    one (``error``) when the device has configuration but no known address."""

    state: HandoffState
    target: Target | None
    error: str | None


def plan_after_enrollstatus(
    *,
    status: bool,
    configured: bool,
    override: str | None,
    peer_host: str | None,
    document: Mapping[str, Any],
) -> Plan | None:
    """None when there is nothing to do: a failed enrollstatus (the device has no usable
    LDevID, RFC 8995 §5.9.4) or no day-0 configuration for the device."""
    if not status or not configured:
        return None
    try:
        target = management_target(override=override, peer_host=peer_host, document=document)
    except ZerotouchError as exc:
        state = transition(HANDOFF_TRANSITIONS, _S.NONE, _E.NO_TARGET)
        return Plan(state, None, exc.message)
    return Plan(transition(HANDOFF_TRANSITIONS, _S.NONE, _E.QUEUED), target, None)


def plan_repush(
    *,
    serial: str,
    device_state: str | None,
    handoff_state: str,
    configured: bool,
    override: str | None,
    reported: str | None,
    known_target: str | None,
) -> Plan:
    """A hand-off the operator asks for again (e.g. after adding or changing the
    configuration): only to a device that confirmed its enrollment (RFC 8995 §5.9.4: it holds
    the LDevID the server check expects), with configuration, at the override, else the
    NETCONF/TLS address its last successful enrollstatus reported, else the target of its
    last hand-off (devices enrolled before reported addresses were recorded). NotFound or
    Conflict says what is missing."""
    if device_state is None:
        raise NotFound(f"device {serial} is not known to this registrar")
    if device_state != RegistrarDeviceState.ENROLL_CONFIRMED:
        raise Conflict(
            f"device {serial} is {device_state}, not enroll-confirmed: its hand-off starts "
            "with its successful enrollstatus"
        )
    if not configured:
        raise NotFound(
            f"no day-0 configuration for {serial} and no default "
            "('zerotouch registrar day0 --serial SN --file F')"
        )
    address = override or reported or known_target
    if not address:
        raise Conflict(
            f"no management address known for {serial}: its enrollstatus reported no "
            "netconf-tls-port; set one with 'zerotouch registrar day0 --serial SN --address "
            "HOST:PORT'"
        )
    state = transition(HANDOFF_TRANSITIONS, HandoffState(handoff_state), _E.REPUSHED)
    return Plan(state, parse_address(address), None)


# ---------------------------------------------------------------------------------------------
# who answers, and what to send


def check_device_certificate(
    cert: x509.Certificate | None,
    *,
    serial: str,
    domain_ca: x509.Certificate,
    issued_fingerprints: Collection[str],
    now: datetime,
) -> None:
    """Fail closed unless the NETCONF server presented an LDevID this registrar issued to
    ``serial`` (RFC 7589 §5: the client authenticates the server; the address alone proves
    nothing behind a NAT). The TLS layer checked the chain too; this check does not rely on it."""
    if cert is None:
        raise CertificateError(f"the NETCONF server at the address of {serial} sent no certificate")
    certs.verify_chain(cert, trust_anchors=[domain_ca], now=now, purpose="server")
    presented = certs.serial_number_of(cert)
    if presented != serial:
        raise CertificateError(
            f"the NETCONF server presented the certificate of {presented or 'no serial number'}"
            f", not the LDevID of {serial}"
        )
    if certs.fingerprint(cert) not in issued_fingerprints:
        raise CertificateError(
            f"the NETCONF server's certificate {certs.fingerprint(cert)} is not an LDevID this "
            f"registrar issued to {serial}"
        )


def handoff_rpcs(capabilities: Collection[str], config_xml: str) -> Sequence[str]:
    """The operations to send, in order (RFC 6241): edit-config merge into running, then
    copy-config running -> startup when the server has a separate startup datastore (without
    :startup the running datastore is the persistent one, RFC 6241 §8.7)."""
    if WRITABLE_RUNNING_CAPABILITY not in capabilities:
        raise UnsupportedOperation(
            "the device does not advertise :writable-running (RFC 6241 §8.2); day-0 hand-off "
            "writes to running"
        )
    rpcs = [
        "<edit-config><target><running/></target>"
        "<default-operation>merge</default-operation><error-option>rollback-on-error"
        f'</error-option><config xmlns="{_NETCONF_NS}">{config_xml}</config></edit-config>'
    ]
    if STARTUP_CAPABILITY in capabilities:
        rpcs.append(
            "<copy-config><target><startup/></target><source><running/></source></copy-config>"
        )
    return rpcs


# ---------------------------------------------------------------------------------------------
# after an attempt


class FailureKind(StrEnum):
    UNREACHABLE = "unreachable"  # connect refused, reset, timed out
    PROTOCOL = "protocol"  # hello or framing broken, reply unreadable
    UNTRUSTED = "untrusted"  # not the domain LDevID of this serial: never retried
    UNSUPPORTED = "unsupported"  # the device lacks a capability the hand-off needs
    NO_CONFIG = "no-config"  # configuration or address removed while the hand-off waited
    RPC_ERROR = "rpc-error"  # the device answered <rpc-error>
    INTERNAL = "internal-error"  # a fault of the registrar itself (its log has the traceback)


# RFC 6241 Appendix A error-tags a later attempt may not get again: another session holds a
# lock, the server is short of resources, or it failed for a reason of its own.
_TRANSIENT_TAGS = frozenset({"in-use", "lock-denied", "resource-denied", "operation-failed"})

_RETRYABLE: Mapping[FailureKind, bool] = {
    FailureKind.UNREACHABLE: True,
    FailureKind.PROTOCOL: True,
    FailureKind.UNTRUSTED: False,
    FailureKind.UNSUPPORTED: False,
    FailureKind.NO_CONFIG: False,
    FailureKind.INTERNAL: True,  # counted like any attempt, so it ends after max_attempts
}


@dataclass(frozen=True)
class AttemptFailure:
    kind: FailureKind
    message: str
    error_tag: str | None = None  # for RPC_ERROR

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", FailureKind(self.kind))
        if (self.kind is FailureKind.RPC_ERROR) != (self.error_tag is not None):
            raise ValueError("error_tag is given exactly for rpc-error failures")

    @property
    def retryable(self) -> bool:
        if self.kind is FailureKind.RPC_ERROR:
            return self.error_tag in _TRANSIENT_TAGS
        return _RETRYABLE[self.kind]


@dataclass(frozen=True)
class Decision:
    state: HandoffState
    attempts: int
    next_at: datetime | None
    error: str | None


def after_attempt(
    policy: HandoffPolicy,
    *,
    attempts: int,
    failure: AttemptFailure | None,
    now: datetime,
    rand: float,
) -> Decision:
    """The record after attempt number ``attempts + 1`` ended with ``failure`` (None: applied)."""
    done = attempts + 1
    if failure is None:
        state = transition(HANDOFF_TRANSITIONS, _S.PENDING, _E.APPLIED)
        return Decision(state, done, None, None)
    error = f"attempt {done}/{policy.max_attempts}: {failure.kind}: {failure.message}"
    if failure.retryable and done < policy.max_attempts:
        state = transition(HANDOFF_TRANSITIONS, _S.PENDING, _E.RETRY)
        wait = timedelta(seconds=backoff_delay(policy, done, rand))
        return Decision(state, done, now + wait, error)
    state = transition(HANDOFF_TRANSITIONS, _S.PENDING, _E.GAVE_UP)
    return Decision(state, done, None, error)
