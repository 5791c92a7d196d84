"""Certificate and key files: PEM/DER in, PEM out, every write atomic."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from zerotouch_plugin.artifacts.certs.inspection import load_certs
from zerotouch_plugin.artifacts.certs.keys import Identity, PrivateKey
from zerotouch_plugin.errors import ConfigError

__all__ = [
    "load_cert_file",
    "load_identity",
    "load_key_file",
    "write_atomic",
    "write_certs",
    "write_key",
]


def load_cert_file(path: Path) -> x509.Certificate:
    """The first certificate in a PEM or DER file."""
    certs = load_certs(Path(path).read_bytes())
    return certs[0]


def load_key_file(path: Path) -> PrivateKey:
    """A private key from PEM (PKCS#8, SEC1, PKCS#1) or DER, unencrypted."""
    data = Path(path).read_bytes()
    loader = (
        serialization.load_pem_private_key
        if b"-----BEGIN" in data
        else serialization.load_der_private_key
    )
    try:
        key = loader(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{path}: not an unencrypted private key: {exc}") from exc
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise ConfigError(f"{path}: unsupported key type {type(key).__name__}")
    return key


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write via a temporary file in the same folder (mkstemp: mode 0600 from the start,
    then ``mode``), fsynced and renamed over ``path``, then the folder fsynced: readers never
    see a partial file and a crash leaves the old file or the new one."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def write_key(path: Path, key: PrivateKey) -> None:
    """PKCS#8 PEM, unencrypted, mode 0600, atomic."""
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomic(path, data, 0o600)


def write_certs(path: Path, certs: Sequence[x509.Certificate]) -> None:
    """Certificates as concatenated PEM (leaf first), mode 0644, atomic."""
    if not certs:
        raise ValueError("no certificates to write")
    data = b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs)
    write_atomic(path, data, 0o644)


def load_identity(cert_path: Path, key_path: Path) -> Identity:
    """Certificate file (leaf first, then its chain) plus key file; the key must match."""
    certs = load_certs(Path(cert_path).read_bytes())
    key = load_key_file(key_path)
    try:
        return Identity(certs[0], key, tuple(certs[1:]))
    except ValueError as exc:
        raise ConfigError(f"{cert_path} / {key_path}: {exc}") from exc
