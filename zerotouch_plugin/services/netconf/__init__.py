"""NETCONF server (RFC 6241) over SSH (RFC 6242) and TLS (RFC 7589) for the device.

The SSH listener is in ``netconf.ssh``, imported only when a device's SSH port gets its first
client: it loads asyncssh, about 8 MiB of a device's memory. Its host keys (``host_keys``)
are made and checked at start without it.
"""

from __future__ import annotations

from zerotouch_plugin.services.netconf.certmap import CertToName, map_certificate
from zerotouch_plugin.services.netconf.protocol import NetconfServer, NetconfSession
from zerotouch_plugin.services.netconf.server import build_netconf_server
from zerotouch_plugin.services.netconf.tls import (
    TlsListener,
    TlsSettings,
    start_netconf_tls,
)

__all__ = [
    "CertToName",
    "NetconfServer",
    "NetconfSession",
    "TlsListener",
    "TlsSettings",
    "build_netconf_server",
    "map_certificate",
    "start_netconf_tls",
]
