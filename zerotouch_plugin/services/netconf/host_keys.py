"""The device's SSH host keys (RFC 4253 §6.6): files in the device folder, made and checked
without asyncssh.

They are created on first start and checked at every start, so a client sees the same host
key from its first connection on and an unusable file stops the start; the SSH server
(``netconf.ssh``, asyncssh, loaded with the first client) then reads them. The check accepts
only the host key types that server signs with: a key ``cryptography`` reads but asyncssh does
not (X25519, DSA, a curve outside RFC 5656 §10.1) stops the start, not the first client.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from zerotouch_plugin.artifacts.certs import PrivateKey
from zerotouch_plugin.device.datastore import write_atomically
from zerotouch_plugin.errors import ConfigError

__all__ = ["HOST_KEY_FILES", "prepare_host_keys", "public_host_keys"]

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


HostKey = PrivateKey | ed448.Ed448PrivateKey
_HOST_KEY_TYPES = (
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
    ec.EllipticCurvePrivateKey,
    rsa.RSAPrivateKey,
)


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
    return [path for path, _ in _prepared(folder)]


def public_host_keys(folder: Path) -> list[tuple[bytes, bytes]]:
    """(algorithm, public key blob) of each host key of ``folder``, prepared as at start:
    what a SZTP device reports (RFC 8572 §7.3) without loading the SSH server."""
    return [_public_blob(key) for _, key in _prepared(folder)]


def _prepared(folder: Path) -> list[tuple[Path, HostKey]]:
    keys = []
    for filename, generate in HOST_KEY_FILES.items():
        path = folder / filename
        if not path.exists():
            made = generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            )
            write_atomically(path, made)
        keys.append((path, _host_key(path)))
    return keys


def _host_key(path: Path) -> HostKey:
    """The host key in ``path``; ConfigError when it is not one the SSH server serves."""
    try:
        key = _read(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"{path}: unusable SSH host key: {exc}") from exc
    if key is None:
        raise ConfigError(f"{path}: unusable SSH host key: not an unencrypted private key")
    refusal = _refusal(key)
    if refusal is None and isinstance(key, _HOST_KEY_TYPES):
        return key
    raise ConfigError(f"{path}: unusable SSH host key: {refusal}")


def _ssh_string(data: bytes) -> bytes:
    """RFC 4251 §5 ``string``: uint32 length, then the bytes."""
    return len(data).to_bytes(4, "big") + data


def _public_blob(key: HostKey) -> tuple[bytes, bytes]:
    """(algorithm, RFC 4253 §6.6 public key blob) of a host key that passed ``_refusal``.

    OpenSSH's own encoding gives the blob for Ed25519, EC and RSA; Ed448 (RFC 8709 §4) has no
    OpenSSH encoding in ``cryptography``, and its blob is the algorithm and the raw key.
    """
    if isinstance(key, ed448.Ed448PrivateKey):
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return b"ssh-ed448", _ssh_string(b"ssh-ed448") + _ssh_string(raw)
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    algorithm, encoded = public.split(b" ")[:2]
    return algorithm, base64.b64decode(encoded)
