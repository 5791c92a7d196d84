"""The registrar's NETCONF client (day-0 hand-off) against a device that answers with an
``<rpc-error>`` of its own making, over real TLS on 127.0.0.1: what the device says ends up
in the registrar's log, database and admin API, so it must come back bounded and printable."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.errors import PeerRpcError
from zerotouch_plugin.services._tls import client_context, server_context
from zerotouch_plugin.services.netconf.client import NetconfClient
from zerotouch_plugin.services.netconf.protocol import BASE_10, BASE_NS

NOW = datetime.now(UTC) - timedelta(minutes=5)
ROOT = certs.make_ca("hand-off test CA", now=NOW)
DEVICE = certs.issue_tls_server(ROOT, "device", hosts=["127.0.0.1"], now=NOW)
REGISTRAR = certs.issue_client(ROOT, "zerotouch-registrar", now=NOW)
END = b"]]>]]>"
HUGE = 1_000_000


def _reply(tag: str, message: str) -> bytes:
    return (
        f'<rpc-reply xmlns="{BASE_NS}" message-id="1"><rpc-error><error-type>application'
        f"</error-type><error-tag>{tag}</error-tag><error-severity>error</error-severity>"
        f"<error-message>{message}</error-message></rpc-error></rpc-reply>"
    ).encode()


async def _peer_error(tag: str, message: str) -> PeerRpcError:
    """The PeerRpcError the client raises for one rpc answered with ``tag``/``message``."""

    async def device(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hello = f'<hello xmlns="{BASE_NS}"><capabilities><capability>{BASE_10}</capability>'
        writer.write(f"{hello}</capabilities><session-id>1</session-id></hello>".encode() + END)
        await reader.readuntil(END)  # the client's hello
        await reader.readuntil(END)  # its rpc
        writer.write(_reply(tag, message) + END)
        await writer.drain()
        await reader.read()

    ctx = server_context(DEVICE, client_cas=[ROOT.cert], require_client_cert=True)
    server = await asyncio.start_server(device, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    trust = client_context(REGISTRAR, trust=[ROOT.cert], check_hostname=False)
    client = await NetconfClient.connect("127.0.0.1", port, context=trust)
    try:
        with pytest.raises(PeerRpcError) as caught:
            await client.rpc("<get/>")
    finally:
        client.abort()
        server.close()
    return caught.value


async def test_a_devices_huge_error_message_is_cut_and_its_control_characters_escaped() -> None:
    # a forged log line, a C1 CSI (valid in XML, unlike ESC) and a right-to-left override
    forged = "\n2026-01-01 INFO hand-off of SN-2: applied\x9b2J\u202e"
    error = await _peer_error("invalid-value", forged + "x" * HUGE)
    text = str(error)
    assert len(text) < 2000, len(text)
    assert not {"\n", "\x9b", "\u202e"} & set(text), text[:200]
    assert "more characters" in text
    assert error.error_tag == "invalid-value"


async def test_a_devices_huge_error_tag_is_cut() -> None:
    error = await _peer_error("t" * HUGE + "\x9b31m", "refused")
    assert len(str(error)) < 2000
    assert error.error_tag is not None and len(error.error_tag) < 200
    assert "\x9b" not in error.error_tag
