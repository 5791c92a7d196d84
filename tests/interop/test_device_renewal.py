"""A renewed LDevID (same domain trust anchors) reaches the reference device's listeners
without ending any session: open NETCONF/TLS sessions and RESTCONF connections go on, new
handshakes present the new certificate (plugin host ``install_identity`` for a renewal)."""

from __future__ import annotations

import asyncio
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from lxml import etree

from tests.support.device_pki import make_device_pki
from zerotouch_plugin.artifacts.certs import issue_tls_server
from zerotouch_plugin.artifacts.signer import SigningIdentity
from zerotouch_plugin.config import DeviceConfig
from zerotouch_plugin.errors import UpstreamUnavailable
from zerotouch_plugin.services.device_server import DeviceServer
from zerotouch_plugin.services.netconf.client import NetconfClient

GET_CONFIG = "<get-config><source><running/></source></get-config>"
REQUEST = b"GET /restconf/yang-library-version HTTP/1.1\r\nHost: x\r\n\r\n"


async def _server_cert(port: int, ctx: ssl.SSLContext) -> x509.Certificate:
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        return x509.load_der_x509_certificate(der)
    finally:
        writer.close()


async def _restconf_get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(REQUEST)
    status = await asyncio.wait_for(reader.readline(), 10)
    length = 0
    while (line := await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await asyncio.wait_for(reader.readexactly(length), 10)
    return status


async def test_a_renewal_keeps_sessions_and_presents_the_new_ldevid(tmp_path: Path) -> None:
    pki = make_device_pki()
    device = DeviceServer(tmp_path, DeviceConfig())
    bound = await device.start(netconf_tls="127.0.0.1:0", restconf_address="127.0.0.1:0")
    ctx = pki.client_context()
    ctx.check_hostname = False
    try:
        await device.install_identity(SigningIdentity.of(pki.server), [pki.ca.cert])
        netconf_port, restconf_port = bound["netconf-tls"][1], device.bound["restconf"][1]
        session = await NetconfClient.connect("127.0.0.1", netconf_port, context=ctx)
        reader, writer = await asyncio.open_connection("127.0.0.1", restconf_port, ssl=ctx)
        assert (await _restconf_get(reader, writer)).startswith(b"HTTP/1.1 200")
        assert await _server_cert(netconf_port, ctx) == pki.server.cert

        renewed = issue_tls_server(
            pki.ca, "device", hosts=["127.0.0.1"], now=datetime.now(UTC) - timedelta(minutes=1)
        )
        assert renewed.cert != pki.server.cert
        await device.install_identity(SigningIdentity.of(renewed), [pki.ca.cert])

        reply = await asyncio.wait_for(session.rpc(GET_CONFIG), 10)
        assert etree.QName(reply).localname == "rpc-reply"
        assert (await _restconf_get(reader, writer)).startswith(b"HTTP/1.1 200")
        assert device.bound["restconf"][1] == restconf_port
        assert await _server_cert(netconf_port, ctx) == renewed.cert
        assert await _server_cert(restconf_port, ctx) == renewed.cert
        assert device.installed_identity() is not None
        assert device.installed_identity().ldevid == renewed.cert  # type: ignore[union-attr]
        writer.close()
    finally:
        await device.close()


async def test_a_new_domain_still_ends_the_old_sessions(tmp_path: Path) -> None:
    """Trust anchors that change are no renewal: sessions of the old domain end."""
    pki, other = make_device_pki(), make_device_pki()
    device = DeviceServer(tmp_path, DeviceConfig())
    bound = await device.start(netconf_tls="127.0.0.1:0")
    ctx = pki.client_context()
    ctx.check_hostname = False
    try:
        await device.install_identity(SigningIdentity.of(pki.server), [pki.ca.cert])
        session = await NetconfClient.connect("127.0.0.1", bound["netconf-tls"][1], context=ctx)
        await device.install_identity(SigningIdentity.of(other.server), [other.ca.cert])
        with pytest.raises(UpstreamUnavailable):
            await asyncio.wait_for(session.rpc(GET_CONFIG), 10)
    finally:
        await device.close()
