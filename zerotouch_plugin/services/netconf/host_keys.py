"""The device's SSH host keys (RFC 4253 §6.6): files in the device folder, made and checked
without asyncssh.

They are created on first start and checked at every start, so a client sees the same host
key from its first connection on and an unusable file stops the start; the SSH server
(``netconf.ssh``, asyncssh, loaded with the first client) then reads them. The check accepts
only the host key types that server signs with: a key ``cryptography`` reads but asyncssh does
not (X25519, DSA, a curve outside RFC 5656 §10.1) stops the start, not the first client.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

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


# EC host keys: the curves of RFC 5656 §10.1 (ecdsa-sha2-nistp256/384/521).
_EC_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})
# RSA host keys: no weaker than an LDevID key may be (roles/registrar.py).
_RSA_MIN_BITS = 2048


def _read(data: bytes) -> object | None:
    """The private key in ``data``, None when no reader takes it."""
    for read in _READERS:
        try:
            return read(data)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            continue
    return None


def _refusal(key: object) -> str | None:
    """Why ``key`` cannot be a host key of the SSH server, None when it can."""
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name in _EC_CURVES:
            return None
        return f"an EC {key.curve.name} key (host keys on EC use P-256, P-384 or P-521)"
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size >= _RSA_MIN_BITS:
            return None
        return f"an RSA-{key.key_size} key (RSA host keys have {_RSA_MIN_BITS} bits or more)"
    return (
        f"a {type(key).__name__} key (host keys are Ed25519, Ed448, "
        f"EC P-256/P-384/P-521 or RSA-{_RSA_MIN_BITS} and more)"
    )


def prepare_host_keys(folder: Path) -> list[Path]:
    """The host key files of ``folder``, each created (OpenSSH format, mode 0600, atomically)
    when missing; ConfigError when one is not an unencrypted private key of a type the SSH
    server serves."""
    paths = []
    for filename, generate in HOST_KEY_FILES.items():
        path = folder / filename
        if not path.exists():
            made = generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            )
            write_atomically(path, made)
        try:
            key = _read(path.read_bytes())
        except OSError as exc:
            raise ConfigError(f"{path}: unusable SSH host key: {exc}") from exc
        if key is None:
            raise ConfigError(f"{path}: unusable SSH host key: not an unencrypted private key")
        refusal = _refusal(key)
        if refusal is not None:
            raise ConfigError(f"{path}: unusable SSH host key: {refusal}")
        paths.append(path)
    return paths
