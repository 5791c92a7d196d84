"""GRASP flood reception, sans-IO (RFC 8990 §2.5.6.2, §2.8.11; RFC 8995 §4.1.1, §4.3).

``FloodListener`` takes datagrams as they came off the link, with the sender's address and
``now`` (seconds on any monotonic clock), and decides: drop (and why: the counter keys of
``GraspCounters``) or accept, caching each flooded objective with its locator until its TTL
runs out. The rules it applies:

* a flood from a link-local address must carry loop count 1 in every objective (RFC 8990
  §2.5.6.2: "Floods with link-local source addresses and a loop count other than 1 are
  invalid, and such messages MUST be discarded"); a loop count of 0 is never valid;
* a flood whose session id and initiator were seen within ``duplicate_window`` seconds
  (twice GRASP_DEF_TIMEOUT, as §2.5.6.2 asks of relays) is a duplicate;
* each objective is cached under its name and locator; a later flood with the same pair
  overwrites it, another locator makes another entry (§2.8.11); an entry expires ``ttl`` ms
  after it was received, never when ttl is 0 (§2.8.11: "zero indicates an indefinite
  lifetime").

Every table is bounded (``max_sessions``, ``max_entries``, ``max_per_sender``), so a
neighbour sending thousands of floods a second cannot grow memory; what it costs is one
bounded decode per datagram. ``relay`` is the relaying rule for a node with several GRASP
interfaces; ``candidate_for`` turns a cached announcement into a discovery ``Candidate``.
"""

from __future__ import annotations

import ipaddress
from collections import Counter, OrderedDict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from zerotouch_plugin.artifacts.grasp import (
    AN_JOIN_REGISTRAR,
    AN_PROXY,
    GRASP_DEF_MAX_SIZE,
    GRASP_DEF_TIMEOUT,
    IPPROTO_TCP,
    O_FQDN_LOCATOR,
    Flood,
    IPAddress,
    Locator,
    O_IPv4_LOCATOR,
    O_IPv6_LOCATOR,
    Objective,
    decode_flood,
)
from zerotouch_plugin.errors import GraspError
from zerotouch_plugin.roles.discovery import (
    Candidate,
    Method,
    Role,
    is_remote_name,
    is_unicast,
)

__all__ = [
    "BENIGN",
    "ROLE_BY_OBJECTIVE",
    "Announcement",
    "FloodListener",
    "GraspCounters",
    "Received",
    "candidate_for",
    "relay",
]

# What answers at the locator of each BRSKI objective.
ROLE_BY_OBJECTIVE: Final[Mapping[str, Role]] = {
    AN_PROXY: Role.PROXY,  # RFC 8995 §4.1.1: a join proxy, for pledges
    AN_JOIN_REGISTRAR: Role.REGISTRAR,  # RFC 8995 §4.3: a registrar, for join proxies
}

# Drop reasons that a well-behaved neighbour causes too: another GRASP message type
# (M_DISCOVERY is multicast as well), objectives this listener does not want, the copies a
# relay sends; logged at debug level. Every other reason is logged as a warning.
BENIGN: Final = frozenset({"message-type", "objective", "duplicate"})


@dataclass
class GraspCounters:
    """What a listener did with the datagrams it read: ``received`` all of them,
    ``accepted`` the floods it kept, ``dropped`` the rest by reason (``oversized``, ``cbor``,
    ``limits``, ``structure``, ``message-type``, ``sender``, ``loop-count``, ``duplicate``,
    ``objective``; a finder adds ``locator`` and ``value`` for announcements it cannot use)."""

    received: int = 0
    accepted: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def snapshot(self) -> dict[str, object]:
        return {
            "received": self.received,
            "accepted": self.accepted,
            "dropped": dict(sorted(self.dropped.items())),
        }


@dataclass(frozen=True)
class Announcement:
    """One flooded objective as cached: ``sender`` is the flood's source address (no zone),
    ``interface`` where it came in; ``received`` and ``expires`` are on the caller's clock
    (``expires`` None: indefinite)."""

    objective: Objective
    locator: Locator | None
    sender: str
    interface: str | None
    session_id: int
    initiator: IPAddress
    received: float
    expires: float | None

    def alive(self, now: float) -> bool:
        return self.expires is None or now < self.expires


@dataclass(frozen=True)
class Received:
    """The verdict on one datagram: ``dropped`` is the reason (a counter key) or None;
    ``detail`` says what was wrong, for the log line; ``fresh`` the announcements it brought."""

    dropped: str | None
    detail: str = ""
    flood: Flood | None = None
    fresh: tuple[Announcement, ...] = ()


def _sender_address(sender: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(sender.split("%", 1)[0])


class FloodListener:
    """The receiving side of GRASP flooding for one interface (see the module docstring).

    ``objectives``: the objective names to cache (None: all). Names from the link appear in
    drop details as ``repr``, so no control character reaches a log line. Not thread-safe;
    one event loop drives it.
    """

    def __init__(
        self,
        *,
        objectives: Collection[str] | None = None,
        counters: GraspCounters | None = None,
        max_size: int = GRASP_DEF_MAX_SIZE,
        duplicate_window: float = 2 * GRASP_DEF_TIMEOUT / 1000,
        max_sessions: int = 4096,
        max_entries: int = 256,
        max_per_sender: int = 8,
    ) -> None:
        if max_sessions < 1 or max_entries < 1 or max_per_sender < 1:
            raise ValueError("cache sizes must be positive")
        self.objectives = frozenset(objectives) if objectives is not None else None
        self.counters = counters if counters is not None else GraspCounters()
        self.max_size = max_size
        self.duplicate_window = duplicate_window
        self.max_sessions = max_sessions
        self.max_entries = max_entries
        self.max_per_sender = max_per_sender
        self._sessions: OrderedDict[tuple[int, IPAddress], float] = OrderedDict()
        self._entries: OrderedDict[tuple[str, Locator | None], Announcement] = OrderedDict()

    @property
    def sizes(self) -> dict[str, int]:
        """How many sessions (for duplicate suppression) and announcements are held."""
        return {"sessions": len(self._sessions), "entries": len(self._entries)}

    def _drop(self, reason: str, detail: str) -> Received:
        self.counters.dropped[reason] += 1
        return Received(dropped=reason, detail=detail)

    def receive(
        self, data: bytes, *, sender: str, interface: str | None = None, now: float
    ) -> Received:
        """Judge one datagram from ``sender`` (an IP address, a ``%zone`` is ignored)."""
        self.counters.received += 1
        try:
            flood = decode_flood(data, max_size=self.max_size)
        except GraspError as exc:
            return self._drop(exc.kind, str(exc))
        try:
            source = _sender_address(sender)
        except ValueError:
            return self._drop("sender", f"sender {sender!r} is not an IP address")
        for objective in flood.objectives:
            if objective.loop_count == 0:
                return self._drop("loop-count", f"objective {objective.name!r} has loop count 0")
            if source.version == 6 and source.is_link_local and objective.loop_count != 1:
                return self._drop(
                    "loop-count",
                    f"objective {objective.name!r} has loop count {objective.loop_count} in a "
                    "flood from a link-local address (must be 1, RFC 8990 §2.5.6.2)",
                )
        key = (flood.session_id, flood.initiator)
        self._forget_sessions(now)
        if key in self._sessions:
            return self._drop(
                "duplicate", f"session {flood.session_id} of {flood.initiator} seen already"
            )
        self._sessions[key] = now
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
        wanted = [
            (objective, locator)
            for objective, locator in flood.entries
            if self.objectives is None or objective.name in self.objectives
        ]
        if not wanted:
            names = ", ".join(repr(objective.name) for objective in flood.objectives)
            return self._drop("objective", f"objectives {names} not listened for")
        expires = None if flood.ttl == 0 else now + flood.ttl / 1000
        fresh = tuple(
            Announcement(
                objective=objective,
                locator=locator,
                sender=source.compressed,
                interface=interface,
                session_id=flood.session_id,
                initiator=flood.initiator,
                received=now,
                expires=expires,
            )
            for objective, locator in wanted
        )
        for announcement in fresh:
            self._store(announcement, now)
        self.counters.accepted += 1
        return Received(dropped=None, flood=flood, fresh=fresh)

    def _forget_sessions(self, now: float) -> None:
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if now - oldest < self.duplicate_window:
                break
            self._sessions.popitem(last=False)

    def _store(self, announcement: Announcement, now: float) -> None:
        key = (announcement.objective.name, announcement.locator)
        self._entries.pop(key, None)
        self._entries[key] = announcement
        same_sender = [
            other for other, held in self._entries.items() if held.sender == announcement.sender
        ]
        for other in same_sender[: max(0, len(same_sender) - self.max_per_sender)]:
            del self._entries[other]
        if len(self._entries) > self.max_entries:
            self._purge(now)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def _purge(self, now: float) -> None:
        for key in [key for key, held in self._entries.items() if not held.alive(now)]:
            del self._entries[key]

    def announcements(self, now: float, objective: str | None = None) -> list[Announcement]:
        """The cached announcements still alive at ``now`` (least recently refreshed first),
        of ``objective`` or of all; expired ones are forgotten."""
        self._purge(now)
        return [
            held
            for held in self._entries.values()
            if objective is None or held.objective.name == objective
        ]


def relay(flood: Flood) -> Flood | None:
    """The flood a node with several GRASP interfaces re-issues on its other interfaces
    (RFC 8990 §2.5.6.2): same session id and initiator, each loop count decremented; None
    when the first objective's count reaches zero (it is not relayed). Other objectives that
    reach zero are left out. The caller applies the duplicate and rate limits."""
    first = flood.entries[0][0]
    if first.loop_count <= 1:
        return None
    entries = tuple(
        (replace(objective, loop_count=objective.loop_count - 1), locator)
        for objective, locator in flood.entries
        if objective.loop_count > 1
    )
    return replace(flood, entries=entries)


def candidate_for(
    announcement: Announcement, *, role: Role | None = None, protocol: int = IPPROTO_TCP
) -> Candidate:
    """The place to connect to that ``announcement`` names; ``ValueError`` saying why not
    when its locator is unusable (null, another protocol, no port, not a unicast address, a
    link-local address without the interface it came in on, an FQDN that is no host name
    or names the host itself).

    ``role`` defaults to the one ``ROLE_BY_OBJECTIVE`` gives the objective. A link-local
    locator is scoped to the interface the flood came in on (RFC 8990 §2.9.5.1 Note 1).
    """
    name = announcement.objective.name
    if role is None:
        if name not in ROLE_BY_OBJECTIVE:
            raise ValueError(f"no role known for objective {name}")
        role = ROLE_BY_OBJECTIVE[name]
    locator = announcement.locator
    if locator is None:
        raise ValueError(f"{name} with a null locator names no place to connect to")
    if locator.option not in (O_IPv6_LOCATOR, O_IPv4_LOCATOR, O_FQDN_LOCATOR):
        raise ValueError(f"{name} locator option {locator.option} is not usable")
    if locator.protocol != protocol:
        raise ValueError(f"{name} locator protocol {locator.protocol}, not {protocol}")
    if not locator.port:
        raise ValueError(f"{name} locator has no port")
    scope = None
    address = locator.address
    if address is None and not is_remote_name(locator.host):
        raise ValueError(f"{name} locator {locator.host!r} is not a host name to connect to")
    if address is not None:
        if not is_unicast(address):
            raise ValueError(f"{name} locator {address} is not a unicast address")
        if address.version == 6 and address.is_link_local:
            if not announcement.interface:
                raise ValueError(f"{name} locator {address} is link-local, interface unknown")
            scope = announcement.interface
    sender = _sender_address(announcement.sender)
    zone = (
        f"%{announcement.interface}"
        if announcement.interface and sender.version == 6 and sender.is_link_local
        else ""
    )
    try:
        return Candidate(
            method=Method.GRASP,
            role=role,
            host=locator.host,
            port=locator.port,
            scope=scope,
            source=f"GRASP {name} from {announcement.sender}{zone}",
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} locator: {exc}") from None
