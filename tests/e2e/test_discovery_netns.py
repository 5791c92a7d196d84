"""A device that is told nothing finds its registrar (RFC 8995 §4), across real links in
network namespaces (tests/support/discovery_lab.py: pledge -- proxy -- registrar + MASA, IPv6
link-local only, no route between pledge and registrar).

``zerotouch device run --discovery METHOD --interface IF`` with no ``--registrar``:
it finds the join proxy by GRASP (RFC 8990 M_FLOOD AN_Proxy, §4.1.1) or by mDNS
(``_brski-proxy._tcp``) and enrolls through it, the TLS relayed end to end; on the
registrar's own link it finds the registrar itself by mDNS and by unicast DNS-SD (a real
dnsmasq); a hostile neighbour flooding malformed GRASP does not stop it; a proxy whose
registrar is down is set aside and the next candidate enrolls the device. The bootstrap
state (read over NETCONF/SSH inside the device's namespace) shows how.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from tests.support.discovery_lab import DiscoveryLab, discovery_lab
from tests.support.netns import Host, _ip
from tests.support.processes import ServerProcess, run_cli, start_server
from zerotouch_plugin.config import DEFAULT_DEVICE_DOMAIN, hash_password
from zerotouch_plugin.roles.registrar import device_dns_name

NS = "urn:zerotouch:params:xml:ns:yang:zerotouch-bootstrap"
PASSWORD = hash_password("secret", salt=b"fixed-test-salt!", iterations=1000)
ULA_REG, ULA_PLEDGE = "fd00:8995:10::1", "fd00:8995:10::2"
RESTCONF_PORT = 8443  # inside the device's own namespace: always free

# Reads /zerotouch-bootstrap:bootstrap over NETCONF/SSH; runs inside the device's namespace.
_READ_STATE = """
import sys
from ncclient import manager
with manager.connect(host="127.0.0.1", port=int(sys.argv[1]), username="admin",
                     password="secret", hostkey_verify=False, allow_agent=False,
                     look_for_keys=False, timeout=15) as m:
    reply = m.get(filter=("subtree", '<bootstrap xmlns="NAMESPACE"/>'))
    sys.stdout.write(reply.data_xml)
""".replace("NAMESPACE", NS)


def write_config(folder: Path, *extra: str) -> None:
    """A device.toml with one NETCONF/SSH user (to read the state) and quick retries."""
    (folder / "device.toml").write_text(
        "bootstrap_retry_delay = 0.5\nbootstrap_max_delay = 2.0\nbootstrap_timeout = 10.0\n"
        + "".join(f"{line}\n" for line in extra)
        + f'[[users]]\nname = "admin"\npassword = "{PASSWORD}"\n'
    )


def start_device(lab: DiscoveryLab, host: Host, folder: Path, *args: str) -> ServerProcess:
    """``device run`` in ``host`` with NETCONF/SSH on its loopback; stopped with the lab."""
    process = start_server(
        "netconf-ssh", "-v", "device", "run", "--dir", folder,
        "--netconf-ssh", "127.0.0.1:0", *args, prefix=host.prefix([]),
    )  # fmt: skip
    lab.servers.append(process)
    return process


_readers: dict[int, queue.Queue[str]] = {}


def _lines(process: ServerProcess) -> queue.Queue[str]:
    """The process's stdout lines, read by a thread (a text pipe buffers lines that a
    select() on its descriptor would not see)."""
    pid = process.proc.pid
    if pid not in _readers:
        lines: queue.Queue[str] = queue.Queue()
        stdout = process.proc.stdout
        assert stdout is not None

        def read() -> None:
            for line in stdout:
                lines.put(line)
            lines.put("")

        threading.Thread(target=read, daemon=True).start()
        _readers[pid] = lines
    return _readers[pid]


def wait_line(process: ServerProcess, prefix: str, timeout: float = 60) -> str:
    """The next stdout line starting with ``prefix``."""
    lines = _lines(process)
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no '{prefix}' line in {timeout} s:\n{process.stderr}") from None
        if not line:
            raise AssertionError(f"device exited before '{prefix}':\n{process.stderr}")
        if line.startswith(prefix):
            return line.strip()


def state(host: Host, process: ServerProcess) -> etree._Element:
    port = process.url.rpartition(":")[2]
    result = host.run(sys.executable, "-c", _READ_STATE, port)
    assert result.returncode == 0, result.stderr
    found = etree.fromstring(result.stdout.encode()).find(f"{{{NS}}}bootstrap")
    assert found is not None, result.stdout
    return found


def text(element: etree._Element, path: str) -> str | None:
    node = element.find("/".join(f"{{{NS}}}{step}" for step in path.split("/")))
    return None if node is None else node.text


def candidates(element: etree._Element) -> list[dict[str, str | None]]:
    fields = ("address", "port", "method", "role", "state", "failures", "source")
    return [
        {name: text(entry, name) for name in fields}
        for entry in element.findall(f"{{{NS}}}discovery/{{{NS}}}candidate")
    ]


def enrolled_through(
    lab: DiscoveryLab, host: Host, folder: Path, serial: str, *args: str
) -> etree._Element:
    """Runs the device until it enrolled; its bootstrap state."""
    process = start_device(lab, host, folder, *args)
    assert wait_line(process, "enrolled ") == f"enrolled {serial}"
    assert lab.brski.state(serial) == "enroll-confirmed"
    assert (folder / "ldevid.pem").exists()
    found = state(host, process)
    assert text(found, "phase") == "enrolled"
    return found


def restconf_discovery(lab: DiscoveryLab, nms: Path, serial: str) -> dict[str, Any]:
    """GET .../zerotouch-bootstrap:bootstrap/discovery with curl inside the pledge's host,
    with an NMS certificate of the domain; the device named by its LDevID's DNS name."""
    run_cli("registrar", "issue-client-cert", "--dir", lab.brski.domain, "--name", "nms",
            "--out", nms)  # fmt: skip
    name = device_dns_name(serial, DEFAULT_DEVICE_DOMAIN)
    result = lab.pledge.run(
        "curl", "-sS", "--fail", "--cacert", str(nms / "ca.pem"), "--cert",
        str(nms / "cert.pem"), "--key", str(nms / "key.pem"),
        "--resolve", f"{name}:{RESTCONF_PORT}:127.0.0.1",
        f"https://{name}:{RESTCONF_PORT}/restconf/data/zerotouch-bootstrap:bootstrap/discovery",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    body: dict[str, Any] = json.loads(result.stdout)["zerotouch-bootstrap:discovery"]
    return body


def test_device_finds_the_proxy_by_grasp_and_enrolls_through_it(tmp_path: Path) -> None:
    with discovery_lab(tmp_path, proxy_announce="grasp") as lab:
        serial, folder = lab.new_pledge()
        write_config(folder)
        found = enrolled_through(
            lab, lab.pledge, folder, serial, "--discovery", "grasp", "--interface", lab.pledge_if,
            "--restconf", f"127.0.0.1:{RESTCONF_PORT}",
        )  # fmt: skip
        proxy = f"{lab.proxy_link_local}%{lab.pledge_if}"
        # the same over RESTCONF (RFC 8040), as the owner's NMS reads it
        over_restconf = restconf_discovery(lab, tmp_path / "nms", serial)
        assert over_restconf["enrolled-by"]["method"] == "grasp"
        assert over_restconf["enrolled-by"]["address"] == proxy
        assert over_restconf["candidate"][0]["state"] == "enrolled"
        assert text(found, "discovery/enrolled-by/method") == "grasp"
        assert text(found, "discovery/enrolled-by/role") == "proxy"
        assert text(found, "discovery/enrolled-by/address") == proxy
        assert text(found, "registrar/used") == lab.proxy_url
        assert text(found, "registrar/tried/source") == "grasp"
        [entry] = candidates(found)
        assert entry["state"] == "enrolled" and entry["port"] == str(lab.proxy_port)
        assert entry["source"] is not None and "AN_Proxy" in entry["source"]
        # the pledge cannot reach the registrar itself: only through the proxy
        direct = lab.pledge.run(
            "ping", "-6", "-c", "1", "-W", "1", f"{lab.registrar_link_local}%{lab.pledge_if}"
        )
        assert direct.returncode != 0


def test_device_finds_the_proxy_by_mdns_and_enrolls_through_it(tmp_path: Path) -> None:
    with discovery_lab(tmp_path, proxy_announce="mdns") as lab:
        serial, folder = lab.new_pledge()
        write_config(folder)
        # no --interface: every up interface but loopback with a local address (here eth0)
        found = enrolled_through(lab, lab.pledge, folder, serial, "--discovery", "mdns")
        assert text(found, "discovery/enrolled-by/method") == "mdns"
        assert text(found, "discovery/enrolled-by/role") == "proxy"
        assert text(found, "discovery/enrolled-by/port") == str(lab.proxy_port)
        assert text(found, "registrar/tried/source") == "mdns"


def test_device_on_the_registrars_link_finds_it_by_mdns(tmp_path: Path) -> None:
    """The proxy's host shares the registrar's link: a device there finds the registrar
    itself (``_brski-registrar._tcp``) and enrolls directly."""
    with discovery_lab(tmp_path, registrar_announce="mdns", start_proxy=False) as lab:
        serial, folder = lab.new_pledge()
        write_config(folder)
        found = enrolled_through(
            lab, lab.proxy, folder, serial,
            "--discovery", "mdns", "--interface", lab.proxy_registrar_if,
        )  # fmt: skip
        assert text(found, "discovery/enrolled-by/role") == "registrar"
        assert text(found, "discovery/enrolled-by/address") == (
            f"{lab.registrar_link_local}%{lab.proxy_registrar_if}"
        )
        assert text(found, "discovery/enrolled-by/port") == str(lab.registrar_port)


@contextmanager
def dnsmasq(lab: DiscoveryLab, port: int) -> Iterator[None]:
    """A real DNS server in the registrar's host on a ULA of the registrar's link, serving
    ``_brski-registrar._tcp.example.net`` -> ``reg.example.net:PORT`` -> the ULA; the
    device's host gets a resolv.conf naming it (``ip netns exec`` mounts
    ``/etc/netns/NS/resolv.conf``)."""
    dnsmasq_path = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not Path(dnsmasq_path).exists():
        message = "dnsmasq missing: run scripts/setup-system.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    for host, interface, address in (
        (lab.registrar, lab.registrar_if, ULA_REG),
        (lab.proxy, lab.proxy_registrar_if, ULA_PLEDGE),
    ):
        _ip("-n", host.name, "addr", "add", f"{address}/64", "dev", interface, "nodad")
    netns_etc = Path("/etc/netns") / lab.proxy.name
    netns_etc.mkdir(parents=True, exist_ok=True)
    (netns_etc / "resolv.conf").write_text(f"nameserver {ULA_REG}\nsearch example.net\n")
    handle, log_name = tempfile.mkstemp(prefix="zt-dnsmasq-", suffix=".log")
    command = [
        dnsmasq_path, "--keep-in-foreground", "--no-resolv", "--no-hosts",
        "--conf-file=/dev/null", "--pid-file", "--user=root", "--bind-interfaces",
        f"--listen-address={ULA_REG}", "--local=/example.net/",
        "--ptr-record=_brski-registrar._tcp.example.net,reg1._brski-registrar._tcp.example.net",
        f"--srv-host=reg1._brski-registrar._tcp.example.net,reg.example.net,{port},0,10",
        f"--host-record=reg.example.net,{ULA_REG}",
    ]  # fmt: skip
    with os.fdopen(handle, "w") as log:
        server = subprocess.Popen(
            lab.registrar.prefix(command), stdout=subprocess.DEVNULL, stderr=log
        )
    try:
        deadline = time.monotonic() + 10
        while f"[{ULA_REG}]:53" not in lab.registrar.run("ss", "-Hlun").stdout:
            assert server.poll() is None, Path(log_name).read_text()
            assert time.monotonic() < deadline, "dnsmasq did not start listening"
            time.sleep(0.05)
        yield
    finally:
        server.terminate()
        server.wait(10)
        Path(log_name).unlink(missing_ok=True)
        shutil.rmtree(netns_etc, ignore_errors=True)


def test_device_on_the_registrars_link_finds_it_by_unicast_dns_sd(tmp_path: Path) -> None:
    with discovery_lab(tmp_path, start_proxy=False) as lab:
        serial, folder = lab.new_pledge()
        write_config(folder)
        with dnsmasq(lab, lab.registrar_port):
            found = enrolled_through(
                lab, lab.proxy, folder, serial,
                "--discovery", "dns-sd", "--interface", lab.proxy_registrar_if,
            )  # fmt: skip
        assert text(found, "discovery/enrolled-by/method") == "dns-sd"
        assert text(found, "discovery/enrolled-by/role") == "registrar"
        assert text(found, "discovery/enrolled-by/address") == ULA_REG
        [entry] = candidates(found)
        assert (
            entry["source"] is not None and "_brski-registrar._tcp.example.net" in entry["source"]
        )


# A hostile neighbour: garbage, truncated CBOR, a huge message, a GRASP M_FLOOD with a wrong
# loop count and one naming an objective nobody asked for, as fast as it can.
_FLOOD = """
import socket, sys, time, os
sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
index = socket.if_nametoindex(sys.argv[1])
sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
bad = [b"\\xff" * 40, b"\\x85\\x09\\x1a", os.urandom(2000), b"\\x9f" * 64,
       bytes.fromhex("8609 1a00000001 50fe800000000000000000000000000001 "
                     "1903e8 84 6841 4e5f50726f7879 05 ff 6542 52 53 4b 49".replace(" ", ""))]
print("flooding", flush=True)
end = time.monotonic() + float(sys.argv[2])
sent = 0
while time.monotonic() < end:
    for _ in range(50):
        sock.sendto(bad[sent % len(bad)], ("ff02::13", 7017, 0, index))
        sent += 1
    time.sleep(0.01)
"""
# About 5,000 malformed datagrams a second: ten thousand times the proxy's announcements. An
# unpaced loop (one CPU of the two) overruns the pledge's socket buffer whenever the machine is
# busy, and the kernel then drops the proxy's datagrams too: that measures the machine's load,
# not the listener (which reads a bounded batch per wake-up and drops what it cannot parse).


def test_device_enrolls_while_a_neighbour_floods_malformed_grasp(tmp_path: Path) -> None:
    with discovery_lab(tmp_path, proxy_announce="grasp") as lab:
        serial, folder = lab.new_pledge()
        write_config(folder)
        flood = subprocess.Popen(
            lab.proxy.prefix([sys.executable, "-c", _FLOOD, lab.proxy_pledge_if, "60"]),
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert flood.stdout is not None and flood.stdout.readline() == "flooding\n"
            process = start_device(
                lab, lab.pledge, folder, "--discovery", "grasp", "--interface", lab.pledge_if
            )
            assert wait_line(process, "enrolled ") == f"enrolled {serial}"
            assert flood.poll() is None, "the flood must still be running"
            found = state(lab.pledge, process)
        finally:
            flood.kill()
            flood.wait(10)
            if flood.stdout is not None:
                flood.stdout.close()
        assert lab.brski.state(serial) == "enroll-confirmed"
        # the listener saw the flood and dropped it with a log line, never crashing
        assert f"grasp {lab.pledge_if}: dropped" in process.stderr
        assert "Traceback" not in process.stderr
        assert text(found, "discovery/enrolled-by/method") == "grasp"
        # only the real proxy became a candidate
        assert [c["address"] for c in candidates(found)] == [
            f"{lab.proxy_link_local}%{lab.pledge_if}"
        ]


def test_a_proxy_whose_registrar_is_down_is_set_aside_for_the_next(tmp_path: Path) -> None:
    """RFC 8995 §4.1.1: the first proxy found relays to a registrar that is down; the device
    sets it aside and enrolls through the second proxy; the state shows both."""
    with discovery_lab(tmp_path, start_proxy=False) as lab:
        dead = f"https://[{lab.registrar_link_local}%25{lab.proxy_registrar_if}]:1"
        lab.start_proxy("--announce", "grasp", registrar=dead)
        dead_port = lab.proxy_port
        serial, folder = lab.new_pledge()
        write_config(folder)
        process = start_device(
            lab, lab.pledge, folder, "--discovery", "grasp", "--interface", lab.pledge_if
        )
        deadline = time.monotonic() + 60
        while not any(c["state"] == "failed" for c in candidates(state(lab.pledge, process))):
            assert time.monotonic() < deadline, process.stderr
            time.sleep(0.3)
        lab.start_proxy("--announce", "grasp")  # the working one
        assert wait_line(process, "enrolled ") == f"enrolled {serial}"
        assert lab.brski.state(serial) == "enroll-confirmed"
        found = state(lab.pledge, process)
        by_port = {c["port"]: c for c in candidates(found)}
        assert by_port[str(dead_port)]["state"] == "failed"
        assert int(str(by_port[str(dead_port)]["failures"])) >= 1
        assert by_port[str(lab.proxy_port)]["state"] == "enrolled"
        assert text(found, "discovery/enrolled-by/port") == str(lab.proxy_port)
        events = [text(e, "event") for e in found.findall(f"{{{NS}}}event")]
        assert "attempt-failed" in events and events[-1] == "enrolled"


def test_pledge_enroll_finds_the_proxy_by_grasp(tmp_path: Path) -> None:
    """``zerotouch pledge enroll --discovery grasp --interface IF``: the headless pledge uses
    the same discovery and says how it found the registrar."""
    with discovery_lab(tmp_path, proxy_announce="grasp") as lab:
        serial, folder = lab.new_pledge()
        result = lab.run_pledge(
            "pledge", "enroll", "--dir", folder, "--discovery", "grasp",
            "--interface", lab.pledge_if, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert f"through proxy {lab.proxy_url} found by grasp (GRASP AN_Proxy" in result.stdout
        assert f"enrolled {serial}" in result.stdout
        assert lab.brski.state(serial) == "enroll-confirmed"


def test_device_waits_for_a_local_address_before_searching(tmp_path: Path) -> None:
    """RFC 8995 §4.1: a pledge MUST obtain a local address first. The pledge's link starts
    without IPv6; the device says it waits, and enrolls once the link-local address is
    there."""
    with discovery_lab(tmp_path, proxy_announce="grasp") as lab:
        serial, folder = lab.new_pledge()
        write_config(folder)
        ipv6 = f"net.ipv6.conf.{lab.pledge_if}.disable_ipv6"
        assert lab.pledge.run("sysctl", "-qw", f"{ipv6}=1").returncode == 0
        process = start_device(
            lab, lab.pledge, folder, "--discovery", "grasp", "--interface", lab.pledge_if
        )
        waiting = f"no local address on interface {lab.pledge_if} yet; waiting"
        deadline = time.monotonic() + 30
        while waiting not in process.stderr:
            assert time.monotonic() < deadline, process.stderr
            time.sleep(0.2)
        assert process.proc.poll() is None
        assert not (folder / "ldevid.pem").exists()
        assert lab.pledge.run("sysctl", "-qw", f"{ipv6}=0").returncode == 0
        assert wait_line(process, "enrolled ") == f"enrolled {serial}"
        found = state(lab.pledge, process)
        events = [text(e, "event") for e in found.findall(f"{{{NS}}}event")]
        assert "no-local-address" in events
        assert events.index("no-local-address") < events.index("candidate-found")
        assert text(found, "discovery/enrolled-by/method") == "grasp"
