"""Where an SZTP device learns bootstrap-server URIs from DHCP (RFC 8572 §8).

* ``dhcp_uris(interface)``: the device's own DHCP exchanges on the interface, both at once:
  DHCPv4, a DHCPDISCOVER asking for option 143 broadcast and the first offer answering it read
  (no lease is taken: the address is the operating system's business), and DHCPv6, an
  Information-Request asking for option 136 sent to All_DHCP_Relay_Agents_and_Servers
  (RFC 8415 §7.1), whose Reply must echo the device's DUID (§16.10); each retried, bounded
  in time; the URIs of both, v4 first.
* ``lease_uris(path)``: the option as a DHCP client of the operating system stored it in its
  lease file (ISC dhclient's format: ``option sztp-redirect ...;``, ``option unknown-143
  ...;`` and the DHCPv6 ``dhcp6.sztp-redirect`` / ``dhcp6.unknown-136``, the value as
  colon-separated hex or a quoted string); the last lease that carries it counts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zerotouch_plugin.artifacts.dhcp import (
    decode_uri_list,
    dhcp4_discover,
    dhcp4_reply_uris,
    dhcp6_information_request,
    dhcp6_reply_uris,
)
from zerotouch_plugin.errors import (
    ConfigError,
    InvalidInput,
    NotFound,
    UpstreamUnavailable,
    ZerotouchError,
)

__all__ = ["dhcp_uris", "lease_domain", "lease_uris"]

log = logging.getLogger(__name__)

_CLIENT_PORT, _SERVER_PORT = 68, 67
_CLIENT_PORT6, _SERVER_PORT6 = 546, 547  # RFC 8415 §7.2
_ALL_DHCP6 = "ff02::1:2"  # All_DHCP_Relay_Agents_and_Servers
_MAX_LEASE_BYTES = 1024 * 1024
_LEASE_OPTION = re.compile(
    r"option\s+(?:dhcp6\.)?(?:sztp-redirect|unknown-143|unknown-136)\s+(.+?);\s*$", re.M
)
_LEASE_DOMAIN = re.compile(r"option\s+(?:domain-name|dhcp6\.domain-search)\s+(.+?);\s*$", re.M)
_QUOTED = re.compile(r"\\([0-7]{3})|\\(.)|(.)", re.S)
_HEX = re.compile(r"[0-9a-fA-F]{1,2}(?::[0-9a-fA-F]{1,2})*")


def _mac(interface: str) -> bytes:
    try:
        text = Path(f"/sys/class/net/{interface}/address").read_text().strip()
        return bytes.fromhex(text.replace(":", ""))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"no usable interface {interface!r} for DHCP: {exc}") from None


def _bound(family: socket.AddressFamily, interface: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family is socket.AF_INET:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.bind(("", port) if family is socket.AF_INET else ("::", port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot run DHCP on {interface}: {exc}") from None
    return sock


def _exchange(
    sock: socket.socket,
    request: Callable[[int], bytes],
    answer: Callable[[bytes, int], tuple[str, ...] | None],
    server: tuple[Any, ...],
    xids: Callable[[], int],
    timeout: float,
    attempts: int,
) -> tuple[str, ...] | None:
    """Send ``request(xid)`` up to ``attempts`` times; the first ``answer`` that is one. A
    reply whose SZTP option is malformed is ignored and the wait goes on: anyone on the link
    can send one, and another server may still answer well (RFC 8572 §8.3, §8.4). The first
    is logged, the others counted: a flood of them must not flood the log."""
    ignored = 0
    try:
        with sock:
            for _ in range(attempts):
                xid = xids()
                sock.sendto(request(xid), server)
                deadline = time.monotonic() + timeout
                while (left := deadline - time.monotonic()) > 0:
                    sock.settimeout(left)
                    try:
                        packet = sock.recv(4096)
                    except TimeoutError:
                        break
                    try:
                        uris = answer(packet, xid)
                    except InvalidInput as exc:
                        if not ignored:
                            log.warning("DHCP reply ignored: %s", exc.message)
                        ignored += 1
                        continue
                    if uris is not None:
                        return uris
        return None
    finally:
        if ignored > 1:
            log.warning("%d malformed DHCP replies ignored in all", ignored)


def _dhcp4(interface: str, timeout: float, attempts: int) -> tuple[str, ...] | None:
    mac = _mac(interface)
    return _exchange(
        _bound(socket.AF_INET, interface, _CLIENT_PORT),
        lambda xid: dhcp4_discover(xid, mac),
        dhcp4_reply_uris,
        ("255.255.255.255", _SERVER_PORT),
        lambda: int.from_bytes(os.urandom(4)),
        timeout,
        attempts,
    )


def _dhcp6(interface: str, timeout: float, attempts: int) -> tuple[str, ...] | None:
    mac = _mac(interface)
    return _exchange(
        _bound(socket.AF_INET6, interface, _CLIENT_PORT6),
        lambda xid: dhcp6_information_request(xid, mac),
        lambda packet, xid: dhcp6_reply_uris(packet, xid, mac),
        (_ALL_DHCP6, _SERVER_PORT6, 0, socket.if_nametoindex(interface)),
        lambda: int.from_bytes(os.urandom(3)),
        timeout,
        attempts,
    )


async def dhcp_uris(interface: str, *, timeout: float = 2.0, attempts: int = 3) -> tuple[str, ...]:
    """The URIs of option 143 and option 136 offered on ``interface`` (empty: the servers
    sent none); UpstreamUnavailable when neither DHCPv4 nor DHCPv6 answered."""
    results = await asyncio.gather(
        asyncio.to_thread(_dhcp4, interface, timeout, attempts),
        asyncio.to_thread(_dhcp6, interface, timeout, attempts),
        return_exceptions=True,
    )
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, ZerotouchError | OSError):
            raise result
    answered = [r for r in results if isinstance(r, tuple)]
    if not answered:
        errors = [str(r) for r in results if isinstance(r, BaseException)]
        detail = "; ".join(errors) or "no answer"
        raise UpstreamUnavailable(f"no DHCP server answered on {interface}: {detail}")
    return tuple(dict.fromkeys(uri for found in answered for uri in found))


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


def _lease_text(path: Path) -> str:
    try:
        if path.stat().st_size > _MAX_LEASE_BYTES:
            raise InvalidInput(f"{path} is larger than {_MAX_LEASE_BYTES} bytes")
        return path.read_text(errors="replace")
    except OSError as exc:
        raise UpstreamUnavailable(f"cannot read the DHCP lease {path}: {exc}") from None


def lease_domain(path: Path) -> str | None:
    """The domain of the last lease in ``path`` with a domain name (DHCPv4 option 15) or
    search list (DHCPv6 option 24, its first name): where the device looks for SZTP DNS
    records (RFC 8572 §4.2)."""
    found = _LEASE_DOMAIN.findall(_lease_text(path))
    if not found:
        return None
    names = re.findall(r'[^\s",]+', found[-1])  # one name or a list of quoted names
    return names[0].rstrip(".").lower() if names else None


def lease_uris(path: Path) -> tuple[str, ...]:
    """The URIs of the last lease in ``path`` that carries the SZTP option."""
    found = _LEASE_OPTION.findall(_lease_text(path))
    if not found:
        raise NotFound(f"{path} holds no SZTP redirect option (DHCPv4 143, DHCPv6 136)")
    return decode_uri_list(_value(found[-1]))
