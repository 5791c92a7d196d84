"""Issue 11 items 5 and 6 against ``zerotouch device run`` (a real process) on 127.0.0.1.

NETCONF over SSH (RFC 6242): one-byte chunks and oversized messages are cut at the
configured caps (rpc-error too-big, then the session is closed) with the device's memory
bounded; sessions without a hello or without an RPC are closed after short test timeouts and
their buffers freed; the session cap refuses one more. SSH: password guessing does not stall
other clients, unknown and known users cost the same, a connection gets max_auth_attempts
and a guessing source is locked out, then let in again. Every case ends with a legitimate
ncclient session being served.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
from ncclient import manager
from ncclient.transport.errors import AuthenticationError

from tests.support.device_process import DeviceProcess, start_device, write_device_config
from zerotouch_plugin.config import hash_password

LISTEN = {"netconf-ssh": "127.0.0.1:0"}
MIB = 1024 * 1024
HELLO_10 = (
    b'<hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><capabilities>'
    b"<capability>urn:ietf:params:netconf:base:1.0</capability>"
)
HELLO_11 = (
    b'<hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><capabilities>'
    b"<capability>urn:ietf:params:netconf:base:1.1</capability></capabilities></hello>]]>]]>"
)


def _running(folder: Path, iterations: int, limits: str) -> Iterator[DeviceProcess]:
    password = hash_password("secret", salt=b"fixed-test-salt!", iterations=iterations)
    write_device_config(
        folder, f'[[users]]\nname = "admin"\npassword = "{password}"\n\n[netconf_limits]\n{limits}'
    )
    process = start_device(folder, LISTEN, verbose=True)
    try:
        yield process
    finally:
        assert process.stop() == 0, process.log
        process.log_path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def nc_device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeviceProcess]:
    limits = (
        f"max_message = {MIB}\nmax_buffered = {2 * MIB}\nmax_sessions = 4\n"
        "hello_timeout = 8\nidle_timeout = 12\n"
    )
    yield from _running(tmp_path_factory.mktemp("nc"), 10_000, limits)


@pytest.fixture()
def ssh_device(tmp_path: Path) -> Iterator[DeviceProcess]:
    """Slow hashes (about a second each) make a stalled event loop plain to see; one device
    per test, so no test waits behind the guesses of another."""
    limits = "max_auth_attempts = 3\nauth_failures_per_source = 100000\n"
    yield from _running(tmp_path, 2_000_000, limits)


@pytest.fixture()
def lock_device(tmp_path: Path) -> Iterator[DeviceProcess]:
    limits = (
        "max_auth_attempts = 3\nauth_failures_per_source = 4\nauth_failure_window = 60\n"
        "auth_lockout = 5\n"
    )
    yield from _running(tmp_path, 10_000, limits)


def _ncclient_get(process: DeviceProcess) -> None:
    with manager.connect(
        host="127.0.0.1",
        port=process.ports["netconf-ssh"],
        username="admin",
        password="secret",
        hostkey_verify=False,
        allow_agent=False,
        look_for_keys=False,
        timeout=60,
    ) as m:
        assert m.get().ok


def _rss_kib(process: DeviceProcess) -> int:
    for line in Path(f"/proc/{process.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


class _Raw:
    """A NETCONF channel over asyncssh that sends arbitrary bytes (no client-side framing)."""

    def __init__(self, conn: asyncssh.SSHClientConnection, writer: object, reader: object):
        self.conn = conn
        self.writer: asyncssh.SSHWriter[bytes] = writer  # type: ignore[assignment]
        self.reader: asyncssh.SSHReader[bytes] = reader  # type: ignore[assignment]

    @classmethod
    async def open(cls, process: DeviceProcess) -> _Raw:
        conn = await asyncssh.connect(
            "127.0.0.1",
            process.ports["netconf-ssh"],
            username="admin",
            password="secret",
            known_hosts=None,
            client_keys=None,
        )
        writer, reader, _ = await conn.open_session(subsystem="netconf", encoding=None)
        return cls(conn, writer, reader)

    async def server_hello(self) -> bytes:
        return await asyncio.wait_for(self.reader.readuntil(b"]]>]]>"), 60)

    async def until_closed(self, timeout: float = 60) -> bytes:
        """Everything the server sends until it closes the channel."""
        return await asyncio.wait_for(self.reader.read(), timeout)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def close(self) -> None:
        self.conn.close()
        await self.conn.wait_closed()


def test_one_byte_chunks_and_huge_messages_are_cut_at_the_cap(nc_device: DeviceProcess) -> None:
    """RFC 6242 §4.2 chunks of one byte each, and a chunk announcing 100 MB: the session gets
    an rpc-error too-big and is closed, and the device's RSS stays bounded (each one-byte
    chunk used to cost ~40 bytes, up to 64 MB per message)."""
    _ncclient_get(nc_device)
    before = _rss_kib(nc_device)

    async def flood() -> list[bytes]:
        raws = [await _Raw.open(nc_device) for _ in range(3)]
        for raw in raws:
            await raw.server_hello()
            raw.send(HELLO_11)
        for raw in raws[:2]:
            raw.send(b"\n#1\nx" * (2 * MIB))
        raws[2].send(b"\n#100000000\n" + b"x" * MIB)
        answers = [await raw.until_closed(120) for raw in raws]
        for raw in raws:
            await raw.close()
        return answers

    answers = asyncio.run(flood())
    assert all(b"too-big" in answer for answer in answers), answers
    grown_mib = (_rss_kib(nc_device) - before) / 1024
    assert grown_mib < 60, f"device RSS grew by {grown_mib:.0f} MiB"
    _ncclient_get(nc_device)


def test_buffers_over_all_sessions_are_capped(nc_device: DeviceProcess) -> None:
    """Three unfinished hellos of 0.9 MiB against a 2 MiB cap over all sessions: the one
    that crosses it is closed, with a log line."""

    async def fill() -> list[bool]:
        raws = [await _Raw.open(nc_device) for _ in range(3)]
        for raw in raws:
            await raw.server_hello()
            raw.send(HELLO_10 + b" " * (9 * MIB // 10))
            await asyncio.sleep(1)
        closed = []
        for raw in raws:
            try:
                await asyncio.wait_for(raw.reader.read(), 3)
                closed.append(True)
            except TimeoutError:
                closed.append(False)
        for raw in raws:
            await raw.close()
        return closed

    closed = asyncio.run(fill())
    assert closed.count(True) >= 1, closed
    assert "NETCONF sessions buffer more than" in nc_device.log
    _ncclient_get(nc_device)


def test_a_session_without_hello_is_closed_and_its_buffer_freed(nc_device: DeviceProcess) -> None:
    """No hello within hello_timeout: closed; the 0.9 MiB it held no longer counts against
    the 2 MiB cap, so two more such sessions fit."""

    async def silent() -> list[bool]:
        first = await _Raw.open(nc_device)
        await first.server_hello()
        first.send(HELLO_10 + b" " * (9 * MIB // 10))
        await first.until_closed(60)
        await first.close()
        raws = [await _Raw.open(nc_device) for _ in range(2)]
        for raw in raws:
            await raw.server_hello()
            raw.send(HELLO_10 + b" " * (9 * MIB // 10))
        await asyncio.sleep(2)
        still_open = [not raw.reader.at_eof() for raw in raws]
        for raw in raws:
            await raw.close()
        return still_open

    assert asyncio.run(silent()) == [True, True]
    assert "no hello within 8" in nc_device.log
    _ncclient_get(nc_device)


def test_an_idle_session_is_closed(nc_device: DeviceProcess) -> None:
    async def idle() -> float:
        raw = await _Raw.open(nc_device)
        await raw.server_hello()
        raw.send(HELLO_11)
        start = time.monotonic()
        await raw.until_closed(120)
        await raw.close()
        return time.monotonic() - start

    assert asyncio.run(idle()) >= 10
    assert "no rpc within 12" in nc_device.log
    _ncclient_get(nc_device)


def test_the_session_cap_refuses_one_more(nc_device: DeviceProcess) -> None:
    async def fill() -> tuple[bytes, bytes]:
        raws = [await _Raw.open(nc_device) for _ in range(4)]
        for raw in raws:
            await raw.server_hello()
        extra = await _Raw.open(nc_device)
        refused = await extra.until_closed(60)
        await extra.close()
        await raws.pop().close()
        await asyncio.sleep(1)
        again = await _Raw.open(nc_device)
        hello = await again.server_hello()
        await again.close()
        for raw in raws:
            await raw.close()
        return refused, hello

    refused, hello = asyncio.run(fill())
    assert b"<hello" not in refused
    assert b"<session-id>" in hello
    assert "session refused" in nc_device.log
    _ncclient_get(nc_device)


class _Guesser(asyncssh.SSHClient):
    """Offers the given passwords one after the other on one connection."""

    def __init__(self, passwords: list[str]) -> None:
        self.passwords = list(passwords)
        self.offered = 0

    def password_auth_requested(self) -> str | None:
        if not self.passwords:
            return None
        self.offered += 1
        return self.passwords.pop(0)


async def _guess(process: DeviceProcess, username: str, passwords: list[str]) -> int:
    """How many of ``passwords`` the server let this connection offer; -1 when one was
    accepted."""
    client = _Guesser(passwords)
    try:
        conn, _ = await asyncssh.create_connection(
            lambda: client,
            "127.0.0.1",
            process.ports["netconf-ssh"],
            username=username,
            known_hosts=None,
            client_keys=None,
            preferred_auth="password",
        )
    except asyncssh.PermissionDenied:
        return client.offered
    conn.close()
    return -1


def test_password_guessing_does_not_stall_other_clients(ssh_device: DeviceProcess) -> None:
    """Three clients guess (a second of PBKDF2 per guess); a connected ncclient's get still
    answers in well under a hash time (it waited behind every hash on the event loop)."""
    stop = threading.Event()

    async def guess_loop() -> None:
        async def one() -> None:
            while not stop.is_set():
                await _guess(ssh_device, "admin", ["wrong1", "wrong2", "wrong3"])

        await asyncio.gather(one(), one(), one())

    with manager.connect(
        host="127.0.0.1",
        port=ssh_device.ports["netconf-ssh"],
        username="admin",
        password="secret",
        hostkey_verify=False,
        allow_agent=False,
        look_for_keys=False,
        timeout=60,
    ) as m:
        guessers = threading.Thread(target=lambda: asyncio.run(guess_loop()))
        guessers.start()
        try:
            time.sleep(2)
            times = []
            for _ in range(10):
                start = time.monotonic()
                assert m.get().ok
                times.append(time.monotonic() - start)
        finally:
            stop.set()
            guessers.join(120)
    assert statistics.median(times) < 0.5, times


def test_unknown_and_known_users_take_the_same_time(ssh_device: DeviceProcess) -> None:
    """An unknown user's password is checked against a dummy of the same cost."""

    async def timings() -> tuple[list[float], list[float]]:
        known: list[float] = []
        unknown: list[float] = []
        for _ in range(10):
            for user, out in (("admin", known), ("nosuchuser", unknown)):
                start = time.monotonic()
                assert await _guess(ssh_device, user, ["wrong"]) == 1
                out.append(time.monotonic() - start)
        return known, unknown

    known, unknown = asyncio.run(timings())
    fast, slow = sorted((statistics.median(known), statistics.median(unknown)))
    assert slow / fast < 2, (known, unknown)


def test_a_connection_gets_max_auth_attempts_passwords(ssh_device: DeviceProcess) -> None:
    offered = asyncio.run(_guess(ssh_device, "admin", [f"wrong{i}" for i in range(6)]))
    assert offered == 3
    assert "failed attempts on this connection" in ssh_device.log
    _ncclient_get(ssh_device)


def test_a_guessing_source_is_locked_out_then_let_in_again(lock_device: DeviceProcess) -> None:
    async def lock() -> tuple[int, int]:
        assert await _guess(lock_device, "admin", ["w1", "w2", "w3"]) == 3
        assert await _guess(lock_device, "admin", ["w4"]) == 1  # the 4th failure locks
        refused = await _guess(lock_device, "admin", ["secret"])
        await asyncio.sleep(6)  # auth_lockout = 5
        return refused, await _guess(lock_device, "admin", ["secret"])

    refused, later = asyncio.run(lock())
    assert refused == 0  # not even offered password authentication
    assert later == -1
    assert "locked out for 5" in lock_device.log
    _ncclient_get(lock_device)


def test_ncclient_sees_the_lockout_as_an_authentication_failure(
    lock_device: DeviceProcess,
) -> None:
    for _ in range(2):
        asyncio.run(_guess(lock_device, "admin", ["w1", "w2", "w3"]))
    with pytest.raises(AuthenticationError):
        _ncclient_get(lock_device)
