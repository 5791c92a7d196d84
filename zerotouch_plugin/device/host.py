"""The plugin host interface: what the pledge agent needs from the server that hosts it.

docs/plugin-host.md: a vendor hosts the agent in another NETCONF server by
implementing this small protocol; the reference device server is one implementation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from zerotouch_plugin.device.types import RpcFunction

__all__ = ["DeviceIdentity", "InstalledIdentity", "PluginHost", "RpcFunction"]


@dataclass(frozen=True)
class DeviceIdentity:
    """Where the factory identity (IEEE 802.1AR IDevID) lives, and the device's serial."""

    idevid_cert: Path
    idevid_key: Path
    serial_number: str

    def __post_init__(self) -> None:
        if not isinstance(self.idevid_cert, Path) or not isinstance(self.idevid_key, Path):
            raise TypeError("IDevID locations must be Paths")
        if not isinstance(self.serial_number, str):
            raise TypeError("serial_number must be a str")
        if not self.serial_number:
            raise ValueError("serial_number must not be empty")


@dataclass(frozen=True)
class InstalledIdentity:
    """The domain identity a host holds: the LDevID (leaf first, then its chain) and the
    domain trust anchors."""

    chain: tuple[x509.Certificate, ...]
    anchors: tuple[x509.Certificate, ...]

    def __post_init__(self) -> None:
        if not self.chain or not self.anchors:
            raise ValueError("an installed identity has a certificate and a trust anchor")

    @property
    def ldevid(self) -> x509.Certificate:
        return self.chain[0]


class PluginHost(Protocol):
    """Services a hosting server gives the pledge agent."""

    def read_identity(self) -> DeviceIdentity:
        """The factory identity and serial number."""
        ...

    async def install_identity(
        self,
        ldevid_cert: x509.Certificate,
        key: PrivateKeyTypes,
        chain: Sequence[x509.Certificate],
        domain_ca: Sequence[x509.Certificate],
    ) -> None:
        """Persist the LDevID, its chain and the domain trust anchors, and make the
        NETCONF/RESTCONF listeners use them (RFC 8995 §5.9.4) without a restart."""
        ...

    def installed_identity(self) -> InstalledIdentity | None:
        """The domain identity in use (None before enrollment)."""
        ...

    async def forget_identity(self) -> None:
        """Remove the domain identity (factory reset): TLS listeners accept no one again."""
        ...

    def management_ports(self) -> Mapping[str, int]:
        """Listeners that accept domain clients once installed: ``netconf-tls-port``,
        ``restconf-port`` and ``netconf-ssh-port`` (only those that exist), announced in
        enrollstatus."""
        ...

    def register_rpc(self, name: str, function: RpcFunction) -> None:
        """Serve the YANG RPC ``module:name`` (RFC 7951 input members -> output members)."""
        ...

    async def apply_configuration(self, tree: Mapping[str, Any]) -> None:
        """Merge RFC 7951 configuration into running (validated like any edit)."""
        ...

    def publish_state(self, tree: Mapping[str, Any]) -> None:
        """Replace the agent's operational state (an RFC 7951 tree, e.g. zerotouch-bootstrap)."""
        ...

    def emit_event(self, name: str, data: Mapping[str, Any]) -> None:
        """Send a notification (RFC 7951 body of notification ``name``) to subscribers."""
        ...
