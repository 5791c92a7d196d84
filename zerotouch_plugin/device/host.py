"""The plugin host interface: what the pledge agent needs from the server that hosts it.

DESIGN.md "The plugin boundary": a vendor hosts the agent in another NETCONF server by
implementing this small protocol; the reference device server is one implementation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

__all__ = ["DeviceIdentity", "PluginHost"]


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

    async def apply_configuration(self, tree: Mapping[str, Any]) -> None:
        """Merge RFC 7951 configuration into running (validated like any edit)."""
        ...

    def publish_state(self, tree: Mapping[str, Any]) -> None:
        """Replace the agent's operational state (an RFC 7951 tree, e.g. zerotouch-bootstrap)."""
        ...

    def emit_event(self, name: str, data: Mapping[str, Any]) -> None:
        """Send a notification (RFC 7951 body of notification ``name``) to subscribers."""
        ...
