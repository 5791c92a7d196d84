#!/usr/bin/python
# Copyright: zerotouch contributors
# Apache License 2.0 (see the repository's LICENSE)
"""A device's own view of its bootstrap: phase, LDevID, voucher, history."""

from __future__ import annotations

DOCUMENTATION = r"""
module: device_bootstrap_info
short_description: Read the bootstrap state of an enrolled zerotouch device
description:
  - Reads the C(zerotouch-bootstrap) state of the device over NETCONF/TLS; its phase, the
    LDevID it holds (subject, issuer, validity, fingerprint), the voucher it accepted, its
    trust anchors, its last error and its event history.
  - Never changes anything.
version_added: 0.1.0
author: zerotouch contributors
extends_documentation_fragment:
  - zerotouch.brski.device
  - zerotouch.brski.attributes.check_mode
"""

EXAMPLES = r"""
- name: Bootstrap state
  zerotouch.brski.device_bootstrap_info:
    host: "{{ ansible_host }}"
    port: "{{ zerotouch_netconf_tls_port }}"
    serial: "{{ zerotouch_serial }}"
  register: boot

- ansible.builtin.debug:
    msg: "{{ boot.phase }}, LDevID until {{ boot.ldevid['not-after'] }}"
"""

RETURN = r"""
phase:
  description: The bootstrap phase (C(enrolled) once the device holds its LDevID).
  returned: always
  type: str
  sample: enrolled
ldevid:
  description: The LDevID (C(subject), C(issuer), C(serial), C(not-before), C(not-after),
    C(fingerprint)), empty before enrollment.
  returned: always
  type: dict
voucher:
  description: The voucher the device accepted (C(serial-number), C(assertion),
    C(created-on), C(expires-on), C(nonce), C(pinned-domain-cert-fingerprint) ...).
  returned: always
  type: dict
last_error:
  description: The device's last bootstrap error (C(time), C(reason), C(message)), empty if
    none.
  returned: always
  type: dict
history:
  description: The device's bootstrap events, oldest first (C(sequence), C(time), C(event),
    C(phase), C(detail)).
  returned: always
  type: list
  elements: dict
bootstrap:
  description: The whole C(zerotouch-bootstrap:bootstrap) container (RFC 7951).
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.zerotouch.brski.plugins.module_utils.device import (
    DEVICE_ARGS,
    IMPORT_ERROR,
    REQUIREMENTS,
    Device,
    DeviceError,
)


def main() -> None:
    module = AnsibleModule(argument_spec=dict(DEVICE_ARGS), supports_check_mode=True)
    if IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib(REQUIREMENTS), exception=IMPORT_ERROR)
    try:
        with Device(module.params) as device:
            boot = device.bootstrap()
    except DeviceError as exc:
        module.fail_json(msg=str(exc), serial=module.params["serial"])
    module.exit_json(
        changed=False,
        serial=module.params["serial"],
        phase=boot.get("phase"),
        ldevid=boot.get("ldevid") or {},
        voucher=boot.get("voucher") or {},
        last_error=boot.get("last-error") or {},
        history=boot.get("event") or [],
        bootstrap=boot,
    )


if __name__ == "__main__":
    main()
