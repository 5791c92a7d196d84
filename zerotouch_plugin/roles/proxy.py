"""Join proxy policy (RFC 8995 §4), sans-IO: limits, admission, and which registrar to use.

A BRSKI join proxy is a circuit proxy (RFC 8995 §4.3 "circuit proxy"): it relays the pledge's
TLS connection byte for byte to a registrar and never terminates TLS, so the registrar still
authenticates the pledge's IDevID. What the proxy decides is here, without sockets or clock:

* ``ProxyLimits``: how many connections it relays at once, how long a silent one lives, how
  long it waits for the registrar, how much it holds in memory per direction;
* ``Admission``: refuses the connection above the limit, in all or from one address, and says
  when to log, once per burst of refusals (a flood of pledges must not flood the log);
* ``RegistrarPool``: the registrars known (configured by URL or discovered by GRASP
  ``AN_join_registrar``, §4.3); one that does not answer is set aside for a growing backoff,
  so that pledges are not held on a dead registrar, and the next is tried, at most
  ``TRIES_PER_CONNECTION`` for one pledge connection.

``services/proxy.py`` does the I/O.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import unquote, urlsplit

from zerotouch_plugin._checks import require_count, require_positive
from zerotouch_plugin._text import is_decimal
from zerotouch_plugin.errors import ConfigError
from zerotouch_plugin.roles.discovery import MAX_CANDIDATES, Candidate, Method, Role

__all__ = [
    "FORGET_AFTER",
    "TRIES_PER_CONNECTION",
    "Admission",
    "CloseReason",
    "Endpoint",
    "ProxyLimits",
    "Refusal",
    "RegistrarPool",
    "parse_endpoint",
    "registrar_from_url",
]


class CloseReason(StrEnum):
    """Why a relayed connection ended (the close log line names it)."""

    PLEDGE_CLOSED = "pledge closed first"
    REGISTRAR_CLOSED = "registrar closed first"
    PLEDGE_RESET = "pledge reset the connection"
    REGISTRAR_RESET = "registrar reset the connection"
    IDLE = "idle timeout"
    SHUTDOWN = "proxy shutting down"
    ERROR = "relay error"


@dataclass(frozen=True)
class ProxyLimits:
    """What one proxy process allows; every relayed connection is bounded by these."""

    max_connections: int = 64  # relayed at once; the next is closed at accept
    max_connections_per_ip: int = 8  # relayed at once for one pledge address
    idle_timeout: float = 60.0  # seconds with no byte either way -> both sides closed
    connect_timeout: float = 5.0  # seconds for the TCP connection to the registrar
    buffer_size: int = 16384  # bytes read per step per direction (memory bound)
    backoff: float = 1.0  # seconds a registrar that failed is set aside, doubled per failure
    max_backoff: float = 30.0

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_connections_per_ip", "buffer_size"):
            require_count(getattr(self, name), name)
        for name in ("idle_timeout", "connect_timeout", "backoff", "max_backoff"):
            require_positive(getattr(self, name), name)
        if self.max_backoff < self.backoff:
            raise ValueError("max_backoff must not be below backoff")


@dataclass(frozen=True)
class Endpoint:
    """A listening address: ``host`` an IP literal (``::`` for all), ``scope`` the interface
    of an IPv6 link-local address."""

    host: str
    port: int
    scope: str | None = None

    def __post_init__(self) -> None:
        try:
            address = ipaddress.ip_address(self.host)
        except ValueError:
            raise ValueError(f"listen host must be an IP address: {self.host!r}") from None
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise TypeError("port must be an integer")
        if not 0 <= self.port < 65536:
            raise ValueError(f"port out of range: {self.port}")
        if self.scope is not None and not (address.version == 6 and address.is_link_local):
            raise ValueError(f"a scope is only meaningful for IPv6 link-local, not {self.host}")

    @property
    def host_with_scope(self) -> str:
        """What ``getaddrinfo`` takes (``fe80::1%eth0``)."""
        return f"{self.host}%{self.scope}" if self.scope else self.host

    def shown(self, port: int | None = None) -> str:
        """``HOST:PORT`` with IPv6 bracketed; ``port`` replaces 0 by the bound port."""
        host = self.host_with_scope
        where = f"[{host}]" if ":" in host else host
        return f"{where}:{self.port if port is None else port}"


def parse_endpoint(text: str) -> Endpoint:
    """``127.0.0.1:8443``, ``[::]:8443`` or ``[fe80::1%eth0]:8443`` (RFC 4007 §11 zone)."""
    host, sep, port = text.rpartition(":")
    if not sep or not is_decimal(port):
        raise ConfigError(f"listen {text!r} is not HOST:PORT (IPv6 as [ADDRESS]:PORT)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(f"listen {text!r}: write an IPv6 address in brackets, [ADDRESS]:PORT")
    address, _, scope = host.partition("%")
    try:
        return Endpoint(address, int(port), scope or None)
    except ValueError as exc:
        raise ConfigError(f"listen {text!r}: {exc}") from None


def registrar_from_url(url: str) -> Candidate:
    """The registrar of ``--registrar https://HOST[:PORT]``; a link-local zone is written
    ``%25`` in a URL (RFC 6874 §2)."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc or parts.path not in ("", "/"):
        raise ConfigError(f"registrar URL {url!r} must be https://HOST[:PORT]")
    netloc = unquote(parts.netloc.rpartition("@")[2])
    if netloc.startswith("["):
        host, _, rest = netloc[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        host, _, port_text = netloc.partition(":")
    address, _, scope = host.partition("%")
    try:
        port = int(port_text) if port_text else 443
        return Candidate(
            Method.CONFIGURED, Role.REGISTRAR, address, port, scope or None, source=url
        )
    except ValueError as exc:
        raise ConfigError(f"registrar URL {url!r}: {exc}") from None


@dataclass(frozen=True)
class Refusal:
    """A connection refused at a limit; ``log`` is true for the first of a burst; ``active``
    the connections relayed, ``source`` those from the refused one's address."""

    log: bool
    active: int
    source: int = 0

    @property
    def reason(self) -> str:
        """Which limit refused it, for the log line."""
        if self.source:
            return f"{self.source} connections relayed from that address (--max-connections-per-ip)"
        return f"{self.active} connections relayed (--max-connections)"


class Admission:
    """Counts relayed connections against ``max_connections`` in all and ``max_per_ip`` per
    pledge address, so that one host on the link cannot take every slot. A burst of refusals
    is logged once: the first refusal says so, and the next admitted connection reports how
    many were refused in between (``admit`` returns that count)."""

    def __init__(self, max_connections: int, max_per_ip: int | None = None) -> None:
        if max_connections < 1 or (max_per_ip is not None and max_per_ip < 1):
            raise ValueError("max_connections and max_per_ip must be at least 1")
        self.max_connections = max_connections
        self.max_per_ip = max_connections if max_per_ip is None else max_per_ip
        self.active = 0
        self.refused_total = 0
        self._burst = 0
        self._per_ip: Counter[str] = Counter()

    def admit(self, ip: str = "") -> int | Refusal:
        """Either the number refused since the last admitted connection (0 if none), with
        this connection from ``ip`` counted as active, or a ``Refusal``."""
        if self.active >= self.max_connections or self._per_ip[ip] >= self.max_per_ip:
            self._burst += 1
            self.refused_total += 1
            own = self._per_ip[ip] if self.active < self.max_connections else 0
            return Refusal(log=self._burst == 1, active=self.active, source=own)
        self.active += 1
        self._per_ip[ip] += 1
        burst, self._burst = self._burst, 0
        return burst

    def release(self, ip: str = "") -> None:
        if self.active < 1 or self._per_ip[ip] < 1:
            raise ValueError("release without admit")
        self.active -= 1
        self._per_ip[ip] -= 1
        if not self._per_ip[ip]:
            del self._per_ip[ip]


@dataclass
class _Standing:
    failures: int = 0
    until: float = 0.0  # monotonic time before which the registrar is set aside


_Address = tuple[str, int, str | None]


def _address(candidate: Candidate) -> _Address:
    """A registrar is its address: the same one announced again (another session id, another
    ``source`` text) keeps its standing."""
    return (candidate.host, candidate.port, candidate.scope)


# How long a discovered registrar is kept after it was last heard: the default lifetime of
# an announcement (RFC 8995 §4.1.1 shows ttl 180000 ms), three times the 60 s flooding
# interval RFC 8995 §4.3 suggests for AN_join_registrar.
FORGET_AFTER = 180.0


# Registrars one pledge connection tries. Announcements come from anyone on the link: with
# MAX_CANDIDATES registrars that never answer, a pledge would otherwise be held for
# MAX_CANDIDATES x connect_timeout. Those that failed are set aside, so the next connection
# tries the next ones; a connection waits at most (1 + this) x connect_timeout, the wait for
# a first registrar included.
TRIES_PER_CONNECTION = 3


@dataclass
class RegistrarPool:
    """Registrars in order of preference; ``now`` is any monotonic clock, in seconds."""

    limits: ProxyLimits
    candidates: tuple[Candidate, ...] = ()
    _standing: dict[_Address, _Standing] = field(default_factory=dict)
    _heard: dict[_Address, float] = field(default_factory=dict)

    def heard(self, found: Sequence[Candidate], now: float) -> None:
        """What one discovery search found at ``now``. A search returns the first
        announcements to arrive, not every registrar on the link, so those known stay (in
        their order, new ones after them) until none was heard for ``FORGET_AFTER`` seconds;
        at most ``MAX_CANDIDATES`` are kept, the most recently heard."""
        for candidate in found:
            self._heard[_address(candidate)] = now
        self._heard = {a: t for a, t in self._heard.items() if now - t < FORGET_AFTER}
        recent = sorted(self._heard, key=self._heard.__getitem__, reverse=True)
        kept = set(recent[:MAX_CANDIDATES])
        self._heard = {a: t for a, t in self._heard.items() if a in kept}
        self.update([c for c in (*self.candidates, *found) if _address(c) in kept])

    def update(self, found: Sequence[Candidate]) -> None:
        """Replace the known registrars by what discovery found (in its order, one per
        address); one still known keeps its backoff."""
        unique: dict[_Address, Candidate] = {}
        for candidate in found:
            unique.setdefault(_address(candidate), candidate)
        self.candidates = tuple(unique.values())
        self._standing = {a: s for a, s in self._standing.items() if a in unique}

    def usable(self, now: float) -> list[Candidate]:
        """The registrars one pledge connection tries now, in order, at most
        ``TRIES_PER_CONNECTION``; those set aside are left out."""
        return [
            c for c in self.candidates if self._standing.get(_address(c), _Standing()).until <= now
        ][:TRIES_PER_CONNECTION]

    def set_aside_until(self, now: float) -> float | None:
        """When the first registrar set aside comes back (None if none is set aside)."""
        times = [s.until for s in self._standing.values() if s.until > now]
        return min(times) if times else None

    def failed(self, candidate: Candidate, now: float) -> float:
        """Set ``candidate`` aside; returns for how many seconds (doubling per failure)."""
        standing = self._standing.setdefault(_address(candidate), _Standing())
        standing.failures += 1
        delay = min(self.limits.max_backoff, self.limits.backoff * 2.0 ** (standing.failures - 1))
        standing.until = now + delay
        return delay

    def succeeded(self, candidate: Candidate) -> None:
        self._standing.pop(_address(candidate), None)
