"""The SZTP DNS source across a real link (network namespaces, tests/support/netns.py;
RFC 8572 §4.2): a device host and a DNS host joined by a veth pair, the device running
``zerotouch device run --bootstrap-mdns-interface eth0 --bootstrap-dns-domain sztp.test``.

* An mDNS responder in the DNS host (tests/support/mdns_responder.py) answers the device's
  one-shot query for ``SN-1._sztp.local`` TXT with the signed artifacts, one record each:
  the device onboards from multicast DNS and never asks the unicast server.
* The responder holds nothing (mDNS is silent): after its bounded wait the device asks
  dnsmasq in the DNS host by unicast for ``SN-1._sztp.sztp.test`` and onboards from that.
* No TXT records at all: the device goes on to the device-independent ``_sztp._tcp.local``
  SRV records by mDNS and onboards from the bootstrap server they name.
* An IPv4-only link: the query goes to 224.0.0.251 and the device onboards all the same.

The multicast query leaves only through the device host's ``eth0``, inside the namespaces.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import dns.rdata
import pytest

from tests.support.device_process import DeviceProcess, start_device
from tests.support.netns import Host, netns_lab
from tests.support.processes import run_cli, start_server
from tests.support.sztp_dns_lab import dnsmasq, rdata, signed_artifacts, txt_records
from tests.support.sztp_lab import onboarding_server

REPO = Path(__file__).resolve().parents[2]
DOMAIN = "sztp.test"
DNS_ADDRESS, DEVICE_ADDRESS = "fd00:8572::53", "fd00:8572::2"
DNS_ADDRESS4, DEVICE_ADDRESS4 = "10.85.72.53", "10.85.72.2"
HOSTNAME = "mdns-device-1"
CONFIG = json.dumps({"ietf-system:system": {"hostname": HOSTNAME}}).encode()


@pytest.fixture(scope="module")
def vendor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sztp-mdns")
    run_cli("vendor", "init", "--dir", root / "vendor", "--masa-url", "https://127.0.0.1:9443")
    return root / "vendor"


@dataclass
class Link:
    """The device host and the DNS host, each with a ULA on its ``eth0``."""

    device_host: Host
    dns_host: Host
    tmp: Path
    vendor: Path

    @contextmanager
    def unicast(self, records: list[str]) -> Iterator[Path]:
        """dnsmasq on the DNS host answering ``records`` for DOMAIN; yields its log."""
        log = self.tmp / "dnsmasq.log"
        proc = dnsmasq(DNS_ADDRESS, 53, DOMAIN, records, log, self.dns_host.prefix([]))
        try:
            yield log
        finally:
            proc.terminate()
            proc.wait(10)

    @contextmanager
    def responder(self, records: list[tuple[str, str, str]]) -> Iterator[Responder]:
        """The mDNS responder on the DNS host's eth0 with ``records``."""
        path = self.tmp / "mdns.json"
        path.write_text(json.dumps(records))
        argv = [sys.executable, "-m", "tests.support.mdns_responder", "eth0", str(path)]
        proc = subprocess.Popen(
            self.dns_host.prefix(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            cwd=REPO,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline().strip()
            assert first == "ready", f"mDNS responder: {first} {proc.stdout.read()}"
            yield Responder(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)

    @contextmanager
    def device(self, unicast: bool = True) -> Iterator[tuple[DeviceProcess, Path]]:
        """``zerotouch device run`` on the device host, mDNS on eth0 and unicast DNS."""
        folder = self.tmp / "device"
        run_cli("vendor", "idevid", "--dir", self.vendor, "--serial", "SN-1", "--out", folder)
        extra: tuple[str, ...] = ("--bootstrap-mdns-interface", "eth0")
        if unicast:
            extra += ("--bootstrap-dns-domain", DOMAIN)
            extra += ("--bootstrap-dns-server", f"[{DNS_ADDRESS}]:53")
        process = start_device(
            folder,
            {"netconf-tls": "127.0.0.1:0"},
            extra=extra,
            verbose=True,
            prefix=self.device_host.prefix([]),
        )
        try:
            yield process, folder
        finally:
            process.stop()


@dataclass
class Responder:
    proc: subprocess.Popen[str]

    def lines(self) -> list[str]:
        """What the responder printed, read once it has been stopped."""
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        return out.splitlines()

    def said(self, text: str) -> list[str]:
        """The sources of the lines ``text from SOURCE``, in order."""
        return [line.split(" from ")[1] for line in self.lines() if line.startswith(text + " ")]


@pytest.fixture
def link(tmp_path: Path, vendor: Path) -> Iterator[Link]:
    with netns_lab() as lab:
        device_host, dns_host = lab.host("dev"), lab.host("dns")
        lab.link(device_host, dns_host)
        for host, address in ((dns_host, DNS_ADDRESS), (device_host, DEVICE_ADDRESS)):
            result = host.run("ip", "addr", "add", f"{address}/64", "dev", "eth0", "nodad")
            assert result.returncode == 0, result.stderr
        yield Link(device_host, dns_host, tmp_path, vendor)


@pytest.fixture
def link4(tmp_path: Path, vendor: Path) -> Iterator[Link]:
    """The same two hosts on an IPv4-only link (IPv6 off on both ends)."""
    with netns_lab() as lab:
        device_host, dns_host = lab.host("dev"), lab.host("dns")
        lab.link(device_host, dns_host)
        for host, address in ((dns_host, DNS_ADDRESS4), (device_host, DEVICE_ADDRESS4)):
            for argv in (
                ("sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=1"),
                ("ip", "addr", "add", f"{address}/24", "dev", "eth0"),
            ):
                result = host.run(*argv)
                assert result.returncode == 0, result.stderr
        yield Link(device_host, dns_host, tmp_path, vendor)


def _configured(folder: Path) -> bool:
    startup = json.loads((folder / "startup.json").read_text())
    return bool(startup["ietf-system:system"] == {"hostname": HOSTNAME})


def test_device_onboards_from_multicast_dns_first(link: Link) -> None:
    artifacts = signed_artifacts(link.vendor, link.tmp / "owner", "SN-1", CONFIG)
    mdns = [("SN-1._sztp.local.", "TXT", rdata(key, der).hex()) for key, der in artifacts.items()]
    unicast = txt_records(f"SN-1._sztp.{DOMAIN}", artifacts)
    with link.unicast(unicast) as dns_log, link.responder(mdns) as responder:
        with link.device() as (device, folder):
            line = device.wait_for("bootstrapped sztp", timeout=90)
            assert "mdns://eth0/SN-1._sztp.local?type=TXT" in line
            assert _configured(folder)
        assert responder.said("answered SN-1._sztp.local. TXT")
        assert "query[TXT]" not in dns_log.read_text()  # unicast was never needed


def test_silent_multicast_dns_falls_back_to_unicast(link: Link) -> None:
    artifacts = signed_artifacts(link.vendor, link.tmp / "owner", "SN-1", CONFIG)
    unicast = txt_records(f"SN-1._sztp.{DOMAIN}", artifacts)
    with link.unicast(unicast) as dns_log, link.responder([]) as responder:
        with link.device() as (device, folder):
            line = device.wait_for("bootstrapped sztp", timeout=90)
            assert f"dns://[{DNS_ADDRESS}]:53/SN-1._sztp.{DOMAIN}?type=TXT" in line
            assert _configured(folder)
        assert responder.said("unanswered SN-1._sztp.local. TXT")  # asked first, in vain
        assert f"query[TXT] SN-1._sztp.{DOMAIN} from {DEVICE_ADDRESS}" in dns_log.read_text()


def test_device_independent_srv_by_multicast_dns_names_a_bootstrap_server(link: Link) -> None:
    """No TXT records anywhere: the device goes on to ``_sztp._tcp.local`` SRV, whose answer
    carries the target's AAAA record, and onboards from ``zerotouch sztp serve`` there (an
    untrusted server: signed data, verified)."""
    server_dir = onboarding_server(link.vendor, link.tmp / "owner", "SN-1", CONFIG)
    args = ("sztp", "serve", "--dir", server_dir, "--listen", f"[{DNS_ADDRESS}]:0")
    sztp_server = start_server("sztp", *args, prefix=link.dns_host.prefix([]))
    try:
        port = urlsplit(sztp_server.url).port
        assert port is not None
        srv = dns.rdata.from_text("IN", "SRV", f"0 0 {port} bootstrap.local.")
        aaaa = dns.rdata.from_text("IN", "AAAA", DNS_ADDRESS)
        mdns = [
            ("_sztp._tcp.local.", "SRV", srv.to_wire().hex()),
            ("bootstrap.local.", "AAAA", aaaa.to_wire().hex()),
        ]
        with link.unicast([]), link.responder(mdns) as responder:
            with link.device() as (device, folder):
                line = device.wait_for("bootstrapped sztp", timeout=90)
                assert f"https://[{DNS_ADDRESS}]:{port}" in line
                assert _configured(folder)
            lines = [line.split(" from ")[0] for line in responder.lines()]
        assert lines.index("unanswered SN-1._sztp.local. TXT") < lines.index(
            "answered _sztp._tcp.local. SRV"
        )
    finally:
        sztp_server.stop()


def test_multicast_dns_over_ipv4(link4: Link) -> None:
    """An IPv4-only link: the one-shot query goes to 224.0.0.251 from the device's address,
    and the answer comes back by unicast."""
    artifacts = signed_artifacts(link4.vendor, link4.tmp / "owner", "SN-1", CONFIG)
    mdns = [("SN-1._sztp.local.", "TXT", rdata(key, der).hex()) for key, der in artifacts.items()]
    with link4.responder(mdns) as responder:
        with link4.device(unicast=False) as (device, folder):
            line = device.wait_for("bootstrapped sztp", timeout=90)
            assert "mdns://eth0/SN-1._sztp.local?type=TXT" in line
            assert _configured(folder)
        assert set(responder.said("answered SN-1._sztp.local. TXT")) == {DEVICE_ADDRESS4}
