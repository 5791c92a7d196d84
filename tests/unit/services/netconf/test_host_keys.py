"""SSH host key files made and checked without asyncssh (services/netconf/host_keys.py): the
keys made at start are ones asyncssh serves, and a file that is not an unencrypted private
key stops the start as asyncssh's own reading did."""

from __future__ import annotations

import stat
from pathlib import Path

import asyncssh
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from zerotouch_plugin.errors import ConfigError
from zerotouch_plugin.services.netconf.host_keys import HOST_KEY_FILES, prepare_host_keys


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
