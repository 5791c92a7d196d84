"""The collection's playbooks and modules against a running demo (two devices on
127.0.0.1, each on its own NETCONF/TLS port): onboard.yml in check mode, for real, and
again (changed=0); the result read back with ncclient; the inventory plugin; audit.yml;
rotate.yml; a device the registrar refuses; a device reached at another's port."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from lxml import etree

from tests.ansible.conftest import Ansible, World
from tests.support.ncclient_tls import tls_session
from tests.support.processes import run_cli, start_server

SYS_NS = "urn:ietf:params:xml:ns:yang:ietf-system"
SYSTEM = f'<system xmlns="{SYS_NS}"><contact/><location/><hostname/></system>'


def read_system(world: World, serial: str, source: str) -> dict[str, str | None]:
    """Contact, location and hostname of ``source`` on the device ``serial``, with ncclient
    over NETCONF/TLS and the NMS certificate, at that device's own port."""
    with tls_session(
        world.port(serial),
        cert=world.folder / "nms/cert.pem",
        key=world.folder / "nms/key.pem",
        ca=world.folder / "registrar/ca.pem",
    ) as session:
        reply = session.get_config(source, filter=("subtree", SYSTEM))
    data = etree.fromstring(reply.data_xml.encode())
    return {
        name: data.findtext(f".//{{{SYS_NS}}}{name}")
        for name in ("contact", "location", "hostname")
    }


def trusted(value: dict[str, Any]) -> Any:
    """A value of ``ansible-inventory --list`` without its ``__ansible_unsafe`` wrapper
    (how ansible-core marks text an inventory plugin set)."""
    return value["__ansible_unsafe"] if set(value) == {"__ansible_unsafe"} else value


def expected(world: World, serial: str) -> dict[str, str]:
    index = world.serials.index(serial) + 1
    return {
        "contact": "netops@demo.example",
        "location": f"demo rack, slot {index} (configured by Ansible)",
        "hostname": f"demo-device-{index}",
    }


def test_onboard_check_then_apply_then_nothing_left(ansible: Ansible, world: World) -> None:
    before = {s: read_system(world, s, "running") for s in world.serials}

    check = ansible.playbook(world.hosts, "onboard.yml", "--check", "--diff").ok()
    assert set(check.changed()) == set(world.serials)
    assert all(n >= 1 for n in check.changed().values()), check.output
    assert '+    "location": "demo rack, slot 1 (configured by Ansible)"' in check.output
    assert {s: read_system(world, s, "running") for s in world.serials} == before

    first = ansible.playbook(world.hosts, "onboard.yml").ok()
    assert all(n >= 1 for n in first.changed().values()), first.output
    for serial in world.serials:  # each device, on its own port of 127.0.0.1, got its own
        assert read_system(world, serial, "running") == expected(world, serial)
        assert read_system(world, serial, "startup") == expected(world, serial)

    second = ansible.playbook(world.hosts, "onboard.yml").ok()
    assert second.changed() == {serial: 0 for serial in world.serials}, second.output


def test_device_at_another_devices_port_is_refused(ansible: Ansible, world: World) -> None:
    first, other = world.serials
    status, result = ansible.module("device_get", world.device_args(first, port=world.port(other)))
    assert status != 0
    assert f"presents serial {other}, not {first}" in result["msg"]


def test_device_get_is_typed_and_filtered_by_xpath(ansible: Ansible, world: World) -> None:
    serial = world.serials[0]
    args = {
        **world.device_args(serial),
        "source": "operational",
        "xpath": "/if:interfaces/if:interface[if:name='eth0']/if:enabled",
        "namespaces": {"if": "urn:ietf:params:xml:ns:yang:ietf-interfaces"},
    }
    status, result = ansible.module("device_get", args)
    assert status == 0, result
    entry = result["data"]["ietf-interfaces:interfaces"]["interface"][0]
    assert entry["name"] == "eth0" and entry["enabled"] is True
    assert "ietf-system:system" not in result["data"]


def test_inventory_plugin_lists_devices_by_serial(
    ansible: Ansible, world: World, tmp_path: Path
) -> None:
    config = tmp_path / "keyed.zerotouch.yml"
    keyed = "keyed_groups:\n  - key: zerotouch_record.voucher_source\n    prefix: voucher\n"
    config.write_text(world.plugin_config.read_text() + keyed)
    result = ansible.run("ansible-inventory", "-i", config, "--list")
    assert result.returncode == 0, result.stderr
    inventory = json.loads(result.stdout, object_hook=trusted)
    hostvars = inventory["_meta"]["hostvars"]
    assert sorted(hostvars) == sorted(world.serials)
    for serial in world.serials:
        assert hostvars[serial]["ansible_host"] == "127.0.0.1"
        assert hostvars[serial]["zerotouch_netconf_tls_port"] == world.port(serial)
        assert (
            hostvars[serial]["zerotouch_tls_server_name"]
            == f"{serial.lower()}.devices.zerotouch.internal"
        )
    assert sorted(inventory["phase_enroll_confirmed"]["hosts"]) == sorted(world.serials)
    assert sorted(inventory["audit_clean"]["hosts"]) == sorted(world.serials)
    assert sorted(inventory["voucher_masa"]["hosts"]) == sorted(world.serials)


def test_inventory_plugin_says_when_the_registrar_refuses_the_certificate(
    ansible: Ansible, world: World, tmp_path: Path
) -> None:
    config = tmp_path / "nms.zerotouch.yml"
    text = world.plugin_config.read_text().replace("/admin/cert.pem", "/nms/cert.pem")
    config.write_text(text.replace("/admin/key.pem", "/nms/key.pem"))
    result = ansible.run("ansible-inventory", "-i", config, "--list")
    assert "the registrar refused the client certificate" in result.stdout + result.stderr
    assert "403" in result.stderr


def test_inventory_plugin_answers_from_its_cache(
    ansible: Ansible, world: World, tmp_path: Path
) -> None:
    config = tmp_path / "cached.zerotouch.yml"
    cache = (
        f"cache: true\ncache_plugin: ansible.builtin.jsonfile\ncache_connection: {tmp_path / 'c'}\n"
    )
    config.write_text(world.plugin_config.read_text() + cache)
    first = ansible.run("ansible-inventory", "-i", config, "--list")
    assert first.returncode == 0, first.stderr
    assert list((tmp_path / "c").iterdir())  # written to the cache
    # The registrar moves away: the cache still answers, a flushed cache does not.
    config.write_text(config.read_text().replace(world.registrar, "https://127.0.0.1:9"))
    cached = ansible.run("ansible-inventory", "-i", config, "--list")
    assert cached.returncode == 0, cached.stderr
    hosts = json.loads(cached.stdout, object_hook=trusted)["_meta"]["hostvars"]
    assert sorted(hosts) == sorted(world.serials)
    flushed = ansible.run("ansible-inventory", "-i", config, "--list", "--flush-cache")
    assert "registrar https://127.0.0.1:9 unreachable" in flushed.stdout + flushed.stderr


def test_audit_report(ansible: Ansible, world: World, tmp_path: Path) -> None:
    report = tmp_path / "audit.json"
    run = ansible.playbook(
        world.plugin_config, "audit.yml", "-e", f"zerotouch_audit_report={report}"
    )
    run.ok()
    rows = {row["serial"]: row for row in json.loads(report.read_text())["devices"]}
    assert sorted(rows) == sorted(world.serials)
    for row in rows.values():
        assert row["phase"] == "enroll-confirmed" and row["device_phase"] == "enrolled"
        assert row["audit_level"] == "clean" and 300 < int(row["ldevid_days_left"]) < 400


def test_rotate_gives_a_new_ldevid(ansible: Ansible, world: World) -> None:
    serial = world.serials[-1]
    info = {**world.registrar_args(), "serial": serial}
    _, before = ansible.module("registrar_device_info", info)
    run = ansible.playbook(world.hosts, "rotate.yml", "--limit", serial).ok()
    assert run.changed() == {serial: 1}, run.output
    _, after = ansible.module("registrar_device_info", info)
    assert after["device"]["ldevid_fingerprint"] != before["device"]["ldevid_fingerprint"]
    assert after["device"]["state"] == "enroll-confirmed"
    assert read_system(world, serial, "running")["hostname"] is not None


def session_args(world: World) -> dict[str, Any]:
    """A device module's parameters with their defaults, for Device in this process."""
    return {
        **world.device_args(world.serials[0]),
        "timeout": 10.0,
        "tls_server_name": None,
    }


def test_a_module_session_is_ended_by_the_device(
    plugins: dict[str, ModuleType], world: World
) -> None:
    """close-session, and the device ends the transport: when a module's session is over,
    ncclient's reader thread has closed its socket itself and stopped, well before the
    fallback. ncclient's close_session closes the socket from the module's thread and
    returns with the reader still running (most times: five sessions in a row)."""
    utils = plugins["device"]
    for _ in range(5):
        device = utils.Device(session_args(world))
        device.connect()
        assert device.bootstrap()["phase"] == "enrolled"
        reader = device.session._session
        started = time.monotonic()
        device.close()
        assert time.monotonic() - started < utils.END_SECONDS / 2
        assert not reader.is_alive() and reader._socket.fileno() == -1
        assert device.session is None


def test_a_session_the_device_keeps_is_shut_down_under_the_reader(
    plugins: dict[str, ModuleType], world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As after restart-bootstrap on a device that does not end its sessions: no
    close-session, the device keeps the transport, and the module ends it without closing the
    socket from its own thread; a new session to the same device works at once."""
    utils = plugins["device"]
    monkeypatch.setattr(utils, "END_SECONDS", 0.5)
    args = session_args(world)
    with utils.Device(args) as device:
        reader = device.session._session
        device.restarted = True
    assert not reader.is_alive() and reader._socket.fileno() == -1
    with utils.Device(args) as again:
        assert again.bootstrap()["phase"] == "enrolled"


@pytest.fixture
def refused_device(ansible: Ansible, world: World) -> Iterator[str]:
    """A device with a real IDevID whose serial the registrar denies, running."""
    serial = "DEMO-0099"
    folder = world.folder / "devices/refused"
    run_cli(
        "vendor", "idevid", "--dir", world.folder / "vendor", "--serial", serial, "--out", folder
    )
    status, result = ansible.module(
        "registrar_policy", {**world.registrar_args(), "serial": serial, "state": "denied"}
    )
    assert status == 0 and result["changed"], result
    device = start_server(
        "netconf-tls", "device", "run", "--dir", folder,
        "--netconf-tls", "127.0.0.1:0", "--registrar", world.registrar,
    )  # fmt: skip
    try:
        yield serial
    finally:
        device.stop()


def test_wait_for_enrollment_fails_with_the_devices_reason(
    ansible: Ansible, world: World, refused_device: str
) -> None:
    args = {**world.registrar_args(), "serial": refused_device, "wait_timeout": 30}
    status, result = ansible.module("wait_for_enrollment", args)
    assert status != 0
    assert "cannot enroll" in result["msg"]
    assert "deny list" in result["msg"], result["msg"]


def test_wait_for_enrollment_times_out_naming_the_phase(ansible: Ansible, world: World) -> None:
    args = {**world.registrar_args(), "serial": "DEMO-0098", "wait_timeout": 1, "interval": 0.2}
    ansible.module("registrar_policy", {**world.registrar_args(), "serial": "DEMO-0098"})
    status, result = ansible.module("wait_for_enrollment", args)
    assert status != 0
    assert "not enrolled after 1 s" in result["msg"]
    assert "never sent a voucher-request" in result["msg"]


def test_registrar_day0_diff_check_and_clear(ansible: Ansible, world: World) -> None:
    base = {**world.registrar_args(), "serial": "DEMO-0097"}
    config = {"ietf-system:system": {"hostname": "spare", "location": "shelf"}}
    status, checked = ansible.module(
        "registrar_day0", {**base, "config": config}, "--check", "--diff"
    )
    assert status == 0 and checked["changed"]
    assert ansible.module("registrar_day0", {**base, "state": "query"})[1]["config"] is None
    assert ansible.module("registrar_day0", {**base, "config": config})[1]["changed"]
    again = ansible.module("registrar_day0", {**base, "config": json.dumps(config, indent=4)})[1]
    assert again["changed"] is False and again["config"] == config
    status, bad = ansible.module(
        "registrar_day0", {**base, "config": {"ietf-system:system": {"nope": 1}}}
    )
    assert status != 0 and "400" in bad["msg"]
    assert ansible.module("registrar_day0", {**base, "state": "absent"})[1]["changed"]
    assert ansible.module("registrar_day0", {**base, "state": "absent"})[1]["changed"] is False


def test_registrar_policy_is_idempotent(ansible: Ansible, world: World) -> None:
    base = {**world.registrar_args(), "serial": "DEMO-0096"}
    steps = [
        ("allowed", True),
        ("allowed", False),
        ("denied", True),
        ("absent", True),
        ("absent", False),
    ]
    for state, changed in steps:
        status, result = ansible.module("registrar_policy", {**base, "state": state})
        assert status == 0 and result["changed"] is changed, (state, result)
    final = ansible.module("registrar_device_info", base)[1]
    assert final["exists"] is False


def test_registrar_handoff_pushes_again_and_waits(ansible: Ansible, world: World) -> None:
    base = {**world.registrar_args(), "serial": world.serials[0]}
    status, kept = ansible.module("registrar_handoff", {**base, "state": "applied"})
    assert status == 0 and kept["changed"] is False and kept["handoff"]["state"] == "applied"
    status, pushed = ansible.module("registrar_handoff", base)
    assert status == 0 and pushed["changed"], pushed
    assert pushed["handoff"]["state"] == "applied"
    assert pushed["handoff"]["at"] > kept["handoff"]["at"]
    status, unknown = ansible.module("registrar_handoff", {**base, "serial": "DEMO-0095"})
    assert status != 0 and "no record of DEMO-0095" in unknown["msg"]


def test_device_config_from_xml_and_refusals(ansible: Ansible, world: World) -> None:
    serial = world.serials[0]
    xml = (
        '<interfaces xmlns="urn:ietf:params:xml:ns:yang:ietf-interfaces">'
        "<interface><name>eth0</name><description>set from XML</description></interface>"
        "</interfaces>"
    )
    args = {**world.device_args(serial), "config": xml}
    status, first = ansible.module("device_config", args)
    assert status == 0 and first["changed_members"] == ["ietf-interfaces:interfaces"], first
    status, again = ansible.module("device_config", args)
    assert status == 0 and again["changed"] is False
    got = ansible.module("device_get", {**world.device_args(serial), "subtree": xml})[1]
    assert got["data"]["ietf-interfaces:interfaces"]["interface"][0]["enabled"] is True
    # A value the device's schema refuses: check mode asks the device (<validate>) and fails.
    before = read_system(world, serial, "running")
    bad = {**world.device_args(serial), "config": {"ietf-system:system": {"hostname": "-x-"}}}
    status, checked = ansible.module("device_config", bad, "--check")
    assert status != 0 and "rpc-error" in checked["msg"], checked
    status, unknown = ansible.module(
        "device_config", {**world.device_args(serial), "config": {"ietf-system:system": {"x": 1}}}
    )
    assert status != 0 and "ietf-system" in unknown["msg"], unknown
    assert read_system(world, serial, "running") == before


def test_registrar_default_day0(ansible: Ansible, world: World) -> None:
    base = world.registrar_args()  # no serial: the default configuration
    xml = '<system xmlns="urn:ietf:params:xml:ns:yang:ietf-system"><contact>x@y</contact></system>'
    status, stored = ansible.module("registrar_day0", {**base, "config": xml}, "--diff")
    assert status == 0 and stored["changed"] and stored["format"] == "xml"
    spaced = xml.replace("><", ">\n  <")
    assert ansible.module("registrar_day0", {**base, "config": spaced})[1]["changed"] is False
    assert ansible.module("registrar_day0", {**base, "state": "absent"})[1]["changed"]
