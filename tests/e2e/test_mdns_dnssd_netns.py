"""mDNS and unicast DNS-SD discovery across real links (network namespaces, tests/support/
netns.py): ``zerotouch discovery announce`` in one host, ``zerotouch discovery listen`` in
another, each a process inside its namespace.

mDNS: a pledge on the registrar's link finds ``_brski-registrar``, ``_brski-proxy`` and the
older ``_bootstrapks`` within 1 s, with the announcer's link-local address scoped to the
pledge's interface; behind a join proxy it finds the proxy only (mDNS stays on its link).
Unicast DNS-SD: a real dnsmasq in the registrar's host serves PTR/SRV/AAAA/A records of
``example.net``; the pledge's namespace gets its own resolv.conf (``ip netns exec`` mounts
``/etc/netns/NS/resolv.conf`` over ``/etc/resolv.conf``) whose ``search`` domain is looked up.
NXDOMAIN and a silent name server give no candidates within the timeout.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.netns import Host, Lab, netns_lab

REPO = Path(__file__).resolve().parents[2]
ULA_REG, ULA_PLEDGE, ULA_SILENT = "fd00:8995::1", "fd00:8995::2", "fd00:8995::53"
REG_PORT, OLD_PORT, PROXY_PORT = 8443, 443, 7443


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _zerotouch(host: Host, *args: str) -> list[str]:
    return host.prefix([sys.executable, "-m", "zerotouch_plugin", *args])


@contextmanager
def announcing(host: Host, *args: str) -> Iterator[list[subprocess.Popen[str]]]:
    """``zerotouch discovery announce ARGS`` for each ARGS group (split by ``--``) in
    ``host``, in parallel; yields once each printed ``announcing``; stops them all."""
    groups: list[list[str]] = [[]]
    for arg in args:
        if arg == "--":
            groups.append([])
        else:
            groups[-1].append(arg)
    procs: list[subprocess.Popen[str]] = []
    logs: list[Path] = []
    try:
        for group in groups:
            handle, name = tempfile.mkstemp(prefix="zt-announce-", suffix=".log")
            logs.append(Path(name))
            with os.fdopen(handle, "w") as log:
                procs.append(
                    subprocess.Popen(
                        _zerotouch(host, "-v", "discovery", "announce", *group),
                        stdout=subprocess.PIPE,
                        stderr=log,
                        text=True,
                        env=_env(),
                    )
                )
        for proc, log_path in zip(procs, logs, strict=True):
            assert proc.stdout is not None
            with selectors.DefaultSelector() as selector:
                selector.register(proc.stdout, selectors.EVENT_READ)
                line = proc.stdout.readline() if selector.select(30) else ""
            assert line.startswith("announcing "), f"announcer: {line!r}\n{log_path.read_text()}"
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        for log_path in logs:
            log_path.unlink(missing_ok=True)


def listen(host: Host, *args: str) -> list[dict[str, Any]]:
    """``zerotouch discovery listen ARGS`` in ``host``: the candidates it printed."""
    return listen_timed(host, *args)[0]


def listen_timed(host: Host, *args: str, timeout: float = 60) -> tuple[list[dict[str, Any]], float]:
    """``zerotouch discovery listen ARGS`` in ``host``: the candidates it printed and the
    seconds its search took (from its count line on stderr)."""
    result = subprocess.run(
        _zerotouch(host, "-v", "discovery", "listen", *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    count = re.search(r"^(\d+) candidate\(s\) by \S+ in ([0-9.]+) s$", result.stderr, re.M)
    assert count, result.stderr
    found = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(found) == int(count[1])
    return found, float(count[2])


@dataclass
class Link:
    """Two hosts on one link: ``reg`` (registrar side) and ``pledge``."""

    lab: Lab
    reg: Host
    pledge: Host
    reg_if: str
    pledge_if: str

    def resolv_conf(self, text: str) -> None:
        """The pledge namespace's /etc/resolv.conf from its next process on."""
        folder = Path("/etc/netns") / self.pledge.name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "resolv.conf").write_text(text)


@pytest.fixture(scope="module")
def link() -> Iterator[Link]:
    with netns_lab() as lab:
        reg, pledge = lab.host("reg"), lab.host("pledge")
        reg_if, pledge_if = lab.link(reg, pledge)
        reg.link_local(reg_if)
        pledge.link_local(pledge_if)
        try:
            yield Link(lab, reg, pledge, reg_if, pledge_if)
        finally:
            shutil.rmtree(Path("/etc/netns") / pledge.name, ignore_errors=True)
            with suppress(OSError):  # /etc/netns itself, if nothing else uses it
                Path("/etc/netns").rmdir()


def by_source(found: list[dict[str, Any]], service: str) -> dict[str, Any]:
    matching = [c for c in found if f"._{service}._tcp.local." in c["source"]]
    assert len(matching) == 1, found
    return matching[0]


def test_pledge_on_the_registrars_link_finds_all_three_names_by_mdns(link: Link) -> None:
    reg_ll = link.reg.link_local(link.reg_if)
    with announcing(
        link.reg,
        "--service", "registrar", "--instance", "reg1", "--port", str(REG_PORT),
        "--interface", link.reg_if,
        "--", "--service", "proxy", "--instance", "proxy1", "--port", str(PROXY_PORT),
        "--interface", link.reg_if,
        "--", "--service", "bootstrapks", "--instance", "old1", "--port", str(OLD_PORT),
        "--interface", link.reg_if,
    ):  # fmt: skip
        found = listen(
            link.pledge, "--method", "mdns", "--interface", link.pledge_if, "--timeout", "1",
            "--all",
        )  # fmt: skip
        registrar = by_source(found, "brski-registrar")
        proxy = by_source(found, "brski-proxy")
        old = by_source(found, "bootstrapks")
        assert (registrar["role"], registrar["port"]) == ("registrar", REG_PORT)
        assert (proxy["role"], proxy["port"]) == ("proxy", PROXY_PORT)
        assert (old["role"], old["port"]) == ("registrar", OLD_PORT)
        for candidate in (registrar, proxy, old):
            assert candidate["method"] == "mdns"
            assert (candidate["host"], candidate["scope"]) == (reg_ll, link.pledge_if)
        assert registrar["url"] == f"https://[{reg_ll}%25{link.pledge_if}]:{REG_PORT}"
        assert registrar["source"] == "mDNS reg1._brski-registrar._tcp.local."

        # the finder's own way: back as soon as one answer resolved, well within 1 s
        first = listen(link.pledge, "--method", "mdns", "--interface", link.pledge_if)
        assert first, "nothing found"
        assert first[0]["elapsed"] < 1.0, first

    # the announcers are gone: nothing, at the timeout
    found, elapsed = listen_timed(
        link.pledge, "--method", "mdns", "--interface", link.pledge_if, "--timeout", "0.5"
    )
    assert found == []
    assert 0.5 <= elapsed < 2.0  # the count line's time includes importing the finder


def test_pledge_behind_a_join_proxy_finds_the_proxy_by_mdns() -> None:
    """registrar --(link A)-- proxy --(link B)-- pledge: the registrar's announcement stays
    on link A, the proxy's on link B reaches the pledge."""
    with netns_lab() as lab:
        reg, proxy, pledge = lab.host("reg"), lab.host("proxy"), lab.host("pledge")
        reg_if, proxy_up = lab.link(reg, proxy)
        proxy_down, pledge_if = lab.link(proxy, pledge)
        for host, interface in ((reg, reg_if), (proxy, proxy_up), (proxy, proxy_down),
                                (pledge, pledge_if)):  # fmt: skip
            host.link_local(interface)
        proxy_ll = proxy.link_local(proxy_down)
        with (
            announcing(reg, "--service", "registrar", "--instance", "reg1",
                       "--port", str(REG_PORT), "--interface", reg_if),
            announcing(proxy, "--service", "proxy", "--instance", "proxy1",
                       "--port", str(PROXY_PORT), "--interface", proxy_down),
        ):  # fmt: skip
            found = listen(
                pledge, "--method", "mdns", "--interface", pledge_if, "--timeout", "1", "--all"
            )
            up = listen(
                proxy, "--method", "mdns", "--interface", proxy_up, "--timeout", "1", "--all"
            )
    assert [(c["role"], c["host"], c["scope"], c["port"]) for c in found] == [
        ("proxy", proxy_ll, pledge_if, PROXY_PORT)
    ]
    # the proxy itself finds the registrar on its upstream link
    assert [(c["role"], c["port"], c["scope"]) for c in up] == [("registrar", REG_PORT, proxy_up)]


@pytest.fixture(scope="module")
def dns(link: Link) -> Iterator[Link]:
    """dnsmasq in the registrar's host on a ULA of the link, serving example.net only."""
    for host, interface, address in (
        (link.reg, link.reg_if, ULA_REG),
        (link.reg, link.reg_if, ULA_SILENT),
        (link.pledge, link.pledge_if, ULA_PLEDGE),
    ):
        added = host.run("ip", "addr", "add", f"{address}/64", "dev", interface, "nodad")
        assert added.returncode == 0, added.stderr
    dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not Path(dnsmasq).exists():
        message = "dnsmasq missing: run scripts/setup-system.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    records = [
        "--local=/example.net/",  # answer example.net from these records only: NXDOMAIN else
        "--ptr-record=_brski-registrar._tcp.example.net,reg1._brski-registrar._tcp.example.net",
        f"--srv-host=reg1._brski-registrar._tcp.example.net,reg.example.net,{REG_PORT},0,10",
        f"--host-record=reg.example.net,{ULA_REG},192.0.2.1",
        "--ptr-record=_bootstrapks._tcp.example.net,old1._bootstrapks._tcp.example.net",
        f"--srv-host=old1._bootstrapks._tcp.example.net,old.example.net,{OLD_PORT}",
        f"--host-record=old.example.net,{ULA_REG}",
    ]
    handle, log_name = tempfile.mkstemp(prefix="zt-dnsmasq-", suffix=".log")
    log_path = Path(log_name)
    command = [
        dnsmasq, "--keep-in-foreground", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
        "--pid-file", "--user=root", "--bind-interfaces", f"--listen-address={ULA_REG}",
        "--log-queries", "--log-facility=-", *records,
    ]  # fmt: skip
    with os.fdopen(handle, "w") as log:
        server = subprocess.Popen(link.reg.prefix(command), stdout=subprocess.DEVNULL, stderr=log)
    # a name server that takes every query and never answers
    silent = subprocess.Popen(
        link.reg.prefix([
            sys.executable, "-c",
            "import socket\n"
            "s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n"
            f"s.bind(('{ULA_SILENT}', 53))\n"
            "print('ready', flush=True)\n"
            "while True: s.recvfrom(4096)\n",
        ]),
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert silent.stdout is not None and silent.stdout.readline() == "ready\n"
        deadline = time.monotonic() + 10
        while f"[{ULA_REG}]:53" not in link.reg.run("ss", "-Hlun").stdout:
            assert server.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "dnsmasq did not start listening"
            time.sleep(0.05)
        yield link
    finally:
        for proc in (server, silent):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if silent.stdout is not None:
            silent.stdout.close()
        log_path.unlink(missing_ok=True)


def test_pledge_on_the_registrars_link_finds_it_by_unicast_dns_sd(dns: Link) -> None:
    dns.resolv_conf(f"nameserver {ULA_REG}\nsearch example.net\n")
    found = listen(dns.pledge, "--method", "dns-sd", "--timeout", "3")
    reg = f"DNS-SD _brski-registrar._tcp.example.net -> reg.example.net:{REG_PORT}"
    old = f"DNS-SD _bootstrapks._tcp.example.net -> old.example.net:{OLD_PORT}"
    assert [(c["host"], c["port"], c["source"]) for c in found] == [
        (ULA_REG, REG_PORT, reg),
        ("192.0.2.1", REG_PORT, reg),
        (ULA_REG, OLD_PORT, old),
    ]
    assert {(c["method"], c["role"], c["scope"]) for c in found} == {("dns-sd", "registrar", None)}
    assert found[0]["url"] == f"https://[{ULA_REG}]:{REG_PORT}"
    assert found[0]["elapsed"] < 1.0

    # 'domain' names the domain as well as 'search' does
    dns.resolv_conf(f"nameserver {ULA_REG}\ndomain example.net\n")
    assert len(listen(dns.pledge, "--method", "dns-sd", "--timeout", "3")) == 3


def test_nxdomain_gives_no_candidates_at_once(dns: Link) -> None:
    dns.resolv_conf(f"nameserver {ULA_REG}\nsearch lab.example.net\n")
    found, elapsed = listen_timed(dns.pledge, "--method", "dns-sd", "--timeout", "5")
    assert found == []
    assert elapsed < 2.0  # well before the 5 s timeout (importing the finder included)
    # and an explicit --domain overrides the resolver configuration's
    found = listen(dns.pledge, "--method", "dns-sd", "--timeout", "5", "--domain", "example.net")
    assert len(found) == 3


def test_silent_name_server_gives_no_candidates_at_the_timeout(dns: Link) -> None:
    dns.resolv_conf(f"nameserver {ULA_SILENT}\nsearch example.net\n")
    found, elapsed = listen_timed(dns.pledge, "--method", "dns-sd", "--timeout", "1")
    assert found == []
    assert 1.0 <= elapsed < 2.5
