"""DHCP for SZTP (RFC 8572 §8): the bootstrap-server URI list of DHCPv4 option 143 and
DHCPv6 option 136, and the few DHCPv4 messages a device needs to learn them (RFC 2131).

Bytes in, values out; no sockets here (``services/sztp_sources.py`` sends and receives).

* ``decode_uri_list(data)``: the option's value, ``uri-length`` (16 bits) then the URI, for
  each URI (§8.3); InvalidInput for a truncated entry, a URI that is not https or not ASCII.
* ``encode_uri_list(uris)``: the same, for tests and servers.
* ``dhcp4_discover(xid, mac)``: a DHCPDISCOVER asking (parameter request list) for option 143.
* ``dhcp4_reply_uris(packet, xid)``: the URIs of an offer or ack answering ``xid`` (the option
  may be split in several instances, RFC 3396: they are concatenated), or None when the packet
  is not an answer to us.
* ``dhcp6_information_request(xid, mac)`` and ``dhcp6_reply_uris(packet, xid, mac)``: the same
  for DHCPv6 (RFC 8415 §18.2.6, stateless: an Information-Request asking for option 136; a
  Reply counts only when it echoes our client identifier, §16.10).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from urllib.parse import urlsplit

from zerotouch_plugin.errors import InvalidInput

__all__ = [
    "OPTION_V4_SZTP_REDIRECT",
    "OPTION_V6_SZTP_REDIRECT",
    "decode_uri_list",
    "dhcp4_discover",
    "dhcp4_reply_uris",
    "dhcp6_information_request",
    "dhcp6_reply_uris",
    "encode_uri_list",
]

OPTION_V4_SZTP_REDIRECT = 143  # RFC 8572 §8.1
OPTION_V6_SZTP_REDIRECT = 136  # RFC 8572 §8.2
_MAGIC = b"\x63\x82\x53\x63"  # RFC 2131 §3: the options field starts with this cookie
_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
_MESSAGE_TYPE, _PARAMETERS, _END, _PAD = 53, 55, 255, 0
_DISCOVER, _OFFER, _ACK = 1, 2, 5
_BOOTREPLY = 2
_MAX_URIS = 32


def decode_uri_list(data: bytes) -> tuple[str, ...]:
    """The bootstrap-server-list of RFC 8572 §8.3."""
    uris: list[str] = []
    rest = memoryview(data)
    while rest:
        if len(rest) < 2:
            raise InvalidInput("SZTP redirect option: truncated uri-length")
        (length,) = struct.unpack("!H", rest[:2])
        if length == 0 or len(rest) < 2 + length:
            raise InvalidInput("SZTP redirect option: a URI shorter than its uri-length says")
        try:
            uri = bytes(rest[2 : 2 + length]).decode("ascii")
        except UnicodeDecodeError:
            raise InvalidInput("SZTP redirect option: a URI that is not ASCII") from None
        if not _https(uri):
            raise InvalidInput(f"SZTP redirect option: {uri!r} is not an https URI (§8.3)")
        uris.append(uri)
        if len(uris) > _MAX_URIS:
            raise InvalidInput(f"SZTP redirect option: more than {_MAX_URIS} URIs")
        rest = rest[2 + length :]
    return tuple(uris)


def _https(uri: str) -> bool:
    """An https URI with a host and a valid port, if any (urlsplit raises on bad ones)."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 -- raises ValueError for a port out of range
    except ValueError:
        return False
    return parts.scheme == "https" and bool(parts.hostname) and uri.isprintable()


def encode_uri_list(uris: Sequence[str]) -> bytes:
    out = bytearray()
    for uri in uris:
        raw = uri.encode("ascii")
        out += struct.pack("!H", len(raw)) + raw
    return bytes(out)


def dhcp4_discover(xid: int, mac: bytes) -> bytes:
    """DHCPDISCOVER (RFC 2131 §4.4.1), broadcast reply asked for, option 143 requested."""
    if len(mac) != 6:
        raise ValueError("mac must be 6 bytes")
    header = _HEADER.pack(
        1, 1, 6, 0, xid, 0, 0x8000, bytes(4), bytes(4), bytes(4), bytes(4),
        mac + bytes(10), bytes(64), bytes(128),
    )  # fmt: skip
    options = bytes([_MESSAGE_TYPE, 1, _DISCOVER])
    wanted = bytes([1, 3, 6, OPTION_V4_SZTP_REDIRECT])
    options += bytes([_PARAMETERS, len(wanted)]) + wanted + bytes([_END])
    return header + _MAGIC + options


def dhcp4_reply_uris(packet: bytes, xid: int) -> tuple[str, ...] | None:
    """The SZTP URIs of a DHCPOFFER/DHCPACK for ``xid`` (empty when it carries none); None
    when the packet is something else (another client's, not a reply, malformed)."""
    if len(packet) < _HEADER.size + 4 or packet[_HEADER.size : _HEADER.size + 4] != _MAGIC:
        return None
    fields = _HEADER.unpack(packet[: _HEADER.size])
    if fields[0] != _BOOTREPLY or fields[4] != xid:
        return None
    options = _options(packet[_HEADER.size + 4 :])
    if options is None or options.get(_MESSAGE_TYPE) not in (bytes([_OFFER]), bytes([_ACK])):
        return None
    value = options.get(OPTION_V4_SZTP_REDIRECT)
    return () if value is None else decode_uri_list(value)


def _options(data: bytes) -> dict[int, bytes] | None:
    """Options by code, repeated instances concatenated (RFC 3396); None if malformed."""
    found: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        code = data[i]
        if code == _END:
            return found
        if code == _PAD:
            i += 1
            continue
        if i + 1 >= len(data) or i + 2 + data[i + 1] > len(data):
            return None
        length = data[i + 1]
        found[code] = found.get(code, b"") + data[i + 2 : i + 2 + length]
        i += 2 + length
    return found


# RFC 8415 §7.3 message types, §21 options
_INFORMATION_REQUEST, _REPLY6 = 11, 7
_CLIENTID, _SERVERID, _ORO, _ELAPSED_TIME = 1, 2, 6, 8
_DUID_LL, _ETHERNET = 3, 1


def _duid(mac: bytes) -> bytes:
    """The client's DUID-LL (RFC 8415 §11.4): what it sends and what a Reply must echo."""
    if len(mac) != 6:
        raise ValueError("mac must be 6 bytes")
    return struct.pack("!HH", _DUID_LL, _ETHERNET) + mac


def dhcp6_information_request(xid: int, mac: bytes) -> bytes:
    """Information-Request (RFC 8415 §18.2.6) with a DUID-LL client identifier, elapsed time
    0, and the option request option naming 136."""
    if not 0 <= xid < 1 << 24:
        raise ValueError("xid must be 24 bits")
    duid = _duid(mac)
    options = struct.pack("!HH", _CLIENTID, len(duid)) + duid
    options += struct.pack("!HHH", _ORO, 2, OPTION_V6_SZTP_REDIRECT)
    options += struct.pack("!HHH", _ELAPSED_TIME, 2, 0)
    return bytes([_INFORMATION_REQUEST]) + xid.to_bytes(3, "big") + options


def dhcp6_reply_uris(packet: bytes, xid: int, mac: bytes) -> tuple[str, ...] | None:
    """The SZTP URIs of a Reply to ``xid`` for the client of ``mac`` (empty when it carries
    none); None when the packet is something else. RFC 8415 §16.10: a Reply without a
    Server Identifier, or whose Client Identifier is missing or not our DUID, is discarded."""
    if len(packet) < 4 or packet[0] != _REPLY6 or int.from_bytes(packet[1:4], "big") != xid:
        return None
    found: dict[int, list[bytes]] = {}
    i = 4
    while i < len(packet):
        if i + 4 > len(packet):
            return None
        code, length = struct.unpack("!HH", packet[i : i + 4])
        if i + 4 + length > len(packet):
            return None
        found.setdefault(code, []).append(packet[i + 4 : i + 4 + length])
        i += 4 + length
    if _SERVERID not in found or found.get(_CLIENTID) != [_duid(mac)]:
        return None
    value = found.get(OPTION_V6_SZTP_REDIRECT)
    return () if value is None else decode_uri_list(b"".join(value))
