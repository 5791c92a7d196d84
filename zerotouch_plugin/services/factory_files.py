"""The factory identity of a device as files in its folder, for plugin hosts that keep it
there: ``idevid.pem`` (the IDevID, then its intermediates), ``idevid.key`` and
``masa-ca.pem`` (the manufacturer's trust anchors for vouchers), as ``zerotouch vendor
idevid`` writes them. Each unusable file is a ConfigError naming it."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.artifacts.signer import SoftwareSigner
from zerotouch_plugin.errors import ConfigError, ZerotouchError
from zerotouch_plugin.services import certfiles

__all__ = ["IDEVID_FILE", "IDEVID_KEY_FILE", "MASA_CA_FILE", "FactoryFolder"]

IDEVID_FILE = "idevid.pem"
IDEVID_KEY_FILE = "idevid.key"
MASA_CA_FILE = "masa-ca.pem"


class FactoryFolder:
    """The PluginHost methods of the factory identity, read from ``folder`` on each call."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _certificates(self, name: str, what: str) -> list[x509.Certificate]:
        path = self.folder / name
        try:
            found = certs.load_certs(path.read_bytes())
        except (OSError, ValueError, ZerotouchError) as exc:
            raise ConfigError(f"{path}: no usable {what}: {exc}") from exc
        if not found:
            raise ConfigError(f"{path}: no certificate")
        return found

    def idevid_chain(self) -> list[x509.Certificate]:
        return self._certificates(IDEVID_FILE, "IDevID")

    def idevid_signer(self) -> SoftwareSigner:
        path = self.folder / IDEVID_KEY_FILE
        try:
            return SoftwareSigner(certfiles.load_key_file(path))
        except (OSError, ValueError, TypeError, ZerotouchError) as exc:
            raise ConfigError(f"{path}: no usable IDevID key: {exc}") from exc

    def manufacturer_anchors(self) -> list[x509.Certificate]:
        return self._certificates(MASA_CA_FILE, "manufacturer trust anchor for vouchers")
