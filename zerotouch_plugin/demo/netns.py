"""Network namespaces for ``zerotouch demo --discovery``: a host per role, veth links with
IPv6 link-local addresses only (duplicate address detection off, so an address is usable at
once), a bridge joining the devices' links in the proxy's host. Everything made is removed
by ``close``, also after a failure. Needs root and iproute2 (``missing()`` says why not).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Sequence

from zerotouch_plugin.demo.services import StepFailed

__all__ = ["Network", "missing"]


def missing() -> str | None:
    """Why namespaces cannot be made here (not root, no ``ip``), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root: run 'sudo zerotouch demo --discovery'"
    if shutil.which("ip") is None:
        return "the 'ip' command (iproute2) is missing: install iproute2"
    return None


def _ip(*args: str) -> str:
    try:
        result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StepFailed(f"ip {' '.join(args)}: {exc}") from exc
    if result.returncode != 0:
        raise StepFailed(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


class Network:
    """The namespaces of one demo run, named ``zt-demo-<tag>-<host>``."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.hosts: list[str] = []
        self._interfaces: dict[str, int] = {}

    def name(self, host: str) -> str:
        return f"zt-demo-{self.tag}-{host}"

    def prefix(self, host: str) -> list[str]:
        """What runs a command inside ``host``."""
        return ["ip", "netns", "exec", self.name(host)]

    def _sysctl(self, host: str, key: str, value: str) -> None:
        subprocess.run(
            [*self.prefix(host), "sysctl", "-qw", f"{key}={value}"],
            capture_output=True,
            check=False,
        )

    def add(self, host: str) -> None:
        _ip("netns", "add", self.name(host))
        self.hosts.append(host)
        for key in ("all", "default"):
            self._sysctl(host, f"net.ipv6.conf.{key}.accept_dad", "0")
        _ip("-n", self.name(host), "link", "set", "lo", "up")

    def link(self, a: str, b: str) -> tuple[str, str]:
        """A veth pair between hosts ``a`` and ``b``; its interface names (``ethN``)."""
        names = []
        for host in (a, b):
            names.append(f"eth{self._interfaces.get(host, 0)}")
            self._interfaces[host] = self._interfaces.get(host, 0) + 1
        temp = (f"zt{uuid.uuid4().hex[:10]}", f"zt{uuid.uuid4().hex[:10]}")
        _ip("link", "add", temp[0], "netns", self.name(a), "type", "veth", "peer", "name",
            temp[1], "netns", self.name(b))  # fmt: skip
        for host, old, new in ((a, temp[0], names[0]), (b, temp[1], names[1])):
            _ip("-n", self.name(host), "link", "set", old, "name", new)
            self._sysctl(host, f"net.ipv6.conf.{new}.accept_dad", "0")
            _ip("-n", self.name(host), "link", "set", new, "up")
        return names[0], names[1]

    def bridge(self, host: str, name: str, members: Sequence[str]) -> None:
        """Bridge ``members`` of ``host`` into ``name`` (one link for every device), no MLD
        snooping, so GRASP and mDNS multicast reach every port."""
        ns = self.name(host)
        _ip("-n", ns, "link", "add", name, "type", "bridge", "mcast_snooping", "0")
        self._sysctl(host, f"net.ipv6.conf.{name}.accept_dad", "0")
        for member in members:
            _ip("-n", ns, "link", "set", member, "master", name)
        _ip("-n", ns, "link", "set", name, "up")

    def link_local(self, host: str, interface: str, *, timeout: float = 10) -> str:
        """The IPv6 link-local address of ``interface`` once the kernel made it."""
        deadline = time.monotonic() + timeout
        while True:
            output = _ip("-n", self.name(host), "-6", "-o", "addr", "show", "dev", interface)
            for line in output.splitlines():
                parts = line.split()
                if "inet6" in parts and "tentative" not in parts:
                    address = parts[parts.index("inet6") + 1].split("/")[0]
                    if ipaddress.IPv6Address(address).is_link_local:
                        return address
            if time.monotonic() > deadline:
                raise StepFailed(f"{host}/{interface} got no IPv6 link-local address")
            time.sleep(0.05)

    def close(self) -> list[str]:
        """Kill what still runs in the namespaces and remove them; their names."""
        removed = []
        for host in reversed(self.hosts):
            ns = self.name(host)
            pids = subprocess.run(
                ["ip", "netns", "pids", ns], capture_output=True, text=True, check=False
            ).stdout
            for pid in pids.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
            removed.append(ns)
        self.hosts.clear()
        return removed
