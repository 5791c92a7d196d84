"""Refused SSH public keys count against the login limits like refused passwords.

Without that, a client could offer key after key on one connection, or from one source,
unthrottled while passwords were capped. The NETCONF/SSH listener runs in the test's event
loop on 127.0.0.1; asyncssh is the real client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import pytest

from zerotouch_plugin.config import DeviceUser, NetconfLimits
from zerotouch_plugin.device.datastore import Datastores
from zerotouch_plugin.device.schema import DeviceSchema
from zerotouch_plugin.services.netconf import build_netconf_server
from zerotouch_plugin.services.netconf.ssh import SshListener, start_netconf_ssh

LOCKOUT = 2.0
GOOD = asyncssh.generate_private_key("ssh-ed25519")
WRONG = [asyncssh.generate_private_key("ssh-ed25519") for _ in range(5)]


class _KeyOfferer(asyncssh.SSHClient):
    """Offers the given keys, then the given passwords, one after the other on one
    connection."""

    def __init__(self, keys: list[asyncssh.SSHKey], passwords: tuple[str, ...] = ()) -> None:
        self.keys = list(keys)
        self.passwords = list(passwords)
        self.offered = 0

    def public_key_auth_requested(self) -> asyncssh.SSHKey | None:
        if not self.keys:
            return None
        self.offered += 1
        return self.keys.pop(0)

    def password_auth_requested(self) -> str | None:
        return self.passwords.pop(0) if self.passwords else None


async def _offer(port: int, keys: list[asyncssh.SSHKey]) -> int:
    """How many of ``keys`` the server let this connection offer; -1 when one was accepted."""
    client = _KeyOfferer(keys)
    try:
        conn, _ = await asyncssh.create_connection(
            lambda: client,
            "127.0.0.1",
            port,
            username="admin",
            known_hosts=None,
            client_keys=None,
            preferred_auth="publickey",
        )
    except asyncssh.PermissionDenied:
        return client.offered
    conn.close()
    await conn.wait_closed()
    return -1


async def _password(port: int, password: str) -> bool:
    try:
        conn = await asyncssh.connect(
            "127.0.0.1",
            port,
            username="admin",
            password=password,
            known_hosts=None,
            client_keys=None,
            preferred_auth="password",
        )
    except asyncssh.PermissionDenied:
        return False
    conn.close()
    await conn.wait_closed()
    return True


@pytest.fixture
async def listener(schema: DeviceSchema, tmp_path: Path) -> AsyncIterator[SshListener]:
    netconf = build_netconf_server(Datastores(schema, tmp_path))
    limits = NetconfLimits(max_auth_attempts=3, auth_failures_per_source=4, auth_lockout=LOCKOUT)
    user = DeviceUser(
        "admin", password="secret", authorized_keys=(GOOD.export_public_key().decode(),)
    )
    ssh = await start_netconf_ssh(
        netconf,
        host="127.0.0.1",
        port=0,
        host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
        users=[user],
        limits=limits,
    )
    yield ssh
    await ssh.close()
    await netconf.close()


async def test_a_connection_gets_max_auth_attempts_keys(listener: SshListener) -> None:
    assert await _offer(listener.port, [*WRONG[:4], GOOD]) == 3


async def test_the_right_key_after_wrong_ones_within_the_limit_is_accepted(
    listener: SshListener,
) -> None:
    assert await _offer(listener.port, [*WRONG[:2], GOOD]) == -1


async def test_refused_keys_lock_the_source_out_for_keys_and_passwords(
    listener: SshListener, caplog: pytest.LogCaptureFixture
) -> None:
    assert await _offer(listener.port, WRONG[:3]) == 3
    assert await _offer(listener.port, WRONG[3:4]) == 1  # the 4th failure from 127.0.0.1
    assert "127.0.0.1 locked out for 2.0 s after 4 failed logins" in caplog.text
    assert "public key refused for 'admin'" in caplog.text
    assert await _offer(listener.port, [GOOD]) == 0  # not even offered public key auth
    assert not await _password(listener.port, "secret")
    await asyncio.sleep(LOCKOUT + 0.5)
    assert await _offer(listener.port, [GOOD]) == -1
    assert await _password(listener.port, "secret")


async def test_refused_passwords_and_keys_share_one_connection_budget(
    listener: SshListener,
) -> None:
    """Two wrong keys, then passwords: only one password is left on the connection."""
    client = _KeyOfferer(WRONG[:2], ("wrong1", "wrong2", "secret"))
    with pytest.raises(asyncssh.PermissionDenied):
        await asyncssh.create_connection(
            lambda: client,
            "127.0.0.1",
            listener.port,
            username="admin",
            known_hosts=None,
            client_keys=None,
            preferred_auth="publickey,password",
        )
    assert client.passwords == ["wrong2", "secret"]
