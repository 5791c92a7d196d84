#!/usr/bin/python
# Copyright: zerotouch contributors
# Apache License 2.0 (see the repository's LICENSE)
"""Allow, deny or forget a device serial at the registrar."""

from __future__ import annotations

DOCUMENTATION = r"""
module: registrar_policy
short_description: Allow, deny or remove a device serial at a zerotouch registrar
description:
  - Sets the registrar's enrollment policy for one serial number (RFC 8995 §5.3 leaves the
    decision to the registrar; zerotouch keeps it per serial and, optionally, per
    manufacturer).
  - Idempotent: the policy is read first and changed only when it differs.
version_added: 0.1.0
author: zerotouch contributors
extends_documentation_fragment:
  - zerotouch.brski.registrar
  - zerotouch.brski.attributes.check_and_diff
options:
  serial:
    description:
      - The device's serial number (its IDevID's subject serialNumber).
    type: str
    required: true
  state:
    description:
      - C(allowed) lets the device enroll, C(denied) refuses it, C(absent) removes the
        entries (the device is then refused as unknown).
    type: str
    choices: [allowed, denied, absent]
    default: allowed
  manufacturer:
    description:
      - Restrict the entry to IDevIDs of this issuer (as the registrar records it, e.g.
        C(CN=Example Manufacturer CA,O=Example)). Unset, the entry holds for any
        manufacturer.
    type: str
"""

EXAMPLES = r"""
- name: Allow the new switches to enroll
  zerotouch.brski.registrar_policy:
    url: https://registrar.example.net:8443
    client_cert: admin/cert.pem
    client_key: admin/key.pem
    ca: registrar/ca.pem
    serial: "{{ item }}"
  loop: [SN-0001, SN-0002]

- name: Refuse a device that was returned
  zerotouch.brski.registrar_policy:
    serial: SN-0003
    state: denied
"""

RETURN = r"""
serial:
  description: The serial number.
  returned: always
  type: str
  sample: SN-0001
action:
  description: The admin request made (or that check mode would make), or null.
  returned: always
  type: str
  sample: allow
policy:
  description: The serial's policy entries after the task.
  returned: always
  type: list
  elements: dict
  sample: [{"decision": "allow", "manufacturer": null}]
"""

from urllib.parse import urlencode

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.zerotouch.brski.plugins.module_utils.logic import (
    policy_action,
    policy_after,
    policy_view,
    pretty,
)
from ansible_collections.zerotouch.brski.plugins.module_utils.registrar import (
    REGISTRAR_ARGS,
    RegistrarError,
    device_path,
    from_params,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            **REGISTRAR_ARGS,
            "serial": {"type": "str", "required": True},
            "state": {
                "type": "str",
                "default": "allowed",
                "choices": ["allowed", "denied", "absent"],
            },
            "manufacturer": {"type": "str"},
        },
        supports_check_mode=True,
    )
    serial = module.params["serial"]
    manufacturer = module.params["manufacturer"]
    try:
        registrar = from_params(module.params)
        info = registrar.device(serial) or {}
        entries = list(info.get("policy") or [])
        action = policy_action(entries, module.params["state"], manufacturer)
        after = policy_after(entries, action, manufacturer)
        if action is not None and not module.check_mode:
            query = {"manufacturer": manufacturer} if manufacturer else None
            if action == "remove":
                suffix = f"?{urlencode(query)}" if query else ""
                registrar.call("DELETE", f"{device_path(serial)}/policy{suffix}")
            else:
                registrar.call("POST", f"{device_path(serial)}/{action}", query)
            after = list((registrar.device(serial) or {}).get("policy") or [])
    except RegistrarError as exc:
        module.fail_json(msg=str(exc), serial=serial, status=exc.status)
    result = {
        "changed": action is not None,
        "serial": serial,
        "action": action,
        "policy": policy_view(after),
    }
    if module._diff:
        result["diff"] = {
            "before": pretty(policy_view(entries)),
            "after": pretty(policy_view(after)),
        }
    module.exit_json(**result)


if __name__ == "__main__":
    main()
