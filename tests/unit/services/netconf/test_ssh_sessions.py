"""NETCONF over SSH on 127.0.0.1 with asyncssh as the client, the listener in the test's
event loop: rpc-reply attributes (RFC 6241 §4.2) a client can parse; kill-session aborts
the victim's edit in progress (§7.9); a client that does not read its replies is not
served more of them than the transport's buffers hold, and one that does not read its
notifications is closed; the filter memo keeps no copy of a client's filter."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from lxml import etree

from tests.support.unread_events import EVENT_BYTES, SUBSCRIBE, flood
from tests.support.unread_replies import SCHEMA_REPLY, UnreadReplies, get_schema_requests
from zerotouch_plugin.config import DeviceUser, NetconfLimits
from zerotouch_plugin.device import datastore
from zerotouch_plugin.device.datastore import Datastore, Datastores
from zerotouch_plugin.device.schema import DeviceSchema
from zerotouch_plugin.services.netconf import build_netconf_server
from zerotouch_plugin.services.netconf.protocol import NetconfServer
from zerotouch_plugin.services.netconf.ssh import start_netconf_ssh

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
END = b"]]>]]>"
HELLO = (
    f'<hello xmlns="{NC}"><capabilities><capability>urn:ietf:params:netconf:base:1.0'
    "</capability></capabilities></hello>"
).encode() + END
GET = "<get-config><source><running/></source></get-config>"
IF = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
IANA = "urn:ietf:params:xml:ns:yang:iana-if-type"
KIB = 1024
SYS = "urn:ietf:params:xml:ns:yang:ietf-system"


@dataclass
class Device:
    netconf: NetconfServer
    port: int


@pytest.fixture
async def device(schema: DeviceSchema, tmp_path: Path) -> AsyncIterator[Device]:
    limits = NetconfLimits(max_unread=256 * KIB)
    netconf = build_netconf_server(Datastores(schema, tmp_path), limits)
    ssh = await start_netconf_ssh(
        netconf,
        host="127.0.0.1",
        port=0,
        host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
        users=[DeviceUser("admin", password="secret")],
    )
    yield Device(netconf, ssh.port)
    await ssh.close()
    await netconf.close()


@dataclass
class Raw:
    """One NETCONF session (base:1.0 framing) that sends and reads raw messages."""

    conn: asyncssh.SSHClientConnection
    writer: asyncssh.SSHWriter[bytes]
    reader: asyncssh.SSHReader[bytes]
    session_id = 0

    @classmethod
    async def open(cls, port: int, window: int = 2 * 1024 * 1024) -> Raw:
        """``window``: the SSH channel window, what the client takes unread (RFC 4254 §5.2)."""
        conn = await asyncssh.connect(
            "127.0.0.1", port, username="admin", password="secret",
            known_hosts=None, client_keys=None,
        )  # fmt: skip
        writer, reader, _ = await conn.open_session(
            subsystem="netconf", encoding=None, window=window
        )
        raw = cls(conn, writer, reader)
        hello = etree.fromstring(await raw.message())
        raw.session_id = int(hello.findtext(f"{{{NC}}}session-id") or 0)
        writer.write(HELLO)
        return raw

    def send(self, rpc: str) -> None:
        self.writer.write(rpc.encode() + END)

    async def call(self, op: str, mid: int = 1) -> bytes:
        self.send(f'<rpc xmlns="{NC}" message-id="{mid}">{op}</rpc>')
        return await self.message()

    async def message(self) -> bytes:
        return (await asyncio.wait_for(self.reader.readuntil(END), 30))[: -len(END)]

    async def close(self) -> None:
        self.conn.close()
        await self.conn.wait_closed()


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        (
            ' xmlns:app="urn:example:app" app:user="alice" app:ticket="42"',
            {"{urn:example:app}user": "alice", "{urn:example:app}ticket": "42"},
        ),
        (' xml:lang="en"', {"{http://www.w3.org/XML/1998/namespace}lang": "en"}),
    ],
)
async def test_reply_with_namespaced_rpc_attributes_is_well_formed(
    device: Device, attrs: str, expected: dict[str, str]
) -> None:
    """Each namespace declared once, ``xml:`` attributes with the reserved prefix."""
    client = await Raw.open(device.port)
    try:
        client.send(f'<rpc xmlns="{NC}" message-id="5"{attrs}>{GET}</rpc>')
        reply = etree.fromstring(await client.message())
    finally:
        await client.close()
    assert {str(k): str(v) for k, v in reply.attrib.items()} == {"message-id": "5", **expected}
    assert reply.find(f"{{{NC}}}data") is not None


def _edit(name: str) -> str:
    entry = (
        f'<interface><name>{name}</name><type xmlns:ianaift="{IANA}">ianaift:ethernetCsmacd'
        "</type></interface>"
    )
    return (
        f'<edit-config><target><running/></target><config><interfaces xmlns="{IF}">'
        f"{entry}</interfaces></config></edit-config>"
    )


class FirstCallHeld:
    """Holds the first call (in a thread of the datastore) until released."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self._function = function
        self.entered = threading.Event()
        self.release = threading.Event()
        self.returned = threading.Event()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.entered.is_set():
            return self._function(*args, **kwargs)
        self.entered.set()
        try:
            assert self.release.wait(30)
            return self._function(*args, **kwargs)
        finally:
            self.returned.set()


async def _kill_when_held(killer: Raw, victim: Raw, held: FirstCallHeld) -> None:
    """kill-session of ``victim`` while its RPC is held in ``held``, then let that go on."""
    assert await asyncio.to_thread(held.entered.wait, 30)
    kill = f"<kill-session><session-id>{victim.session_id}</session-id></kill-session>"
    assert b"<ok/>" in await killer.call(kill)
    held.release.set()


async def test_kill_session_aborts_the_victims_edit_in_progress(
    device: Device, schema: DeviceSchema, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = FirstCallHeld(schema.validate)
    monkeypatch.setattr(schema, "validate", held)
    victim, killer = await Raw.open(device.port), await Raw.open(device.port)
    try:
        victim.send(f'<rpc xmlns="{NC}" message-id="1">{_edit("killed")}</rpc>')
        await _kill_when_held(killer, victim, held)
        # The write lock is first-come: this edit commits after whatever the victim's did.
        assert b"<ok/>" in await killer.call(_edit("after"))
        names = etree.fromstring(await killer.call(GET)).findall(f".//{{{IF}}}name")
        # the victim's connection was closed
        assert await asyncio.wait_for(victim.reader.read(), 30) == b""
    finally:
        held.release.set()
        await victim.close()
        await killer.close()
    assert [n.text for n in names] == ["after"]


async def test_kill_session_during_the_startup_write_keeps_file_and_memory_alike(
    device: Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file write begun in a thread cannot be stopped: the victim's copy-config is aborted
    once it is done, what it staged removed; startup in memory is what startup.json holds."""
    stores = device.netconf.datastores
    held = FirstCallHeld(datastore.stage)
    monkeypatch.setattr(datastore, "stage", held)
    before, startup = set(stores.folder.iterdir()), stores.view(Datastore.STARTUP)
    victim, killer = await Raw.open(device.port), await Raw.open(device.port)
    try:
        assert b"<ok/>" in await killer.call(_edit("copied"))
        copy = "<copy-config><target><startup/></target><source><running/></source></copy-config>"
        victim.send(f'<rpc xmlns="{NC}" message-id="2">{copy}</rpc>')
        await _kill_when_held(killer, victim, held)
        # The write lock is first-come: this commit comes after the victim's install.
        assert b"<ok/>" in await killer.call(_edit("later"))
        assert await asyncio.to_thread(held.returned.wait, 30)
    finally:
        held.release.set()
        await victim.close()
        await killer.close()
    assert stores.view(Datastore.STARTUP) == startup  # the copy was aborted
    assert not stores.startup_path.exists()
    for _ in range(300):  # the aborted write's clean-up follows its thread
        if set(stores.folder.iterdir()) == before:
            break
        await asyncio.sleep(0.01)
    assert set(stores.folder.iterdir()) == before


async def test_unread_replies_stop_the_session_at_the_write_buffer_mark(
    device: Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100 pipelined get-schema requests (about 40 KiB of reply each), none read: the
    session stops once the SSH channel holds 64 KiB (asyncssh's high-water mark) beyond the
    client's 64 KiB window, instead of holding about 4 MB of replies; it serves the rest
    as the client reads them, in order."""
    count = 100
    unread = UnreadReplies(monkeypatch, count)
    client = await Raw.open(device.port, window=64 * KIB)
    try:
        client.writer.write(get_schema_requests(count))
        held = await unread.held()
        ids = [etree.fromstring(await client.message()).get("message-id") for _ in range(count)]
    finally:
        await client.close()
    assert held * SCHEMA_REPLY <= (64 + 64) * KIB + SCHEMA_REPLY  # window, mark, one reply
    assert ids == [str(i) for i in range(count)]


async def test_filter_memo_keeps_digests_and_skips_large_filters(device: Device) -> None:
    """Small subtree and XPath filters are memoised under a digest of their text; one over
    64 KiB is answered but not memoised."""
    pad = "x" * 256 * KIB
    filters = [
        f'<filter type="subtree"><system xmlns="{SYS}"><hostname/></system></filter>',
        f'<filter type="subtree"><system xmlns="{SYS}"><hostname>{pad}</hostname></system>'
        "</filter>",
        f'<filter type="xpath" xmlns:sys="{SYS}" select="/sys:system/sys:hostname"/>',
        f'<filter type="xpath" xmlns:sys="{SYS}" select="/sys:system[sys:hostname=\'{pad}\']"/>',
    ]
    stores = device.netconf.datastores
    before = set(stores._memo)
    client = await Raw.open(device.port)
    try:
        for number, filt in enumerate(filters):
            op = f"<get-config><source><running/></source>{filt}</get-config>"
            client.send(f'<rpc xmlns="{NC}" message-id="{number}">{op}</rpc>')
            reply = etree.fromstring(await client.message())
            assert reply.find(f"{{{NC}}}data") is not None, etree.tostring(reply)
    finally:
        await client.close()
    added = [key for _, key in set(stores._memo) - before]
    assert sorted(len(key) for key in added) == [len("netconf-xpath:") + 64,
                                                 len("netconf-subtree:") + 64]  # fmt: skip


async def test_a_subscriber_that_does_not_read_is_closed_past_max_unread(device: Device) -> None:
    """Notifications, unlike replies, come whether or not the subscriber reads: past
    ``max_unread`` (256 KiB here) held beyond the channel's window and mark, its session is
    aborted. A subscriber that reads, on the same device, gets every event."""
    reading = await Raw.open(device.port)
    silent = await Raw.open(device.port, window=64 * KIB)
    try:
        assert b"<ok/>" in await reading.call(SUBSCRIBE)
        assert b"<ok/>" in await silent.call(SUBSCRIBE)
        received = 0

        async def read_all() -> None:
            nonlocal received
            while True:
                assert b"<notification" in await reading.message()
                received += 1

        reader = asyncio.create_task(read_all())
        stores = device.netconf.datastores
        emitted = await flood(stores, lambda: silent.session_id in device.netconf.sessions,
                              cap=200_000)  # fmt: skip
        async with asyncio.timeout(30):
            while received < emitted:
                await asyncio.sleep(0.01)
        reader.cancel()
    finally:
        await reading.close()
        await silent.close()
    assert silent.session_id not in device.netconf.sessions
    assert emitted * EVENT_BYTES <= 64 * KIB + 64 * KIB + 256 * KIB + 64 * KIB
    assert received == emitted
