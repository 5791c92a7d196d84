#!/usr/bin/python
# Copyright: zerotouch contributors
# Apache License 2.0 (see the repository's LICENSE)
"""What the registrar knows of one device, or of all."""

from __future__ import annotations

DOCUMENTATION = r"""
module: registrar_device_info
short_description: Read a zerotouch registrar's records of devices
description:
  - With O(serial), the device's record, policy entries, vouchers and status reports
    (C(GET /admin/devices/SERIAL)); without, every device record.
  - Never changes anything.
version_added: 0.1.0
author: zerotouch contributors
extends_documentation_fragment:
  - zerotouch.brski.registrar
  - zerotouch.brski.attributes.check_mode
options:
  serial:
    description:
      - The device's serial number; omit it for every device.
    type: str
"""

EXAMPLES = r"""
- name: One device
  zerotouch.brski.registrar_device_info:
    serial: SN-0001
  register: info

- name: Its phase and LDevID expiry
  ansible.builtin.debug:
    msg: "{{ info.device.state }} until {{ info.device.ldevid_not_after }}"
"""

RETURN = r"""
exists:
  description: Whether the registrar knows the serial (a record or a policy entry).
  returned: when O(serial) is given
  type: bool
device:
  description: The device record (see the admin API document), null before its first
    voucher-request.
  returned: when O(serial) is given
  type: dict
policy:
  description: Policy entries (C(decision), C(manufacturer), C(since)).
  returned: when O(serial) is given
  type: list
  elements: dict
vouchers:
  description: Vouchers issued for the device (C(issued_at), C(assertion), C(nonce),
    C(expires_on), C(source)).
  returned: when O(serial) is given
  type: list
  elements: dict
status_reports:
  description: Voucher and enrollment status reports (C(kind), C(received_at), C(status),
    C(reason)).
  returned: when O(serial) is given
  type: list
  elements: dict
devices:
  description: Every device record.
  returned: when O(serial) is not given
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.zerotouch.brski.plugins.module_utils.registrar import (
    REGISTRAR_ARGS,
    RegistrarError,
    from_params,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={**REGISTRAR_ARGS, "serial": {"type": "str"}},
        supports_check_mode=True,
    )
    serial = module.params["serial"]
    try:
        registrar = from_params(module.params)
        if serial is None:
            module.exit_json(changed=False, devices=registrar.devices())
        info = registrar.device(serial)
    except RegistrarError as exc:
        module.fail_json(msg=str(exc), serial=serial, status=exc.status)
    module.exit_json(
        changed=False,
        serial=serial,
        exists=info is not None,
        device=(info or {}).get("device"),
        policy=(info or {}).get("policy") or [],
        vouchers=(info or {}).get("vouchers") or [],
        status_reports=(info or {}).get("status_reports") or [],
    )


if __name__ == "__main__":
    main()
