"""The device's SSH host keys (RFC 4253 §6.6): files in the device folder, made and checked
without asyncssh.

They are created on first start and checked at every start, so a client sees the same host
key from its first connection on and an unusable file stops the start; the SSH server
(``netconf.ssh``, asyncssh, loaded with the first client) then reads them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from zerotouch_plugin.artifacts.certs import PrivateKey
from zerotouch_plugin.device.datastore import write_atomically
from zerotouch_plugin.errors import ConfigError

__all__ = ["HOST_KEY_FILES", "prepare_host_keys"]

# file -> how a missing key is made. Ed25519 first (fast), ECDSA P-256 for clients without
# Ed25519 (older libssh2).
HOST_KEY_FILES: dict[str, Callable[[], PrivateKey]] = {
    "ssh_host_ed25519_key": ed25519.Ed25519PrivateKey.generate,
    "ssh_host_ecdsa_key": lambda: ec.generate_private_key(ec.SECP256R1()),
}

# The encodings a host key file may have (OpenSSH's own, then PEM and DER), tried in order.
_READERS: tuple[Callable[[bytes], object], ...] = (
    lambda data: serialization.load_ssh_private_key(data, None),
    lambda data: serialization.load_pem_private_key(data, None),
    lambda data: serialization.load_der_private_key(data, None),
)


def _readable(data: bytes) -> bool:
    for read in _READERS:
        try:
            read(data)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            continue
        return True
    return False


def prepare_host_keys(folder: Path) -> list[Path]:
    """The host key files of ``folder``, each created (OpenSSH format, mode 0600, atomically)
    when missing; ConfigError when one is not an unencrypted private key."""
    paths = []
    for filename, generate in HOST_KEY_FILES.items():
        path = folder / filename
        if not path.exists():
            key = generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            )
            write_atomically(path, key)
        try:
            usable = _readable(path.read_bytes())
        except OSError as exc:
            raise ConfigError(f"{path}: unusable SSH host key: {exc}") from exc
        if not usable:
            raise ConfigError(f"{path}: unusable SSH host key: not an unencrypted private key")
        paths.append(path)
    return paths
