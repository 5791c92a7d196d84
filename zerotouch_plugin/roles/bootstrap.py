"""Bootstrap state of the pledge agent, sans-IO: what the agent did, as YANG data.

The agent (``services/pledge_agent.py``) reports what happens (a run starts, an attempt
at a registrar, a step of the pledge machine, a wait, a failure, the enrollment) together
with ``now``; this model keeps the phase, timestamps, registrars tried, summaries of the
voucher, LDevID and trust anchors, the last error and a bounded event history, and renders
them as the RFC 7951 tree of ``/zerotouch-bootstrap:bootstrap``. Every call that changes
the phase returns a ``PhaseChange`` for the ``bootstrap-phase-change`` notification.

Event names (``event-name`` in the module) the agent records:

=====================  =======================================================
agent-started          the agent started (detail: an interrupted earlier run)
already-enrolled       started with a domain identity: no bootstrap
bootstrap-started      a run starts (at start, or by restart-bootstrap)
search-started         a discovery method searches (detail: method, timeout)
candidate-found        a new candidate (detail: method, role, address, source)
attempt-started        trying a candidate (detail: its URI)
connected ...          the pledge machine's events (``PledgeEvent``), except
                       start and retry: connected, voucher-valid,
                       voucher-invalid, status-sent, cacerts-valid, ...
waiting-retry          waiting before the next try (detail: why, how long)
retrying               the wait is over
attempt-failed         an attempt ended without enrollment (detail: why)
enrolled               identity installed, enrollstatus sent
failed                 stopped on an error retrying cannot fix
restart-requested      restart-bootstrap was called
factory-reset          the domain identity was forgotten
enroll-status-sent     the enrollstatus a restart had interrupted went out
enroll-status-failed   ... and could not be delivered (the identity stands)
ldevid-renewed         a renewed LDevID is installed (detail: its serial)
renewal-failed         a renewal attempt failed (detail: why; retried)
ldevid-expired         the LDevID expired before it could be renewed
sztp-<progress-type>   the SZTP path (``services/sztp_agent.py``): a step the device
                       reports, RFC 8572 §7.3 (sztp-config-complete, ...)
sztp-complete          SZTP onboarding complete (detail: the source)
already-bootstrapped   started after SZTP completed: no bootstrap
=====================  =======================================================
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cached_property
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.artifacts.voucher import Voucher, format_datetime, parse_datetime
from zerotouch_plugin.errors import ZerotouchError
from zerotouch_plugin.roles.discovery import Candidate, CandidateStatus, Method
from zerotouch_plugin.roles.states import PledgeEvent, PledgeState

__all__ = [
    "MODULE",
    "NOTIFICATION",
    "SZTP_SOURCE",
    "BootstrapPath",
    "BootstrapState",
    "Phase",
    "PhaseChange",
    "certificate_summary",
    "trust_anchor_summaries",
    "voucher_summary",
]

MODULE = "zerotouch-bootstrap"
NOTIFICATION = f"{MODULE}:bootstrap-phase-change"
SZTP_SOURCE = "sztp"  # registrar/tried source of an RFC 8572 bootstrap server
_PERSIST_VERSION = 1


class Phase(StrEnum):
    """``bootstrap-phase`` of the module."""

    FACTORY_DEFAULT = "factory-default"
    DISCOVERING = "discovering"
    REQUESTING_VOUCHER = "requesting-voucher"
    VOUCHER_ACCEPTED = "voucher-accepted"
    ENROLLING = "enrolling"
    ENROLLED = "enrolled"
    WAITING_RETRY = "waiting-retry"
    FAILED = "failed"


class BootstrapPath(StrEnum):
    """``bootstrap-path-type`` of the module: the protocol that onboarded the device."""

    BRSKI = "brski"  # RFC 8995
    SZTP = "sztp"  # RFC 8572


# Pledge machine state -> the phase it shows. A machine that failed hands over to the agent,
# which decides between waiting-retry and failed; enrolled comes from the agent too (after
# enrollstatus), so both keep the phase before them.
PHASE_OF_STATE: Mapping[PledgeState, Phase | None] = {
    PledgeState.IDLE: Phase.DISCOVERING,
    PledgeState.CONNECTING: Phase.REQUESTING_VOUCHER,
    PledgeState.REQUESTING_VOUCHER: Phase.REQUESTING_VOUCHER,
    PledgeState.REPORTING_VOUCHER: Phase.VOUCHER_ACCEPTED,
    PledgeState.REPORTING_VOUCHER_FAILURE: Phase.REQUESTING_VOUCHER,
    PledgeState.FETCHING_CACERTS: Phase.ENROLLING,
    PledgeState.FETCHING_CSRATTRS: Phase.ENROLLING,
    PledgeState.ENROLLING: Phase.ENROLLING,
    PledgeState.INSTALLING: Phase.ENROLLING,
    PledgeState.REPORTING_ENROLLMENT: Phase.ENROLLING,
    PledgeState.REPORTING_ENROLLMENT_FAILURE: Phase.ENROLLING,
    PledgeState.ENROLLED: None,
    PledgeState.FAILED: None,
}

# Machine events that are not history entries of their own: the agent records the run and
# the waits with more detail.
_QUIET_EVENTS = frozenset({PledgeEvent.START, PledgeEvent.RETRY})


def certificate_summary(cert: x509.Certificate) -> dict[str, Any]:
    """``certificate-summary`` of the module."""
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "not-before": format_datetime(cert.not_valid_before_utc),
        "not-after": format_datetime(cert.not_valid_after_utc),
        "fingerprint": certs.fingerprint(cert),
    }


def voucher_summary(voucher: Voucher) -> dict[str, Any]:
    """``voucher-summary`` of the module (RFC 8366 §5.3 fields that explain a decision)."""
    pinned = voucher.pinned_domain_certificate()
    summary: dict[str, Any] = {
        "serial-number": voucher.serial_number,
        "assertion": str(voucher.assertion),
        "created-on": format_datetime(voucher.created_on),
        "pinned-domain-cert-fingerprint": certs.fingerprint(pinned),
        "pinned-domain-cert-subject": pinned.subject.rfc4514_string(),
        # a voucher without nonce was accepted by configuration (RFC 8995 §7.2): worth
        # seeing, as it could have been issued long before this bootstrap
        "nonceless": voucher.nonce is None,
    }
    if voucher.expires_on is not None:
        summary["expires-on"] = format_datetime(voucher.expires_on)
    if voucher.nonce is not None:
        summary["nonce"] = voucher.nonce
    return summary


def trust_anchor_summaries(
    anchors: Sequence[x509.Certificate], pinned: x509.Certificate | None
) -> list[dict[str, Any]]:
    """The ``trust-anchor`` list: the pinned-domain-cert itself, or a CA from EST cacerts."""
    pinned_der = pinned.public_bytes(Encoding.DER) if pinned is not None else None
    out = []
    for anchor in anchors:
        source = (
            "pinned-domain-cert"
            if anchor.public_bytes(Encoding.DER) == pinned_der
            else "est-cacerts"
        )
        out.append({**certificate_summary(anchor), "source": source})
    return out


@dataclass(frozen=True)
class PhaseChange:
    """One ``bootstrap-phase-change`` notification."""

    phase: Phase
    previous: Phase
    time: datetime
    detail: str | None

    def notification(self) -> dict[str, Any]:
        """The notification's RFC 7951 members."""
        body: dict[str, Any] = {
            "phase": str(self.phase),
            "previous-phase": str(self.previous),
            "time": format_datetime(self.time),
        }
        if self.detail:
            body["detail"] = self.detail
        return body


@dataclass(frozen=True)
class _Event:
    sequence: int
    time: datetime
    event: str
    phase: Phase
    detail: str | None

    @cached_property
    def entry(self) -> dict[str, Any]:
        """The ``event`` list entry, rendered once: an event never changes, and the whole
        history is published and saved after every step (shared by every rendering: read
        only)."""
        return self.to_json()

    @cached_property
    def text(self) -> str:
        """``entry`` as compact JSON, encoded once (``BootstrapState.persisted_json``)."""
        return json.dumps(self.entry, separators=(",", ":"))

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "sequence": self.sequence,
            "time": format_datetime(self.time),
            "event": self.event,
            "phase": str(self.phase),
        }
        if self.detail:
            entry["detail"] = self.detail
        return entry

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> _Event:
        sequence = data["sequence"]
        if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 0:
            raise ValueError("event sequence must be a non-negative integer")
        detail = data.get("detail")
        if detail is not None and not isinstance(detail, str):
            raise ValueError("event detail must be a string")
        return cls(
            sequence, parse_datetime(data["time"]), str(data["event"]), Phase(data["phase"]), detail
        )


@dataclass(frozen=True)
class _Error:
    time: datetime
    reason: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"time": format_datetime(self.time), "reason": self.reason, "message": self.message}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> _Error:
        return cls(parse_datetime(data["time"]), str(data["reason"]), str(data["message"]))


@dataclass
class _Tried:
    last_attempt: datetime
    outcome: str = "in-progress"
    message: str | None = None
    source: str = Method.CONFIGURED  # a discovery method, or SZTP_SOURCE


def _address(candidate: Candidate) -> str:
    """An address as ``inet:host`` writes it: an IPv6 link-local one with its zone."""
    return f"{candidate.host}%{candidate.scope}" if candidate.scope else candidate.host


def candidate_entry(status: CandidateStatus) -> dict[str, Any]:
    """One ``discovery/candidate`` entry of the module."""
    candidate = status.candidate
    entry: dict[str, Any] = {
        "address": _address(candidate),
        "port": candidate.port,
        "method": str(candidate.method),
        "role": str(candidate.role),
        "uri": candidate.url,
        "state": str(status.state),
        "failures": status.failures,
    }
    if candidate.scope is not None:
        entry["interface"] = candidate.scope
    if candidate.source:
        entry["source"] = candidate.source
    if status.until is not None:
        entry["set-aside-until"] = format_datetime(status.until)
    if status.error:
        entry["last-error"] = status.error
    return entry


@dataclass
class _Discovery:
    """What the discovery machine shows: methods in order, cycle, the method searching,
    the candidates and the one that enrolled the device."""

    methods: tuple[Method, ...] = ()
    cycle: int = 0
    searching: Method | None = None
    candidates: tuple[CandidateStatus, ...] = ()
    enrolled_by: Candidate | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"methods": [str(m) for m in self.methods], "cycle": self.cycle}
        if self.searching is not None:
            body["searching"] = str(self.searching)
        if self.candidates:
            body["candidate"] = [candidate_entry(s) for s in self.candidates]
        if self.enrolled_by is not None:
            by = self.enrolled_by
            body["enrolled-by"] = {
                "method": str(by.method),
                "role": str(by.role),
                "address": _address(by),
                "port": by.port,
                "uri": by.url,
            }
        return body


class BootstrapState:
    """The bootstrap state of one device; see the module docstring for the event names."""

    def __init__(self, *, history_size: int = 64) -> None:
        if not isinstance(history_size, int) or isinstance(history_size, bool):
            raise TypeError("history_size must be an integer")
        if not 1 <= history_size <= 65535:
            raise ValueError("history_size must be between 1 and 65535 (uint16)")
        self.history_size = history_size
        self.phase = Phase.FACTORY_DEFAULT
        self.phase_since: datetime | None = None
        self.started: datetime | None = None
        self.completed: datetime | None = None
        self.attempts = 0
        self.next_attempt: datetime | None = None
        self.registrar_used: str | None = None
        self.path: BootstrapPath | None = None
        self.tried: dict[str, _Tried] = {}
        self.discovery: _Discovery | None = None
        self.voucher: dict[str, Any] | None = None
        self.ldevid: dict[str, Any] | None = None
        self.trust_anchors: list[dict[str, Any]] = []
        self.last_error: _Error | None = None
        self.events: deque[_Event] = deque(maxlen=history_size)
        self.sequence = 0
        self.interrupted: Phase | None = None  # phase of a run cut short by a restart

    # -- what happened ----------------------------------------------------------------------

    def record(
        self, event: str, *, now: datetime, phase: Phase | None = None, detail: str | None = None
    ) -> PhaseChange | None:
        """Add an event; with ``phase``, enter that phase (a change when it differs)."""
        previous = self.phase
        if phase is not None and phase is not previous:
            self.phase = phase
            self.phase_since = now
        self.sequence += 1
        self.events.append(_Event(self.sequence, now, event, self.phase, detail))
        if self.phase is previous:
            return None
        return PhaseChange(self.phase, previous, now, detail or event)

    def agent_started(self, *, now: datetime) -> PhaseChange | None:
        detail = None
        if self.interrupted is not None:
            detail = f"an earlier run was interrupted in phase {self.interrupted}"
        return self.record("agent-started", now=now, detail=detail)

    def already_enrolled(
        self,
        *,
        ldevid: x509.Certificate,
        anchors: Sequence[x509.Certificate],
        voucher: Voucher | None,
        now: datetime,
    ) -> PhaseChange | None:
        """Started with an identity (summaries rebuilt from what the device stored)."""
        self._identity(ldevid, anchors, voucher)
        self.path = BootstrapPath.BRSKI
        self.next_attempt = None
        self.last_error = None  # kept until enrolled (the module's last-error)
        subject = ldevid.subject.rfc4514_string()
        return self.record("already-enrolled", now=now, phase=Phase.ENROLLED, detail=subject)

    def run_started(self, *, now: datetime, detail: str | None = None) -> PhaseChange | None:
        self.started = now
        self.completed = None
        self.attempts = 0
        self.next_attempt = None
        self.tried = {}
        self.discovery = None
        self.registrar_used = None
        self.path = None
        self.voucher = self.ldevid = None
        self.trust_anchors = []
        self.last_error = None
        return self.record("bootstrap-started", now=now, phase=Phase.DISCOVERING, detail=detail)

    def attempt(
        self, uri: str, *, now: datetime, source: str = Method.CONFIGURED
    ) -> PhaseChange | None:
        self.attempts += 1
        self.next_attempt = None
        self.tried[uri] = _Tried(now, source=source)
        return self.record("attempt-started", now=now, phase=Phase.REQUESTING_VOUCHER, detail=uri)

    def discovery_seen(
        self,
        *,
        methods: Sequence[Method],
        cycle: int,
        searching: Method | None,
        candidates: Sequence[CandidateStatus],
        enrolled_by: Candidate | None,
    ) -> None:
        """The discovery machine's view (RFC 8995 §4.1): shown as ``discovery``."""
        self.discovery = _Discovery(
            tuple(methods), cycle, searching, tuple(candidates), enrolled_by
        )

    def search_started(
        self, method: Method, timeout: float, *, now: datetime
    ) -> PhaseChange | None:
        self.next_attempt = None
        # reading the configured registrars is no search of the network: no phase change
        return self.record(
            "search-started",
            now=now,
            phase=None if method is Method.CONFIGURED else Phase.DISCOVERING,
            detail=f"{method} for up to {timeout:g} s",
        )

    def candidate_found(self, candidate: Candidate, *, now: datetime) -> PhaseChange | None:
        detail = f"{candidate.method} {candidate.role} {candidate.where}"
        if candidate.source:
            detail += f" ({candidate.source})"
        return self.record("candidate-found", now=now, detail=detail)

    def machine_step(
        self, event: PledgeEvent, state: PledgeState, *, now: datetime
    ) -> PhaseChange | None:
        """A transition of the pledge machine (``Pledge.history``)."""
        if event in _QUIET_EVENTS:
            return None
        return self.record(str(event), now=now, phase=PHASE_OF_STATE[state])

    def voucher_accepted(self, voucher: Voucher) -> None:
        self.voucher = voucher_summary(voucher)

    def waiting(self, seconds: float, reason: str, *, now: datetime) -> PhaseChange | None:
        self.next_attempt = now + timedelta(seconds=seconds)
        return self.record(
            "waiting-retry",
            now=now,
            phase=Phase.WAITING_RETRY,
            detail=f"{reason}; next attempt in {seconds:.1f} s",
        )

    def retrying(self, state: PledgeState, *, now: datetime) -> PhaseChange | None:
        """A wait inside an attempt is over; the machine continues in ``state``."""
        self.next_attempt = None
        return self.record("retrying", now=now, phase=PHASE_OF_STATE[state])

    def attempt_failed(
        self, uri: str, error: ZerotouchError, *, now: datetime
    ) -> PhaseChange | None:
        tried = self.tried.setdefault(uri, _Tried(now))
        tried.outcome, tried.message = error.reason, error.message
        self.last_error = _Error(now, error.reason, error.message)
        return self.record("attempt-failed", now=now, detail=f"{uri}: {error.one_line()}")

    def enrolled(
        self,
        uri: str,
        *,
        ldevid: x509.Certificate,
        anchors: Sequence[x509.Certificate],
        voucher: Voucher,
        now: datetime,
        note: str | None = None,
    ) -> PhaseChange | None:
        tried = self.tried.setdefault(uri, _Tried(now))
        tried.outcome, tried.message = "ok", note
        self.registrar_used = uri
        self.path = BootstrapPath.BRSKI
        self.completed = now
        self.next_attempt = None
        self.last_error = None
        self._identity(ldevid, anchors, voucher)
        return self.record("enrolled", now=now, phase=Phase.ENROLLED, detail=note or uri)

    def sztp_complete(self, where: str, *, now: datetime) -> PhaseChange | None:
        """SZTP onboarded the device from the source ``where`` (RFC 8572 §5.6)."""
        tried = self.tried.get(where)
        if tried is not None:
            tried.outcome = "ok"
        self.registrar_used = where
        self.path = BootstrapPath.SZTP
        self.completed = now
        self.next_attempt = None
        self.last_error = None
        return self.record("sztp-complete", now=now, phase=Phase.ENROLLED, detail=where)

    def already_bootstrapped(self, where: str, *, now: datetime) -> PhaseChange | None:
        """Started after an earlier run onboarded the device by SZTP from ``where``."""
        self.path = BootstrapPath.SZTP
        return self.record("already-bootstrapped", now=now, phase=Phase.ENROLLED, detail=where)

    def failed(
        self, error: ZerotouchError, *, now: datetime, note: str | None = None
    ) -> PhaseChange | None:
        """Stopped for good (until restart-bootstrap); ``note`` says why it stopped."""
        self.next_attempt = None
        message = f"{note}: {error.message}" if note else error.message
        self.last_error = _Error(now, error.reason, message)
        return self.record(
            "failed", now=now, phase=Phase.FAILED, detail=f"{error.reason}: {message}"
        )

    def renewed(self, ldevid: x509.Certificate, *, now: datetime) -> PhaseChange | None:
        """A renewed LDevID is in use (RFC 7030 §4.2.2): its summary replaces the old one."""
        self.ldevid = certificate_summary(ldevid)
        return self.record("ldevid-renewed", now=now, detail=format(ldevid.serial_number, "x"))

    def forgotten(self, *, now: datetime) -> PhaseChange | None:
        """factory reset: the domain identity is gone."""
        self.voucher = self.ldevid = None
        self.trust_anchors = []
        self.registrar_used = None
        self.path = None
        self.completed = None
        return self.record("factory-reset", now=now, phase=Phase.FACTORY_DEFAULT)

    def _identity(
        self,
        ldevid: x509.Certificate,
        anchors: Sequence[x509.Certificate],
        voucher: Voucher | None,
    ) -> None:
        self.ldevid = certificate_summary(ldevid)
        pinned = voucher.pinned_domain_certificate() if voucher is not None else None
        self.trust_anchors = trust_anchor_summaries(anchors, pinned)
        self.voucher = voucher_summary(voucher) if voucher is not None else None

    # -- renderings -------------------------------------------------------------------------

    def to_yang(self) -> dict[str, Any]:
        """``{"zerotouch-bootstrap:bootstrap": {...}}`` (RFC 7951) for the operational state."""
        body: dict[str, Any] = {"phase": str(self.phase), "attempts": self.attempts}
        if self.path is not None:
            body["bootstrap-path"] = str(self.path)
        for name, value in (
            ("phase-since", self.phase_since),
            ("started", self.started),
            ("completed", self.completed),
            ("next-attempt", self.next_attempt),
        ):
            if value is not None:
                body[name] = format_datetime(value)
        registrar: dict[str, Any] = {}
        if self.registrar_used is not None:
            registrar["used"] = self.registrar_used
        if self.tried:
            registrar["tried"] = [
                {
                    "uri": uri,
                    "source": str(t.source),
                    "last-attempt": format_datetime(t.last_attempt),
                    "outcome": t.outcome,
                    **({"message": t.message} if t.message else {}),
                }
                for uri, t in self.tried.items()
            ]
        if registrar:
            body["registrar"] = registrar
        if self.discovery is not None:
            body["discovery"] = self.discovery.to_json()
        if self.voucher is not None:
            body["voucher"] = dict(self.voucher)
        if self.ldevid is not None:
            body["ldevid"] = dict(self.ldevid)
        if self.trust_anchors:
            body["trust-anchor"] = [dict(a) for a in self.trust_anchors]
        if self.last_error is not None:
            body["last-error"] = self.last_error.to_json()
        body["event-history-size"] = self.history_size
        if self.events:
            body["event"] = [e.entry for e in self.events]
        return {f"{MODULE}:bootstrap": body}

    def persisted(self) -> dict[str, Any]:
        """What survives a restart: the event history, the phase, the last error."""
        return {**self._persisted_head(), "events": [e.entry for e in self.events]}

    def persisted_json(self) -> bytes:
        """``persisted()`` as compact JSON; each event's text is encoded once, not at every
        save."""
        head = json.dumps(self._persisted_head(), separators=(",", ":"))
        events = ",".join(e.text for e in self.events)
        return f'{head[:-1]},"events":[{events}]}}'.encode()

    def _persisted_head(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "version": _PERSIST_VERSION,
            "phase": str(self.phase),
            "sequence": self.sequence,
        }
        if self.last_error is not None:
            data["last-error"] = self.last_error.to_json()
        return data

    def restore(self, data: Mapping[str, Any]) -> None:
        """Take back ``persisted()`` output; ValueError (nothing changed) if it is not that."""
        try:
            if data.get("version") != _PERSIST_VERSION:
                raise ValueError(f"unknown version {data.get('version')!r}")
            phase = Phase(data["phase"])
            sequence = data["sequence"]
            if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 0:
                raise ValueError("sequence must be a non-negative integer")
            events = [_Event.from_json(e) for e in data["events"]]
            error = _Error.from_json(data["last-error"]) if "last-error" in data else None
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a saved bootstrap state: {exc!r}") from None
        self.events.extend(events)
        self.sequence = max([sequence, *(e.sequence for e in events)])
        self.last_error = error
        busy = phase not in (Phase.FACTORY_DEFAULT, Phase.ENROLLED, Phase.FAILED)
        self.interrupted = phase if busy else None
