"""DHCP replies as a server sends them, built for the tests of the device's DHCP exchanges
(RFC 2131 offers, RFC 8415 Replies) carrying the RFC 8572 §8 options."""

from __future__ import annotations

import struct

from zerotouch_plugin.artifacts.dhcp import dhcp4_discover

MAC = bytes.fromhex("020000000001")


def reply4(xid: int, message_type: int, *options: tuple[int, bytes], op: int = 2) -> bytes:
    """A DHCPv4 message of ``message_type`` for ``xid`` (a reply with ``op`` 2)."""
    request = dhcp4_discover(xid, MAC)
    header = bytes([op]) + request[1:236]
    body = bytes([53, 1, message_type])
    for code, value in options:
        body += bytes([code, len(value)]) + value
    return header + b"\x63\x82\x53\x63" + body + b"\xff"


def reply6(xid: int, *options: tuple[int, bytes], kind: int = 7) -> bytes:
    """A DHCPv6 message of ``kind`` (7: Reply) for ``xid`` with ``options`` in order."""
    body = b"".join(struct.pack("!HH", code, len(value)) + value for code, value in options)
    return bytes([kind]) + xid.to_bytes(3, "big") + body
