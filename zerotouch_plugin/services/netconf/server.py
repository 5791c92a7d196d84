"""Assembles a NETCONF server over a device's datastores (shared by SSH and TLS)."""

from __future__ import annotations

from zerotouch_plugin.config import NetconfLimits
from zerotouch_plugin.device.datastore import Datastores
from zerotouch_plugin.services.netconf.operations import (
    OPERATIONS,
    capabilities,
    yang_rpc_handler,
)
from zerotouch_plugin.services.netconf.protocol import NetconfServer, RpcHandler

__all__ = ["build_netconf_server"]


def build_netconf_server(
    datastores: Datastores, limits: NetconfLimits | None = None
) -> NetconfServer:
    """One server per device: sessions on every transport share its datastores, ids and
    limits (buffered bytes and the session count are capped over SSH and TLS together)."""
    schema = datastores.schema

    def plugin_handler(tag: str) -> RpcHandler | None:
        ns, _, local = tag[1:].partition("}")
        module = schema.by_namespace.get(ns)
        name = f"{module.name}:{local}" if module else ""
        return yang_rpc_handler(schema, name) if name in datastores.rpcs else None

    caps = capabilities(schema)
    datastores.publish_state("ietf-netconf-monitoring", _monitoring_state(datastores, caps))
    return NetconfServer(datastores, OPERATIONS, caps, plugin_handler, limits)


def _monitoring_state(datastores: Datastores, caps: tuple[str, ...]) -> dict[str, object]:
    """RFC 6022 §2: capabilities and the schemas get-schema can return."""
    schemas = []
    for m in datastores.schema.modules:
        for name, rev in ((m.name, m.revision), *((n, r) for n, r, _ in m.submodules)):
            schemas.append(
                {
                    "identifier": name,
                    "version": rev,
                    "format": "ietf-netconf-monitoring:yang",
                    "namespace": m.namespace,
                    "location": ["NETCONF"],
                }
            )
    return {
        "ietf-netconf-monitoring:netconf-state": {
            "capabilities": {"capability": list(caps)},
            "schemas": {"schema": schemas},
        }
    }
