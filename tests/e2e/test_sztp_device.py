"""``zerotouch device run --bootstrap-server`` against ``zerotouch sztp serve``, both real
processes on 127.0.0.1 (RFC 8572): the untrusted path (signed data verified: ownership
voucher, owner certificate, signature), the trusted path (a server CA the device holds,
unsigned data), the configuration applied to running and startup, progress reported to the
server, and the device refusing a server whose owner it cannot verify."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import shlex
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from ncclient import manager
from ncclient.operations import RPCError

from tests.support.device_process import DeviceProcess, start_device
from tests.support.processes import free_port, run_cli, server
from tests.support.sztp_lab import onboarding_server, ownership_voucher
from tests.support.waiting import wait_until
from zerotouch_plugin.artifacts import sztp
from zerotouch_plugin.services import certfiles

HOSTNAME = "sztp-device-1"
BOOTSTRAP_NS = "urn:zerotouch:params:xml:ns:yang:zerotouch-bootstrap"
IMAGE = b"VendorOS 2.0 image " * 4096
CONFIG = json.dumps({"ietf-system:system": {"hostname": HOSTNAME}}).encode()


@dataclass
class Lab:
    root: Path
    vendor: Path


def _bootstrap_server(
    lab: Lab,
    name: str,
    *,
    trusted: bool,
    pinned: Path | None = None,
    config: bytes = CONFIG,
    response: tuple[str, ...] = (),
) -> Path:
    """A server folder onboarding SN-1 with CONFIG and a post-configuration script."""
    script = lab.root / f"{name}-post.sh"
    script.write_text("#!/bin/sh\necho post-configuration done\nexit 0\n")
    folder = onboarding_server(
        lab.vendor, lab.root / name, "SN-1", config,
        response=("--post-script", str(script), *response), pinned=pinned,
    )  # fmt: skip
    if trusted:
        (folder / "sztp.toml").write_text("trusted = true\n")
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
    # an untrusted server gets no progress reports even when its signed data verified
    # (RFC 8572 §7.2 reporting-level); the device records each step itself
    assert progress == []
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


def test_owner_certificate_not_under_the_vouchers_pin_is_refused(
    lab: Lab, sztp_device: tuple[Path, list[DeviceProcess]]
) -> None:
    """A bootstrap server holding this device's voucher signs with another owner's key (a
    voucher copied to a server of someone else): the owner certificate does not chain to
    the pinned-domain-cert, nothing is applied and nothing reported."""
    folder, started = sztp_device
    other = lab.root / "other-owner"
    run_cli("sztp", "init", "--dir", other, "--manufacturer-ca", lab.vendor / "ca.pem")
    server_dir = _bootstrap_server(lab, "impostor", trusted=False)
    for name in ("owner.pem", "owner.key"):
        shutil.copy(other / name, server_dir / name)
    progress, state = _refused(lab, folder, started, server_dir, "attempt-failed", trusted=False)
    failed = [e for e in state["events"] if e["event"] == "attempt-failed"]
    assert "pinned-domain-cert" in failed[0]["detail"]
    assert progress == []
    assert not (folder / "startup.json").exists()


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


@pytest.fixture(scope="module")
def image_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A plain HTTP server on 127.0.0.1 serving os-2.0.bin (the hash protects the image)."""
    folder = tmp_path_factory.mktemp("images")
    (folder / "os-2.0.bin").write_bytes(IMAGE)
    handler = functools.partial(_QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/os-2.0.bin"
    finally:
        httpd.shutdown()
        httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt: str, *args: object) -> None:
        """Requests are not logged to the test output."""


def _ca(server_dir: Path) -> tuple[str, str]:
    """The device option that makes it trust the server (RFC 8572 §5.1)."""
    return ("--bootstrap-server-ca", str(server_dir / "sztp-ca.pem"))


def _refused(
    lab: Lab,
    folder: Path,
    started: list[DeviceProcess],
    server_dir: Path,
    event: str,
    *,
    trusted: bool = True,
) -> tuple[list[str], dict[str, Any]]:
    """Run the device against the server (trusting it, so that it reports) until it records
    ``event``; the progress the server received and the bootstrap state."""
    extra = _ca(server_dir) if trusted else ()
    with server("sztp", "sztp", "serve", "--dir", server_dir, "--listen", "127.0.0.1:0") as srv:
        _run_device(folder, started, "--bootstrap-server", srv.url, *extra)
        _wait_for_event(folder / "bootstrap-state.json", event)
        progress = _progress(server_dir)
    return progress, json.loads((folder / "bootstrap-state.json").read_text())


def test_boot_image_is_downloaded_checked_and_recorded(
    lab: Lab, sztp_device: tuple[Path, list[DeviceProcess]], image_url: str
) -> None:
    folder, started = sztp_device
    digest = hashlib.sha256(IMAGE).hexdigest()
    server_dir = _bootstrap_server(
        lab, "image-ok", trusted=True,
        response=("--os-name", "VendorOS", "--os-version", "2.0", "--image-uri", image_url,
                  "--image-sha256", digest),
    )  # fmt: skip
    with server("sztp", "sztp", "serve", "--dir", server_dir, "--listen", "127.0.0.1:0") as srv:
        device = _run_device(folder, started, "--bootstrap-server", srv.url, *_ca(server_dir))
        device.wait_for("bootstrapped sztp", timeout=90)
        progress = _progress(server_dir)
    record = json.loads((folder / "boot-image.json").read_text())
    assert (record["os-version"], record["sha-256"], record["size"]) == ("2.0", digest, len(IMAGE))
    assert progress.index("boot-image-complete") < progress.index("config-complete")


def test_boot_image_hash_mismatch_stops_onboarding(
    lab: Lab, sztp_device: tuple[Path, list[DeviceProcess]], image_url: str
) -> None:
    folder, started = sztp_device
    server_dir = _bootstrap_server(
        lab, "image-bad", trusted=True,
        response=("--os-name", "VendorOS", "--os-version", "2.0", "--image-uri", image_url,
                  "--image-sha256", "00" * 32),
    )  # fmt: skip
    progress, state = _refused(lab, folder, started, server_dir, "attempt-failed")
    assert "boot-image-mismatch" in progress
    assert "config-initiated" not in progress and "bootstrap-complete" not in progress
    assert not (folder / "boot-image.json").exists()
    assert not (folder / "startup.json").exists()
    failed = [e for e in state["events"] if e["event"] == "attempt-failed"]
    assert "matches no image-verification" in failed[0]["detail"]


def test_invalid_configuration_is_refused_and_nothing_changes(
    lab: Lab, sztp_device: tuple[Path, list[DeviceProcess]]
) -> None:
    folder, started = sztp_device
    bad = json.dumps({"ietf-system:system": {"no-such-leaf": "x"}}).encode()
    server_dir = _bootstrap_server(lab, "bad-config", trusted=True, config=bad)
    progress, _ = _refused(lab, folder, started, server_dir, "attempt-failed")
    assert "config-error" in progress
    assert "post-script-initiated" not in progress and "bootstrap-complete" not in progress
    assert not (folder / "startup.json").exists()


def test_failing_pre_script_stops_before_the_configuration(
    lab: Lab, sztp_device: tuple[Path, list[DeviceProcess]]
) -> None:
    folder, started = sztp_device
    script = lab.root / "pre-fail.sh"
    script.write_text("#!/bin/sh\necho refusing >&2\nexit 2\n")
    server_dir = _bootstrap_server(
        lab, "pre-fail", trusted=True, response=("--pre-script", str(script))
    )
    progress, state = _refused(lab, folder, started, server_dir, "attempt-failed")
    assert "pre-script-error" in progress and "config-initiated" not in progress
    failed = [e for e in state["events"] if e["event"] == "attempt-failed"]
    assert "exit status 2: refusing" in failed[0]["detail"]
    assert not (folder / "startup.json").exists()


@pytest.mark.parametrize("encoding", list(sztp.Encoding), ids=lambda e: e.name.lower())
def test_removable_media_with_signed_data_onboards_the_device(
    lab: Lab, sztp_device: tuple[Path, list[DeviceProcess]], encoding: sztp.Encoding
) -> None:
    """RFC 8572 §4.1: the three artifacts as files; no server at all. The conveyed
    information signed as JSON or as XML (§3.1: id-ct-sztpConveyedInfoJSON / XML)."""
    folder, started = sztp_device
    server_dir = _bootstrap_server(lab, f"media-owner-{encoding.name.lower()}", trusted=False)
    owner = certfiles.load_identity(server_dir / "owner.pem", server_dir / "owner.key")
    info = sztp.OnboardingInformation(
        configuration_handling=sztp.ConfigurationHandling.MERGE, configuration=CONFIG
    )
    media = lab.root / f"usb-{encoding.name.lower()}"
    media.mkdir()
    chain = [owner.cert, *(c for c in owner.chain if c.subject != c.issuer)]
    (media / "conveyed-information.cms").write_bytes(
        sztp.sign_conveyed_information(info, owner=owner, now=datetime.now(UTC), encoding=encoding)
    )
    (media / "owner-certificate.cms").write_bytes(sztp.encode_certs_only(chain))
    shutil.copy(server_dir / "SN-1.cms", media / "ownership-voucher.cms")
    device = _run_device(folder, started, "--bootstrap-media", str(media))
    line = device.wait_for("bootstrapped sztp", timeout=90)
    assert str(media) in line
    assert _startup(folder)["ietf-system:system"] == {"hostname": HOSTNAME}


def test_removable_media_without_signature_is_refused(
    lab: Lab, sztp_device: tuple[Path, list[DeviceProcess]]
) -> None:
    folder, started = sztp_device
    info = sztp.OnboardingInformation(
        configuration_handling=sztp.ConfigurationHandling.MERGE, configuration=CONFIG
    )
    media = lab.root / "usb-unsigned"
    media.mkdir()
    (media / "conveyed-information.cms").write_bytes(
        sztp.encode_unsigned_conveyed_information(info)
    )
    _run_device(folder, started, "--bootstrap-media", str(media))
    _wait_for_event(folder / "bootstrap-state.json", "attempt-failed")
    state = json.loads((folder / "bootstrap-state.json").read_text())
    failed = [e for e in state["events"] if e["event"] == "attempt-failed"]
    assert "must come signed" in failed[0]["detail"]
    assert not (folder / "startup.json").exists()


def _redirect_server(lab: Lab, name: str, to: str, anchor: Path | None) -> Path:
    """A server whose answer for SN-1 is redirect information naming ``to`` (HOST:PORT)."""
    folder = lab.root / name
    run_cli("sztp", "init", "--dir", folder, "--manufacturer-ca", lab.vendor / "ca.pem")
    extra = () if anchor is None else ("--trust-anchor", str(anchor))
    run_cli("sztp", "response", "set", "--dir", folder, "--name", "redir",
            "--redirect", to, *extra)  # fmt: skip
    voucher = ownership_voucher(lab.vendor, folder, "SN-1", pinned=folder / "owner-ca.pem")
    run_cli("sztp", "devices", "--dir", folder, "--set", "SN-1", "--response", "redir",
            "--voucher", voucher)  # fmt: skip
    return folder


def _host_port(url: str) -> str:
    return url.removeprefix("https://").rstrip("/")


def test_signed_redirect_leads_to_a_server_trusted_by_the_conveyed_anchor(
    lab: Lab, sztp_device: tuple[Path, list[DeviceProcess]]
) -> None:
    """The first server is untrusted and signs redirect information carrying the second
    server's CA; the device then trusts the second server and takes its unsigned data."""
    folder, started = sztp_device
    target_dir = _bootstrap_server(lab, "redirect-target", trusted=True)
    with server("sztp", "sztp", "serve", "--dir", target_dir, "--listen", "127.0.0.1:0") as b:
        first_dir = _redirect_server(
            lab, "redirect-first", _host_port(b.url), target_dir / "sztp-ca.pem"
        )
        with server("sztp", "sztp", "serve", "--dir", first_dir, "--listen", "127.0.0.1:0") as a:
            device = _run_device(folder, started, "--bootstrap-server", a.url)
            line = device.wait_for("bootstrapped sztp", timeout=90)
            first, target = _progress(first_dir), _progress(target_dir)
    assert _host_port(b.url) in line
    assert first == []  # redirect information, from an untrusted server: no reports
    assert target[-1] == "bootstrap-complete"
    assert _startup(folder)["ietf-system:system"] == {"hostname": HOSTNAME}
    devices = json.loads(run_cli("sztp", "devices", "--dir", target_dir, "--json").stdout)
    assert devices  # the target saw the device


def test_redirect_loop_between_two_servers_is_stopped(
    lab: Lab, sztp_device: tuple[Path, list[DeviceProcess]]
) -> None:
    folder, started = sztp_device
    port_a, port_b = free_port(), free_port()
    dir_a = _redirect_server(lab, "loop-a", f"127.0.0.1:{port_b}", None)
    dir_b = _redirect_server(lab, "loop-b", f"127.0.0.1:{port_a}", None)
    with (
        server("sztp", "sztp", "serve", "--dir", dir_a, "--listen", f"127.0.0.1:{port_a}"),
        server("sztp", "sztp", "serve", "--dir", dir_b, "--listen", f"127.0.0.1:{port_b}"),
    ):
        _run_device(folder, started, "--bootstrap-server", f"https://127.0.0.1:{port_a}")
        _wait_for_event(folder / "bootstrap-state.json", "waiting-retry")
    state = json.loads((folder / "bootstrap-state.json").read_text())
    details = [e.get("detail", "") for e in state["events"] if e["event"] == "attempt-failed"]
    assert any("redirect loop" in d for d in details), details
    assert not (folder / "startup.json").exists()


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "untrusted"])
def test_xml_encoding_from_device_toml(
    lab: Lab, sztp_device: tuple[Path, list[DeviceProcess]], trusted: bool
) -> None:
    """The RPCs in XML (RFC 8040 §3.6), set in device.toml with the server's URL; the server
    answers with XML conveyed information, unsigned to the device that trusts it, signed
    (id-ct-sztpConveyedInfoXML, RFC 8572 §3.1) to the one that does not."""
    folder, started = sztp_device
    server_dir = _bootstrap_server(lab, f"xml-{trusted}", trusted=trusted)
    with server("sztp", "sztp", "serve", "--dir", server_dir, "--listen", "127.0.0.1:0") as srv:
        anchor = f'bootstrap_server_ca = ["{server_dir / "sztp-ca.pem"}"]\n' if trusted else ""
        (folder / "device.toml").write_text(
            f'bootstrap_servers = ["{srv.url}"]\nbootstrap_encoding = "xml"\n{anchor}'
        )
        device = _run_device(folder, started)
        device.wait_for("bootstrapped sztp", timeout=90)
        progress = _progress(server_dir)
    # progress goes only to a server the device trusts (RFC 8572 §7.2 reporting-level)
    assert progress[-1:] == (["bootstrap-complete"] if trusted else [])
    assert _startup(folder)["ietf-system:system"] == {"hostname": HOSTNAME}


@pytest.mark.parametrize(
    ("password", "trusted", "onboards"),
    [("right", True, True), ("wrong", True, False), ("wrong", False, True)],
    ids=["right-password", "wrong-password-401", "unverified-server-gets-none"],
)
def test_http_basic_credentials_of_the_device(
    lab: Lab,
    sztp_device: tuple[Path, list[DeviceProcess]],
    password: str,
    trusted: bool,
    onboards: bool,
) -> None:
    """``bootstrap_credentials`` against a server with ``basic_auth``: the right password is
    accepted, a wrong one refused with 401 (the server checks what a device offers beside
    its IDevID), and a server the device did not verify by a trust anchor never sees them:
    the same wrong password then costs nothing and the device onboards from signed data."""
    folder, started = sztp_device
    server_dir = _bootstrap_server(lab, f"basic-{password}-{trusted}", trusted=trusted)
    (server_dir / "sztp.toml").write_text(f"trusted = {str(trusted).lower()}\nbasic_auth = true\n")
    (server_dir / "password").write_text("right\n")
    run_cli("sztp", "devices", "--dir", server_dir, "--set", "SN-1",
            "--password-file", server_dir / "password")  # fmt: skip
    (folder / "credentials").write_text(f"SN-1:{password}\n")
    with server("sztp", "sztp", "serve", "--dir", server_dir, "--listen", "127.0.0.1:0") as srv:
        anchor = f'bootstrap_server_ca = ["{server_dir / "sztp-ca.pem"}"]\n' if trusted else ""
        (folder / "device.toml").write_text(
            f'bootstrap_servers = ["{srv.url}"]\nbootstrap_rounds = 1\n{anchor}'
            f'bootstrap_credentials = "{folder / "credentials"}"\n'
        )
        device = _run_device(folder, started)
        if onboards:
            device.wait_for("bootstrapped sztp", timeout=90)
        else:
            _wait_for_event(folder / "bootstrap-state.json", "failed", timeout=90)
    state = json.loads((folder / "bootstrap-state.json").read_text())
    failures = [e["detail"] for e in state["events"] if e["event"] == "attempt-failed"]
    if onboards:
        assert failures == []
        assert _startup(folder)["ietf-system:system"] == {"hostname": HOSTNAME}
    else:
        assert len(failures) == 1 and "access-denied" in failures[0], failures
        assert "HTTP basic authentication of 'SN-1' failed" in failures[0]
        assert not (folder / "startup.json").exists()


def test_a_restarted_device_does_not_bootstrap_again(
    lab: Lab, sztp_device: tuple[Path, list[DeviceProcess]]
) -> None:
    """Completion is kept in the device folder: the next start says so and asks no server."""
    folder, started = sztp_device
    server_dir = _bootstrap_server(lab, "restart", trusted=True)
    with server("sztp", "sztp", "serve", "--dir", server_dir, "--listen", "127.0.0.1:0") as srv:
        first = _run_device(folder, started, "--bootstrap-server", srv.url, *_ca(server_dir))
        first.wait_for("bootstrapped sztp", timeout=90)
        assert first.stop() == 0
        reports = len(_progress(server_dir))
        assert reports > 0
        second = _run_device(folder, started, "--bootstrap-server", srv.url, *_ca(server_dir))
        assert srv.url.rstrip("/") in second.wait_for("bootstrapped sztp", timeout=60)
        assert len(_progress(server_dir)) == reports
    state = json.loads((folder / "bootstrap-state.json").read_text())
    events = [e["event"] for e in state["events"]]
    assert events.count("sztp-complete") == 1
    assert events[-1] == "already-bootstrapped"


def _events(folder: Path, after: int = 0) -> list[dict[str, Any]]:
    """The device's recorded events whose sequence number is above ``after``."""
    state = json.loads((folder / "bootstrap-state.json").read_text())
    return [e for e in state["events"] if e["sequence"] > after]


def test_bootstrap_order_keeps_to_sztp_after_it_onboarded_the_device(
    lab: Lab, sztp_device: tuple[Path, list[DeviceProcess]]
) -> None:
    """``--bootstrap-order brski,sztp``: BRSKI's registrar is down, SZTP onboards the device;
    after a restart the device starts with SZTP, which finds its completion, and asks no
    registrar; the state over NETCONF/SSH names the path taken."""
    folder, started = sztp_device
    server_dir = _bootstrap_server(lab, "order", trusted=True)
    registrar = f"https://127.0.0.1:{free_port()}"  # nothing listens there
    with server("sztp", "sztp", "serve", "--dir", server_dir, "--listen", "127.0.0.1:0") as srv:
        (folder / "device.toml").write_text('[[users]]\nname = "admin"\npassword = "pw"\n')
        extra = ["--bootstrap-order", "brski,sztp", "--registrar", registrar,
                 "--bootstrap-server", srv.url, *_ca(server_dir)]  # fmt: skip
        listeners = {"netconf-ssh": "127.0.0.1:0", "netconf-tls": "127.0.0.1:0"}
        first = start_device(folder, listeners, extra=extra, verbose=True)
        started.append(first)
        first.wait_for("bootstrapped sztp", timeout=120)
        assert first.stop() == 0
        before = _events(folder)
        failed = [e["detail"] for e in before if e["event"] == "attempt-failed"]
        assert any(registrar in d for d in failed), failed  # BRSKI had its turn first
        second = start_device(folder, listeners, extra=extra, verbose=True)
        started.append(second)
        second.wait_for("bootstrapped sztp", timeout=60)
        with manager.connect(
            host="127.0.0.1", port=second.ports["netconf-ssh"], username="admin",
            password="pw", hostkey_verify=False, allow_agent=False, look_for_keys=False,
            timeout=15,
        ) as m:  # fmt: skip
            state = m.get(("subtree", f'<bootstrap xmlns="{BOOTSTRAP_NS}"/>')).data_ele
    path = state.findtext(f".//{{{BOOTSTRAP_NS}}}bootstrap-path")
    assert path == "sztp"
    events = _events(folder, after=before[-1]["sequence"])
    assert [e["event"] for e in events] == ["agent-started", "already-bootstrapped"], events
    assert _progress(server_dir).count("bootstrap-complete") == 1


def test_restart_bootstrap_over_netconf_runs_sztp_again(
    lab: Lab, sztp_device: tuple[Path, list[DeviceProcess]]
) -> None:
    """The state and the restart-bootstrap RPC over NETCONF/SSH (ncclient): refused on a
    bootstrapped device without factory-reset, a new SZTP run with it."""
    folder, started = sztp_device
    server_dir = _bootstrap_server(lab, "restart-rpc", trusted=True)
    with server("sztp", "sztp", "serve", "--dir", server_dir, "--listen", "127.0.0.1:0") as srv:
        (folder / "device.toml").write_text(
            f'bootstrap_servers = ["{srv.url}"]\n'
            f'bootstrap_server_ca = ["{server_dir / "sztp-ca.pem"}"]\n'
            '[[users]]\nname = "admin"\npassword = "pw"\n'
        )
        device = start_device(
            folder, {"netconf-ssh": "127.0.0.1:0", "netconf-tls": "127.0.0.1:0"}, verbose=True
        )
        started.append(device)
        device.wait_for("bootstrapped sztp", timeout=90)
        with manager.connect(
            host="127.0.0.1", port=device.ports["netconf-ssh"], username="admin",
            password="pw", hostkey_verify=False, allow_agent=False, look_for_keys=False,
            timeout=15,
        ) as m:  # fmt: skip
            state = m.get(("subtree", f'<bootstrap xmlns="{BOOTSTRAP_NS}"/>')).data_xml
            assert "<phase>enrolled</phase>" in state and "<source>sztp</source>" in state
            assert "<bootstrap-path>sztp</bootstrap-path>" in state
            with pytest.raises(RPCError, match="factory-reset"):
                m.dispatch(etree.fromstring(f'<restart-bootstrap xmlns="{BOOTSTRAP_NS}"/>'))
            reset = f'<restart-bootstrap xmlns="{BOOTSTRAP_NS}"><factory-reset>true'
            m.dispatch(etree.fromstring(reset + "</factory-reset></restart-bootstrap>"))
        device.wait_for("bootstrapped sztp", timeout=90, nth=2)
        progress = _progress(server_dir)
    assert progress.count("bootstrap-complete") == 2


def test_device_killed_during_onboarding_finishes_after_restart(
    lab: Lab, sztp_device: tuple[Path, list[DeviceProcess]], tmp_path: Path
) -> None:
    """SIGKILL while the post-configuration script runs (the configuration is applied, the
    completion not yet recorded): the next start onboards again, ends complete with the
    same configuration, and the script file the killed run left is gone.

    The script says it runs (``running``) and then waits for ``release``, made only after
    the kill: the device is killed inside the script however slow a loaded machine is, and
    the next run's script ends at once."""
    folder, started = sztp_device
    running, release, slow = tmp_path / "running", tmp_path / "release", tmp_path / "post.sh"
    slow.write_text(
        f"#!/bin/sh\n: > {shlex.quote(str(running))}\n"
        f"while [ ! -e {shlex.quote(str(release))} ]; do sleep 0.05; done\nexit 0\n"
    )
    server_dir = _bootstrap_server(
        lab, "killed", trusted=False, response=("--post-script", str(slow))
    )
    with server("sztp", "sztp", "serve", "--dir", server_dir, "--listen", "127.0.0.1:0") as srv:
        first = _run_device(folder, started, "--bootstrap-server", srv.url)
        _wait_for_event(folder / "bootstrap-state.json", "sztp-post-script-initiated")
        wait_until("the post-configuration script runs", lambda: running.exists() or None)
        first.kill()
        release.touch()  # the killed run's script (its own process group) ends too
        assert list(folder.glob(".sztp-script-*")), "the killed run left its script file"
        second = _run_device(folder, started, "--bootstrap-server", srv.url)
        second.wait_for("bootstrapped sztp", timeout=90)
    assert _startup(folder)["ietf-system:system"] == {"hostname": HOSTNAME}
    assert list(folder.glob(".sztp-script-*")) == []
