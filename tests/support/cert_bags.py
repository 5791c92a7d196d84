"""Certificate sets a peer may send to make a path search expensive."""

from __future__ import annotations

from datetime import datetime, timedelta

from cryptography import x509
from cryptography.x509.oid import NameOID

from zerotouch_plugin.artifacts import certs


def cross_signed(
    kind: certs.KeyKind, count: int, *, now: datetime
) -> tuple[certs.Identity, list[x509.Certificate]]:
    """``count`` CA keys all named CN=X, each certified by every other (count² certificates),
    and a leaf under the first: a path search's worst case."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "X")])
    keys = [certs.generate_key(kind) for _ in range(count)]

    def issue(
        subject: x509.Name, key: certs.PrivateKey, signer: certs.PrivateKey, ca: bool
    ) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(signer, certs.signature_hash(signer))
        )

    bag = [issue(name, keys[j], keys[i], True) for i in range(count) for j in range(count)]
    leaf_key = certs.generate_key(kind)
    leaf = issue(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]), leaf_key, keys[0], False
    )
    return certs.Identity(leaf, leaf_key), bag
