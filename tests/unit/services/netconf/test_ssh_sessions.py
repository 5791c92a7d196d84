"""NETCONF over SSH on 127.0.0.1 with asyncssh as the client, the listener in the test's
event loop: rpc-reply attributes (RFC 6241 §4.2) a client can parse."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest
from lxml import etree

from zerotouch_plugin.config import DeviceUser
from zerotouch_plugin.device.datastore import Datastores
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


@dataclass
class Device:
    netconf: NetconfServer
    port: int


@pytest.fixture
async def device(schema: DeviceSchema, tmp_path: Path) -> AsyncIterator[Device]:
    netconf = build_netconf_server(Datastores(schema, tmp_path))
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

    @classmethod
    async def open(cls, port: int) -> Raw:
        conn = await asyncssh.connect(
            "127.0.0.1", port, username="admin", password="secret",
            known_hosts=None, client_keys=None,
        )  # fmt: skip
        writer, reader, _ = await conn.open_session(subsystem="netconf", encoding=None)
        raw = cls(conn, writer, reader)
        await raw.message()  # the server's hello
        writer.write(HELLO)
        return raw

    def send(self, rpc: str) -> None:
        self.writer.write(rpc.encode() + END)

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
