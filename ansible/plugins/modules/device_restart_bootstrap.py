#!/usr/bin/python
# Copyright: zerotouch contributors
# Apache License 2.0 (see the repository's LICENSE)
"""Factory-reset a device's domain identity and wait until it enrolled again."""

from __future__ import annotations

DOCUMENTATION = r"""
module: device_restart_bootstrap
short_description: Factory-reset a zerotouch device and wait for its re-enrollment
description:
  - Sends the C(restart-bootstrap) operation with C(factory-reset) over NETCONF/TLS; the
    device forgets its LDevID, domain trust anchors and voucher and bootstraps again from
    discovery with its IDevID.
  - With O(wait), reads the registrar record until a new enrollment is confirmed (and,
    with O(handoff), its day-0 hand-off applied), then opens a new NETCONF/TLS session
    with the domain certificate and checks the device's phase and serial.
  - Always reports a change (in check mode nothing is sent).
version_added: 0.1.0
author: zerotouch contributors
extends_documentation_fragment:
  - zerotouch.brski.device
  - zerotouch.brski.attributes.check_mode
options:
  registrar_url:
    description:
      - The registrar's HTTPS base URL, to wait on. Falls back to E(ZEROTOUCH_REGISTRAR_URL).
    type: str
  admin_cert:
    description:
      - Admin client certificate for the registrar. Falls back to E(ZEROTOUCH_ADMIN_CERT).
    type: path
  admin_key:
    description:
      - Admin client key for the registrar. Falls back to E(ZEROTOUCH_ADMIN_KEY).
    type: path
  wait:
    description:
      - Wait for the re-enrollment (needs O(registrar_url), O(admin_cert), O(admin_key)).
    type: bool
    default: true
  handoff:
    description:
      - Also wait for the day-0 hand-off after the re-enrollment.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait for the re-enrollment.
    type: float
    default: 180.0
"""

EXAMPLES = r"""
- name: New LDevID for the device
  zerotouch.brski.device_restart_bootstrap:
    host: "{{ ansible_host }}"
    port: "{{ zerotouch_netconf_tls_port }}"
    serial: "{{ zerotouch_serial }}"
    registrar_url: "{{ zerotouch_registrar_url }}"
    admin_cert: admin/cert.pem
    admin_key: admin/key.pem
"""

RETURN = r"""
phase:
  description: The device's bootstrap phase at the end (C(enrolled) after a wait).
  returned: always
  type: str
ldevid_fingerprint:
  description: Fingerprint of the LDevID before and after, as the registrar records them.
  returned: always
  type: dict
  sample: {"before": "sha256:27...", "after": "sha256:9c..."}
device:
  description: The registrar record after the re-enrollment.
  returned: when O(wait) is true
  type: dict
"""

import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib
from ansible_collections.zerotouch.brski.plugins.module_utils.device import (
    DEVICE_ARGS,
    IMPORT_ERROR,
    REQUIREMENTS,
    Device,
    DeviceError,
)
from ansible_collections.zerotouch.brski.plugins.module_utils.registrar import (
    Registrar,
    RegistrarError,
    wait_enrolled,
)

RECONNECT_SECONDS = 30.0


def reconnect(params: dict[str, Any]) -> str | None:
    """The phase the re-enrolled device reports over a fresh session (its new LDevID)."""
    deadline = time.monotonic() + RECONNECT_SECONDS
    while True:
        try:
            with Device(params) as device:
                return device.bootstrap().get("phase")
        except DeviceError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            **DEVICE_ARGS,
            "registrar_url": {
                "type": "str",
                "fallback": (env_fallback, ["ZEROTOUCH_REGISTRAR_URL"]),
            },
            "admin_cert": {"type": "path", "fallback": (env_fallback, ["ZEROTOUCH_ADMIN_CERT"])},
            "admin_key": {"type": "path", "fallback": (env_fallback, ["ZEROTOUCH_ADMIN_KEY"])},
            "wait": {"type": "bool", "default": True},
            "handoff": {"type": "bool", "default": True},
            "wait_timeout": {"type": "float", "default": 180.0},
        },
        required_if=[("wait", True, ["registrar_url", "admin_cert", "admin_key"])],
        supports_check_mode=True,
    )
    if IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib(REQUIREMENTS), exception=IMPORT_ERROR)
    try:
        result = rotate(module.params, module.check_mode)
    except (DeviceError, RegistrarError) as exc:
        module.fail_json(msg=str(exc), serial=module.params["serial"])
    if result.pop("failed", False):
        module.fail_json(**result)
    module.exit_json(changed=True, **result)


def rotate(p: dict[str, Any], check_mode: bool) -> dict[str, Any]:
    """Reset the device (unless ``check_mode``) and wait for its new enrollment: the result
    (with ``failed`` and ``msg`` when it did not come)."""
    serial = p["serial"]
    registrar = None
    before: dict[str, Any] = {}
    if p["wait"]:
        registrar = Registrar(p["registrar_url"], p["admin_cert"], p["admin_key"], p["ca"], 10.0)
        before = (registrar.device(serial) or {}).get("device") or {}
    fingerprints = {"before": before.get("ldevid_fingerprint"), "after": None}
    result: dict[str, Any] = {"serial": serial, "phase": None, "ldevid_fingerprint": fingerprints}
    if check_mode:
        return result
    with Device(p) as device:
        result["phase"] = device.restart_bootstrap(factory_reset=True)
    if registrar is None:
        return result
    outcome, reason, record = wait_enrolled(
        registrar,
        serial,
        handoff=p["handoff"],
        since=before.get("enroll_status_at"),
        timeout=p["wait_timeout"],
    )
    result["device"] = record
    fingerprints["after"] = (record or {}).get("ldevid_fingerprint")
    if outcome != "done":
        what = (
            "cannot re-enroll"
            if outcome == "failed"
            else f"not re-enrolled after {p['wait_timeout']:.0f} s"
        )
        return {**result, "failed": True, "msg": f"{serial} {what}: {reason}"}
    result["phase"] = reconnect(p)
    return result


if __name__ == "__main__":
    main()
