"""Registrar discovery (RFC 8995 §4), sans-IO: where a pledge may find a registrar.

A *candidate* is one place a pledge can open its provisional TLS connection to: a join proxy
(RFC 8995 §4.1.1, announced by GRASP ``AN_Proxy`` or DNS-SD ``_brski-proxy._tcp``) or a
registrar (DNS-SD ``_brski-registrar._tcp`` / ``_bootstrapks._tcp``, the vendor's well-known
registrar, or one configured by URL). Candidates carry where they came from, so the bootstrap
state can show which method and which candidate enrolled the device.

``Discovery`` is the sans-IO machine that decides where to look and what to try (RFC 8995
§4.1.1): methods searched in the configured order, each for at most its timeout; candidates
kept once (same host, port and zone), in method order then arrival; a candidate that fails is
set aside until ``now`` + a backoff that grows with its failures, and the next one is tried;
when nothing is left the cycle waits and starts again, until a candidate enrolls the device.
Its transition table is ``DISCOVERY_TRANSITIONS`` (``roles/states.py``). It takes ``now`` and
random bytes, and hands out ``Search``, ``Try``, ``Wait`` and ``GiveUp`` actions.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from urllib.parse import unquote, urlsplit

from zerotouch_plugin._checks import require_positive
from zerotouch_plugin.errors import ZerotouchError
from zerotouch_plugin.roles.pledge import RetryPolicy
from zerotouch_plugin.roles.states import (
    DISCOVERY_TRANSITIONS,
    DiscoveryEvent,
    DiscoveryState,
    transition,
)

__all__ = [
    "MAX_CANDIDATES",
    "Candidate",
    "CandidateState",
    "CandidateStatus",
    "Discovery",
    "DiscoveryAction",
    "DiscoveryConfig",
    "GiveUp",
    "Method",
    "Role",
    "Search",
    "Try",
    "Wait",
    "candidate_from_url",
    "is_host_name",
    "is_remote_name",
    "is_unicast",
]


class Method(StrEnum):
    """How a candidate was found; also the names of ``--discovery`` (RFC 8995 §4.1)."""

    CONFIGURED = "configured"  # --registrar URL / registrars in device.toml
    GRASP = "grasp"  # RFC 8990 M_FLOOD AN_Proxy on the link (RFC 8995 §4.1.1: MUST)
    MDNS = "mdns"  # DNS-SD over multicast DNS (RFC 6762/6763; RFC 8995 §4.1.2: MAY)
    DNS_SD = "dns-sd"  # unicast DNS-SD in the local domain (RFC 8995 §4.1.2: MAY)
    VENDOR = "vendor"  # the manufacturer's well-known registrar, last resort (§2.7)


class Role(StrEnum):
    """What answers at a candidate: a circuit proxy relays the pledge's TLS byte for byte."""

    PROXY = "proxy"
    REGISTRAR = "registrar"


@dataclass(frozen=True)
class Candidate:
    """One address to try: ``host`` is an IP literal or a DNS name; ``scope`` the interface of
    an IPv6 link-local address (``fe80::1%eth0``), else None; ``source`` says where the
    announcement came from (e.g. ``GRASP AN_Proxy from fe80::1%eth0``)."""

    method: Method
    role: Role
    host: str
    port: int
    scope: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.method, Method) or not isinstance(self.role, Role):
            raise TypeError("method and role must be Method and Role members")
        if not isinstance(self.host, str) or not self.host or "%" in self.host:
            raise ValueError(f"host must be an address or name without a zone: {self.host!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise TypeError("port must be an integer")
        if not 0 < self.port < 65536:
            raise ValueError(f"port out of range: {self.port}")
        if self.scope is not None and not self._link_local():
            raise ValueError(f"a scope is only meaningful for IPv6 link-local, not {self.host}")

    def _link_local(self) -> bool:
        try:
            address = ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return address.version == 6 and address.is_link_local

    @property
    def where(self) -> str:
        """``HOST:PORT`` as a person reads it (IPv6 bracketed, zone shown)."""
        host = f"{self.host}%{self.scope}" if self.scope else self.host
        return f"[{host}]:{self.port}" if ":" in self.host else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The https URL of the candidate; a zone is written ``%25`` (RFC 6874)."""
        host = f"{self.host}%25{self.scope}" if self.scope else self.host
        return (
            f"https://[{host}]:{self.port}" if ":" in self.host else f"https://{host}:{self.port}"
        )


def is_unicast(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether a discovered ``address`` may be connected to: not unspecified (which Linux
    connects to the host itself), loopback, multicast or the limited broadcast. An
    IPv4-mapped IPv6 address (``::ffff:127.0.0.1``, RFC 4291 §2.5.5.2) reaches its IPv4
    address, so that one is judged: an announcement from the link must not turn a pledge or
    a proxy towards the host's own services."""
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not (
        address.is_unspecified
        or address.is_loopback
        or address.is_multicast
        or address == ipaddress.IPv4Address("255.255.255.255")
    )


# a host name (RFC 1123 §2.1): letters, digits, inner hyphens, labels of 1..63 octets
_HOST_NAME = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)
# a last label the resolver reads as (part of) an IPv4 address: 127.1, 0x7f000001
_NUMBER = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]*")


def is_host_name(name: str) -> bool:
    """Whether ``name`` (without a final dot) is a DNS host name of at most 253 octets, which
    a URL carries as it is (RFC 1123 §2.1)."""
    return len(name) <= 253 and _HOST_NAME.fullmatch(name) is not None


def is_remote_name(name: str) -> bool:
    """Whether a discovered host name may be connected to: a host name (``is_host_name``)
    that is no IPv4 address in disguise (RFC 1123 §2.1: "127.1" or "0x7f000001" would
    reach what ``is_unicast`` refuses) and not ``localhost`` (RFC 6761 §6.3: the host itself)."""
    name = name.removesuffix(".").lower()
    last = name.rpartition(".")[2]
    return is_host_name(name) and _NUMBER.fullmatch(last) is None and last != "localhost"


def candidate_from_url(url: str, method: Method, *, source: str = "") -> Candidate:
    """A registrar candidate of an ``https://HOST[:PORT]`` URL (``--registrar``, the vendor
    URL); an IPv6 link-local host keeps its RFC 6874 zone (``[fe80::1%25eth0]``)."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"registrar URL {url!r} must be https://HOST[:PORT]")
    host, _, zone = unquote(parts.hostname).partition("%")
    return Candidate(method, Role.REGISTRAR, host, parts.port or 443, zone or None, source or url)


# ---------------------------------------------------------------------------------------------
# the machine

# Candidates held at once. Announcements come from anyone on the link (RFC 8990 §2.5.6.2,
# RFC 6762): a neighbour announcing a new address every cycle must not grow the table, the
# bootstrap state and the time each step takes without end.
MAX_CANDIDATES = 64


@dataclass(frozen=True)
class DiscoveryConfig:
    """The order of the methods, how long each one searches (seconds; ``timeouts`` overrides
    ``timeout`` per method), how long a failed candidate is set aside (``backoff``: its n-th
    failure waits ``backoff.delay(n)``, also the wait after a cycle that found nothing), and
    after how many cycles the machine gives up (0: never)."""

    methods: tuple[Method, ...]
    timeout: float = 2.0
    timeouts: Mapping[Method, float] = field(default_factory=dict)
    backoff: RetryPolicy = field(default_factory=RetryPolicy)
    cycles: int = 0

    def __post_init__(self) -> None:
        methods = tuple(self.methods)
        if not methods or not all(isinstance(m, Method) for m in methods):
            raise ValueError("methods must be one or more Method members")
        if len(set(methods)) != len(methods):
            raise ValueError("each method may appear once")
        object.__setattr__(self, "methods", methods)
        timeouts = dict(self.timeouts)
        for name, value in (("timeout", self.timeout), *timeouts.items()):
            require_positive(value, f"timeout of {name}", "a number of seconds")
        if not all(isinstance(m, Method) for m in timeouts):
            raise TypeError("timeouts must be keyed by Method")
        object.__setattr__(self, "timeouts", MappingProxyType(timeouts))
        if not isinstance(self.backoff, RetryPolicy):
            raise TypeError("backoff must be a RetryPolicy")
        if not isinstance(self.cycles, int) or isinstance(self.cycles, bool) or self.cycles < 0:
            raise ValueError("cycles must be an integer of 0 or more")

    def timeout_of(self, method: Method) -> float:
        return float(self.timeouts.get(method, self.timeout))


@dataclass(frozen=True)
class Search:
    """Look for candidates by ``method`` for at most ``timeout`` seconds, then report
    ``found`` (if anything) and ``search_done``."""

    method: Method
    timeout: float


@dataclass(frozen=True)
class Try:
    """Run the pledge machine against ``candidate``; report ``enrolled`` or
    ``candidate_failed``."""

    candidate: Candidate


@dataclass(frozen=True)
class Wait:
    """Nothing to search or try before ``seconds`` have passed; then report ``wait_over``."""

    seconds: float
    reason: str


@dataclass(frozen=True)
class GiveUp:
    """The configured number of cycles ran out without enrolling the device."""

    reason: str
    error: ZerotouchError | None


DiscoveryAction = Search | Try | Wait | GiveUp


class CandidateState(StrEnum):
    """``candidate/state`` of the bootstrap module."""

    UNTRIED = "untried"
    TRYING = "trying"
    FAILED = "failed"  # set aside until ``until``
    ENROLLED = "enrolled"


@dataclass(frozen=True)
class CandidateStatus:
    """One candidate as the bootstrap state shows it."""

    candidate: Candidate
    state: CandidateState
    failures: int = 0
    until: datetime | None = None  # set aside until then (state failed)
    error: str | None = None  # why it failed last


def _key(candidate: Candidate) -> tuple[str, int, str | None]:
    """Same place, whoever announced it: host (IP addresses compared as addresses), port,
    zone."""
    try:
        host = str(ipaddress.ip_address(candidate.host))
    except ValueError:
        host = candidate.host.lower().rstrip(".")
    return host, candidate.port, candidate.scope


class Discovery:
    """Finds the candidate that enrolls the device. ``start``, then feed what happens;
    every input returns the next action."""

    def __init__(self, config: DiscoveryConfig, *, random_bytes: Callable[[int], bytes]) -> None:
        if not isinstance(config, DiscoveryConfig):
            raise TypeError("config must be a DiscoveryConfig")
        self.config = config
        self._random = random_bytes
        self.state = DiscoveryState.IDLE
        self.history: list[tuple[DiscoveryEvent, DiscoveryState]] = []
        self.cycle = 0  # cycles started
        self.searching: Method | None = None
        self.enrolled_by: Candidate | None = None
        self._statuses: dict[tuple[str, int, str | None], CandidateStatus] = {}
        self._searched: list[Method] = []  # in this cycle
        self._tried: set[tuple[str, int, str | None]] = set()  # in this cycle
        self._trying: Candidate | None = None
        self._last_error: ZerotouchError | None = None

    @property
    def candidates(self) -> tuple[CandidateStatus, ...]:
        """Every candidate found so far: method order, then order of arrival."""
        order = {method: i for i, method in enumerate(self.config.methods)}
        indexed = enumerate(self._statuses.values())
        ranked = sorted(indexed, key=lambda item: (order[item[1].candidate.method], item[0]))
        return tuple(status for _, status in ranked)

    # -- inputs -------------------------------------------------------------------------------

    def start(self, *, now: datetime) -> DiscoveryAction:
        self.cycle = 1
        return self._search(self.config.methods[0], DiscoveryEvent.START)

    def found(self, method: Method, candidates: Sequence[Candidate]) -> None:
        """What a search reported; candidates seen before (by any method) keep their place,
        candidates of another method than the one searched are refused."""
        self._expect(DiscoveryState.SEARCHING)
        if method is not self.searching:
            raise ValueError(f"no {method} search is running")
        for candidate in candidates:
            if not isinstance(candidate, Candidate) or candidate.method is not method:
                raise ValueError(f"{candidate!r} is not a {method} candidate")
        for candidate in candidates:
            key = _key(candidate)
            if key not in self._statuses and not self._room():
                break
            self._statuses.setdefault(key, CandidateStatus(candidate, CandidateState.UNTRIED))
        self._advance(DiscoveryEvent.FOUND)

    def _room(self) -> bool:
        """Whether one more candidate fits in ``MAX_CANDIDATES``; when full, the failed ones
        are forgotten first (found again, they start afresh), then newcomers are refused."""
        if len(self._statuses) >= MAX_CANDIDATES:
            self._statuses = {
                key: status
                for key, status in self._statuses.items()
                if status.state is not CandidateState.FAILED
            }
        return len(self._statuses) < MAX_CANDIDATES

    def search_done(self, method: Method, *, now: datetime) -> DiscoveryAction:
        self._expect(DiscoveryState.SEARCHING)
        if method is not self.searching:
            raise ValueError(f"no {method} search is running")
        self._searched.append(method)
        self.searching = None
        return self._next(now)

    def candidate_failed(
        self, candidate: Candidate, error: ZerotouchError, *, now: datetime
    ) -> DiscoveryAction:
        """The pledge machine ended without enrolling at ``candidate``: set it aside for
        the backoff of its failure count (RFC 8995 §4.1.1: then the next one)."""
        key = self._expect_trying(candidate)
        status = self._statuses[key]
        failures = status.failures + 1
        delay = self.config.backoff.delay(min(failures, 64), self._fraction())
        self._statuses[key] = CandidateStatus(
            candidate,
            CandidateState.FAILED,
            failures,
            now + timedelta(seconds=delay),
            error.one_line(),
        )
        self._trying = None
        self._last_error = error
        return self._next(now)

    def enrolled(self, candidate: Candidate, *, now: datetime) -> None:
        key = self._expect_trying(candidate)
        old = self._statuses[key]
        self._statuses[key] = CandidateStatus(candidate, CandidateState.ENROLLED, old.failures)
        self._trying = None
        self.enrolled_by = candidate
        self._advance(DiscoveryEvent.ENROLLED)

    def wait_over(self, *, now: datetime) -> DiscoveryAction:
        """A new cycle: every method is searched again, every candidate may be tried again
        once its set-aside time has passed."""
        self._expect(DiscoveryState.WAITING)
        self.cycle += 1
        self._searched = []
        self._tried = set()
        return self._search(self.config.methods[0])

    # -- decisions ----------------------------------------------------------------------------

    def _next(self, now: datetime) -> DiscoveryAction:
        """Try the best candidate of the methods searched in this cycle that was not tried
        in it and is not set aside; else search the next method; else end the cycle."""
        for status in self.candidates:
            key = _key(status.candidate)
            ready = status.until is None or status.until <= now
            if status.candidate.method in self._searched and key not in self._tried and ready:
                self._tried.add(key)
                self._trying = status.candidate
                self._statuses[key] = CandidateStatus(
                    status.candidate, CandidateState.TRYING, status.failures, None, status.error
                )
                self._advance(DiscoveryEvent.TRY)
                return Try(status.candidate)
        remaining = [m for m in self.config.methods if m not in self._searched]
        if remaining:
            return self._search(remaining[0])
        if self.config.cycles and self.cycle >= self.config.cycles:
            self._advance(DiscoveryEvent.GAVE_UP)
            reason = (
                f"gave up after {self.cycle} round(s) through {', '.join(self.config.methods)}"
                f" ({len(self._statuses)} candidate(s) found)"
            )
            return GiveUp(reason, self._last_error)
        self._advance(DiscoveryEvent.CYCLE_OVER)
        return self._cycle_wait(now)

    def _cycle_wait(self, now: datetime) -> Wait:
        """The backoff of this cycle's number, shortened to the moment the first set-aside
        candidate becomes ready again."""
        delay = self.config.backoff.delay(min(self.cycle, 64), self._fraction())
        pending = [s.until for s in self._statuses.values() if s.until is not None]
        if pending:
            delay = min(delay, max(0.0, (min(pending) - now).total_seconds()))
        found = len(self._statuses)
        reason = f"cycle {self.cycle} through {', '.join(self.config.methods)}: " + (
            f"{found} candidate(s), none enrolled the device" if found else "nothing found"
        )
        return Wait(delay, reason)

    def _search(self, method: Method, event: DiscoveryEvent = DiscoveryEvent.SEARCH) -> Search:
        self._advance(event)
        self.searching = method
        return Search(method, self.config.timeout_of(method))

    # -- helpers ------------------------------------------------------------------------------

    def _fraction(self) -> float:
        return int.from_bytes(self._random(4), "big") / 2**32

    def _advance(self, event: DiscoveryEvent) -> None:
        self.state = transition(DISCOVERY_TRANSITIONS, self.state, event)
        self.history.append((event, self.state))

    def _expect(self, state: DiscoveryState) -> None:
        if self.state is not state:
            raise ValueError(f"not expected in discovery state {self.state}")

    def _expect_trying(self, candidate: Candidate) -> tuple[str, int, str | None]:
        self._expect(DiscoveryState.TRYING)
        if self._trying is None or _key(candidate) != _key(self._trying):
            raise ValueError(f"{candidate.where} is not the candidate being tried")
        return _key(candidate)
