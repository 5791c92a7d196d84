"""The connection caps of a listener: a global cap and a cap per source address.

Every TLS listener admits its connections through a ``ConnectionGate``; the HTTPS listeners
(``_limits.GatedTlsSite``) add deadlines and overload answers on top. The gate also gives
ended connections' memory back (``return_freed_memory``), which is cheap only once a server
has settled its heap (``settle_heap``). This module needs no aiohttp, so a device that
listens only for NETCONF/TLS does not load it.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import time
from asyncio import sslproto
from collections import Counter
from enum import Enum

from zerotouch_plugin.config import ConnectionLimits

__all__ = [
    "OVERLOAD_RETRY_AFTER",
    "TLS_READ_BUFFER",
    "Admission",
    "ConnectionGate",
    "bound_tls_read_buffer",
    "overload_slots",
    "peer_ip",
    "return_freed_memory",
    "settle_heap",
]

log = logging.getLogger(__name__)

# Seconds between two log lines about refused connections of one listener (one per burst).
_REFUSAL_LOG_INTERVAL = 10.0
_TRIM_AFTER = 32  # ended connections worth a collection (fewer: left to the garbage collector)
_TRIM_DELAY = 1.0  # seconds after they ended before their memory is given back ...
_TRIM_QUIET = 8  # ... once at most this many connections are open (else a second later) ...
_TRIM_LONGEST = 30.0  # ... or this many seconds after they ended, busy or not
# Bytes asyncio's TLS protocol reads from a socket at once. It allocates them, zero-filled, for
# every connection (256 KiB by default): most of a TLS server's memory in a burst, 50 MB for 200
# open connections. Two whole TLS records (RFC 8446 §5.1: 2^14 bytes and their overhead) fit
# in 32 KiB; a longer message only takes more reads.
TLS_READ_BUFFER = 32 * 1024
# Net allocations of container objects between two collections of the youngest generation
# (CPython's default is 700; 3.13 raised it to 2,000).
_YOUNG_COLLECTION = 10_000
OVERLOAD_RETRY_AFTER = 2  # seconds an overloaded listener asks a client to wait
_OVERLOAD_SHARE = 4  # overload slots: a quarter of max_connections ...
_OVERLOAD_BOUNDS = (4, 64)  # ... and no fewer than 4, no more than 64


def overload_slots(limits: ConnectionLimits) -> int:
    """How many connections past the caps a listener answers with 503 at once."""
    low, high = _OVERLOAD_BOUNDS
    return min(high, max(low, limits.max_connections // _OVERLOAD_SHARE))


class Admission(Enum):
    """What the gate makes of a new connection."""

    ADMITTED = "admitted"  # within the caps
    OVERLOAD = "overload"  # past a cap, in an overload slot: to be answered 503
    REFUSED = "refused"  # past a cap with every overload slot taken: closed at once


def _load_libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None


_LIBC = _load_libc()


def return_freed_memory() -> None:
    """Free what ended connections left and give it back to the system.

    asyncio's TLS protocol and transport refer to each other, so a cut handshake is freed
    only by a full collection, which a quiet server may not run for a long time; glibc then
    keeps the freed heap unless trimmed (``malloc_trim``; skipped elsewhere).
    """
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def settle_heap() -> None:
    """Set the cyclic garbage collector up for serving, once start-up is done.

    Every object start-up built (modules, the compiled YANG schema, keys, pools) is left to
    reference counting alone: full collections, and ``return_freed_memory``, would otherwise
    walk them all each time, about 70 ms of held GIL for a registrar just loaded (115,000
    objects). The youngest generation is collected every ``_YOUNG_COLLECTION`` allocations
    instead of 700: a server's young survivors are the state of the requests in progress,
    walked again at every collection, while most of a request's garbage goes by reference
    counting; the cycles an ended connection leaves go at the next collection of their
    generation, or at ``return_freed_memory``.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(_YOUNG_COLLECTION, middle, old)


def bound_tls_read_buffer() -> None:
    """Make every TLS connection this process opens or accepts from now on read through a
    ``TLS_READ_BUFFER`` of its own instead of asyncio's 256 KiB, allocated and zero-filled per
    connection (a class setting of asyncio's TLS protocol: ``loop.start_tls`` takes no buffer
    size). Every TLS listener of the product (``GatedTlsSite``, NETCONF/TLS) calls it as it
    starts, so the process's client connections are bounded with it."""
    sslproto.SSLProtocol.max_size = min(sslproto.SSLProtocol.max_size, TLS_READ_BUFFER)


class ConnectionGate:
    """Counts the open connections of one listener, in all and per source address, and the
    overload slots of the HTTPS listeners."""

    def __init__(self, service: str, limits: ConnectionLimits, *, overload: int = 0) -> None:
        self._service = service
        self._limits = limits
        self._per_ip: Counter[str] = Counter()
        self._total = 0
        self._overload_slots = overload
        self._overload = 0
        self._refused = 0
        self._answered = 0
        self._last_log = -_REFUSAL_LOG_INTERVAL
        self._trim: asyncio.TimerHandle | None = None
        self._trim_armed = 0.0  # loop time the pending collection was first asked for
        self._ended = 0

    @property
    def open(self) -> int:
        return self._total

    def admit(self, ip: str) -> bool:
        """Take a slot for a connection from ``ip``; False (and a log line per burst) over a cap."""
        return self.admission(ip) is Admission.ADMITTED

    def admission(self, ip: str) -> Admission:
        """A slot for a connection from ``ip``: within the caps, else an overload slot while
        one is free, else none (a log line per burst says how many were refused)."""
        if self._total >= self._limits.max_connections:
            reason = f"{self._total} connections open (max_connections)"
        elif self._per_ip[ip] >= self._limits.max_connections_per_ip:
            reason = f"{self._per_ip[ip]} connections open from {ip} (max_connections_per_ip)"
        else:
            self._total += 1
            self._per_ip[ip] += 1
            return Admission.ADMITTED
        admission = Admission.REFUSED
        if self._overload < self._overload_slots:
            self._overload += 1
            self._answered += 1
            admission = Admission.OVERLOAD
        self._refused += 1
        now = time.monotonic()
        if now - self._last_log >= _REFUSAL_LOG_INTERVAL:
            answered = (
                f", {self._answered} of them answered 503 with Retry-After "
                f"{OVERLOAD_RETRY_AFTER} s in overload slots"
                if self._overload_slots
                else ""
            )
            log.warning(
                "%s: refusing connections: %s; %d refused since the last report%s",
                self._service,
                reason,
                self._refused,
                answered,
            )
            self._refused = self._answered = 0
            self._last_log = now
        return admission

    def release_overload(self) -> None:
        self._overload -= 1
        self._ended_one()

    def release(self, ip: str) -> None:
        self._total -= 1
        self._per_ip[ip] -= 1
        if self._per_ip[ip] <= 0:
            del self._per_ip[ip]
        self._ended_one()

    def _ended_one(self) -> None:
        self._ended += 1
        if self._ended >= _TRIM_AFTER and self._trim is None:
            loop = asyncio.get_running_loop()
            self._trim_armed = loop.time()
            self._trim = loop.call_later(_TRIM_DELAY, self._trimmed)

    def _trimmed(self) -> None:
        """Collect once the listener has gone quiet: a full collection under a sustained
        burst costs every connection still open and frees little, while after a flood it
        returns the flood's memory. A listener that never goes quiet collects every
        ``_TRIM_LONGEST`` seconds."""
        loop = asyncio.get_running_loop()
        busy = self._total + self._overload > _TRIM_QUIET
        if busy and loop.time() - self._trim_armed < _TRIM_LONGEST:
            self._trim = loop.call_later(_TRIM_DELAY, self._trimmed)
            return
        self._trim = None
        self._ended = 0
        return_freed_memory()


def peer_ip(transport: asyncio.BaseTransport) -> tuple[str, str]:
    """(source address, "HOST:PORT") of a connection."""
    peer = transport.get_extra_info("peername")
    if not peer:
        return "?", "?"
    return str(peer[0]), f"{peer[0]}:{peer[1]}"
