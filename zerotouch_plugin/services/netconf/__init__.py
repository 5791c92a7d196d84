"""NETCONF server (RFC 6241) over SSH (RFC 6242) and TLS (RFC 7589) for the device."""

from __future__ import annotations

from zerotouch_plugin.services.netconf.certmap import CertToName, map_certificate
from zerotouch_plugin.services.netconf.protocol import NetconfServer, NetconfSession
from zerotouch_plugin.services.netconf.server import build_netconf_server
from zerotouch_plugin.services.netconf.ssh import (
    SshListener,
    load_host_keys,
    start_netconf_ssh,
)
from zerotouch_plugin.services.netconf.tls import (
    TlsListener,
    TlsSettings,
    start_netconf_tls,
)

__all__ = [
    "CertToName",
    "NetconfServer",
    "NetconfSession",
    "SshListener",
    "TlsListener",
    "TlsSettings",
    "build_netconf_server",
    "load_host_keys",
    "map_certificate",
    "start_netconf_ssh",
    "start_netconf_tls",
]
