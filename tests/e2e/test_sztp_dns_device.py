"""``zerotouch device run --bootstrap-dns-domain`` against a real dnsmasq on 127.0.0.1
(RFC 8572 §4.2): the device reads signed bootstrapping data from the TXT records at
``SN-1._sztp.<domain>``, one record per artifact holding ``ci=``/``oc=``/``ov=`` and the
binary artifact, too large for UDP so asked again over TCP, and onboards; a voucher for
another serial in them is refused; unsigned redirect information in a ``ci`` record alone
leads to a bootstrap server, unsigned onboarding information there is refused; an SRV record
at ``_sztp._tcp.<domain>`` names a bootstrap server the device onboards from."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.device_process import DeviceProcess, start_device
from tests.support.processes import free_port, run_cli, server
from tests.support.sztp_dns_lab import dnsmasq, signed_artifacts, txt_records
from tests.support.sztp_lab import onboarding_server
from zerotouch_plugin.artifacts import sztp

DOMAIN = "sztp.test"
HOSTNAME = "dns-device-1"
CONFIG = json.dumps({"ietf-system:system": {"hostname": HOSTNAME}}).encode()
TXT = f"SN-1._sztp.{DOMAIN}"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sztp-dns")
    run_cli("vendor", "init", "--dir", root / "vendor", "--masa-url", "https://127.0.0.1:9443")
    return root


def _signed(lab: Path, owner_name: str, serial: str) -> dict[str, bytes]:
    return signed_artifacts(lab / "vendor", lab / owner_name, serial, CONFIG)


def _device(lab: Path, name: str, port: int, lease: Path | None) -> tuple[Path, DeviceProcess]:
    folder = lab / name
    run_cli("vendor", "idevid", "--dir", lab / "vendor", "--serial", "SN-1", "--out", folder)
    where = (
        ("--bootstrap-dns-domain", DOMAIN)
        if lease is None
        else ("--bootstrap-dhcp-lease", str(lease))
    )
    extra = (*where, "--bootstrap-dns-server", f"127.0.0.1:{port}")
    process = start_device(folder, {"netconf-tls": "127.0.0.1:0"}, extra=extra, verbose=True)
    return folder, process


@contextlib.contextmanager
def _run(
    lab: Path, name: str, records: list[str], lease: Path | None = None
) -> Iterator[tuple[Path, DeviceProcess]]:
    """dnsmasq serving ``records`` (its log in ``lab/NAME.dnsmasq.log``) and a device."""
    port = free_port()
    dns = dnsmasq("127.0.0.1", port, DOMAIN, records, lab / f"{name}.dnsmasq.log")
    process: DeviceProcess | None = None
    try:
        folder, process = _device(lab, name, port, lease)
        yield folder, process
    finally:
        if process is not None:
            process.stop()
        dns.terminate()
        dns.wait(10)


def _failures(folder: Path, timeout: float = 60) -> list[dict[str, str]]:
    """The attempt-failed events of the device's bootstrap state, once there is one."""
    state_path = folder / "bootstrap-state.json"
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, "no attempt-failed event"
        time.sleep(0.2)
        if state_path.exists():
            events = json.loads(state_path.read_text())["events"]
            failed = [e for e in events if e["event"] == "attempt-failed"]
            if failed:
                return failed


def test_device_bootstraps_from_signed_data_in_dns_txt_records(lab: Path) -> None:
    """Three TXT records of kilobytes: the UDP answer is truncated and the device asks again
    over TCP (dnsmasq answers TCP in a child process, whose PID its log shows)."""
    artifacts = _signed(lab, "owner-ok", "SN-1")
    assert sum(len(v) for v in artifacts.values()) > 1232  # more than EDNS(0) UDP carries here
    with _run(lab, "dev-dns-ok", txt_records(TXT, artifacts)) as (folder, device):
        line = device.wait_for("bootstrapped sztp", timeout=90)
        assert "dns://127.0.0.1:" in line and f"/{TXT}?type=TXT" in line
        startup = json.loads((folder / "startup.json").read_text())
        assert startup["ietf-system:system"] == {"hostname": HOSTNAME}
    log = (lab / "dev-dns-ok.dnsmasq.log").read_text()
    main = re.search(r"dnsmasq\[(\d+)\]: started", log)
    assert main is not None
    askers = set(re.findall(rf"dnsmasq\[(\d+)\]: query\[TXT\] {re.escape(TXT)} ", log))
    assert main.group(1) in askers and askers - {main.group(1)}, log


def test_voucher_for_another_serial_in_dns_is_refused(lab: Path) -> None:
    records = txt_records(TXT, _signed(lab, "owner-x", "SN-2"))
    with _run(lab, "dev-dns-other", records) as (folder, _):
        failed = _failures(folder)
        assert "wrong-serial" in failed[0]["detail"] and "'SN-2'" in failed[0]["detail"]
        assert not (folder / "startup.json").exists()


def test_unsigned_onboarding_information_in_dns_is_refused(lab: Path) -> None:
    info = sztp.OnboardingInformation(
        configuration_handling=sztp.ConfigurationHandling.MERGE, configuration=CONFIG
    )
    records = txt_records(TXT, {"ci": sztp.encode_unsigned_conveyed_information(info)})
    with _run(lab, "dev-dns-unsigned", records) as (folder, _):
        failed = _failures(folder)
        assert "§5.3" in failed[0]["detail"], failed
        assert not (folder / "startup.json").exists()


def test_unsigned_redirect_in_dns_leads_to_a_bootstrap_server(lab: Path) -> None:
    """A ``ci`` record alone with unsigned redirect information: followed provisionally, to
    ``zerotouch sztp serve``, an untrusted server whose signed data the device verifies."""
    server_dir = onboarding_server(lab / "vendor", lab / "owner-redirect", "SN-1", CONFIG)
    with server("sztp", "sztp", "serve", "--dir", server_dir, "--listen", "127.0.0.1:0") as srv:
        port = urlsplit(srv.url).port
        assert port is not None
        redirect = sztp.RedirectInformation(
            bootstrap_servers=(sztp.BootstrapServer("localhost", port),)
        )
        records = txt_records(TXT, {"ci": sztp.encode_unsigned_conveyed_information(redirect)})
        with _run(lab, "dev-dns-redirect", records) as (folder, device):
            line = device.wait_for("bootstrapped sztp", timeout=90)
            assert f"https://localhost:{port}" in line
            startup = json.loads((folder / "startup.json").read_text())
            assert startup["ietf-system:system"] == {"hostname": HOSTNAME}


def test_device_bootstraps_from_a_server_named_by_dns_srv(lab: Path) -> None:
    """No TXT data: the SRV record names ``zerotouch sztp serve``, an untrusted server whose
    signed data the device verifies."""
    server_dir = onboarding_server(lab / "vendor", lab / "owner-srv", "SN-1", CONFIG)
    with server("sztp", "sztp", "serve", "--dir", server_dir, "--listen", "127.0.0.1:0") as srv:
        port = urlsplit(srv.url).port
        records = [f"--srv-host=_sztp._tcp.{DOMAIN},localhost,{port},0,0"]
        with _run(lab, "dev-dns-srv", records) as (folder, device):
            line = device.wait_for("bootstrapped sztp", timeout=90)
            assert f"https://localhost:{port}" in line
            startup = json.loads((folder / "startup.json").read_text())
            assert startup["ietf-system:system"] == {"hostname": HOSTNAME}


def test_the_domain_comes_from_the_dhcp_lease(lab: Path) -> None:
    """No configured domain: the lease's domain-name (DHCPv4 option 15) says where to look."""
    lease = lab / "dhclient.leases"
    lease.write_text(f'lease {{\n  interface "eth0";\n  option domain-name "{DOMAIN}";\n}}\n')
    records = txt_records(TXT, _signed(lab, "owner-lease", "SN-1"))
    with _run(lab, "dev-dns-lease", records, lease) as (folder, device):
        line = device.wait_for("bootstrapped sztp", timeout=90)
        assert TXT in line
        startup = json.loads((folder / "startup.json").read_text())
        assert startup["ietf-system:system"] == {"hostname": HOSTNAME}
