"""``zerotouch device run --bootstrap-server`` against ``zerotouch sztp serve``, both real
processes on 127.0.0.1 (RFC 8572): the untrusted path (signed data verified: ownership
voucher, owner certificate, signature), the trusted path (a server CA the device holds,
unsigned data), the configuration applied to running and startup, progress reported to the
server, and the device refusing a server whose owner it cannot verify."""

from __future__ import annotations

import base64
import json
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from tests.support.device_process import DeviceProcess, start_device
from tests.support.processes import run_cli, server
from zerotouch_plugin.artifacts import certs

HOSTNAME = "sztp-device-1"
CONFIG = json.dumps({"ietf-system:system": {"hostname": HOSTNAME}}).encode()


@dataclass
class Lab:
    root: Path
    vendor: Path


def _voucher(lab: Lab, folder: Path, serial: str, *, pinned: Path | None = None) -> Path:
    """A nonceless ownership voucher (expires-on ahead) pinning the server's owner CA."""
    anchor = certs.load_certs((pinned or folder / "owner-ca.pem").read_bytes())[0]
    payload = {
        "ietf-voucher:voucher": {
            "created-on": "2026-01-01T00:00:00Z",
            "expires-on": "2036-01-01T00:00:00Z",
            "assertion": "verified",
            "serial-number": serial,
            "pinned-domain-cert": base64.b64encode(anchor.public_bytes(Encoding.DER)).decode(),
        }
    }
    (folder / "v.json").write_text(json.dumps(payload))
    out = folder / f"{serial}.cms"
    run_cli(
        "voucher", "sign", "--payload", folder / "v.json",
        "--cert", lab.vendor / "masa-signer.pem", "--key", lab.vendor / "masa-signer.key",
        "--out", out,
    )  # fmt: skip
    return out


def _bootstrap_server(lab: Lab, name: str, *, trusted: bool, pinned: Path | None = None) -> Path:
    folder = lab.root / name
    run_cli("sztp", "init", "--dir", folder, "--manufacturer-ca", lab.vendor / "ca.pem")
    if trusted:
        (folder / "sztp.toml").write_text("trusted = true\n")
    (folder / "config.json").write_bytes(CONFIG)
    script = folder / "post.sh"
    script.write_text("#!/bin/sh\necho post-configuration done\nexit 0\n")
    run_cli("sztp", "response", "set", "--dir", folder, "--name", "onboard",
            "--config", folder / "config.json", "--handling", "merge",
            "--post-script", script)  # fmt: skip
    run_cli("sztp", "devices", "--dir", folder, "--set", "SN-1", "--response", "onboard",
            "--voucher", _voucher(lab, folder, "SN-1", pinned=pinned))  # fmt: skip
    return folder


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    root = tmp_path_factory.mktemp("sztp-device")
    vendor = root / "vendor"
    run_cli("vendor", "init", "--dir", vendor, "--masa-url", "https://127.0.0.1:9443")
    return Lab(root, vendor)


def _device_folder(lab: Lab, name: str) -> Path:
    folder = lab.root / name
    run_cli("vendor", "idevid", "--dir", lab.vendor, "--serial", "SN-1", "--out", folder)
    return folder


@pytest.fixture
def sztp_device(lab: Lab) -> Iterator[tuple[Path, list[DeviceProcess]]]:
    """A fresh device folder; the processes started on it are stopped at the end."""
    started: list[DeviceProcess] = []
    folder = _device_folder(lab, f"dev-{len(list(lab.root.glob('dev-*')))}")
    yield folder, started
    for process in started:
        process.stop()
        process.log_path.unlink(missing_ok=True)


def _run_device(folder: Path, started: list[DeviceProcess], *extra: str) -> DeviceProcess:
    process = start_device(folder, {"netconf-tls": "127.0.0.1:0"}, extra=extra, verbose=True)
    started.append(process)
    return process


def _progress(folder: Path) -> list[str]:
    out = run_cli("sztp", "progress", "--dir", folder, "--serial", "SN-1", "--json").stdout
    return [str(entry["progress-type"]) for entry in json.loads(out)]


def _startup(folder: Path) -> dict[str, object]:
    return json.loads((folder / "startup.json").read_text())  # type: ignore[no-any-return]


def test_untrusted_server_signed_data_onboards_the_device(
    lab: Lab, sztp_device: tuple[Path, list[DeviceProcess]]
) -> None:
    folder, started = sztp_device
    server_dir = _bootstrap_server(lab, "untrusted", trusted=False)
    with server("sztp", "sztp", "serve", "--dir", server_dir, "--listen", "127.0.0.1:0") as srv:
        device = _run_device(folder, started, "--bootstrap-server", srv.url)
        line = device.wait_for("bootstrapped sztp", timeout=90)
        assert srv.url.rstrip("/") in line
        progress = _progress(server_dir)
    assert _startup(folder)["ietf-system:system"] == {"hostname": HOSTNAME}
    # signed data verified: the device reports to the server (RFC 8572 §5.3, §7.3)
    for kind in ("bootstrap-initiated", "config-complete", "post-script-complete"):
        assert kind in progress
    assert progress[-1] == "bootstrap-complete"
    state = json.loads((folder / "bootstrap-state.json").read_text())
    events = [e["event"] for e in state["events"]]
    assert "sztp-config-complete" in events
    assert events[-1] == "sztp-complete"
    assert not any(stat.S_ISREG(p.stat().st_mode) for p in folder.glob(".sztp-script-*"))


def test_trusted_server_unsigned_data_onboards_the_device(
    lab: Lab, sztp_device: tuple[Path, list[DeviceProcess]]
) -> None:
    folder, started = sztp_device
    server_dir = _bootstrap_server(lab, "trusted", trusted=True)
    with server("sztp", "sztp", "serve", "--dir", server_dir, "--listen", "127.0.0.1:0") as srv:
        device = _run_device(
            folder,
            started,
            "--bootstrap-server", srv.url,
            "--bootstrap-server-ca", str(server_dir / "sztp-ca.pem"),
        )  # fmt: skip
        device.wait_for("bootstrapped sztp", timeout=90)
        assert _progress(server_dir)[-1] == "bootstrap-complete"
    assert _startup(folder)["ietf-system:system"] == {"hostname": HOSTNAME}


def test_voucher_pinning_another_owner_is_refused(
    lab: Lab, sztp_device: tuple[Path, list[DeviceProcess]]
) -> None:
    """The server's owner certificate does not chain to the voucher's pinned-domain-cert
    (the voucher names another owner): nothing is applied and nothing reported."""
    folder, started = sztp_device
    other = lab.root / "other-owner"
    run_cli("sztp", "init", "--dir", other, "--manufacturer-ca", lab.vendor / "ca.pem")
    server_dir = _bootstrap_server(lab, "impostor", trusted=False, pinned=other / "owner-ca.pem")
    with server("sztp", "sztp", "serve", "--dir", server_dir, "--listen", "127.0.0.1:0") as srv:
        device = _run_device(folder, started, "--bootstrap-server", srv.url)
        device.wait_for("listening", timeout=30)
        state_file = folder / "bootstrap-state.json"
        _wait_for_event(state_file, "attempt-failed")
        progress = _progress(server_dir)
    state = json.loads(state_file.read_text())
    failed = [e for e in state["events"] if e["event"] == "attempt-failed"]
    assert "pinned-domain-cert" in failed[0]["detail"]
    assert progress == []
    assert not (folder / "startup.json").exists() or "ietf-system:system" not in _startup(folder)


def _wait_for_event(path: Path, event: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            try:
                state = json.loads(path.read_text())
            except ValueError:
                state = {"events": []}
            if any(e["event"] == event for e in state["events"]):
                return
        time.sleep(0.2)
    raise AssertionError(f"no {event} event in {path} within {timeout} s")
