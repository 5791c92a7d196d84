"""Test hosts in network namespaces (``ip netns``), for what crosses a link: discovery and the
join proxy. Each host is a namespace with ``lo`` up and IPv6 duplicate address detection off
(so a link-local address is usable at once); links are veth pairs named ``ethN`` inside each
host, with IPv6 link-local addresses only. Everything is removed on close; traffic never
leaves the namespaces.

Needs root and iproute2; ``netns_lab`` skips outside CI when namespaces cannot be made, and
fails in CI (where make test runs as root).
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

import pytest

__all__ = ["Host", "Lab", "netns_lab"]


def _ip(*args: str) -> str:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


@dataclass
class Host:
    """One namespace; ``prefix(argv)`` runs a command inside it."""

    name: str  # the namespace's name
    interfaces: list[str] = field(default_factory=list)

    def prefix(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.prefix(argv), capture_output=True, text=True, timeout=timeout, check=False
        )

    def link_local(self, interface: str, *, timeout: float = 10) -> str:
        """The IPv6 link-local address of ``interface`` (waits until the kernel made it)."""
        deadline = time.monotonic() + timeout
        while True:
            for line in _ip("-n", self.name, "-6", "-o", "addr", "show", "dev", interface).split(
                "\n"
            ):
                parts = line.split()
                if "inet6" in parts:
                    address = parts[parts.index("inet6") + 1].split("/")[0]
                    if ipaddress.IPv6Address(address).is_link_local and "tentative" not in line:
                        return address
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}/{interface} has no link-local address")
            time.sleep(0.05)


class Lab:
    """Namespaces and links made for one test; ``close()`` removes them all."""

    def __init__(self) -> None:
        self.tag = f"zt{os.getpid() % 10000}{uuid.uuid4().hex[:4]}"
        self.hosts: list[Host] = []

    def host(self, name: str) -> Host:
        host = Host(f"{self.tag}-{name}")
        _ip("netns", "add", host.name)
        self.hosts.append(host)
        for key in ("all", "default"):
            host.run("sysctl", "-qw", f"net.ipv6.conf.{key}.accept_dad=0")
        _ip("-n", host.name, "link", "set", "lo", "up")
        return host

    def link(self, a: Host, b: Host) -> tuple[str, str]:
        """A veth pair between ``a`` and ``b``; returns the interface names (``ethN``) on each
        side."""
        names = (f"eth{len(a.interfaces)}", f"eth{len(b.interfaces)}")
        temp = (f"v{uuid.uuid4().hex[:10]}", f"v{uuid.uuid4().hex[:10]}")
        _ip("link", "add", temp[0], "netns", a.name, "type", "veth", "peer", "name", temp[1],
            "netns", b.name)  # fmt: skip
        for host, old, new in ((a, temp[0], names[0]), (b, temp[1], names[1])):
            _ip("-n", host.name, "link", "set", old, "name", new)
            host.run("sysctl", "-qw", f"net.ipv6.conf.{new}.accept_dad=0")
            _ip("-n", host.name, "link", "set", new, "up")
            host.interfaces.append(new)
        return names

    def close(self) -> None:
        for host in reversed(self.hosts):
            pids = subprocess.run(
                ["ip", "netns", "pids", host.name], capture_output=True, text=True, check=False
            ).stdout
            for pid in pids.split():  # whatever a test left running in the host
                with suppress(ProcessLookupError):
                    os.kill(int(pid), 9)
            subprocess.run(["ip", "netns", "del", host.name], capture_output=True, check=False)
        self.hosts.clear()


@contextmanager
def netns_lab() -> Iterator[Lab]:
    """A ``Lab``; skips (fails in CI) where this process may not make namespaces."""
    lab = Lab()
    try:
        probe = lab.host("probe")
    except (RuntimeError, FileNotFoundError) as exc:
        message = f"network namespaces unavailable ({exc}): tests need root and iproute2"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    lab.hosts.remove(probe)
    subprocess.run(["ip", "netns", "del", probe.name], capture_output=True, check=False)
    try:
        yield lab
    finally:
        lab.close()
