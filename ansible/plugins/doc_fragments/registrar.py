# Copyright: zerotouch contributors
# Apache License 2.0 (see the repository's LICENSE)
"""Options shared by the registrar modules."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  url:
    description:
      - The registrar's HTTPS base URL, C(https://HOST:PORT).
      - Falls back to the environment variable E(ZEROTOUCH_REGISTRAR_URL).
    type: str
    required: true
  client_cert:
    description:
      - PEM file of the admin client certificate (with its chain), issued by the domain CA
        with C(OU=zerotouch-admin) (C(zerotouch registrar issue-client-cert --admin)).
      - Falls back to E(ZEROTOUCH_ADMIN_CERT).
    type: path
    required: true
  client_key:
    description:
      - PEM file of the admin client key. Falls back to E(ZEROTOUCH_ADMIN_KEY).
    type: path
    required: true
  ca:
    description:
      - PEM file of the domain CA, the only anchor the registrar's certificate is checked
        against. Falls back to E(ZEROTOUCH_CA).
    type: path
    required: true
  timeout:
    description:
      - Seconds allowed for each HTTP request.
    type: float
    default: 10.0
notes:
  - "Runs on the controller (C(connection: local) or C(delegate_to: localhost))."
  - Use C(module_defaults) with the action group C(group/zerotouch.brski.registrar) to give
    these options once per play.
"""
