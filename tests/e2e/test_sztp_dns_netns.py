"""The SZTP DNS source across a real link (network namespaces, tests/support/netns.py;
RFC 8572 §4.2): a device host and a DNS host joined by a veth pair, the device running
``zerotouch device run --bootstrap-mdns-interface eth0 --bootstrap-dns-domain sztp.test``.

* An mDNS responder in the DNS host (tests/support/mdns_responder.py) answers the device's
  one-shot query for ``SN-1._sztp.local`` TXT with the signed artifacts, one record each:
  the device onboards from multicast DNS and never asks the unicast server.
* The responder holds nothing (mDNS is silent): after its bounded wait the device asks
  dnsmasq in the DNS host by unicast for ``SN-1._sztp.sztp.test`` and onboards from that.

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

import pytest

from tests.support.device_process import DeviceProcess, start_device
from tests.support.netns import Host, netns_lab
from tests.support.processes import run_cli
from tests.support.sztp_dns_lab import dnsmasq, rdata, signed_artifacts, txt_records

REPO = Path(__file__).resolve().parents[2]
DOMAIN = "sztp.test"
DNS_ADDRESS, DEVICE_ADDRESS = "fd00:8572::53", "fd00:8572::2"
HOSTNAME = "mdns-device-1"
CONFIG = json.dumps({"ietf-system:system": {"hostname": HOSTNAME}}).encode()


@pytest.fixture(scope="module")
def vendor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sztp-mdns")
    run_cli("vendor", "init", "--dir", root / "vendor", "--masa-url", "https://127.0.0.1:9443")
    return root / "vendor"


@dataclass
class Run:
    device: DeviceProcess
    folder: Path
    responder: subprocess.Popen[str]
    dns_log: Path

    def responder_lines(self) -> list[str]:
        """What the responder printed, read once it has been stopped."""
        self.responder.terminate()
        out, _ = self.responder.communicate(timeout=10)
        return out.splitlines()


@contextmanager
def _responder(
    host: Host, records: list[tuple[str, str, str]], path: Path
) -> Iterator[subprocess.Popen[str]]:
    path.write_text(json.dumps(records))
    argv = [sys.executable, "-m", "tests.support.mdns_responder", "eth0", str(path)]
    proc = subprocess.Popen(
        host.prefix(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first == "ready", f"mDNS responder: {first} {proc.stdout.read()}"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


@contextmanager
def _lab(
    tmp: Path, vendor: Path, mdns: list[tuple[str, str, str]], unicast: list[str]
) -> Iterator[Run]:
    with netns_lab() as lab:
        device_host, dns_host = lab.host("dev"), lab.host("dns")
        lab.link(device_host, dns_host)
        for host, address in ((dns_host, DNS_ADDRESS), (device_host, DEVICE_ADDRESS)):
            result = host.run("ip", "addr", "add", f"{address}/64", "dev", "eth0", "nodad")
            assert result.returncode == 0, result.stderr
        dns_log = tmp / "dnsmasq.log"
        server = dnsmasq(DNS_ADDRESS, 53, DOMAIN, unicast, dns_log, dns_host.prefix([]))
        try:
            with _responder(dns_host, mdns, tmp / "mdns.json") as responder:
                folder = tmp / "device"
                run_cli("vendor", "idevid", "--dir", vendor, "--serial", "SN-1", "--out", folder)
                extra = (
                    "--bootstrap-mdns-interface", "eth0",
                    "--bootstrap-dns-domain", DOMAIN,
                    "--bootstrap-dns-server", f"[{DNS_ADDRESS}]:53",
                )  # fmt: skip
                device = start_device(
                    folder,
                    {"netconf-tls": "127.0.0.1:0"},
                    extra=extra,
                    verbose=True,
                    prefix=device_host.prefix([]),
                )
                try:
                    yield Run(device, folder, responder, dns_log)
                finally:
                    device.stop()
        finally:
            server.terminate()
            server.wait(10)


def _configured(folder: Path) -> bool:
    startup = json.loads((folder / "startup.json").read_text())
    return bool(startup["ietf-system:system"] == {"hostname": HOSTNAME})


def test_device_onboards_from_multicast_dns_first(tmp_path: Path, vendor: Path) -> None:
    artifacts = signed_artifacts(vendor, tmp_path / "owner", "SN-1", CONFIG)
    mdns = [("SN-1._sztp.local.", "TXT", rdata(key, der).hex()) for key, der in artifacts.items()]
    unicast = txt_records(f"SN-1._sztp.{DOMAIN}", artifacts)
    with _lab(tmp_path, vendor, mdns, unicast) as run:
        line = run.device.wait_for("bootstrapped sztp", timeout=90)
        assert "mdns://eth0/SN-1._sztp.local?type=TXT" in line
        assert _configured(run.folder)
        assert "answered SN-1._sztp.local. TXT" in run.responder_lines()
    assert "query[TXT]" not in run.dns_log.read_text()  # unicast was never needed


def test_silent_multicast_dns_falls_back_to_unicast(tmp_path: Path, vendor: Path) -> None:
    artifacts = signed_artifacts(vendor, tmp_path / "owner", "SN-1", CONFIG)
    unicast = txt_records(f"SN-1._sztp.{DOMAIN}", artifacts)
    with _lab(tmp_path, vendor, [], unicast) as run:
        line = run.device.wait_for("bootstrapped sztp", timeout=90)
        assert f"dns://[{DNS_ADDRESS}]:53/SN-1._sztp.{DOMAIN}?type=TXT" in line
        assert _configured(run.folder)
        lines = run.responder_lines()
    assert "unanswered SN-1._sztp.local. TXT" in lines  # asked by mDNS first, in vain
    assert f"query[TXT] SN-1._sztp.{DOMAIN} from {DEVICE_ADDRESS}" in run.dns_log.read_text()
