"""GRASP M_FLOOD codec (RFC 8990), sans-IO, as BRSKI discovery uses it (RFC 8995 §4.1.1, §4.3).

A join proxy floods ``AN_Proxy`` to the pledges on its links and a registrar floods
``AN_join_registrar`` to the proxies; both are Flood Synchronization messages (RFC 8990
§2.8.11) in CBOR::

    [M_FLOOD, session-id, initiator, ttl, +[objective, (locator-option / [])]]
    objective = [objective-name, objective-flags, loop-count, ?objective-value]    ; §2.10.1
    ipv6-locator-option = [O_IPv6_LOCATOR, bytes .size 16, transport-proto, port]  ; §2.9.5.1
    ipv4-locator-option = [O_IPv4_LOCATOR, bytes .size 4, transport-proto, port]   ; §2.9.5.2

The messages come from anyone on the link, so decoding is fenced: at most
``GRASP_DEF_MAX_SIZE`` octets (§2.6, §2.8.3), a check of the CBOR item structure before any
object is built (definite lengths only, no tags, no simple values but false/true/null, at most
``MAX_DEPTH`` nesting levels and ``MAX_ITEMS`` items, nothing after the message), so no
datagram costs more than one linear pass over 2048 octets. Everything wrong raises
``GraspError`` naming what and where, never another exception.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import cbor2

from zerotouch_plugin.errors import GraspError

__all__ = [
    "ABSENT",
    "ALL_GRASP_NEIGHBORS_4",
    "ALL_GRASP_NEIGHBORS_6",
    "AN_JOIN_REGISTRAR",
    "AN_PROXY",
    "F_DISC",
    "F_NEG",
    "F_NEG_DRY",
    "F_SYNCH",
    "GRASP_DEF_LOOPCT",
    "GRASP_DEF_MAX_SIZE",
    "GRASP_DEF_TIMEOUT",
    "GRASP_LISTEN_PORT",
    "IPPROTO_TCP",
    "IPPROTO_UDP",
    "MAX_DEPTH",
    "MAX_ITEMS",
    "M_DISCOVERY",
    "M_FLOOD",
    "M_INVALID",
    "M_NOOP",
    "O_FQDN_LOCATOR",
    "O_URI_LOCATOR",
    "SYNC_ONLY",
    "Flood",
    "IPAddress",
    "Locator",
    "O_IPv4_LOCATOR",
    "O_IPv6_LOCATOR",
    "Objective",
    "decode_flood",
    "encode_flood",
]

# Message types (RFC 8990 §4, "CDDL Specification of GRASP").
M_NOOP: Final = 0
M_DISCOVERY: Final = 1
M_RESPONSE: Final = 2
M_REQ_NEG: Final = 3
M_REQ_SYN: Final = 4
M_NEGOTIATE: Final = 5
M_END: Final = 6
M_WAIT: Final = 7
M_SYNCH: Final = 8
M_FLOOD: Final = 9
M_INVALID: Final = 99
_MESSAGE_NAMES: Final = {
    M_NOOP: "M_NOOP",
    M_DISCOVERY: "M_DISCOVERY",
    M_RESPONSE: "M_RESPONSE",
    M_REQ_NEG: "M_REQ_NEG",
    M_REQ_SYN: "M_REQ_SYN",
    M_NEGOTIATE: "M_NEGOTIATE",
    M_END: "M_END",
    M_WAIT: "M_WAIT",
    M_SYNCH: "M_SYNCH",
    M_FLOOD: "M_FLOOD",
    M_INVALID: "M_INVALID",
}

# Locator options (RFC 8990 §2.9.5).
O_IPv6_LOCATOR: Final = 103
O_IPv4_LOCATOR: Final = 104
O_FQDN_LOCATOR: Final = 105
O_URI_LOCATOR: Final = 106

# Objective flag bits (RFC 8990 §2.10.2: objective-flags = uint .bits objective-flag).
F_DISC: Final = 0
F_NEG: Final = 1
F_SYNCH: Final = 2
F_NEG_DRY: Final = 3
SYNC_ONLY: Final = 1 << F_SYNCH  # 4: "M_FLOOD only requires synchronization" (RFC 8995 §4.1.1)

IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17

# Constants (RFC 8990 §2.6).
ALL_GRASP_NEIGHBORS_6: Final = "ff02::13"
ALL_GRASP_NEIGHBORS_4: Final = "224.0.0.119"
GRASP_LISTEN_PORT: Final = 7017
GRASP_DEF_TIMEOUT: Final = 60000  # milliseconds
GRASP_DEF_LOOPCT: Final = 6
GRASP_DEF_MAX_SIZE: Final = 2048  # octets

# BRSKI objective names (RFC 8995 §4.1.1, §4.3; IANA "GRASP Objective Names").
AN_PROXY: Final = "AN_Proxy"
AN_JOIN_REGISTRAR: Final = "AN_join_registrar"

# Decoder limits. A flood of a few objectives (RFC 8995 floods AN_Proxy with the ACP's own
# objectives in one message) is a few dozen items at depth 4; these leave room for values.
MAX_DEPTH: Final = 16
MAX_ITEMS: Final = 512

_UINT32: Final = 0xFFFFFFFF
_CBOR_INT_MIN: Final = -(2**64)
_CBOR_INT_MAX: Final = 2**64 - 1

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address


class _Absent:
    """The objective-value left out (RFC 8990 §2.10.1 ``?objective-value``), unlike CBOR null."""

    _instance: _Absent | None = None

    def __new__(cls) -> _Absent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ABSENT"

    def __reduce__(self) -> str:
        return "ABSENT"


ABSENT: Final = _Absent()


# ---------------------------------------------------------------------------------------------
# The structural pre-check: one linear pass over the CBOR item heads (RFC 8949 §3).


def _check_cbor(data: bytes, *, max_depth: int = MAX_DEPTH, max_items: int = MAX_ITEMS) -> None:
    """Raise ``GraspError`` unless ``data`` is exactly one well-formed CBOR item made only of
    what GRASP uses: integers, byte and text strings, arrays and maps of definite length,
    false/true/null and floats; nested at most ``max_depth`` deep, ``max_items`` items in all.

    Each item takes at least one octet, so the loop runs at most ``len(data)`` times.
    """
    end = len(data)
    pos = 0
    pending = [1]  # items still to read at each open level; [0] is the top level
    items = 0
    while pending:
        if pending[-1] == 0:
            pending.pop()
            continue
        pending[-1] -= 1
        if pos >= end:
            raise GraspError(f"CBOR truncated at octet {pos}", kind="cbor")
        start = pos
        initial = data[pos]
        pos += 1
        major, info = initial >> 5, initial & 0x1F
        items += 1
        if items > max_items:
            raise GraspError(f"more than {max_items} CBOR items", kind="limits")
        if info < 24:
            argument = info
        elif info <= 27:
            width = 1 << (info - 24)
            if pos + width > end:
                raise GraspError(f"CBOR truncated at octet {pos}", kind="cbor")
            argument = int.from_bytes(data[pos : pos + width], "big")
            pos += width
        elif info == 31:
            raise GraspError(
                f"indefinite-length CBOR item at octet {start} (GRASP uses definite lengths)",
                kind="cbor",
            )
        else:
            raise GraspError(f"reserved CBOR additional information at octet {start}", kind="cbor")
        if major in (0, 1):  # unsigned / negative integer
            continue
        if major in (2, 3):  # byte / text string
            if argument > end - pos:
                raise GraspError(
                    f"CBOR string at octet {start} claims {argument} octets, {end - pos} are left",
                    kind="cbor",
                )
            pos += argument
            continue
        if major in (4, 5):  # array / map
            count = argument if major == 4 else 2 * argument
            if count > end - pos:
                raise GraspError(
                    f"CBOR {'array' if major == 4 else 'map'} at octet {start} claims "
                    f"{count} items, {end - pos} octets are left",
                    kind="cbor",
                )
            if count:
                if len(pending) > max_depth:
                    raise GraspError(f"CBOR nested deeper than {max_depth}", kind="limits")
                pending.append(count)
            continue
        if major == 6:
            raise GraspError(
                f"CBOR tag {argument} at octet {start} (GRASP messages carry no tags)",
                kind="cbor",
            )
        # major 7: false, true, null, half/single/double floats; nothing else.
        if info not in (20, 21, 22, 25, 26, 27):
            raise GraspError(f"CBOR simple value {argument} at octet {start}", kind="cbor")
    if pos != end:
        raise GraspError(f"{end - pos} octets after the end of the CBOR item", kind="cbor")


def _freeze(value: Any, what: str) -> Any:
    """``value`` as plain immutable CBOR data (lists become tuples, dicts frozen), or
    ``TypeError`` when CBOR cannot carry it without tags."""
    if value is ABSENT:
        return value
    try:
        encoded = cbor2.dumps(value)
    except (cbor2.CBORError, TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"{what} is not CBOR data: {exc}") from None
    try:
        _check_cbor(encoded, max_items=len(encoded) + 1)
    except GraspError as exc:
        raise TypeError(f"{what} is not plain CBOR data: {exc}") from None
    return cbor2.loads(encoded, immutable=True)


def _uint(value: object, what: str, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an integer, not {type(value).__name__}")
    if not 0 <= value <= maximum:
        raise ValueError(f"{what} must be 0..{maximum}, not {value}")
    return value


# ---------------------------------------------------------------------------------------------
# Value objects.


@dataclass(frozen=True)
class Objective:
    """A GRASP objective option (RFC 8990 §2.10.1): ``[name, flags, loop-count, ?value]``.

    ``value`` is ``ABSENT`` when the option has three elements (``None`` is CBOR null); lists
    and dicts given are stored as tuples and frozen mappings.
    """

    name: str
    flags: int = SYNC_ONLY
    loop_count: int = 1
    value: Any = ABSENT

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"objective name must be text, not {type(self.name).__name__}")
        if not self.name:
            raise ValueError("objective name is empty")
        _uint(self.flags, "objective flags", _CBOR_INT_MAX)
        _uint(self.loop_count, "loop count", 255)
        object.__setattr__(self, "value", _freeze(self.value, f"value of objective {self.name}"))

    def to_cbor(self) -> list[Any]:
        head: list[Any] = [self.name, self.flags, self.loop_count]
        return head if self.value is ABSENT else [*head, self.value]

    @classmethod
    def from_cbor(cls, item: object) -> Objective:
        if not isinstance(item, tuple) or len(item) not in (3, 4):
            raise GraspError(
                "an objective is [name, flags, loop-count, ?value], not " + _shape(item)
            )
        try:
            return cls(*item)
        except (TypeError, ValueError) as exc:
            raise GraspError(str(exc)) from None


_LOCATOR_NAMES: Final = {
    O_IPv6_LOCATOR: "O_IPv6_LOCATOR",
    O_IPv4_LOCATOR: "O_IPv4_LOCATOR",
    O_FQDN_LOCATOR: "O_FQDN_LOCATOR",
    O_URI_LOCATOR: "O_URI_LOCATOR",
}


@dataclass(frozen=True)
class Locator:
    """A locator option (RFC 8990 §2.9.5): where the announced service answers.

    ``host`` is the address as text for ``O_IPv6_LOCATOR`` / ``O_IPv4_LOCATOR`` (no zone: a
    link-local address is scoped by the interface the flood came in on), the name for
    ``O_FQDN_LOCATOR`` and the URI for ``O_URI_LOCATOR``. ``protocol`` is an IANA protocol
    number (RFC 8995 §4.1.1 allows any; 6 is TCP); ``port`` 0..65535. Either may be None
    (null on the wire), which the URI option allows and which RFC 8995 §4.3 shows for others.
    """

    option: int
    host: str
    protocol: int | None = IPPROTO_TCP
    port: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.option, bool) or not isinstance(self.option, int):
            raise TypeError("locator option must be an integer")
        if self.option not in _LOCATOR_NAMES:
            raise ValueError(f"unknown locator option {self.option}")
        if not isinstance(self.host, str):
            raise TypeError(f"locator host must be text, not {type(self.host).__name__}")
        if self.protocol is not None:
            _uint(self.protocol, "locator protocol", 255)
        if self.port is not None:
            _uint(self.port, "locator port", 65535)
        if self.option in (O_IPv6_LOCATOR, O_IPv4_LOCATOR):
            version = 6 if self.option == O_IPv6_LOCATOR else 4
            if "%" in self.host:
                raise ValueError(f"{self.host!r}: a locator carries no zone")
            try:
                address = ipaddress.ip_address(self.host)
            except ValueError:
                raise ValueError(f"{self.host!r} is not an IPv{version} address") from None
            if address.version != version:
                raise ValueError(f"{self.host!r} is not an IPv{version} address")
            object.__setattr__(self, "host", address.compressed)
        elif not self.host:
            raise ValueError(f"empty {_LOCATOR_NAMES[self.option]}")

    @classmethod
    def ip(cls, address: str | IPAddress, *, protocol: int = IPPROTO_TCP, port: int) -> Locator:
        """An ``O_IPv6_LOCATOR`` or ``O_IPv4_LOCATOR``, whichever ``address`` is."""
        parsed = ipaddress.ip_address(address)
        option = O_IPv6_LOCATOR if parsed.version == 6 else O_IPv4_LOCATOR
        return cls(option, parsed.compressed, protocol, port)

    @property
    def address(self) -> IPAddress | None:
        """The IP address of an IP locator; None for an FQDN or URI."""
        if self.option in (O_IPv6_LOCATOR, O_IPv4_LOCATOR):
            return ipaddress.ip_address(self.host)
        return None

    def to_cbor(self) -> list[Any]:
        address = self.address
        host: bytes | str = address.packed if address is not None else self.host
        return [self.option, host, self.protocol, self.port]

    @classmethod
    def from_cbor(cls, item: object) -> Locator | None:
        """The locator of ``[option, ...]``; None for the null locator ``[]``."""
        if not isinstance(item, tuple):
            raise GraspError("a locator option is an array, not " + _shape(item))
        if not item:
            return None
        option = item[0]
        if isinstance(option, bool) or not isinstance(option, int):
            raise GraspError(
                "a locator option starts with its option number, not " + _shape(option)
            )
        if option not in _LOCATOR_NAMES:
            raise GraspError(f"unknown locator option {option}")
        if len(item) != 4:
            raise GraspError(f"{_LOCATOR_NAMES[option]} has 4 elements, not {len(item)}")
        _, host, protocol, port = item
        if option in (O_IPv6_LOCATOR, O_IPv4_LOCATOR):
            size = 16 if option == O_IPv6_LOCATOR else 4
            if not isinstance(host, bytes) or len(host) != size:
                raise GraspError(f"{_LOCATOR_NAMES[option]} address is bytes .size {size}")
            host = ipaddress.ip_address(host).compressed
        elif not isinstance(host, str):
            raise GraspError(f"{_LOCATOR_NAMES[option]} carries text, not " + _shape(host))
        try:
            return cls(option, host, protocol, port)
        except (TypeError, ValueError) as exc:
            raise GraspError(f"{_LOCATOR_NAMES[option]}: {exc}") from None


@dataclass(frozen=True)
class Flood:
    """A Flood Synchronization message (RFC 8990 §2.8.11).

    ``ttl`` is in milliseconds (0: an indefinite lifetime); ``entries`` pairs each objective
    with its locator (None: the null locator ``[]``). ``initiator`` only disambiguates the
    session id (§2.7).
    """

    session_id: int
    initiator: IPAddress
    ttl: int
    entries: tuple[tuple[Objective, Locator | None], ...]

    def __post_init__(self) -> None:
        _uint(self.session_id, "session id", _UINT32)
        if not isinstance(self.initiator, ipaddress.IPv4Address | ipaddress.IPv6Address):
            raise TypeError("initiator must be an ipaddress.IPv4Address or IPv6Address")
        _uint(self.ttl, "ttl", _UINT32)
        if not isinstance(self.entries, tuple):
            raise TypeError("entries must be a tuple of (Objective, Locator | None) pairs")
        if not self.entries:
            raise ValueError("a flood carries at least one objective")
        for entry in self.entries:
            if (
                not isinstance(entry, tuple)
                or len(entry) != 2
                or not isinstance(entry[0], Objective)
                or not (entry[1] is None or isinstance(entry[1], Locator))
            ):
                raise TypeError("each entry is an (Objective, Locator | None) pair")

    @property
    def objectives(self) -> tuple[Objective, ...]:
        return tuple(objective for objective, _ in self.entries)

    def encode(self, *, max_size: int = GRASP_DEF_MAX_SIZE) -> bytes:
        return encode_flood(self, max_size=max_size)


def encode_flood(flood: Flood, *, max_size: int = GRASP_DEF_MAX_SIZE) -> bytes:
    """The CBOR of ``flood``; ``ValueError`` when it exceeds ``max_size`` octets."""
    message: list[Any] = [M_FLOOD, flood.session_id, flood.initiator.packed, flood.ttl]
    for objective, locator in flood.entries:
        message.append([objective.to_cbor(), locator.to_cbor() if locator else []])
    data = cbor2.dumps(message)
    if len(data) > max_size:
        raise ValueError(f"flood is {len(data)} octets, more than {max_size}")
    return data


def _shape(item: object) -> str:
    if isinstance(item, tuple):
        return f"an array of {len(item)}"
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        bytes: "a byte string",
        str: "a text string",
        type(None): "null",
    }.get(type(item), "a map")


def decode_flood(data: bytes, *, max_size: int = GRASP_DEF_MAX_SIZE) -> Flood:
    """Decode one M_FLOOD datagram; ``GraspError`` (with ``kind``) for anything else.

    Kinds: ``oversized`` (more than ``max_size`` octets), ``cbor`` (not well-formed, or CBOR
    that GRASP does not use), ``limits`` (too deep or too many items), ``message-type`` (a
    well-formed GRASP message of another type, e.g. M_DISCOVERY), ``structure`` (not what the
    CDDL of RFC 8990 §2.8.11 says).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("a GRASP message is bytes")
    data = bytes(data)
    if len(data) > max_size:
        raise GraspError(
            f"{len(data)} octets, more than {max_size} (GRASP_DEF_MAX_SIZE, RFC 8990 §2.6)",
            kind="oversized",
        )
    if not data:
        raise GraspError("empty datagram", kind="cbor")
    _check_cbor(data)
    try:
        message = cbor2.loads(
            data,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            max_depth=MAX_DEPTH + 1,
            immutable=True,
        )
    except cbor2.CBORError as exc:
        raise GraspError(f"CBOR: {exc}", kind="cbor") from None
    return _flood_from(message)


def _flood_from(message: object) -> Flood:
    if not isinstance(message, tuple) or not message:
        raise GraspError("a GRASP message is a non-empty array, not " + _shape(message))
    kind = message[0]
    if isinstance(kind, bool) or not isinstance(kind, int) or not 0 <= kind <= 255:
        raise GraspError("a GRASP message starts with its type 0..255, not " + _shape(kind))
    if kind != M_FLOOD:
        name = _MESSAGE_NAMES.get(kind, "unassigned")
        raise GraspError(f"message type {kind} ({name}), not M_FLOOD", kind="message-type")
    if len(message) < 5:
        raise GraspError(
            "M_FLOOD is [9, session-id, initiator, ttl, +[objective, locator]], "
            f"not {len(message)} elements"
        )
    session_id, initiator, ttl = message[1:4]
    for value, what in ((session_id, "session id"), (ttl, "ttl")):
        try:
            _uint(value, what, _UINT32)
        except (TypeError, ValueError) as exc:
            raise GraspError(str(exc)) from None
    if not isinstance(initiator, bytes) or len(initiator) not in (4, 16):
        raise GraspError("initiator is an IPv4 or IPv6 address (4 or 16 octets)")
    entries: list[tuple[Objective, Locator | None]] = []
    for index, pair in enumerate(message[4:], start=1):
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise GraspError(
                "each flooded item is [objective, locator-option / []], not " + _shape(pair),
                path=f"item {index}",
            )
        try:
            entries.append((Objective.from_cbor(pair[0]), Locator.from_cbor(pair[1])))
        except GraspError as exc:
            raise GraspError(exc.message, path=f"item {index}") from None
    return Flood(session_id, ipaddress.ip_address(initiator), ttl, tuple(entries))
