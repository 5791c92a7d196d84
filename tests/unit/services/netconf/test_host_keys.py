"""SSH host key files made and checked without asyncssh (services/netconf/host_keys.py): the
keys made at start are ones asyncssh serves, and a file that is not an unencrypted private
key stops the start as asyncssh's own reading did."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import asyncssh
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x25519

from zerotouch_plugin.errors import ConfigError
from zerotouch_plugin.services.netconf.host_keys import (
    HOST_KEY_FILES,
    prepare_host_keys,
    public_host_keys,
)
from zerotouch_plugin.services.netconf.ssh import load_host_keys


def test_missing_keys_are_made_private_and_readable_by_asyncssh(tmp_path: Path) -> None:
    paths = prepare_host_keys(tmp_path)
    assert [path.name for path in paths] == list(HOST_KEY_FILES)
    algorithms = {asyncssh.read_private_key(path).algorithm for path in paths}
    assert algorithms == {b"ssh-ed25519", b"ecdsa-sha2-nistp256"}
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in paths)
    kept = [path.read_bytes() for path in paths]
    prepare_host_keys(tmp_path)  # a restart keeps them
    assert [path.read_bytes() for path in paths] == kept


def test_a_pem_host_key_is_used_as_it_is(tmp_path: Path) -> None:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "ssh_host_ed25519_key").write_bytes(pem)
    prepare_host_keys(tmp_path)
    assert (tmp_path / "ssh_host_ed25519_key").read_bytes() == pem
    asyncssh.read_private_key(tmp_path / "ssh_host_ed25519_key")


@pytest.mark.parametrize(
    "content",
    [
        b"not a key",
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.BestAvailableEncryption(b"passphrase"),
        ),
    ],
    ids=["garbage", "encrypted"],
)
def test_an_unusable_host_key_stops_the_start(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "ssh_host_ecdsa_key").write_bytes(content)
    with pytest.raises(ConfigError, match="ssh_host_ecdsa_key: unusable SSH host key"):
        prepare_host_keys(tmp_path)


def _pkcs8(key: serialization.PrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.mark.parametrize(
    ("key", "algorithm"),
    [
        (ed25519.Ed25519PrivateKey.generate(), b"ssh-ed25519"),
        (ed448.Ed448PrivateKey.generate(), b"ssh-ed448"),
        (ec.generate_private_key(ec.SECP256R1()), b"ecdsa-sha2-nistp256"),
        (ec.generate_private_key(ec.SECP384R1()), b"ecdsa-sha2-nistp384"),
        (ec.generate_private_key(ec.SECP521R1()), b"ecdsa-sha2-nistp521"),
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), b"ssh-rsa"),
    ],
    ids=["ed25519", "ed448", "p256", "p384", "p521", "rsa2048"],
)
def test_every_host_key_type_the_ssh_server_serves_starts(
    tmp_path: Path, key: serialization.PrivateKeyTypes, algorithm: bytes
) -> None:
    (tmp_path / "ssh_host_ecdsa_key").write_bytes(_pkcs8(key))
    prepare_host_keys(tmp_path)
    assert algorithm in {host_key.algorithm for host_key in load_host_keys(tmp_path)}


@pytest.mark.parametrize(
    "key",
    [
        ed25519.Ed25519PrivateKey.generate(),
        ed448.Ed448PrivateKey.generate(),
        ec.generate_private_key(ec.SECP384R1()),
        ec.generate_private_key(ec.SECP521R1()),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    ],
    ids=["ed25519", "ed448", "p384", "p521", "rsa2048"],
)
def test_public_host_keys_are_the_ones_the_ssh_server_presents(
    tmp_path: Path, key: serialization.PrivateKeyTypes
) -> None:
    """What a SZTP device reports (read without asyncssh) is what asyncssh serves."""
    (tmp_path / "ssh_host_ecdsa_key").write_bytes(_pkcs8(key))
    served = [(k.algorithm, k.public_data) for k in load_host_keys(tmp_path)]
    assert public_host_keys(tmp_path) == served


@pytest.mark.parametrize(
    ("key", "named"),
    [
        (x25519.X25519PrivateKey.generate(), "X25519PrivateKey"),
        (dsa.generate_private_key(2048), "DSAPrivateKey"),
        (ec.generate_private_key(ec.SECP224R1()), "EC secp224r1"),
        (ec.generate_private_key(ec.SECP256K1()), "EC secp256k1"),
        (rsa.generate_private_key(public_exponent=65537, key_size=1024), "RSA-1024"),
    ],
    ids=["x25519", "dsa", "p224", "secp256k1", "rsa1024"],
)
def test_a_key_type_the_ssh_server_does_not_serve_stops_the_start(
    tmp_path: Path, key: serialization.PrivateKeyTypes, named: str
) -> None:
    """Readable by ``cryptography`` but not a host key asyncssh serves (X25519: "Unknown
    PKCS#8 algorithm"), or weaker than the project allows: refused at start, naming the file
    and the key type, not on the first SSH client."""
    (tmp_path / "ssh_host_ecdsa_key").write_bytes(_pkcs8(key))
    with pytest.raises(
        ConfigError, match=f"ssh_host_ecdsa_key: unusable SSH host key: an? {named}"
    ):
        prepare_host_keys(tmp_path)


def test_a_sztp_device_reads_its_host_keys_without_asyncssh(tmp_path: Path) -> None:
    """A SZTP device reports its host keys at start (RFC 8572 §7.3): that must not load the
    SSH server's library, which an idle device leaves unloaded until its first SSH client."""
    code = (
        "import sys; from pathlib import Path; "
        "from zerotouch_plugin.services.sztp_agent import ssh_host_keys; "
        f"assert ssh_host_keys(Path({str(tmp_path)!r})); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'asyncssh'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
