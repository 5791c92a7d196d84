#!/usr/bin/python
# Copyright: zerotouch contributors
# Apache License 2.0 (see the repository's LICENSE)
"""Set, read or clear a device's (or the default) day-0 configuration at the registrar."""

from __future__ import annotations

DOCUMENTATION = r"""
module: registrar_day0
short_description: Manage the day-0 configuration a zerotouch registrar hands off
description:
  - The registrar keeps a day-0 configuration per device (and a default one) and pushes it
    to the device over NETCONF/TLS once the device has enrolled.
  - C(state=present) stores the document unless the stored one is the same (JSON compared
    as data, XML in canonical form); the registrar validates it against the device schema
    first and refuses an invalid one with the path of the fault.
  - Storing a document does not push it to a device that already enrolled; use
    M(zerotouch.brski.registrar_handoff) for that (the onboard playbook does it when this
    module reports a change).
version_added: 0.1.0
author: zerotouch contributors
extends_documentation_fragment:
  - zerotouch.brski.registrar
  - zerotouch.brski.attributes.check_and_diff
options:
  serial:
    description:
      - The device's serial number. Omit it for the default configuration (given to
        devices without one of their own).
    type: str
  state:
    description:
      - C(present) stores O(config), C(absent) removes the stored configuration (and the
        management address override), C(query) only reads it.
    type: str
    choices: [present, absent, query]
    default: present
  config:
    description:
      - The configuration. A mapping is RFC 7951 JSON; a string is XML when O(format=xml)
        or when it starts with C(<), RFC 7951 JSON text otherwise.
      - Required with C(state=present).
    type: raw
  format:
    description:
      - Encoding of O(config); guessed from it when unset.
    type: str
    choices: [json, xml]
"""

EXAMPLES = r"""
- name: Day-0 configuration of one device
  zerotouch.brski.registrar_day0:
    serial: SN-0001
    config:
      ietf-system:system:
        hostname: edge-1
        location: rack 4

- name: Default day-0 configuration, as XML
  zerotouch.brski.registrar_day0:
    format: xml
    config: |
      <system xmlns="urn:ietf:params:xml:ns:yang:ietf-system">
        <contact>noc@example.net</contact>
      </system>

- name: What is stored for SN-0001
  zerotouch.brski.registrar_day0:
    serial: SN-0001
    state: query
  register: stored
"""

RETURN = r"""
serial:
  description: The serial number, null for the default configuration.
  returned: always
  type: str
format:
  description: C(json) or C(xml), of the stored document (null when none is stored).
  returned: always
  type: str
  sample: json
config:
  description: The stored document after the task, parsed when JSON, text when XML; null
    when none is stored.
  returned: always
  type: raw
"""

import json
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.zerotouch.brski.plugins.module_utils.logic import (
    day0_document,
    media_format,
)
from ansible_collections.zerotouch.brski.plugins.module_utils.registrar import (
    REGISTRAR_ARGS,
    RegistrarError,
    day0_path,
    from_params,
)

MEDIA = {"json": "application/yang-data+json", "xml": "application/yang-data+xml"}


def wanted(config: Any, fmt: str | None) -> tuple[str, str]:
    """(format, document text) of the task's configuration."""
    if isinstance(config, dict):
        if fmt == "xml":
            raise ValueError("a mapping is JSON: give XML as a string")
        return "json", json.dumps(config, indent=2, ensure_ascii=False) + "\n"
    if not isinstance(config, str):
        raise ValueError("config must be a mapping (RFC 7951 JSON) or a string")
    fmt = fmt or ("xml" if config.lstrip().startswith("<") else "json")
    return fmt, config


def shown(fmt: str | None, text: str | None) -> Any:
    """The document as the result returns it."""
    if text is None:
        return None
    return json.loads(text) if fmt == "json" else text


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            **REGISTRAR_ARGS,
            "serial": {"type": "str"},
            "state": {
                "type": "str",
                "default": "present",
                "choices": ["present", "absent", "query"],
            },
            "config": {"type": "raw"},
            "format": {"type": "str", "choices": ["json", "xml"]},
        },
        required_if=[("state", "present", ["config"])],
        supports_check_mode=True,
    )
    p = module.params
    serial = p["serial"]
    try:
        registrar = from_params(p)
        stored = registrar.day0(serial)
        before_fmt = media_format(stored[0]) if stored else None
        before = stored[1].decode("utf-8") if stored else None
        after_fmt, after = before_fmt, before
        if p["state"] == "present":
            after_fmt, after = wanted(p["config"], p["format"])
            same = (
                before is not None
                and before_fmt == after_fmt
                and day0_document(before, after_fmt) == day0_document(after, after_fmt)
            )
            if same:
                after_fmt, after = before_fmt, before
            elif not module.check_mode:
                status, _, body = registrar.request(
                    "PUT", day0_path(serial), after.encode(), MEDIA[after_fmt]
                )
                if status >= 400:
                    module.fail_json(
                        msg=f"the registrar refused the day-0 configuration: {status} "
                        f"{body.decode('utf-8', 'replace').strip()[:300]}",
                        serial=serial,
                        status=status,
                    )
        elif p["state"] == "absent":
            after_fmt, after = None, None
            if before is not None and not module.check_mode:
                registrar.call("DELETE", day0_path(serial))
    except RegistrarError as exc:
        module.fail_json(msg=str(exc), serial=serial, status=exc.status)
    except (ValueError, SyntaxError) as exc:  # JSON or XML (lxml) that does not parse
        module.fail_json(msg=f"invalid config: {exc}", serial=serial)
    changed = (before_fmt, before) != (after_fmt, after)
    result: dict[str, Any] = {
        "changed": changed,
        "serial": serial,
        "format": after_fmt,
        "config": shown(after_fmt, after),
    }
    if module._diff:
        result["diff"] = {"before": before or "", "after": after or ""}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
