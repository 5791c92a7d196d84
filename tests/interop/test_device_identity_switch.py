"""The device's TLS listeners switch to an installed domain identity without a restart
(plugin host ``install_identity``), refusing every TLS client before it (RFC 8995 §5.9.4)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from lxml import etree

from tests.support.device_pki import make_device_pki
from zerotouch_plugin.artifacts.signer import SigningIdentity
from zerotouch_plugin.config import DeviceConfig
from zerotouch_plugin.errors import UpstreamUnavailable
from zerotouch_plugin.services.device_server import DeviceServer
from zerotouch_plugin.services.netconf.client import NetconfClient

HELLO = (
    b'<hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><capabilities>'
    b"<capability>urn:ietf:params:netconf:base:1.0</capability></capabilities></hello>]]>]]>"
)


async def _netconf_hello(port: int, ctx: ssl.SSLContext) -> etree._Element:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    try:
        data = await asyncio.wait_for(reader.readuntil(b"]]>]]>"), 10)
        writer.write(HELLO)
        await writer.drain()
        return etree.fromstring(data[: -len(b"]]>]]>")])
    finally:
        writer.close()


async def test_identity_installed_at_runtime(tmp_path: Path) -> None:
    pki = make_device_pki()
    device = DeviceServer(tmp_path, DeviceConfig())
    bound = await device.start(netconf_tls="127.0.0.1:0", restconf_address="127.0.0.1:0")
    try:
        assert not device.has_domain_identity
        assert "restconf" not in bound  # nothing to present yet
        ctx = pki.client_context()
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            await _netconf_hello(bound["netconf-tls"][1], ctx)
        await device.install_identity(SigningIdentity.of(pki.server), [pki.ca.cert])
        assert (tmp_path / "ldevid.pem").exists() and (tmp_path / "domain-ca.pem").exists()
        hello = await _netconf_hello(bound["netconf-tls"][1], ctx)
        assert hello.tag.endswith("hello")
        stranger = pki.client_context(pki.stranger)
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            await _netconf_hello(bound["netconf-tls"][1], stranger)
        assert "restconf" in device.bound
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", device.bound["restconf"][1], ssl=ctx
        )
        writer.write(b"GET /restconf/yang-library-version HTTP/1.1\r\nHost: x\r\n\r\n")
        status = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        assert status.startswith(b"HTTP/1.1 200")
    finally:
        await device.close()
    again = DeviceServer(tmp_path, DeviceConfig())
    assert again.has_domain_identity  # kept across a restart


async def test_forget_ends_domain_sessions_and_answers_the_caller(tmp_path: Path) -> None:
    """A factory reset (restart-bootstrap with factory-reset: the RPC forgets the identity)
    ends every NETCONF/TLS session and RESTCONF connection authenticated under the forgotten
    domain; the RPC's caller still gets its answer, over RESTCONF as over NETCONF."""
    pki = make_device_pki()
    device = DeviceServer(tmp_path, DeviceConfig())
    bound = await device.start(netconf_tls="127.0.0.1:0", restconf_address="127.0.0.1:0")

    async def reset(_: object) -> dict[str, str]:
        await device.forget_identity()
        return {"phase": "discovering"}

    device.register_rpc("zerotouch-bootstrap:restart-bootstrap", reset)
    ctx = pki.client_context()
    ctx.check_hostname = False
    rpc = '<restart-bootstrap xmlns="urn:zerotouch:params:xml:ns:yang:zerotouch-bootstrap"/>'
    try:
        await device.install_identity(SigningIdentity.of(pki.server), [pki.ca.cert])
        bystander = await NetconfClient.connect("127.0.0.1", bound["netconf-tls"][1], context=ctx)
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", device.bound["restconf"][1], ssl=ctx
        )
        writer.write(
            b"POST /restconf/operations/zerotouch-bootstrap:restart-bootstrap HTTP/1.1\r\n"
            b"Host: x\r\nContent-Length: 0\r\n\r\n"
        )
        status = await asyncio.wait_for(reader.readline(), 10)
        assert status.startswith(b"HTTP/1.1 200"), status
        assert not device.has_domain_identity
        assert await asyncio.wait_for(reader.read(), 10) is not None  # closed by the device
        writer.close()
        with pytest.raises(UpstreamUnavailable):
            await asyncio.wait_for(
                bystander.rpc("<get-config><source><running/></source></get-config>"), 10
            )
        # the same over NETCONF/TLS: the caller gets its reply, then the session ends
        await device.install_identity(SigningIdentity.of(pki.server), [pki.ca.cert])
        caller = await NetconfClient.connect("127.0.0.1", bound["netconf-tls"][1], context=ctx)
        reply = await asyncio.wait_for(caller.rpc(rpc), 10)
        assert "discovering" in etree.tostring(reply).decode()
        with pytest.raises(UpstreamUnavailable):
            await asyncio.wait_for(
                caller.rpc("<get-config><source><running/></source></get-config>"), 10
            )
    finally:
        await device.close()
