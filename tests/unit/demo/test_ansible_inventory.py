"""What ``zerotouch demo --keep`` writes for Ansible: YAML that reads back as the inventory
the collection's playbooks expect (the playbooks themselves run in tests/ansible/)."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from zerotouch_plugin.demo.ansible_inventory import write_inventory
from zerotouch_plugin.demo.flow import Device

REGISTRAR = "https://127.0.0.1:8443"


def _devices() -> list[Device]:
    devices = [Device(1, ports={"netconf-tls": 40001, "restconf": 40002})]
    devices.append(Device(2, ports={"netconf-tls": 40003, "restconf": 40004}))
    return devices


def test_hosts_yml_names_each_device_by_serial_with_its_own_port(tmp_path: Path) -> None:
    devices = _devices()
    path = write_inventory(tmp_path, REGISTRAR, devices, "127.0.0.1")
    assert path == tmp_path.resolve() / "ansible/hosts.yml"
    group = yaml.safe_load(path.read_text())["all"]["children"]["zerotouch_devices"]
    common = group["vars"]
    assert common["zerotouch_registrar_url"] == REGISTRAR
    assert common["ansible_python_interpreter"] == sys.executable
    for name in ("ca", "admin_cert", "admin_key", "nms_cert", "nms_key"):
        assert Path(common[f"zerotouch_{name}"]).is_absolute()
    assert common["zerotouch_ca"] == str(tmp_path.resolve() / "registrar/ca.pem")
    hosts = group["hosts"]
    assert sorted(hosts) == ["DEMO-0001", "DEMO-0002"]
    for device in devices:
        host = hosts[device.serial]
        assert host["ansible_host"] == "127.0.0.1"
        assert host["zerotouch_netconf_tls_port"] == device.ports["netconf-tls"]
        assert (
            host["zerotouch_tls_server_name"]
            == f"{device.serial.lower()}.devices.zerotouch.internal"
        )
        assert host["zerotouch_day0"] == device.day0()
        assert host["zerotouch_config"]["ietf-system:system"]["location"].startswith(
            f"demo rack, slot {device.index}"
        )


def test_plugin_config_points_at_the_registrar_with_the_admin_identity(tmp_path: Path) -> None:
    write_inventory(tmp_path, REGISTRAR, _devices(), "127.0.0.1")
    config = yaml.safe_load((tmp_path / "ansible/registrar.zerotouch.yml").read_text())
    assert config["plugin"] == "zerotouch.brski.registrar"
    assert config["url"] == REGISTRAR
    assert config["client_cert"] == str(tmp_path.resolve() / "admin/cert.pem")
    assert config["group_vars"]["zerotouch_nms_key"] == str(tmp_path.resolve() / "nms/key.pem")


def test_values_that_need_quoting_survive(tmp_path: Path) -> None:
    folder = tmp_path / "a folder: with #, quotes \" and 'more'"
    folder.mkdir()
    write_inventory(folder, REGISTRAR, _devices(), "127.0.0.1")
    common = yaml.safe_load((folder / "ansible/hosts.yml").read_text())["all"]["children"][
        "zerotouch_devices"
    ]["vars"]
    assert common["zerotouch_ca"] == str(folder.resolve() / "registrar/ca.pem")
