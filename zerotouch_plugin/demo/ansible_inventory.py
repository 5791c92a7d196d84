"""What ``zerotouch demo --keep`` leaves for Ansible: ``DIR/ansible/hosts.yml`` (the demo's
devices with every variable the ``zerotouch.brski`` playbooks read) and
``DIR/ansible/registrar.zerotouch.yml`` (the same devices through the collection's inventory
plugin, from the registrar's records).

Written as YAML by hand: every scalar is a JSON string or number, and every mapping below a
host variable is a JSON object, both of which YAML 1.2 reads as they are.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from zerotouch_plugin.config import DEFAULT_DEVICE_DOMAIN
from zerotouch_plugin.roles.registrar import device_dns_name

__all__ = ["write_inventory"]

HEADER = (
    "# Written by `zerotouch demo --keep`; the services it names run until\n"
    "# `zerotouch demo --stop --workdir {folder}`. From the zerotouch checkout:\n"
    "# ansible-playbook -i {inventory} ansible/playbooks/{playbook}\n"
)


class DemoDevice(Protocol):
    index: int
    ports: dict[str, int]

    @property
    def serial(self) -> str: ...

    def day0(self) -> dict[str, Any]: ...


def config_of(device: DemoDevice) -> dict[str, Any]:
    """What onboard.yml configures on the device beyond its day-0 configuration."""
    return {
        "ietf-system:system": {
            "contact": "netops@demo.example",
            "location": f"demo rack, slot {device.index} (configured by Ansible)",
        }
    }


def _yaml(mapping: Mapping[str, Any], indent: int, *, blocks: bool = False) -> Iterable[str]:
    """YAML lines of ``mapping``; its mappings are blocks when ``blocks`` or when their key
    is in ``_NESTED`` (the hosts of ``hosts``), one JSON object per line otherwise."""
    pad = " " * indent
    for key, value in mapping.items():
        if isinstance(value, Mapping) and (blocks or key in _NESTED):
            yield f"{pad}{key}:"
            yield from _yaml(value, indent + 2, blocks=key == "hosts")
        else:
            yield f"{pad}{key}: {json.dumps(value)}"


_NESTED = frozenset({"all", "children", "zerotouch_devices", "vars", "hosts", "group_vars"})


def _host(device: DemoDevice, host: str) -> dict[str, Any]:
    return {
        "ansible_host": host,
        "zerotouch_serial": device.serial,
        "zerotouch_netconf_tls_port": device.ports["netconf-tls"],
        "zerotouch_restconf_port": device.ports["restconf"],
        "zerotouch_tls_server_name": device_dns_name(device.serial, DEFAULT_DEVICE_DOMAIN),
        "zerotouch_day0": device.day0(),
        "zerotouch_config": config_of(device),
    }


def write_inventory(
    folder: Path, registrar_url: str, devices: Iterable[DemoDevice], host: str
) -> Path:
    """Write ``folder/ansible/hosts.yml`` and the inventory plugin's configuration; the
    path of ``hosts.yml``."""
    out = folder.resolve() / "ansible"
    out.mkdir(exist_ok=True)
    root = folder.resolve()
    common = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "zerotouch_registrar_url": registrar_url,
        "zerotouch_ca": str(root / "registrar/ca.pem"),
        "zerotouch_admin_cert": str(root / "admin/cert.pem"),
        "zerotouch_admin_key": str(root / "admin/key.pem"),
        "zerotouch_nms_cert": str(root / "nms/cert.pem"),
        "zerotouch_nms_key": str(root / "nms/key.pem"),
        "zerotouch_yang_cache": str(out / "yang-cache"),
    }
    hosts_path = out / "hosts.yml"
    plugin_path = out / "registrar.zerotouch.yml"
    inventory = {
        "all": {
            "children": {
                "zerotouch_devices": {
                    "vars": common,
                    "hosts": {d.serial: _host(d, host) for d in devices},
                }
            }
        }
    }
    head = HEADER.format(folder=root, inventory=hosts_path, playbook="onboard.yml")
    hosts_path.write_text(head + "\n".join(_yaml(inventory, 0)) + "\n")
    plugin = {
        "plugin": "zerotouch.brski.registrar",
        "url": registrar_url,
        "client_cert": common["zerotouch_admin_cert"],
        "client_key": common["zerotouch_admin_key"],
        "ca": common["zerotouch_ca"],
        "group_vars": common,
    }
    head = HEADER.format(folder=root, inventory=plugin_path, playbook="audit.yml")
    plugin_path.write_text(head + "\n".join(_yaml(plugin, 0)) + "\n")
    return hosts_path
