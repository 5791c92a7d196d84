"""What the RESTCONF server says of itself in ``ietf-restconf-monitoring`` (RFC 8040 §9.1),
apart from the HTTP server, so the device publishes it as soon as the listener is bound:
the HTTP library loads only with the first connection (``services/device_server.py``)."""

from __future__ import annotations

from typing import Final

from zerotouch_plugin.device.datastore import Datastores

__all__ = ["CAPABILITIES", "publish_restconf_state"]

# RFC 8040 §9.1.1: the capabilities of this server, and only those (no fields, filter, replay).
CAPABILITIES: Final = (
    "urn:ietf:params:restconf:capability:defaults:1.0?basic-mode=explicit",  # §9.1.2
    "urn:ietf:params:restconf:capability:depth:1.0",  # §4.8.2
    "urn:ietf:params:restconf:capability:with-defaults:1.0",  # §4.8.9 (explicit, report-all)
)
_MODULE: Final = "ietf-restconf-monitoring"


def publish_restconf_state(datastores: Datastores) -> None:
    """RFC 8040 §9.1: the capabilities, into operational when the schema has the module; no
    ``streams`` (the server has no event streams)."""
    if _MODULE in datastores.schema.by_name:
        state = {"capabilities": {"capability": list(CAPABILITIES)}}
        datastores.publish_state(_MODULE, {f"{_MODULE}:restconf-state": state})
