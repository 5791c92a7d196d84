"""The device's TLS listeners switch to an installed domain identity without a restart
(plugin host ``install_identity``), refusing every TLS client before it (RFC 8995 §5.9.4)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from lxml import etree

from tests.support.device_pki import make_device_pki
from zerotouch_plugin.config import DeviceConfig
from zerotouch_plugin.services.device_server import DeviceServer

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
        await device.install_identity(pki.server.cert, pki.server.key, [], [pki.ca.cert])
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
