"""Day-0 hand-off end to end with real processes on 127.0.0.1: ``zerotouch masa serve``,
``zerotouch registrar serve``, ``zerotouch pledge enroll`` and ``zerotouch device run`` on the
enrolled folder; the result is read back with ncclient and the admin API.

The device is started after ``pledge enroll`` (it loads its LDevID at start), so every
hand-off first meets a closed port and is retried until the device listens. The first test
drives every step through the CLIs; the others make the same library calls in this process
(no interpreter start-up per step) to stay quick.
"""

from __future__ import annotations

import ipaddress
import json
import re
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.e2e.test_brski_flow import FAST_RETRY, Lab, enroll_here, make_lab
from tests.support.admin_openapi import check_admin_answer
from tests.support.device_process import DeviceProcess, start_device, write_device_config
from tests.support.ncclient_tls import tls_session
from tests.support.processes import free_port, run_cli
from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.config import DEFAULT_DEVICE_DOMAIN, RegistrarConfig, load_config
from zerotouch_plugin.device.day0 import Day0Format, parse_day0
from zerotouch_plugin.roles.registrar import device_dns_name, ldevid_subject
from zerotouch_plugin.services import certfiles
from zerotouch_plugin.services.registrar import day0_schema
from zerotouch_plugin.store.db import open_role_database
from zerotouch_plugin.store.registrar import HandoffRow, RegistrarRepository

SYSTEM_NS = "urn:ietf:params:xml:ns:yang:ietf-system"
IF_NS = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
EXTRA_YANG = """module acme-extra {
  yang-version 1.1;
  namespace "urn:example:acme-extra";
  prefix acme;
  revision 2026-01-01;
  container acme { leaf motd { type string; } }
}
"""


def day0_json(hostname: str) -> str:
    return json.dumps(
        {
            "ietf-system:system": {"hostname": hostname},
            "ietf-interfaces:interfaces": {
                "interface": [
                    {
                        "name": "uplink0",
                        "type": "iana-if-type:ethernetCsmacd",
                        "description": "day-0 uplink",
                        "enabled": True,
                    }
                ]
            },
        }
    )


class Admin:
    """The admin API with an admin certificate (``issue-client-cert --admin``), which is
    also a domain client certificate the devices accept (the NMS of these tests)."""

    def __init__(self, lab: Lab) -> None:
        self.folder = lab.root / "admin"
        run_cli("registrar", "issue-client-cert", "--dir", lab.domain, "--name", "ops",
                "--admin", "--out", self.folder)  # fmt: skip
        self.context = ssl.create_default_context(cafile=str(lab.domain / "ca.pem"))
        self.context.load_cert_chain(self.folder / "cert.pem", self.folder / "key.pem")
        self.url = lab.registrar_url
        config = load_config(RegistrarConfig, lab.domain / "registrar.toml", {})
        self.schema = day0_schema(lab.domain, config)
        self.repo = RegistrarRepository(open_role_database(lab.domain, None, "registrar.db"))

    def pledge(
        self, lab: Lab, port: int, text: str | None = None, fmt: str = "json"
    ) -> tuple[str, Path]:
        """What ``registrar allow`` and ``registrar day0`` do, in this process."""
        serial, folder = lab.pledge(allow=False)
        now = datetime.now(UTC)
        self.repo.set_policy(serial, "allow", manufacturer=None, now=now)
        if text is not None:
            doc = parse_day0(self.schema, text, Day0Format(fmt))
            self.repo.set_day0(serial, text=text, fmt=fmt, edit_xml=doc.edit_xml, now=now)
        self.repo.set_day0_address(serial, f"127.0.0.1:{port}", now=now)
        return serial, folder

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", context=self.context, timeout=10) as r:
            body = r.read()
            check_admin_answer("GET", path, r.status, r.headers.get("Content-Type"), body)
            return json.loads(body)

    def handoff(self, serial: str) -> dict[str, Any]:
        return dict(self.get(f"/admin/devices/{serial}")["device"]["handoff"])

    def wait(self, serial: str, done: Any, what: str, timeout: float = 40) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            handoff = self.handoff(serial)
            if done(handoff):
                return handoff
            if time.monotonic() > deadline:
                raise AssertionError(f"{serial}: {what} not reached in {timeout} s: {handoff}")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = make_lab(tmp_path_factory.mktemp("day0"))
    yang = lab.domain / "yang"
    yang.mkdir()
    (yang / "acme-extra@2026-01-01.yang").write_text(EXTRA_YANG)
    with (lab.domain / "registrar.toml").open("a") as fh:
        fh.write(
            'day0_yang_dirs = ["yang"]\nday0_yang_modules = ["acme-extra"]\n'
            "handoff_attempts = 60\nhandoff_backoff = 0.2\nhandoff_max_backoff = 0.5\n"
            "handoff_timeout = 10.0\nhandoff_poll = 1.0\n"
        )
    try:
        lab.start_masa()
        lab.start_registrar()
        yield lab
    finally:
        lab.close()


@pytest.fixture(scope="module")
def admin(lab: Lab) -> Admin:
    return Admin(lab)


@pytest.fixture
def devices() -> Iterator[list[DeviceProcess]]:
    started: list[DeviceProcess] = []
    yield started
    for process in started:
        process.stop()
        process.log_path.unlink(missing_ok=True)


def test_day0_applied_after_retries_and_in_startup(
    lab: Lab, admin: Admin, devices: list[DeviceProcess], tmp_path: Path
) -> None:
    port = free_port()
    serial, folder = lab.pledge()
    (tmp_path / "day0.json").write_text(day0_json("edge-one"))
    run_cli("registrar", "day0", "--dir", lab.domain, "--serial", serial,
            "--file", tmp_path / "day0.json", "--address", f"127.0.0.1:{port}")  # fmt: skip
    run_cli("pledge", "enroll", "--dir", folder, "--registrar", lab.registrar_url, *FAST_RETRY)

    # nothing listens yet: the hand-off is pending and retried, the reason visible
    retrying = admin.wait(serial, lambda h: h["attempts"] >= 2, "a second attempt")
    assert retrying["state"] == "pending"
    assert "unreachable" in retrying["error"] and retrying["target"] == f"127.0.0.1:{port}"

    devices.append(start_device(folder, {"netconf-tls": f"127.0.0.1:{port}"}))
    applied = admin.wait(serial, lambda h: h["state"] == "applied", "applied")
    assert applied["error"] is None and applied["attempts"] > retrying["attempts"]
    # one device event for the outcome, none for the retries before it
    outcomes = [
        (e.type, e.data["attempts"])
        for e in admin.repo.events_after(0, limit=100_000)
        if e.serial == serial and e.type.startswith("handoff-")
    ]
    assert outcomes == [("handoff-applied", applied["attempts"])]

    startup = json.loads((folder / "startup.json").read_text())
    assert startup["ietf-system:system"]["hostname"] == "edge-one"
    assert startup["ietf-interfaces:interfaces"]["interface"][0]["name"] == "uplink0"

    nms = admin.folder
    with tls_session(
        port, cert=nms / "cert.pem", key=nms / "key.pem", ca=nms / "ca.pem", timeout=15
    ) as m:
        data = m.get_config(source="startup").data_ele
    assert data.findtext(f".//{{{SYSTEM_NS}}}hostname") == "edge-one"
    assert data.findtext(f".//{{{IF_NS}}}interface/{{{IF_NS}}}description") == "day-0 uplink"

    table = run_cli("registrar", "devices", "--dir", lab.domain).stdout
    header, *rows = table.splitlines()
    assert "hand-off" in header
    assert any(row.startswith(serial) and " applied (" in row for row in rows), table


def test_config_the_device_rejects_fails_with_its_rpc_error(
    lab: Lab, admin: Admin, devices: list[DeviceProcess], tmp_path: Path
) -> None:
    # valid for the registrar (acme-extra is in its day0 YANG), unknown to the device
    port = free_port()
    text = '<acme xmlns="urn:example:acme-extra"><motd>hello</motd></acme>'
    serial, folder = admin.pledge(lab, port, text, "xml")
    enroll_here(folder, lab.registrar_url)
    devices.append(start_device(folder, {"netconf-tls": f"127.0.0.1:{port}"}))
    failed = admin.wait(serial, lambda h: h["state"] == "failed", "failed")
    assert "rpc-error" in failed["error"] and "acme" in failed["error"], failed
    assert not (folder / "startup.json").exists()
    [event] = [
        e
        for e in admin.repo.events_after(0, limit=100_000)
        if e.serial == serial and e.type.startswith("handoff-")
    ]
    assert event.type == "handoff-failed" and event.data["error"] == failed["error"]


def test_device_with_a_foreign_certificate_is_refused(
    lab: Lab, admin: Admin, devices: list[DeviceProcess], tmp_path: Path
) -> None:
    port = free_port()
    serial, folder = admin.pledge(lab, port)
    text = day0_json("default-host")
    doc = parse_day0(admin.schema, text, Day0Format.JSON)
    admin.repo.set_day0(None, text=text, fmt="json", edit_xml=doc.edit_xml, now=datetime.now(UTC))
    try:
        # an impostor at the device's address: same serial, certificate from another CA
        impostor = tmp_path / "impostor"
        now = datetime.now(UTC)
        other_ca = certs.make_ca("impostor CA", now=now)
        key = certs.generate_key("p256")
        cert = certs.issue_from_csr(
            other_ca, certs.make_csr(key, common_name=serial), subject=ldevid_subject(serial),
            san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))], now=now,
            days=30, client_auth=True, server_auth=True,
        )  # fmt: skip
        impostor.mkdir()
        certfiles.write_key(impostor / "ldevid.key", key)
        certfiles.write_certs(impostor / "ldevid.pem", [cert, other_ca.cert])
        certfiles.write_certs(impostor / "domain-ca.pem", certs.load_certs(
            (lab.domain / "ca.pem").read_bytes()))  # fmt: skip
        devices.append(start_device(impostor, {"netconf-tls": f"127.0.0.1:{port}"}))
        enroll_here(folder, lab.registrar_url)
        failed = admin.wait(serial, lambda h: h["state"] == "failed", "failed")
        assert failed["attempts"] == 1, failed  # never retried: fail closed
        assert "untrusted" in failed["error"] and "certificate" in failed["error"], failed
        assert not (impostor / "startup.json").exists()
    finally:
        admin.repo.clear_day0(None)


def test_enrolled_device_without_configuration_has_no_handoff(lab: Lab, admin: Admin) -> None:
    serial, folder = admin.pledge(lab, free_port())
    enroll_here(folder, lab.registrar_url)
    assert admin.handoff(serial) == {
        "state": "none", "attempts": 0, "at": None, "error": None, "target": None,
        "next_attempt_at": None,
    }  # fmt: skip


def test_agent_enrollment_hands_off_to_the_reported_port(
    lab: Lab, admin: Admin, devices: list[DeviceProcess]
) -> None:
    """No address override: ``device run --registrar`` reports its NETCONF/TLS port in the
    enrollstatus reason-context and the registrar connects to the request's peer address."""
    serial, folder = lab.pledge(allow=False)
    now = datetime.now(UTC)
    admin.repo.set_policy(serial, "allow", manufacturer=None, now=now)
    text = f'<system xmlns="{SYSTEM_NS}"><hostname>agent-host</hostname></system>'
    doc = parse_day0(admin.schema, text, Day0Format.XML)
    admin.repo.set_day0(serial, text=text, fmt="xml", edit_xml=doc.edit_xml, now=now)
    process = start_device(
        folder, {"netconf-tls": "127.0.0.1:0"}, extra=["--registrar", lab.registrar_url]
    )
    devices.append(process)
    process.wait_for(f"enrolled {serial}")
    applied = admin.wait(serial, lambda h: h["state"] == "applied", "applied")
    assert applied["target"] == f"127.0.0.1:{process.ports['netconf-tls']}"
    startup = json.loads((folder / "startup.json").read_text())
    assert startup["ietf-system:system"]["hostname"] == "agent-host"


def test_address_reported_without_configuration_is_used_by_a_later_handoff(
    lab: Lab, admin: Admin, devices: list[DeviceProcess], tmp_path: Path
) -> None:
    """The device enrolls while the registrar has no day-0 configuration for it and no
    address override: nothing is pushed, but the address its enrollstatus reported is kept
    (admin API, ``registrar devices --json``), so ``registrar day0`` then ``registrar
    handoff`` reach it there without an address set by hand."""
    serial, folder = lab.pledge(allow=False)
    admin.repo.set_policy(serial, "allow", manufacturer=None, now=datetime.now(UTC))
    write_device_config(folder, '[[users]]\nname = "admin"\npassword = "not-used"\n')
    process = start_device(
        folder,
        {"netconf-tls": "127.0.0.1:0", "restconf": "127.0.0.1:0", "netconf-ssh": "127.0.0.1:0"},
        extra=["--registrar", lab.registrar_url],
    )
    devices.append(process)
    process.wait_for(f"enrolled {serial}")
    port, rest = process.ports["netconf-tls"], process.ports["restconf"]
    device = admin.get(f"/admin/devices/{serial}")["device"]
    assert device["state"] == "enroll-confirmed" and device["handoff"]["state"] == "none"
    management = device["management"]
    assert management["address"] == f"127.0.0.1:{port}", management
    assert (management["host"], management["netconf_tls_port"]) == ("127.0.0.1", port)
    assert management["restconf_port"] == rest and management["reported_at"].endswith("Z")
    # every management listener is reported, the NETCONF/SSH one too
    assert management["netconf_ssh_port"] == process.ports["netconf-ssh"], management
    listed = json.loads(run_cli("registrar", "devices", "--dir", lab.domain, "--json").stdout)
    [record] = [d for d in listed["devices"] if d["serial"] == serial]
    assert record["management"] == management
    assert hostnames(port, admin.folder) != ("late-host", "late-host")

    (tmp_path / "late.json").write_text(day0_json("late-host"))
    run_cli("registrar", "day0", "--dir", lab.domain, "--serial", serial,
            "--file", tmp_path / "late.json")  # fmt: skip
    out = run_cli("registrar", "handoff", "--dir", lab.domain, "--serial", serial).stdout
    assert f"hand-off of {serial} queued for 127.0.0.1:{port}" in out, out
    applied = admin.wait(serial, lambda h: h["state"] == "applied", "applied")
    assert applied["target"] == f"127.0.0.1:{port}" and applied["error"] is None, applied
    assert hostnames(port, admin.folder) == ("late-host", "late-host")


def curl(admin: Admin, method: str, path: str, *args: str) -> tuple[int, str]:
    out = subprocess.run(
        ["curl", "-sS", "-X", method, "--cacert", str(admin.folder / "ca.pem"),
         "--cert", str(admin.folder / "cert.pem"), "--key", str(admin.folder / "key.pem"),
         "-w", "\n%{content_type}\n%{http_code}", *args, f"{admin.url}{path}"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    rest, _, status = out.rpartition("\n")
    body, _, media = rest.rpartition("\n")
    check_admin_answer(method, path, int(status), media, body.encode())
    return int(status), body


def test_admin_api_sets_reads_and_removes_day0(admin: Admin) -> None:
    xml = ("-H", "Content-Type: application/yang-data+xml")
    bad = f'<system xmlns="{SYSTEM_NS}"><hostname>a</hostname><bogus/></system>'
    status, body = curl(admin, "PUT", "/admin/devices/API-1/day0", *xml, "--data", bad)
    assert status == 400 and "schema-error" in body and "/ietf-system:system/bogus" in body
    status, body = curl(admin, "PUT", "/admin/devices/API-1/day0", "-H",
                        "Content-Type: text/plain", "--data", "x")  # fmt: skip
    assert status == 415
    good = f'<system xmlns="{SYSTEM_NS}"><hostname>api</hostname></system>'
    status, body = curl(admin, "PUT", "/admin/devices/API-1/day0", *xml, "--data", good)
    assert status == 200 and json.loads(body) == {
        "serial": "API-1",
        "format": "xml",
        "stored": True,
    }
    assert curl(admin, "GET", "/admin/devices/API-1/day0") == (200, good)
    default = json.dumps({"ietf-system:system": {"contact": "noc"}})
    status, _ = curl(admin, "PUT", "/admin/day0/default", "-H",
                     "Content-Type: application/yang-data+json", "--data", default)  # fmt: skip
    assert status == 200
    assert curl(admin, "GET", "/admin/day0/default") == (200, default)
    assert curl(admin, "DELETE", "/admin/day0/default")[0] == 200
    assert curl(admin, "DELETE", "/admin/devices/API-1/day0")[0] == 200
    status, body = curl(admin, "GET", "/admin/devices/API-1/day0")
    assert status == 404 and "no day-0 configuration for API-1" in body


def test_pending_handoff_resumes_after_a_registrar_restart(
    lab: Lab, admin: Admin, devices: list[DeviceProcess]
) -> None:
    port = free_port()
    serial, folder = admin.pledge(lab, port, day0_json("after-restart"))
    enroll_here(folder, lab.registrar_url)
    admin.wait(serial, lambda h: h["attempts"] >= 1, "a first attempt")
    old = lab.registrars.pop(0)
    assert old.stop() == 0  # a clean stop leaves the hand-off pending in the database
    assert admin.repo.handoff(serial).state == "pending"
    devices.append(start_device(folder, {"netconf-tls": f"127.0.0.1:{port}"}))
    admin.url = lab.start_registrar().url
    lab.registrars.insert(0, lab.registrars.pop())
    applied = admin.wait(serial, lambda h: h["state"] == "applied", "applied")
    assert applied["error"] is None
    assert "after-restart" in (folder / "startup.json").read_text()


def hostnames(port: int, nms: Path) -> tuple[str | None, str | None]:
    """The ietf-system hostname in running and in startup, read with ncclient."""
    with tls_session(
        port, cert=nms / "cert.pem", key=nms / "key.pem", ca=nms / "ca.pem", timeout=15
    ) as m:
        return tuple(  # type: ignore[return-value]
            m.get_config(source=source).data_ele.findtext(f".//{{{SYSTEM_NS}}}hostname")
            for source in ("running", "startup")
        )


def test_day0_pushed_again_after_a_change_and_address_set_by_the_admin_api(
    lab: Lab, admin: Admin, devices: list[DeviceProcess], tmp_path: Path
) -> None:
    serial, folder = admin.pledge(lab, free_port(), day0_json("edge-a"))  # nothing listens there
    enroll_here(folder, lab.registrar_url)
    process = start_device(folder, {"netconf-tls": "127.0.0.1:0"})
    devices.append(process)
    port = process.ports["netconf-tls"]
    admin.wait(serial, lambda h: h["attempts"] >= 1 and h["state"] == "pending", "a retry")

    # the admin API sets the management address; the retries find the device there
    json_type = ("-H", "Content-Type: application/json")
    status, body = curl(admin, "PUT", f"/admin/devices/{serial}/address", *json_type,
                        "--data", '{"address": "nowhere"}')  # fmt: skip
    assert status == 400 and "is not HOST:PORT" in body, body
    status, body = curl(admin, "PUT", f"/admin/devices/{serial}/address", *json_type,
                        "--data", '{"address": ' + "9" * 5000 + "}")  # fmt: skip
    assert status == 400 and "not JSON" in body, body  # not a 500
    status, body = curl(admin, "PUT", f"/admin/devices/{serial}/address", *json_type,
                        "--data", json.dumps({"address": f"127.0.0.1:{port}"}))  # fmt: skip
    assert status == 200 and json.loads(body)["address"] == f"127.0.0.1:{port}", body
    admin.wait(serial, lambda h: h["state"] == "applied", "applied")
    assert hostnames(port, admin.folder) == ("edge-a", "edge-a")

    # the owner changes the configuration: nothing is pushed until asked
    (tmp_path / "b.json").write_text(day0_json("edge-b"))
    run_cli("registrar", "day0", "--dir", lab.domain, "--serial", serial,
            "--file", tmp_path / "b.json")  # fmt: skip
    out = run_cli("registrar", "handoff", "--dir", lab.domain, "--serial", serial).stdout
    assert f"hand-off of {serial} queued for 127.0.0.1:{port}" in out, out
    # the CLI only wrote the queue: the serving registrar finds it at its next poll
    applied = admin.wait(serial, lambda h: h["state"] == "applied" and h["attempts"] == 1, "again")
    assert applied["error"] is None and applied["target"] == f"127.0.0.1:{port}", applied
    assert hostnames(port, admin.folder) == ("edge-b", "edge-b")
    assert json.loads((folder / "startup.json").read_text())["ietf-system:system"] == {
        "hostname": "edge-b"
    }

    # and through the admin API, which wakes the registrar at once
    status, _ = curl(admin, "PUT", f"/admin/devices/{serial}/day0", "-H",
                     "Content-Type: application/yang-data+json",
                     "--data", day0_json("edge-c"))  # fmt: skip
    assert status == 200
    status, body = curl(admin, "POST", f"/admin/devices/{serial}/handoff")
    assert status == 200, body
    assert json.loads(body) == {
        "serial": serial, "state": "pending", "target": f"127.0.0.1:{port}"
    }  # fmt: skip
    admin.wait(serial, lambda h: h["state"] == "applied", "applied via the API")
    assert hostnames(port, admin.folder) == ("edge-c", "edge-c")

    # what cannot be pushed says why
    status, body = curl(admin, "POST", "/admin/devices/NO-SUCH-SN/handoff")
    assert status == 404 and "not known" in body, body
    failed = run_cli("registrar", "handoff", "--dir", lab.domain, "--serial", "NO-SUCH-SN",
                     check=False)  # fmt: skip
    assert failed.returncode == 1 and "not known" in failed.stderr, failed.stderr
    assert curl(admin, "DELETE", f"/admin/devices/{serial}/address")[0] == 200
    status, body = curl(admin, "DELETE", f"/admin/devices/{serial}/address")
    assert status == 404 and "no management address" in body, body


ATTEMPT = re.compile(r"hand-off of (\S+): attempt (\d+)$", re.MULTILINE)
APPLIED = re.compile(r"hand-off of (\S+): day-0 configuration applied$", re.MULTILINE)


def restconf_hostname(port: int, client: Path, serial: str) -> tuple[int, str]:
    """GET the hostname over RESTCONF with curl as ``client`` (cert.pem, key.pem, ca.pem):
    (status, body); the device is reached by the DNS name of its LDevID, checked by curl
    (no -k)."""
    name = device_dns_name(serial, DEFAULT_DEVICE_DOMAIN)
    out = subprocess.run(
        ["curl", "-sS", "--cacert", client / "ca.pem", "--cert", client / "cert.pem",
         "--key", client / "key.pem", "-H", "Accept: application/yang-data+json",
         "--resolve", f"{name}:{port}:127.0.0.1", "-w", "\n%{http_code}",
         f"https://{name}:{port}/restconf/data/ietf-system:system/hostname"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    body, _, status = out.rpartition("\n")
    return int(status), body


def test_another_devices_ldevid_cannot_manage_a_device_unless_named_in_cert_to_name(
    lab: Lab, admin: Admin, devices: list[DeviceProcess], tmp_path: Path
) -> None:
    """Device B's LDevID chains to the domain CA like every NMS certificate, yet device A
    refuses it on NETCONF/TLS (session closed, RFC 7589 §7) and RESTCONF (401 access-denied)
    with the default cert-to-name; the registrar's hand-off client and an NMS certificate from
    ``registrar issue-client-cert`` still get in; a rule with B's fingerprint lets B in."""
    port = free_port()
    serial_a, folder_a = admin.pledge(lab, port, day0_json("edge-a"))
    serial_b, folder_b = admin.pledge(lab, free_port())
    enroll_here(folder_a, lab.registrar_url)
    enroll_here(folder_b, lab.registrar_url)
    peer = tmp_path / "peer"  # device B's LDevID as a client identity
    peer.mkdir()
    for source, target in (("ldevid.pem", "cert.pem"), ("ldevid.key", "key.pem")):
        (peer / target).write_bytes((folder_b / source).read_bytes())
    (peer / "ca.pem").write_bytes((lab.domain / "ca.pem").read_bytes())
    nms = tmp_path / "nms"
    run_cli("registrar", "issue-client-cert", "--dir", lab.domain, "--name", "nms", "--out", nms)
    listeners = {"netconf-tls": f"127.0.0.1:{port}", "restconf": "127.0.0.1:0"}

    device_a = start_device(folder_a, listeners)
    devices.append(device_a)
    admin.wait(serial_a, lambda h: h["state"] == "applied", "applied")  # via handoff-client.pem
    assert hostnames(port, nms) == ("edge-a", "edge-a")
    with pytest.raises(Exception):  # noqa: B017 - ncclient raises several types
        hostnames(port, peer)
    refusal = f"the device identity of serialNumber {serial_b!r}"
    assert "netconf-tls: refused 127.0.0.1:" in device_a.log and refusal in device_a.log
    rest = device_a.ports["restconf"]
    assert restconf_hostname(rest, nms, serial_a) == (200, '{"ietf-system:hostname": "edge-a"}')
    status, body = restconf_hostname(rest, peer, serial_a)
    error = json.loads(body)["ietf-restconf:errors"]["error"][0]
    assert (status, error["error-tag"]) == (401, "access-denied"), body
    assert refusal in error["error-message"] and "cert-to-name" in error["error-message"]
    assert device_a.stop() == 0

    # the opt-in: a cert-to-name rule naming B's certificate (the default rule kept after it)
    fingerprint = certs.fingerprint(certfiles.load_cert_file(folder_b / "ldevid.pem"))
    write_device_config(
        folder_a,
        f'[[cert_to_name]]\nfingerprint = "{fingerprint}"\nmap_type = "specified"\n'
        'name = "peer-b"\n\n[[cert_to_name]]\nfingerprint = "*"\nmap_type = "common-name"\n',
    )
    device_a = start_device(folder_a, listeners, verbose=True)
    devices.append(device_a)
    assert hostnames(port, peer) == ("edge-a", "edge-a")
    assert "netconf-tls user peer-b" in device_a.log
    assert restconf_hostname(device_a.ports["restconf"], peer, serial_a)[0] == 200
    assert hostnames(port, nms) == ("edge-a", "edge-a")


@pytest.mark.postgres
def test_two_registrars_on_one_postgresql_database_apply_each_handoff_once(
    fresh_pg_url: str, tmp_path: Path, devices: list[DeviceProcess]
) -> None:
    """Both registrar processes look at the shared queue every 0.3 s and the retries of
    devices that do not listen yet fall due in both at once: each attempt is claimed by one
    process (conditional UPDATE), and once the devices listen each gets one NETCONF session
    from one registrar."""
    lab = make_lab(tmp_path)
    with (lab.domain / "registrar.toml").open("a") as fh:
        fh.write(
            "handoff_attempts = 60\nhandoff_backoff = 0.2\nhandoff_max_backoff = 0.5\n"
            "handoff_timeout = 10.0\nhandoff_poll = 0.3\n"
        )
    try:
        lab.start_masa()
        urls = [lab.start_registrar("--db", fresh_pg_url).url for _ in range(2)]
        repo = RegistrarRepository(open_role_database(lab.domain, fresh_pg_url, "registrar.db"))
        schema = day0_schema(
            lab.domain, load_config(RegistrarConfig, lab.domain / "registrar.toml", {})
        )
        pledges: dict[str, tuple[Path, int]] = {}
        for index in range(3):
            serial, folder = lab.pledge(allow=False)
            port = free_port()
            now = datetime.now(UTC)
            text = day0_json(f"shared-{index}")
            doc = parse_day0(schema, text, Day0Format.JSON)
            repo.set_policy(serial, "allow", manufacturer=None, now=now)
            repo.set_day0(serial, text=text, fmt="json", edit_xml=doc.edit_xml, now=now)
            repo.set_day0_address(serial, f"127.0.0.1:{port}", now=now)
            enroll_here(folder, urls[index % 2])
            pledges[serial] = (folder, port)

        def handoffs() -> dict[str, HandoffRow]:
            return {serial: repo.handoff(serial) for serial in pledges}

        deadline = time.monotonic() + 40
        while min(h.attempts for h in handoffs().values()) < 3:
            assert time.monotonic() < deadline, handoffs()
            time.sleep(0.2)
        for folder, port in pledges.values():
            devices.append(start_device(folder, {"netconf-tls": f"127.0.0.1:{port}"}, verbose=True))
        deadline = time.monotonic() + 40
        while any(h.state != "applied" for h in handoffs().values()):
            assert time.monotonic() < deadline, handoffs()
            time.sleep(0.2)
        final = handoffs()
        logs = [process.stderr for process in lab.registrars]
    finally:
        lab.close()

    # every attempt number of a device was taken by exactly one process, and applied once
    taken = [(serial, int(n)) for log in logs for serial, n in ATTEMPT.findall(log)]
    assert len(taken) == len(set(taken)), sorted(taken)
    assert all(ATTEMPT.search(log) for log in logs), "one process took no attempt at all"
    for serial, row in final.items():
        numbers = sorted(n for s, n in taken if s == serial)
        assert numbers == list(range(1, row.attempts + 1)), (serial, numbers, row)
    applied = [serial for log in logs for serial in APPLIED.findall(log)]
    assert sorted(applied) == sorted(pledges), applied
    assert "lease lost" not in "".join(logs)
    # device side: one NETCONF session of the registrar each, with the configuration in startup
    for (folder, _), process in zip(pledges.values(), devices, strict=True):
        sessions = re.findall(
            r"session \d+ opened: netconf-tls user zerotouch-registrar", process.log
        )
        assert len(sessions) == 1, process.log
        hostname = json.loads((folder / "startup.json").read_text())["ietf-system:system"]
        assert hostname["hostname"].startswith("shared-")
