# Copyright: zerotouch contributors
# Apache License 2.0 (see the repository's LICENSE)
"""Options shared by the device modules."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  host:
    description:
      - Address of the device's NETCONF/TLS server (RFC 7589), usually C({{ ansible_host }}).
    type: str
    required: true
  port:
    description:
      - Port of the device's NETCONF/TLS server. Every device has its own, so that two
        devices on one address are told apart.
    type: int
    default: 6513
  serial:
    description:
      - The serial number the device's LDevID must carry (subject serialNumber). A device
        presenting another serial is refused before any request.
    type: str
    required: true
  client_cert:
    description:
      - PEM file of the NMS client certificate (with its chain) issued by the domain CA
        (C(zerotouch registrar issue-client-cert)). Falls back to E(ZEROTOUCH_NMS_CERT).
    type: path
    required: true
  client_key:
    description:
      - PEM file of the NMS client key. Falls back to E(ZEROTOUCH_NMS_KEY).
    type: path
    required: true
  ca:
    description:
      - PEM file of the domain CA; the device's LDevID must chain to it. Falls back to
        E(ZEROTOUCH_CA).
    type: path
    required: true
  tls_server_name:
    description:
      - DNS name the device's LDevID must carry (the registrar record's C(dns_name), which
        the inventory plugin sets as C(zerotouch_tls_server_name)). Unset, only the serial
        is checked.
    type: str
  timeout:
    description:
      - Seconds allowed for the connection and for each NETCONF request.
    type: float
    default: 30.0
  yang_cache:
    description:
      - Folder where the YANG modules fetched from devices (C(get-schema)) are kept, one
        subfolder per module set. Falls back to E(ZEROTOUCH_YANG_CACHE).
    type: path
    default: ~/.cache/zerotouch-ansible/yang
requirements:
  - zerotouch (the Python package of this repository, with ncclient, lxml, yangson and
    cryptography) on the controller
notes:
  - "Runs on the controller (C(connection: local)); the device is reached over NETCONF/TLS."
  - Use C(module_defaults) with the action group C(group/zerotouch.brski.device) to give the
    certificate options once per play.
"""
