"""Where an SZTP device learns bootstrap-server URIs from DHCP (RFC 8572 §8).

* ``dhcp4_uris(interface)``: the device's own DHCPv4 exchange on the interface: a DHCPDISCOVER
  asking for option 143 is broadcast, the first offer answering it is read (no lease is taken:
  the address is the operating system's business); retried, bounded in time.
* ``lease_uris(path)``: the option as a DHCP client of the operating system stored it in its
  lease file (ISC dhclient's format: ``option sztp-redirect ...;``, ``option unknown-143
  ...;`` and the DHCPv6 ``dhcp6.sztp-redirect`` / ``dhcp6.unknown-136``, the value as
  colon-separated hex or a quoted string); the last lease that carries it counts.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import time
from pathlib import Path

from zerotouch_plugin.artifacts.dhcp import decode_uri_list, dhcp4_discover, dhcp4_reply_uris
from zerotouch_plugin.errors import ConfigError, InvalidInput, NotFound, UpstreamUnavailable

__all__ = ["dhcp4_uris", "lease_uris"]

_CLIENT_PORT, _SERVER_PORT = 68, 67
_MAX_LEASE_BYTES = 1024 * 1024
_LEASE_OPTION = re.compile(
    r"option\s+(?:dhcp6\.)?(?:sztp-redirect|unknown-143|unknown-136)\s+(.+?);\s*$", re.M
)
_QUOTED = re.compile(r"\\([0-7]{3})|\\(.)|(.)", re.S)
_HEX = re.compile(r"[0-9a-fA-F]{1,2}(?::[0-9a-fA-F]{1,2})*")


def _mac(interface: str) -> bytes:
    try:
        text = Path(f"/sys/class/net/{interface}/address").read_text().strip()
        return bytes.fromhex(text.replace(":", ""))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"no usable interface {interface!r} for DHCP: {exc}") from None


def _exchange(interface: str, timeout: float, attempts: int) -> tuple[str, ...]:
    mac = _mac(interface)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
            sock.bind(("", _CLIENT_PORT))
        except OSError as exc:
            raise ConfigError(f"cannot run DHCP on {interface}: {exc}") from None
        for _ in range(attempts):
            xid = int.from_bytes(os.urandom(4))
            sock.sendto(dhcp4_discover(xid, mac), ("255.255.255.255", _SERVER_PORT))
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                sock.settimeout(left)
                try:
                    packet = sock.recv(4096)
                except TimeoutError:
                    break
                uris = dhcp4_reply_uris(packet, xid)
                if uris is not None:
                    return uris
    raise UpstreamUnavailable(f"no DHCPv4 server answered on {interface}")


async def dhcp4_uris(interface: str, *, timeout: float = 3.0, attempts: int = 3) -> tuple[str, ...]:
    """The URIs of option 143 offered on ``interface`` (empty: the server sent none)."""
    return await asyncio.to_thread(_exchange, interface, timeout, attempts)


def _value(text: str) -> bytes:
    """An option value as dhclient writes it: colon-separated hex, or a quoted string with
    backslash escapes (``\\ooo`` octal, ``\\x`` the character x)."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        out = bytearray()
        for octal, escaped, plain in _QUOTED.findall(text[1:-1]):
            if octal and int(octal, 8) > 0xFF:
                raise InvalidInput(f"unreadable SZTP option value in the lease: \\{octal}")
            out += bytes([int(octal, 8)]) if octal else (escaped or plain).encode()
        return bytes(out)
    if _HEX.fullmatch(text):
        return bytes(int(part, 16) for part in text.split(":"))
    raise InvalidInput(f"unreadable SZTP option value in the lease: {text[:60]!r}")


def lease_uris(path: Path) -> tuple[str, ...]:
    """The URIs of the last lease in ``path`` that carries the SZTP option."""
    try:
        if path.stat().st_size > _MAX_LEASE_BYTES:
            raise InvalidInput(f"{path} is larger than {_MAX_LEASE_BYTES} bytes")
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise UpstreamUnavailable(f"cannot read the DHCP lease {path}: {exc}") from None
    found = _LEASE_OPTION.findall(text)
    if not found:
        raise NotFound(f"{path} holds no SZTP redirect option (DHCPv4 143, DHCPv6 136)")
    return decode_uri_list(_value(found[-1]))
