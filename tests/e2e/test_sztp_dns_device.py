"""``zerotouch device run --bootstrap-dns-domain`` against a real dnsmasq on 127.0.0.1
(RFC 8572 §4.2): the device reads signed bootstrapping data from the TXT records at
``SN-1._sztp.<domain>`` and onboards; a voucher for another serial in them is refused; an
SRV record at ``_sztp._tcp.<domain>`` names a bootstrap server the device onboards from."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from base64 import b64encode
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.device_process import DeviceProcess, start_device
from tests.support.processes import free_port, run_cli, server
from tests.support.sztp_lab import onboarding_server
from zerotouch_plugin.artifacts import sztp
from zerotouch_plugin.services import certfiles

DOMAIN = "sztp.test"
HOSTNAME = "dns-device-1"
CONFIG = json.dumps({"ietf-system:system": {"hostname": HOSTNAME}}).encode()


def _dnsmasq() -> str:
    found = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not Path(found).exists():
        message = "dnsmasq missing: run scripts/setup-system.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _txt_record(name: str, artifacts: dict[str, bytes]) -> str:
    """A dnsmasq --txt-record with each artifact base64 in strings of at most 200 octets
    (given on the command line: dnsmasq's configuration file lines are too short)."""
    strings: list[str] = []
    for key, der in artifacts.items():
        text = b64encode(der).decode()
        strings += [f"{key}={text[i : i + 200]}" for i in range(0, len(text), 200)]
    return f"--txt-record={name},{','.join(strings)}"


def _answers(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _serve(dnsmasq: str, port: int, records: list[str]) -> subprocess.Popen[bytes]:
    command = [
        dnsmasq, "--keep-in-foreground", "--no-resolv", "--no-hosts", "--conf-file=/dev/null",
        "--pid-file", "--bind-interfaces", "--listen-address=127.0.0.1", f"--port={port}",
        f"--local=/{DOMAIN}/", "--log-queries", "--log-facility=-", *records,
    ]  # fmt: skip
    if os.geteuid() == 0:
        command.append("--user=root")
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while not _answers(port):
        if proc.poll() is not None:
            assert proc.stderr is not None
            raise AssertionError(f"dnsmasq exited: {proc.stderr.read().decode()}")
        assert time.monotonic() < deadline, "dnsmasq did not start listening"
        time.sleep(0.05)
    return proc


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sztp-dns")
    run_cli("vendor", "init", "--dir", root / "vendor", "--masa-url", "https://127.0.0.1:9443")
    return root


def _signed(lab: Path, owner_name: str, serial: str) -> dict[str, bytes]:
    """ov/oc/ci of an owner for ``serial``: a voucher from the vendor, the owner's chain,
    conveyed information setting the hostname, signed by the owner."""
    server_dir = onboarding_server(lab / "vendor", lab / owner_name, serial, CONFIG)
    owner = certfiles.load_identity(server_dir / "owner.pem", server_dir / "owner.key")
    info = sztp.OnboardingInformation(
        configuration_handling=sztp.ConfigurationHandling.MERGE, configuration=CONFIG
    )
    chain = [owner.cert, *(c for c in owner.chain if c.subject != c.issuer)]
    return {
        "ov": (server_dir / f"{serial}.cms").read_bytes(),
        "oc": sztp.encode_certs_only(chain),
        "ci": sztp.sign_conveyed_information(info, owner=owner, now=datetime.now(UTC)),
    }


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
    port = free_port()
    dns = _serve(_dnsmasq(), port, records)
    process: DeviceProcess | None = None
    try:
        folder, process = _device(lab, name, port, lease)
        yield folder, process
    finally:
        if process is not None:
            process.stop()
        dns.terminate()
        dns.wait(10)
        if dns.stderr is not None:
            dns.stderr.close()


def test_device_bootstraps_from_signed_data_in_dns_txt_records(lab: Path) -> None:
    records = [_txt_record(f"SN-1._sztp.{DOMAIN}", _signed(lab, "owner-ok", "SN-1"))]
    with _run(lab, "dev-dns-ok", records) as (folder, device):
        line = device.wait_for("bootstrapped sztp", timeout=90)
        assert f"SN-1._sztp.{DOMAIN}" in line
        startup = json.loads((folder / "startup.json").read_text())
        assert startup["ietf-system:system"] == {"hostname": HOSTNAME}


def test_voucher_for_another_serial_in_dns_is_refused(lab: Path) -> None:
    records = [_txt_record(f"SN-1._sztp.{DOMAIN}", _signed(lab, "owner-x", "SN-2"))]
    with _run(lab, "dev-dns-other", records) as (folder, _):
        state_path = folder / "bootstrap-state.json"
        deadline = time.monotonic() + 60
        failed: list[dict[str, str]] = []
        while not failed:
            assert time.monotonic() < deadline, "no attempt-failed event"
            time.sleep(0.2)
            if state_path.exists():
                events = json.loads(state_path.read_text())["events"]
                failed = [e for e in events if e["event"] == "attempt-failed"]
        assert "wrong-serial" in failed[0]["detail"] and "'SN-2'" in failed[0]["detail"]
        assert not (folder / "startup.json").exists()


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
    records = [_txt_record(f"SN-1._sztp.{DOMAIN}", _signed(lab, "owner-lease", "SN-1"))]
    with _run(lab, "dev-dns-lease", records, lease) as (folder, device):
        line = device.wait_for("bootstrapped sztp", timeout=90)
        assert f"SN-1._sztp.{DOMAIN}" in line
        startup = json.loads((folder / "startup.json").read_text())
        assert startup["ietf-system:system"] == {"hostname": HOSTNAME}
