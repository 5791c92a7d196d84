# Copyright: zerotouch contributors
# Apache License 2.0 (see the repository's LICENSE)
"""Inventory from a zerotouch registrar: one host per device record."""

from __future__ import annotations

DOCUMENTATION = r"""
name: registrar
short_description: Devices known to a zerotouch registrar, from its admin API
description:
  - One host per device record of the registrar (C(GET /admin/devices)), named by serial
    number, with C(ansible_host) and every management port the device reported at its
    last enrollment, the DNS name its LDevID carries (C(zerotouch_tls_server_name)) and
    the whole record (C(zerotouch_record)).
  - Groups C(zerotouch_devices) (every device), C(phase_<state>) (e.g.
    C(phase_enroll_confirmed)), C(handoff_<state>) and C(audit_<level>); more with
    O(compose), O(groups) and O(keyed_groups).
  - The configuration file's name must end in C(zerotouch.yml) or C(zerotouch.yaml).
version_added: 0.1.0
author: zerotouch contributors
extends_documentation_fragment:
  - constructed
  - inventory_cache
options:
  plugin:
    description: The name of this plugin.
    type: str
    required: true
    choices: [zerotouch.brski.registrar]
  url:
    description: The registrar's HTTPS base URL, C(https://HOST:PORT).
    type: str
    required: true
    env:
      - name: ZEROTOUCH_REGISTRAR_URL
  client_cert:
    description: Admin client certificate (PEM, with chain) of the domain CA.
    type: path
    required: true
    env:
      - name: ZEROTOUCH_ADMIN_CERT
  client_key:
    description: Admin client key (PEM).
    type: path
    required: true
    env:
      - name: ZEROTOUCH_ADMIN_KEY
  ca:
    description: The domain CA (PEM), the only anchor for the registrar's certificate.
    type: path
    required: true
    env:
      - name: ZEROTOUCH_CA
  timeout:
    description: Seconds allowed for the request.
    type: float
    default: 10.0
  group_vars:
    description: Variables set on the C(zerotouch_devices) group (e.g. the NMS certificate
      paths the device modules need).
    type: dict
    default: {}
"""

EXAMPLES = r"""
# fleet.zerotouch.yml
plugin: zerotouch.brski.registrar
url: https://registrar.example.net:8443
client_cert: admin/cert.pem
client_key: admin/key.pem
ca: registrar/ca.pem
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/zerotouch-inventory
cache_timeout: 300
keyed_groups:
  - key: zerotouch_record.manufacturer
    prefix: made_by
"""

import re
from typing import Any

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible_collections.zerotouch.brski.plugins.module_utils.registrar import (
    Registrar,
    RegistrarError,
)

ALL_GROUP = "zerotouch_devices"


def group_name(prefix: str, value: Any) -> str:
    """A valid group name (letters, digits, underscore) for one value of a record field."""
    return f"{prefix}_{re.sub(r'[^A-Za-z0-9_]', '_', str(value or 'none'))}"


def host_vars(record: dict[str, Any]) -> dict[str, Any]:
    """The variables of one device's host, from its registrar record."""
    management = record.get("management") or {}
    handoff = record.get("handoff") or {}
    out: dict[str, Any] = {
        "zerotouch_serial": record["serial"],
        "zerotouch_state": record.get("state"),
        "zerotouch_handoff_state": handoff.get("state"),
        "zerotouch_audit_level": record.get("audit_level"),
        "zerotouch_ldevid_not_after": record.get("ldevid_not_after"),
        "zerotouch_tls_server_name": record.get("dns_name"),
        "zerotouch_record": record,
    }
    if management.get("host"):
        out["ansible_host"] = management["host"]
    for port in ("netconf_tls_port", "netconf_ssh_port", "restconf_port"):
        if management.get(port):
            out[f"zerotouch_{port}"] = management[port]
    return out


def groups_of(record: dict[str, Any]) -> list[str]:
    """The groups a device belongs to by phase, hand-off state and audit verdict."""
    return [
        group_name("phase", record.get("state")),
        group_name("handoff", (record.get("handoff") or {}).get("state")),
        group_name("audit", record.get("audit_level")),
    ]


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):  # type: ignore[misc]
    NAME = "zerotouch.brski.registrar"

    def verify_file(self, path: str) -> bool:
        return super().verify_file(path) and path.endswith(("zerotouch.yml", "zerotouch.yaml"))

    def parse(self, inventory: Any, loader: Any, path: str, cache: bool = True) -> None:
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        key = self.get_cache_key(path)
        use_cache = self.get_option("cache") and cache
        update_cache = self.get_option("cache") and not cache
        records = None
        if use_cache:
            try:
                records = self._cache[key]
            except KeyError:
                update_cache = True
        if records is None:
            records = self.fetch()
        if update_cache:
            self._cache[key] = records
        self.populate(records)

    def fetch(self) -> list[dict[str, Any]]:
        try:
            registrar = Registrar(
                self.get_option("url"),
                self.get_option("client_cert"),
                self.get_option("client_key"),
                self.get_option("ca"),
                self.get_option("timeout"),
            )
            return registrar.devices()
        except RegistrarError as exc:
            raise AnsibleParserError(f"zerotouch.brski.registrar: {exc}") from exc

    def populate(self, records: list[dict[str, Any]]) -> None:
        self.inventory.add_group(ALL_GROUP)
        for name, value in (self.get_option("group_vars") or {}).items():
            self.inventory.set_variable(ALL_GROUP, name, value)
        strict = self.get_option("strict")
        for record in records:
            serial = record["serial"]
            self.inventory.add_host(serial, group=ALL_GROUP)
            for group in groups_of(record):
                self.inventory.add_group(group)
                self.inventory.add_child(group, serial)
            variables = host_vars(record)
            for name, value in variables.items():
                self.inventory.set_variable(serial, name, value)
            self._set_composite_vars(self.get_option("compose"), variables, serial, strict=strict)
            self._add_host_to_composed_groups(
                self.get_option("groups"), variables, serial, strict=strict
            )
            self._add_host_to_keyed_groups(
                self.get_option("keyed_groups"), variables, serial, strict=strict
            )
