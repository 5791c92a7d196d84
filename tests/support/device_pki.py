"""A throw-away domain PKI for device-server tests: a domain CA, the device's LDevID-like
server certificate, an operator client certificate, and a stranger from another CA."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from zerotouch_plugin.artifacts.certs import (
    Identity,
    issue_client,
    issue_tls_server,
    make_ca,
)
from zerotouch_plugin.services._tls import client_context, server_context
from zerotouch_plugin.services.certfiles import write_certs, write_key


@dataclass(frozen=True)
class DevicePki:
    ca: Identity
    server: Identity
    client: Identity
    stranger: Identity  # a client certificate from another CA

    def server_context(self) -> ssl.SSLContext:
        """Mutual TLS as the device serves it: client certificates must chain to the CA."""
        return server_context(self.server, client_cas=[self.ca.cert], require_client_cert=True)

    def client_context(self, identity: Identity | None = None) -> ssl.SSLContext:
        return client_context(identity or self.client, trust=[self.ca.cert])

    def write(self, folder: Path) -> dict[str, Path]:
        """PEM files for external clients (curl, openssl): ca, cert, key, stranger-*."""
        folder.mkdir(parents=True, exist_ok=True)
        paths = {
            "ca": folder / "ca.pem",
            "cert": folder / "client.pem",
            "key": folder / "client.key",
            "stranger-cert": folder / "stranger.pem",
            "stranger-key": folder / "stranger.key",
        }
        write_certs(paths["ca"], [self.ca.cert])
        write_certs(paths["cert"], [self.client.cert])
        write_key(paths["key"], self.client.key)
        write_certs(paths["stranger-cert"], [self.stranger.cert])
        write_key(paths["stranger-key"], self.stranger.key)
        return paths


def make_device_pki(host: str = "127.0.0.1") -> DevicePki:
    now = datetime.now(UTC) - timedelta(minutes=5)
    ca = make_ca("Domain CA", now=now)
    other = make_ca("Other CA", now=now)
    return DevicePki(
        ca=ca,
        server=issue_tls_server(ca, "device", hosts=[host], now=now),
        client=issue_client(ca, "operator", now=now),
        stranger=issue_client(other, "stranger", now=now),
    )
