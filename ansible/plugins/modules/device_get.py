#!/usr/bin/python
# Copyright: zerotouch contributors
# Apache License 2.0 (see the repository's LICENSE)
"""Read configuration or state from an enrolled device over NETCONF/TLS."""

from __future__ import annotations

DOCUMENTATION = r"""
module: device_get
short_description: Read data from an enrolled zerotouch device over NETCONF/TLS
description:
  - C(get-config) of C(running) or C(startup), or C(get) (configuration and state) when
    O(source=operational), optionally filtered by an XPath expression (with its namespace
    prefixes in O(namespaces)) or a subtree filter.
  - The data comes back as RFC 7951 JSON with typed values (numbers, booleans) following
    the device's YANG modules, and as the XML the device sent.
  - Never changes anything.
version_added: 0.1.0
author: zerotouch contributors
extends_documentation_fragment:
  - zerotouch.brski.device
  - zerotouch.brski.attributes.check_mode
options:
  source:
    description:
      - C(running) or C(startup) read that configuration datastore; C(operational) reads
        configuration and state (C(<get>)).
    type: str
    choices: [running, startup, operational]
    default: running
  xpath:
    description:
      - XPath 1.0 filter (RFC 6241 §8.9), e.g. C(/sys:system/sys:hostname).
    type: str
  namespaces:
    description:
      - Prefix to namespace URI map for the prefixes O(xpath) uses.
    type: dict
    default: {}
  subtree:
    description:
      - Subtree filter (RFC 6241 §6), as XML.
    type: str
"""

EXAMPLES = r"""
- name: Hostname of the device
  zerotouch.brski.device_get:
    host: "{{ ansible_host }}"
    port: "{{ zerotouch_netconf_tls_port }}"
    serial: "{{ zerotouch_serial }}"
    xpath: /sys:system/sys:hostname
    namespaces:
      sys: urn:ietf:params:xml:ns:yang:ietf-system
  register: got

- ansible.builtin.assert:
    that: got.data['ietf-system:system'].hostname == inventory_hostname
"""

RETURN = r"""
data:
  description: The data read, as RFC 7951 JSON.
  returned: always
  type: dict
  sample: {"ietf-system:system": {"hostname": "edge-1"}}
xml:
  description: The data as the device sent it (the C(<data>) element).
  returned: always
  type: str
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.zerotouch.brski.plugins.module_utils.device import (
    DEVICE_ARGS,
    IMPORT_ERROR,
    REQUIREMENTS,
    Device,
    DeviceError,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            **DEVICE_ARGS,
            "source": {
                "type": "str",
                "default": "running",
                "choices": ["running", "startup", "operational"],
            },
            "xpath": {"type": "str"},
            "namespaces": {"type": "dict", "default": {}},
            "subtree": {"type": "str"},
        },
        mutually_exclusive=[("xpath", "subtree")],
        supports_check_mode=True,
    )
    if IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib(REQUIREMENTS), exception=IMPORT_ERROR)
    p = module.params
    xml_filter: Any = None
    if p["xpath"]:
        xml_filter = ("xpath", (dict(p["namespaces"]), p["xpath"]))
    elif p["subtree"]:
        xml_filter = ("subtree", p["subtree"])
    try:
        with Device(p) as device:
            if p["source"] == "operational":
                data, xml = device.get(xml_filter)
            else:
                reply = device.rpc(lambda s: s.get_config(p["source"], filter=xml_filter))
                data, xml = device.checked(lambda: device.tree_of(reply)), reply.data_xml
    except DeviceError as exc:
        module.fail_json(msg=str(exc), serial=p["serial"])
    except (ValueError, SyntaxError) as exc:  # a filter ncclient cannot build
        module.fail_json(msg=f"invalid filter: {exc}", serial=p["serial"])
    module.exit_json(changed=False, serial=p["serial"], data=data, xml=xml)


if __name__ == "__main__":
    main()
