#!/usr/bin/python
# Copyright: zerotouch contributors
# Apache License 2.0 (see the repository's LICENSE)
"""Push a device's day-0 configuration again and wait for the outcome."""

from __future__ import annotations

DOCUMENTATION = r"""
module: registrar_handoff
short_description: Make a zerotouch registrar push the day-0 configuration to a device
description:
  - Asks the registrar to push the device's day-0 configuration again over NETCONF/TLS
    (C(POST /admin/devices/SERIAL/handoff)) and, with O(wait), waits until the registrar
    records this push as C(applied) (success) or C(failed) (the task fails with the
    device's error).
  - The device must be C(enroll-confirmed) with a known management address and have a
    day-0 configuration (its own or the default).
version_added: 0.1.0
author: zerotouch contributors
extends_documentation_fragment:
  - zerotouch.brski.registrar
  - zerotouch.brski.attributes.check_mode
options:
  serial:
    description:
      - The device's serial number.
    type: str
    required: true
  state:
    description:
      - C(pushed) pushes every time (the task always reports a change); C(applied) pushes
        only when the last hand-off is not C(applied) already.
    type: str
    choices: [pushed, applied]
    default: pushed
  wait:
    description:
      - Wait for the outcome of the push.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait for the outcome.
    type: float
    default: 60.0
"""

EXAMPLES = r"""
- name: Push the new day-0 configuration now
  zerotouch.brski.registrar_handoff:
    serial: SN-0001
  when: day0 is changed

- name: Make sure the hand-off went through
  zerotouch.brski.registrar_handoff:
    serial: SN-0001
    state: applied
"""

RETURN = r"""
serial:
  description: The serial number.
  returned: always
  type: str
handoff:
  description: The registrar's hand-off record after the task (C(state), C(attempts), C(at),
    C(error), C(target), C(next_attempt_at)).
  returned: always
  type: dict
  sample: {"state": "applied", "attempts": 1, "target": "192.0.2.7:6513", "error": null}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.zerotouch.brski.plugins.module_utils.logic import handoff_verdict
from ansible_collections.zerotouch.brski.plugins.module_utils.registrar import (
    REGISTRAR_ARGS,
    RegistrarError,
    device_path,
    from_params,
    poll,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            **REGISTRAR_ARGS,
            "serial": {"type": "str", "required": True},
            "state": {"type": "str", "default": "pushed", "choices": ["pushed", "applied"]},
            "wait": {"type": "bool", "default": True},
            "wait_timeout": {"type": "float", "default": 60.0},
        },
        supports_check_mode=True,
    )
    p = module.params
    serial = p["serial"]
    try:
        registrar = from_params(p)
        info = registrar.device(serial) or {}
        record = info.get("device") or {}
        if not record:
            module.fail_json(
                msg=f"the registrar has no record of {serial}: it never enrolled", serial=serial
            )
        hand = record.get("handoff") or {}
        if p["state"] == "applied" and hand.get("state") == "applied":
            module.exit_json(changed=False, serial=serial, handoff=hand)
        if module.check_mode:
            module.exit_json(changed=True, serial=serial, handoff=hand)
        registrar.call("POST", f"{device_path(serial)}/handoff")
        if not p["wait"]:
            record = (registrar.device(serial) or {}).get("device") or {}
            module.exit_json(changed=True, serial=serial, handoff=record.get("handoff"))
        held, info = poll(
            lambda: registrar.device(serial) or {},
            lambda i: handoff_verdict(i.get("device"), hand.get("at"))[0] != "wait",
            timeout=p["wait_timeout"],
        )
    except RegistrarError as exc:
        module.fail_json(msg=str(exc), serial=serial, status=exc.status)
    record = info.get("device") or {}
    verdict, reason = handoff_verdict(record, hand.get("at"))
    if not held:
        module.fail_json(
            msg=f"{serial}: no hand-off outcome after {p['wait_timeout']:.0f} s ({reason})",
            serial=serial,
            handoff=record.get("handoff"),
        )
    if verdict == "failed":
        module.fail_json(msg=f"{serial}: {reason}", serial=serial, handoff=record.get("handoff"))
    module.exit_json(changed=True, serial=serial, handoff=record.get("handoff"))


if __name__ == "__main__":
    main()
