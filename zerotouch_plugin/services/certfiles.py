"""Certificate and key files of the services and front ends: read with the path in every
error, written atomically (keys mode 0600). ``artifacts.certs`` does the encoding."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography import x509

from zerotouch_plugin._files import write_atomic
from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.errors import ConfigError, InvalidInput

__all__ = [
    "identity_of",
    "load_cert_file",
    "load_identity",
    "load_key_file",
    "write_certs",
    "write_key",
]


def load_cert_file(path: Path) -> x509.Certificate:
    """The first certificate in a PEM or DER file."""
    return certs.load_certs(Path(path).read_bytes())[0]


def load_key_file(path: Path) -> certs.PrivateKey:
    """A private key from a PEM (PKCS#8, SEC1, PKCS#1) or DER file, unencrypted."""
    return _key(Path(path).read_bytes(), path)


def _key(data: bytes, path: Path) -> certs.PrivateKey:
    try:
        return certs.load_private_key(data)
    except InvalidInput as exc:
        raise ConfigError(f"{path}: {exc.message}") from exc


def write_key(path: Path, key: certs.PrivateKey) -> None:
    """PKCS#8 PEM, unencrypted, mode 0600, atomic."""
    write_atomic(path, certs.key_pem(key), 0o600)


def write_certs(path: Path, chain: Sequence[x509.Certificate]) -> None:
    """Certificates as concatenated PEM (leaf first), mode 0644, atomic."""
    write_atomic(path, certs.certs_pem(chain), 0o644)


def load_identity(cert_path: Path, key_path: Path) -> certs.Identity:
    """Certificate file (leaf first, then its chain) plus key file; the key must match."""
    return identity_of(
        Path(cert_path).read_bytes(), Path(key_path).read_bytes(), cert_path, key_path
    )


def identity_of(
    cert_data: bytes,
    key_data: bytes,
    cert_path: Path,
    key_path: Path,
    *,
    known: Sequence[x509.Certificate] = (),
    keep: Callable[[x509.Certificate], bool] | None = None,
) -> certs.Identity:
    """``load_identity`` of the two files' contents, read already (the paths name them in
    errors). ``known``: certificates read already, reused for the same DER
    (``certs.load_certs``); ``keep``: which certificates after the leaf the chain keeps (all
    by default)."""
    found = certs.load_certs(cert_data, known=known)
    key = _key(key_data, key_path)
    chain = tuple(cert for cert in found[1:] if keep is None or keep(cert))
    try:
        return certs.Identity(found[0], key, chain)
    except ValueError as exc:
        raise ConfigError(f"{cert_path} / {key_path}: {exc}") from exc
