"""The plugin host interface: what the pledge agent needs from the server that hosts it.

docs/plugin-host.md: a vendor hosts the agent in another NETCONF server by implementing
``PluginHost``. The agent reads nothing and writes nothing itself: the factory identity
comes as a certificate chain and a ``Signer`` (the key may stay in a TPM or secure element),
the manufacturer's trust anchors as certificates, its own state goes to an ``AgentStore``
the host persists where it wants, and the domain identity is installed and forgotten by the
host. The reference device server (``services/device_server.py``) is one implementation.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography import x509

from zerotouch_plugin.artifacts.certs import KeyKind
from zerotouch_plugin.artifacts.signer import Signer, SigningIdentity
from zerotouch_plugin.device.types import RpcFunction

__all__ = [
    "REQUIRED_MODULES",
    "AgentStore",
    "InstalledIdentity",
    "MemoryAgentStore",
    "PluginHost",
    "RpcFunction",
    "Signer",
    "SigningIdentity",
    "check_store_key",
]

# The YANG modules a host must serve (yang/zerotouch-bootstrap@2026-12-05.yang): the agent's
# state, its restart-bootstrap RPC and its bootstrap-phase-change notification.
REQUIRED_MODULES: tuple[str, ...] = ("zerotouch-bootstrap",)

_STORE_KEY = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


def check_store_key(key: str) -> str:
    """An AgentStore key: lower-case letters, digits and hyphens, at most 64 (a file name
    on any host)."""
    if not isinstance(key, str) or not _STORE_KEY.fullmatch(key):
        raise ValueError(f"store key {key!r} is not [a-z0-9-], 1 to 64 characters")
    return key


@dataclass(frozen=True)
class InstalledIdentity:
    """The domain identity a host holds: the LDevID (leaf first, then its chain), the
    domain trust anchors, and the Signer of the LDevID key, which the agent needs to renew
    the LDevID (RFC 7030 §4.2.2: the renewal is authenticated by it); None means the host
    cannot renew."""

    chain: tuple[x509.Certificate, ...]
    anchors: tuple[x509.Certificate, ...]
    signer: Signer | None = None

    def __post_init__(self) -> None:
        chain, anchors = tuple(self.chain), tuple(self.anchors)
        if not chain or not anchors:
            raise ValueError("an installed identity has a certificate and a trust anchor")
        if not all(isinstance(c, x509.Certificate) for c in (*chain, *anchors)):
            raise TypeError("an installed identity holds x509.Certificate objects")
        if self.signer is not None and not isinstance(self.signer, Signer):
            raise TypeError("an installed identity's signer must be a Signer")
        object.__setattr__(self, "chain", chain)
        object.__setattr__(self, "anchors", anchors)

    @property
    def ldevid(self) -> x509.Certificate:
        return self.chain[0]


class AgentStore(Protocol):
    """The agent's own small state, kept by the host (a few KiB per key). Keys are
    ``check_store_key`` names; a failure to read or write raises ``StorageError``."""

    def get(self, key: str) -> bytes | None:
        """The value stored under ``key``, None if there is none."""
        ...

    def put(self, key: str, value: bytes) -> None:
        """Store ``value`` atomically: after a crash a reader sees the old value or the new
        one, never a mix; durable once this returns."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key`` (no error when absent); durable once this returns."""
        ...


class MemoryAgentStore:
    """An AgentStore in memory, for hosts with nothing to persist and for tests."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.values.get(check_store_key(key))

    def put(self, key: str, value: bytes) -> None:
        if not isinstance(value, bytes):
            raise TypeError("store values are bytes")
        self.values[check_store_key(key)] = value

    def delete(self, key: str) -> None:
        self.values.pop(check_store_key(key), None)


class PluginHost(Protocol):
    """Services a hosting server gives the pledge agent (docs/plugin-host.md)."""

    # -- the factory identity (IEEE 802.1AR IDevID) ---------------------------------------

    def idevid_chain(self) -> Sequence[x509.Certificate]:
        """The IDevID certificate, then the intermediates above it (the manufacturer's root
        may follow; it is not sent). Its subject serialNumber is the device's serial
        (RFC 8995 §2.3.1). ``ConfigError`` when the device has no usable IDevID."""
        ...

    def idevid_signer(self) -> Signer:
        """Signs with the IDevID key: the voucher-request (RFC 8995 §5.2). TLS client
        authentication needs the key in OpenSSL, which only ``SoftwareSigner`` offers."""
        ...

    def manufacturer_anchors(self) -> Sequence[x509.Certificate]:
        """The trust anchors vouchers must chain to (the MASA's signing CA, RFC 8995 §5.6.1)."""
        ...

    def agent_store(self) -> AgentStore:
        """Where the agent keeps its voucher, event history and progress."""
        ...

    # -- YANG: state, RPCs, notifications --------------------------------------------------

    def yang_modules(self) -> Collection[str]:
        """Names of the YANG modules the host serves; must include ``REQUIRED_MODULES``."""
        ...

    def register_rpc(self, name: str, function: RpcFunction) -> None:
        """Serve the YANG RPC ``module:name`` (RFC 7951 input members -> output members)."""
        ...

    def publish_state(self, tree: Mapping[str, Any]) -> None:
        """Replace the agent's operational state (an RFC 7951 tree, e.g. zerotouch-bootstrap)."""
        ...

    def emit_event(self, name: str, data: Mapping[str, Any]) -> None:
        """Send a notification (RFC 7951 body of notification ``name``) to subscribers."""
        ...

    # -- the domain identity (LDevID) -----------------------------------------------------

    def generate_ldevid_key(self, kind: KeyKind) -> Signer:
        """A fresh key pair for the LDevID, of ``kind`` (what the registrar's CSR attributes
        ask for, RFC 8995 §5.9.2; ValueError if the host cannot make it). A host with a
        secure element generates it there. Called once per enrollment, from the event loop."""
        ...

    async def install_identity(
        self, identity: SigningIdentity, anchors: Sequence[x509.Certificate]
    ) -> None:
        """Persist the LDevID (``identity``: certificate, intermediates, and the Signer
        ``generate_ldevid_key`` returned) with the domain trust anchors, in one commit point,
        and make the TLS listeners present it and accept clients of ``anchors`` without a
        restart (RFC 8995 §5.9.4). Also called to renew: sessions already open continue.
        ``StorageError`` when it cannot be stored (the old identity then stays in use)."""
        ...

    def installed_identity(self) -> InstalledIdentity | None:
        """The domain identity in use (None before enrollment)."""
        ...

    async def forget_identity(self) -> None:
        """Remove the domain identity (factory reset): TLS listeners accept no one again.
        Raise if any part could not be removed; the agent then reports the error and does
        not claim the reset."""
        ...

    def management_ports(self) -> Mapping[str, int]:
        """Listeners that accept domain clients once installed: ``netconf-tls-port``,
        ``restconf-port`` and ``netconf-ssh-port`` (only those that exist), announced in
        enrollstatus."""
        ...
