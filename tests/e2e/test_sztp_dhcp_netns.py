"""SZTP bootstrap servers from DHCP (RFC 8572 §8) across a link between network namespaces:
a real DHCP server (dnsmasq) offers option 143 (DHCPv4) or 136 (DHCPv6) naming ``zerotouch
sztp serve`` in its host; ``zerotouch device run --bootstrap-dhcp eth0`` in the other host
runs its own DHCP exchanges on the interface, finds the URI, and is onboarded from it (signed
data, the untrusted path: a URI from DHCP gives no trust)."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.netns import Host, Lab, _ip, netns_lab
from tests.support.processes import ServerProcess, run_cli, start_server
from tests.support.sztp_lab import onboarding_server
from zerotouch_plugin.artifacts.dhcp import encode_uri_list

SERVER_ADDRESS, DEVICE_ADDRESS = "192.0.2.1", "192.0.2.9"
CONFIG = {"ietf-system:system": {"hostname": "from-dhcp"}}


def _dnsmasq_path() -> str:
    path = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not Path(path).exists():
        message = "dnsmasq missing: run scripts/setup-system.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@contextmanager
def dhcp_server(host: Host, interface: str, option: bytes, *, v6: bool = False) -> Iterator[Path]:
    """dnsmasq as a DHCP server only (no DNS) on ``interface``: DHCPv4 offering option 143,
    or with ``v6`` stateless DHCPv6 answering Information-Requests with option 136."""
    leases = Path(tempfile.mkdtemp(prefix="zt-dhcp-"))
    served = (
        ["--dhcp-range=fd00:5a::,ra-stateless", f"--dhcp-option=option6:136,{option.hex(':')}"]
        if v6
        else [
            "--dhcp-range=192.0.2.10,192.0.2.50,255.255.255.0,1h",
            f"--dhcp-option=143,{option.hex(':')}",
        ]
    )
    command = [
        _dnsmasq_path(), "--keep-in-foreground", "--no-resolv", "--no-hosts", "--port=0",
        "--conf-file=/dev/null", "--pid-file", "--user=root", "--bind-interfaces",
        f"--interface={interface}", *served, f"--dhcp-leasefile={leases / 'leases'}",
        "--log-dhcp", "--log-facility=-",
    ]  # fmt: skip
    log = leases / "dnsmasq.log"
    with log.open("w") as out:
        proc = subprocess.Popen(host.prefix(command), stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 10
        while (":547 " if v6 else ":67 ") not in host.run("ss", "-Hlun").stdout:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "dnsmasq did not start listening"
            time.sleep(0.05)
        yield log
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(leases, ignore_errors=True)


def _wait_line(process: ServerProcess, prefix: str, timeout: float) -> str:
    assert process.proc.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.proc.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0 and selector.select(left):
            line = process.proc.stdout.readline()
            if not line:
                break
            if line.startswith(prefix):
                return line.strip()
    raise AssertionError(f"no {prefix!r} line:\n{process.stderr}")


def _lab(lab: Lab) -> tuple[Host, Host, str, str]:
    server_host, device_host = lab.host("sztp"), lab.host("device")
    server_if, device_if = lab.link(server_host, device_host)
    _ip("-n", server_host.name, "addr", "add", f"{SERVER_ADDRESS}/24", "dev", server_if)
    _ip("-n", device_host.name, "addr", "add", f"{DEVICE_ADDRESS}/24", "dev", device_if)
    return server_host, device_host, server_if, device_if


def test_device_finds_its_bootstrap_server_in_dhcp_option_143(tmp_path: Path) -> None:
    vendor, server_dir, device_dir = tmp_path / "vendor", tmp_path / "server", tmp_path / "dev"
    run_cli("vendor", "init", "--dir", vendor, "--masa-url", "https://127.0.0.1:9443")
    run_cli("vendor", "idevid", "--dir", vendor, "--serial", "SN-D1", "--out", device_dir)
    config = json.dumps(CONFIG).encode()
    onboarding_server(vendor, server_dir, "SN-D1", config, hosts=[SERVER_ADDRESS])
    with netns_lab() as lab:
        server_host, device_host, server_if, device_if = _lab(lab)
        bootstrap = start_server(
            "sztp", "sztp", "serve", "--dir", server_dir, "--listen", f"{SERVER_ADDRESS}:0",
            prefix=server_host.prefix([]),
        )  # fmt: skip
        device = None
        try:
            option = encode_uri_list([bootstrap.url])
            with dhcp_server(server_host, server_if, option) as dhcp_log:
                device = start_server(
                    "netconf-tls", "device", "run", "--dir", device_dir,
                    "--netconf-tls", "127.0.0.1:0", "--bootstrap-dhcp", device_if,
                    prefix=device_host.prefix([]),
                )  # fmt: skip
                line = _wait_line(device, "bootstrapped sztp", timeout=90)
                assert bootstrap.url in line, line
                assert "DHCPOFFER" in dhcp_log.read_text()
        finally:
            for process in (device, bootstrap):
                if process is not None:
                    process.stop()
                    process.log_path.unlink(missing_ok=True)
    startup = json.loads((device_dir / "startup.json").read_text())
    assert startup["ietf-system:system"] == {"hostname": "from-dhcp"}
    state = json.loads((device_dir / "bootstrap-state.json").read_text())
    dhcp_events = [e for e in state["events"] if e["event"] == "sztp-dhcp"]
    assert dhcp_events and bootstrap.url in dhcp_events[0]["detail"]


def test_a_dhcp_named_server_that_does_not_answer_leaves_the_device_retrying(
    tmp_path: Path,
) -> None:
    """DHCP names a bootstrap server that does not answer: the device records the URI and
    the failed attempt, waits and tries again; nothing is applied, the agent keeps going."""
    vendor, device_dir = tmp_path / "vendor", tmp_path / "dev"
    run_cli("vendor", "init", "--dir", vendor, "--masa-url", "https://127.0.0.1:9443")
    run_cli("vendor", "idevid", "--dir", vendor, "--serial", "SN-D2", "--out", device_dir)
    with netns_lab() as lab:
        server_host, device_host, server_if, device_if = _lab(lab)
        with dhcp_server(server_host, server_if, encode_uri_list(["https://192.0.2.1:1"])):
            device = start_server(
                "netconf-tls", "device", "run", "--dir", device_dir,
                "--netconf-tls", "127.0.0.1:0", "--bootstrap-dhcp", device_if,
                prefix=device_host.prefix([]),
            )  # fmt: skip
            try:
                state_file = device_dir / "bootstrap-state.json"
                deadline = time.monotonic() + 60
                events: list[str] = []
                while time.monotonic() < deadline and "waiting-retry" not in events:
                    time.sleep(0.3)
                    if state_file.exists():
                        try:
                            state = json.loads(state_file.read_text())
                        except ValueError:
                            continue
                        events = [e["event"] for e in state["events"]]
                assert "sztp-dhcp" in events, device.stderr
                assert "attempt-failed" in events
                assert "waiting-retry" in events
            finally:
                device.stop()
                device.log_path.unlink(missing_ok=True)
    assert not (device_dir / "startup.json").exists()


def test_device_finds_its_bootstrap_server_in_dhcpv6_option_136(tmp_path: Path) -> None:
    """The same over IPv6: stateless DHCPv6 (an Information-Request) names the server by
    its IPv6 address; no DHCPv4 server on the link."""
    vendor, server_dir, device_dir = tmp_path / "vendor", tmp_path / "server", tmp_path / "dev"
    run_cli("vendor", "init", "--dir", vendor, "--masa-url", "https://127.0.0.1:9443")
    run_cli("vendor", "idevid", "--dir", vendor, "--serial", "SN-D6", "--out", device_dir)
    config = json.dumps(CONFIG).encode()
    onboarding_server(vendor, server_dir, "SN-D6", config, hosts=["fd00:5a::1"])
    with netns_lab() as lab:
        server_host, device_host = lab.host("sztp6"), lab.host("device6")
        server_if, device_if = lab.link(server_host, device_host)
        for host, interface, address in (
            (server_host, server_if, "fd00:5a::1"),
            (device_host, device_if, "fd00:5a::9"),
        ):
            _ip("-n", host.name, "addr", "add", f"{address}/64", "dev", interface, "nodad")
        device_host.link_local(device_if)
        bootstrap = start_server(
            "sztp", "sztp", "serve", "--dir", server_dir, "--listen", "[fd00:5a::1]:0",
            prefix=server_host.prefix([]),
        )  # fmt: skip
        device = None
        try:
            with dhcp_server(server_host, server_if, encode_uri_list([bootstrap.url]), v6=True):
                device = start_server(
                    "netconf-tls", "device", "run", "--dir", device_dir,
                    "--netconf-tls", "127.0.0.1:0", "--bootstrap-dhcp", device_if,
                    prefix=device_host.prefix([]),
                )  # fmt: skip
                line = _wait_line(device, "bootstrapped sztp", timeout=90)
                assert bootstrap.url in line, line
        finally:
            for process in (device, bootstrap):
                if process is not None:
                    process.stop()
                    process.log_path.unlink(missing_ok=True)
    startup = json.loads((device_dir / "startup.json").read_text())
    assert startup["ietf-system:system"] == {"hostname": "from-dhcp"}
