#!/usr/bin/python
# Copyright: zerotouch contributors
# Apache License 2.0 (see the repository's LICENSE)
"""Configure an enrolled device over NETCONF/TLS with the domain client certificate."""

from __future__ import annotations

DOCUMENTATION = r"""
module: device_config
short_description: Configure an enrolled zerotouch device over NETCONF/TLS
description:
  - Reads the device's C(running) configuration, computes what it becomes with O(config)
    merged in (or replacing the top-level subtrees O(config) names), and edits the device
    only when that differs (C(edit-config), RFC 6241 §7.2). The result is read back and
    compared with what was expected.
  - With O(save), C(startup) is made equal to C(running) (C(copy-config)) when it differs.
  - Check mode edits nothing; the whole configuration the device would have is sent to
    C(<validate>) (RFC 6241 §8.6) instead, so a configuration the device would refuse
    fails in check mode too. A device without the C(:validate) capability has it checked
    against its YANG modules on the controller.
  - Values follow the device's own YANG modules, fetched from it with C(get-schema).
version_added: 0.1.0
author: zerotouch contributors
extends_documentation_fragment:
  - zerotouch.brski.device
  - zerotouch.brski.attributes.check_and_diff
options:
  config:
    description:
      - The configuration. A mapping is RFC 7951 JSON; a string is XML (top-level data
        elements, optionally inside C(<config>)) when O(format=xml) or when it starts with
        C(<), RFC 7951 JSON text otherwise.
    type: raw
    required: true
  format:
    description:
      - Encoding of O(config); guessed from it when unset.
    type: str
    choices: [json, xml]
  operation:
    description:
      - C(merge) adds and changes what O(config) holds and keeps the rest; C(replace) makes
        each top-level container (or list entry) of O(config) exactly as given, removing
        what it does not hold.
    type: str
    choices: [merge, replace]
    default: merge
  save:
    description:
      - Copy C(running) to C(startup) when they differ (devices with the C(:startup)
        capability), so that the configuration survives a restart.
    type: bool
    default: true
"""

EXAMPLES = r"""
- name: Contact and location of the device
  zerotouch.brski.device_config:
    host: "{{ ansible_host }}"
    port: "{{ zerotouch_netconf_tls_port }}"
    serial: "{{ zerotouch_serial }}"
    config:
      ietf-system:system:
        contact: noc@example.net
        location: rack 4

- name: Exactly these interfaces, from XML
  zerotouch.brski.device_config:
    host: "{{ ansible_host }}"
    port: "{{ zerotouch_netconf_tls_port }}"
    serial: "{{ zerotouch_serial }}"
    operation: replace
    config: "{{ lookup('file', 'interfaces.xml') }}"
"""

RETURN = r"""
changed_members:
  description: Top-level members of the configuration that the task changed (or would).
  returned: always
  type: list
  elements: str
  sample: ["ietf-system:system"]
config:
  description: The touched top-level members of C(running) after the task (RFC 7951).
  returned: always
  type: dict
saved:
  description: Whether C(startup) was (or would be) overwritten with C(running).
  returned: always
  type: bool
validated_by:
  description: In check mode with a change to make, who validated the resulting
    configuration, C(device) (C(<validate>)) or C(schema) (its YANG modules, here);
    null otherwise.
  returned: always
  type: str
  sample: device
"""

import json
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.zerotouch.brski.plugins.module_utils.device import (
    DEVICE_ARGS,
    IMPORT_ERROR,
    REQUIREMENTS,
    Device,
    DeviceError,
)
from ansible_collections.zerotouch.brski.plugins.module_utils.logic import (
    canonical,
    changed_members,
    config_diff,
    with_operation,
)


def edit_of(device: Device, config: Any, fmt: str | None) -> dict[str, Any]:
    """The task's configuration as an RFC 7951 tree."""
    if isinstance(config, dict):
        if fmt == "xml":
            raise DeviceError("a mapping is JSON: give XML as a string")
        return config
    if not isinstance(config, str):
        raise DeviceError("config must be a mapping (RFC 7951 JSON) or a string")
    if fmt == "xml" or (fmt is None and config.lstrip().startswith("<")):
        return device.from_xml(config)
    try:
        tree = json.loads(config)
    except ValueError as exc:
        raise DeviceError(f"config is not JSON: {exc}") from exc
    if not isinstance(tree, dict):
        raise DeviceError("config must be a JSON object")
    return tree


def configure(module: AnsibleModule, device: Device) -> dict[str, Any]:
    p = module.params
    edit = edit_of(device, p["config"], p["format"])
    replace = p["operation"] == "replace"
    current = device.get_config("running")
    wanted = device.merged(current, with_operation(edit, "replace") if replace else edit, "merge")
    members = changed_members(current, wanted)
    touched = sorted(set(members) | {m for m in edit if not m.startswith("@")})
    stale = bool(
        p["save"]
        and device.has_startup()
        and canonical(device.get_config("startup")) != canonical(wanted)
    )
    validated = None
    if members:
        if module.check_mode:
            validated = device.validate(wanted)
        else:
            config = device.to_xml(edit, "replace" if replace else None)
            device.rpc(lambda s: s.edit_config(config=config, target="running"))
            after = device.get_config("running")
            differs = changed_members(after, wanted)
            if differs:
                raise DeviceError(
                    f"after the edit, running differs from what was expected in {differs}"
                )
    if stale and not module.check_mode:
        device.rpc(lambda s: s.copy_config(source="running", target="startup"))
    result: dict[str, Any] = {
        "changed": bool(members) or stale,
        "changed_members": members,
        "config": {m: wanted[m] for m in touched if m in wanted},
        "saved": stale,
        "validated_by": validated,
    }
    if module._diff:
        result["diff"] = config_diff(current, wanted, touched)
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            **DEVICE_ARGS,
            "config": {"type": "raw", "required": True},
            "format": {"type": "str", "choices": ["json", "xml"]},
            "operation": {"type": "str", "default": "merge", "choices": ["merge", "replace"]},
            "save": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    if IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib(REQUIREMENTS), exception=IMPORT_ERROR)
    try:
        with Device(module.params) as device:
            result = configure(module, device)
    except DeviceError as exc:
        module.fail_json(msg=str(exc), serial=module.params["serial"])
    module.exit_json(serial=module.params["serial"], **result)


if __name__ == "__main__":
    main()
