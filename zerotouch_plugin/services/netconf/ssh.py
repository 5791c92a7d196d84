"""NETCONF over SSH (RFC 6242): the ``netconf`` subsystem on an asyncssh server.

The host keys are generated on first start and kept in the device folder (``host_keys``), so
clients see the same host key after a restart. A device binds the SSH port at start and loads
this module, with asyncssh, when the first client connects (``DeviceServer``). Users
authenticate with a password or a public key, as the configuration gives them; nothing else
(no shell, no exec, no port forwarding) is offered. Password checks run off the event loop;
failed passwords and public keys are limited per connection and per source address
(``NetconfLimits``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from zerotouch_plugin._text import is_decimal
from zerotouch_plugin.config import (
    PASSWORD_HASH_PREFIX,
    DeviceUser,
    NetconfLimits,
    check_password,
    hash_password,
)
from zerotouch_plugin.device.login_throttle import LoginThrottle
from zerotouch_plugin.errors import ConfigError, TooManySessions
from zerotouch_plugin.services.netconf.host_keys import prepare_host_keys
from zerotouch_plugin.services.netconf.protocol import NetconfServer, NetconfSession, SessionInfo

__all__ = ["SshListener", "load_host_keys", "start_netconf_ssh"]

log = logging.getLogger(__name__)


def load_host_keys(folder: Path) -> list[asyncssh.SSHKey]:
    """The device's SSH host keys, created (mode 0600, atomically) when missing."""
    keys = []
    for path in prepare_host_keys(folder):
        try:
            keys.append(asyncssh.read_private_key(path))
        except (OSError, asyncssh.KeyImportError) as exc:
            raise ConfigError(f"{path}: unusable SSH host key: {exc}") from exc
    return keys


# No CBC (see _skip_ignore_packets). ChaCha20-Poly1305 is left out on purpose: asyncssh
# builds several cipher contexts per packet for it, which doubles the server's CPU time per
# NETCONF message compared with AES-GCM (measured: 0.75 vs 0.38 ms per get-config).
ENCRYPTION_ALGS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
)


def _skip_ignore_packets(conn: asyncssh.SSHServerConnection) -> None:
    """Stop asyncssh from preceding every packet with an empty SSH_MSG_IGNORE.

    That padding packet defends CBC mode (RFC 4251 §9.3.1); none of ENCRYPTION_ALGS is CBC,
    and it doubles the packets, encryptions and system calls of every NETCONF reply.
    """
    send_packet = conn.send_packet

    def send(pkttype: int, *args: bytes, **kwargs: Any) -> None:
        if pkttype == _MSG_IGNORE and args == (_EMPTY_STRING,):
            return
        send_packet(pkttype, *args, **kwargs)

    conn.send_packet = send  # type: ignore[method-assign]


_MSG_IGNORE = 2  # RFC 4253 §11.2
_EMPTY_STRING = b"\x00\x00\x00\x00"  # an SSH string of length 0


class _Session(asyncssh.SSHServerSession):  # type: ignore[type-arg]
    def __init__(self, server: NetconfServer, username: str, peer: str) -> None:
        self._server = server
        self._username = username
        self._peer = peer
        self._chan: asyncssh.SSHServerChannel[bytes] | None = None
        self._session: NetconfSession | None = None

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self._chan = chan

    def shell_requested(self) -> bool:
        return False

    def exec_requested(self, command: str) -> bool:
        return False

    def pty_requested(self, *args: object) -> bool:
        return False

    def subsystem_requested(self, subsystem: str) -> bool:
        return subsystem == "netconf"  # RFC 6242 §3

    def session_started(self) -> None:
        chan = self._chan
        assert chan is not None
        info = SessionInfo(self._username, "netconf-ssh", self._peer)
        try:
            self._session = self._server.open_session(info, chan.write, chan.close, chan.abort)
        except TooManySessions:
            chan.close()

    def data_received(self, data: bytes, datatype: int | None) -> None:
        if self._session is not None:
            self._session.data_received(data)

    def eof_received(self) -> bool:
        if self._session is not None:
            self._session.close()
        return False

    def pause_writing(self) -> None:
        """Replies back up (the peer does not read them): no more requests are read either;
        they wait in the peer's SSH window."""
        assert self._chan is not None
        self._chan.pause_reading()
        if self._session is not None:
            self._session.pause_writing()

    def resume_writing(self) -> None:
        assert self._chan is not None
        self._chan.resume_reading()
        if self._session is not None:
            self._session.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._session is not None:
            self._session.connection_lost()


class _Auth:
    """What every connection of one listener shares for password checks.

    PBKDF2 runs in a small thread pool (hashlib releases the GIL), so guessing does not stall
    other sessions; an unknown user is checked against ``dummy``, a value of the same kind
    and cost as the configured ones, so the answer time does not tell which users exist.
    """

    def __init__(self, users: dict[str, DeviceUser], limits: NetconfLimits, dummy: str) -> None:
        self.users = users
        self.limits = limits
        self.dummy = dummy
        self.throttle = LoginThrottle(
            limit=limits.auth_failures_per_source,
            window=limits.auth_failure_window,
            lockout=limits.auth_lockout,
        )
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ssh-auth")

    async def check(self, username: str, password: str) -> bool:
        user = self.users.get(username)
        stored = user.password if user is not None and user.password else None
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(self.pool, check_password, stored or self.dummy, password)
        return ok and stored is not None


async def _dummy_password(users: Sequence[DeviceUser]) -> str:
    """A random password value of the kind (plain, or PBKDF2 with the same iterations) of
    the first configured password: checking it costs what checking a real one does."""
    stored = next((u.password for u in users if u.password), "")
    secret = secrets.token_urlsafe(16)
    if not stored.startswith(PASSWORD_HASH_PREFIX):
        return secret
    rounds = stored[len(PASSWORD_HASH_PREFIX) :].split("$")[0]
    iterations = int(rounds) if is_decimal(rounds) else 200_000
    salt = secrets.token_bytes(16)
    return await asyncio.to_thread(hash_password, secret, salt=salt, iterations=iterations)


class _SshServer(asyncssh.SSHServer):
    def __init__(self, netconf: NetconfServer, auth: _Auth) -> None:
        self._netconf = netconf
        self._auth = auth
        self._users = auth.users
        self._username = ""
        self._peer = ""
        self._source = ""
        self._failures = 0
        self._refusal_logged = False
        self._keys: dict[str, list[bytes]] = {
            name: [asyncssh.import_public_key(k).public_data for k in user.authorized_keys]
            for name, user in self._users.items()
        }

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        peer = conn.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self._source = str(peer[0]) if peer else "?"
        _skip_ignore_packets(conn)

    def begin_auth(self, username: str) -> bool:
        self._username = username
        return True

    def _refused(self) -> bool:
        """No more attempts: this connection failed ``max_auth_attempts`` times, or its
        source address is locked out; the client is then offered no method at all."""
        if self._failures >= self._auth.limits.max_auth_attempts:
            reason = f"{self._failures} failed attempts on this connection"
        elif self._auth.throttle.locked(self._source, time.monotonic()):
            reason = f"source {self._source} locked out after repeated failures"
        else:
            return False
        if not self._refusal_logged:
            self._refusal_logged = True
            log.warning("ssh: authentication refused for %s: %s", self._peer, reason)
        return True

    def password_auth_supported(self) -> bool:
        return any(u.password for u in self._users.values()) and not self._refused()

    async def validate_password(self, username: str, password: str) -> bool:
        if self._refused():
            return False
        ok = await self._auth.check(username, password)
        if not ok:
            self._failed("password", username)
        return ok

    def _failed(self, method: str, username: str) -> None:
        """Count a refused password or public key against this connection and its source
        alike, so switching methods buys an attacker no extra attempts."""
        self._failures += 1
        log.warning("ssh: %s refused for %r from %s", method, username, self._peer)
        if self._auth.throttle.failed(self._source, time.monotonic()):
            log.warning(
                "ssh: %s locked out for %s s after %d failed logins",
                self._source,
                self._auth.limits.auth_lockout,
                self._auth.limits.auth_failures_per_source,
            )

    def public_key_auth_supported(self) -> bool:
        return any(self._keys.values()) and not self._refused()

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        """A key not authorized for ``username`` is a failed attempt, as in sshd's
        MaxAuthTries; asyncssh asks once per offered key and again before the signed request
        of an accepted one, so only unknown keys count."""
        if self._refused():
            return False
        if key.public_data in self._keys.get(username, []):
            return True
        self._failed("public key", username)
        return False

    def session_requested(self) -> _Session:
        return _Session(self._netconf, self._username, self._peer)


@dataclass
class SshListener:
    """A running NETCONF-over-SSH listener."""

    acceptor: asyncssh.SSHAcceptor
    host: str
    port: int
    pool: ThreadPoolExecutor

    async def close(self) -> None:
        self.acceptor.close()
        await self.acceptor.wait_closed()
        self.pool.shutdown(wait=False, cancel_futures=True)


async def start_netconf_ssh(
    netconf: NetconfServer,
    *,
    host: str,
    port: int,
    host_keys: Sequence[asyncssh.SSHKey],
    users: Sequence[DeviceUser],
    limits: NetconfLimits | None = None,
    sock: socket.socket | None = None,
) -> SshListener:
    """Listen on exactly ``host:port`` (port 0 picks a free one; see ``.port``), or serve
    ``sock``, already bound there and listening (its queued connections included)."""
    table = {u.name: u for u in users}
    if not table:
        raise ConfigError("NETCONF over SSH needs at least one configured user")
    limits = limits or NetconfLimits()
    auth = _Auth(table, limits, await _dummy_password(users))
    try:
        acceptor = await asyncssh.create_server(
            lambda: _SshServer(netconf, auth),
            host,
            port,
            sock=sock,  # with a socket, host and port are not bound again
            server_host_keys=list(host_keys),
            encoding=None,
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
            line_editor=False,
            keepalive_interval=0,
            login_timeout=limits.login_timeout,
            encryption_algs=list(ENCRYPTION_ALGS),
        )
    except OSError as exc:
        auth.pool.shutdown(wait=False)
        raise ConfigError(f"cannot listen for NETCONF/SSH on {host}:{port}: {exc}") from exc
    return SshListener(acceptor, host, acceptor.get_port(), auth.pool)
