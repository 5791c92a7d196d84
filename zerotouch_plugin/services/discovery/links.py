"""The pledge's links and their local addresses (RFC 8995 §4.1: a pledge MUST obtain a
local address, IPv6 link-local or IPv4 where that is what the link has, before it looks for
a join proxy). Linux: interfaces and flags from ``/sys/class/net``, IPv6 addresses from
``/proc/net/if_inet6``, IPv4 addresses by ``SIOCGIFADDR``.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Link", "links"]

_SYS_NET = Path("/sys/class/net")
_IF_INET6 = Path("/proc/net/if_inet6")
_IFF_UP = 0x1
_IFF_LOOPBACK = 0x8
_IFA_F_TENTATIVE = 0x40  # duplicate address detection still running (RFC 4862 §5.4)
_IFA_F_DADFAILED = 0x08
_SIOCGIFADDR = 0x8915


@dataclass(frozen=True)
class Link:
    """An interface that is up, with the local addresses a pledge can use on it."""

    name: str
    link_local: tuple[str, ...]  # usable IPv6 link-local addresses (DAD done)
    ipv4: tuple[str, ...]

    @property
    def addressed(self) -> bool:
        return bool(self.link_local or self.ipv4)


def _flags(name: str) -> int:
    try:
        return int((_SYS_NET / name / "flags").read_text().strip(), 16)
    except (OSError, ValueError):
        return 0


def _link_locals() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    try:
        lines = _IF_INET6.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        fields = line.split()
        if len(fields) != 6:
            continue
        try:
            address = ipaddress.IPv6Address(bytes.fromhex(fields[0]))
            flags = int(fields[4], 16)
        except ValueError:
            continue
        if address.is_link_local and not flags & (_IFA_F_TENTATIVE | _IFA_F_DADFAILED):
            out.setdefault(fields[5], []).append(str(address))
    return out


def _ipv4(name: str) -> tuple[str, ...]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            raw = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()))
        except OSError:  # no IPv4 address
            return ()
    return (socket.inet_ntoa(raw[20:24]),)


def links(interface: str | None = None) -> list[Link]:
    """``interface`` if it is up, else every up interface but loopback; each with its
    usable local addresses (possibly none yet)."""
    try:
        names = sorted(p.name for p in _SYS_NET.iterdir())
    except OSError:
        names = [name for _, name in socket.if_nameindex()]
    if interface is not None:
        names = [n for n in names if n == interface]
    link_locals = _link_locals()
    return [
        Link(name, tuple(link_locals.get(name, ())), _ipv4(name))
        for name in names
        if _flags(name) & _IFF_UP and not _flags(name) & _IFF_LOOPBACK
    ]
