#!/usr/bin/python
# Copyright: zerotouch contributors
# Apache License 2.0 (see the repository's LICENSE)
"""Wait until the registrar records a device as enrolled (and, optionally, handed off)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: wait_for_enrollment
short_description: Wait until a device has enrolled at a zerotouch registrar
description:
  - Reads the device's registrar record until its phase is C(enroll-confirmed) (the device
    confirmed its LDevID, RFC 8995 §5.9.4) and, with O(handoff), its day-0 hand-off is
    C(applied).
  - A device the registrar refused keeps retrying, so a failed phase is waited out; the
    task fails at once only when the registrar's policy denies the serial or a failed
    hand-off has no further attempt scheduled, and after O(wait_timeout) otherwise. The
    message carries the device's phase and last error.
  - Never changes anything.
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
  handoff:
    description:
      - Also wait for the day-0 hand-off to be C(applied).
    type: bool
    default: false
  since:
    description:
      - Only an enrollment confirmed after this registrar time (RFC 3339, e.g. a previous
        C(device.enroll_status_at)) counts.
    type: str
  wait_timeout:
    description:
      - Seconds to wait.
    type: float
    default: 120.0
  interval:
    description:
      - Seconds between two reads of the record.
    type: float
    default: 0.5
"""

EXAMPLES = r"""
- name: Wait for the device and its day-0 configuration
  zerotouch.brski.wait_for_enrollment:
    serial: SN-0001
    handoff: true
    wait_timeout: 300
"""

RETURN = r"""
device:
  description: The device's registrar record when the wait ended.
  returned: always
  type: dict
phase:
  description: The record's phase (C(state)) when the wait ended, null without a record.
  returned: always
  type: str
  sample: enroll-confirmed
reason:
  description: Why the wait ended, in words.
  returned: always
  type: str
  sample: phase enroll-confirmed, hand-off applied
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.zerotouch.brski.plugins.module_utils.registrar import (
    REGISTRAR_ARGS,
    RegistrarError,
    from_params,
    wait_enrolled,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            **REGISTRAR_ARGS,
            "serial": {"type": "str", "required": True},
            "handoff": {"type": "bool", "default": False},
            "since": {"type": "str"},
            "wait_timeout": {"type": "float", "default": 120.0},
            "interval": {"type": "float", "default": 0.5},
        },
        supports_check_mode=True,
    )
    p = module.params
    serial = p["serial"]

    try:
        outcome, reason, record = wait_enrolled(
            from_params(p),
            serial,
            handoff=p["handoff"],
            since=p["since"],
            timeout=p["wait_timeout"],
            interval=p["interval"],
        )
    except RegistrarError as exc:
        module.fail_json(msg=str(exc), serial=serial, status=exc.status)
    phase = (record or {}).get("state")
    if outcome == "done":
        module.exit_json(changed=False, serial=serial, device=record, phase=phase, reason=reason)
    what = (
        "cannot enroll" if outcome == "failed" else f"not enrolled after {p['wait_timeout']:.0f} s"
    )
    module.fail_json(
        msg=f"{serial} {what}: {reason}", serial=serial, device=record, phase=phase, reason=reason
    )


if __name__ == "__main__":
    main()
