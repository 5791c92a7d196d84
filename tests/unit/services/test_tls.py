"""The TLS contexts of every HTTPS service and client, over a real TLS handshake on 127.0.0.1:
the server's chain in PEM, client certificates checked against the client CAs, and the
settings that would make a context useless refused at once."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import pytest
from cryptography import x509

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.services._tls import (
    abort_transport,
    client_context,
    identity_pem,
    server_context,
)

NOW = datetime.now(UTC) - timedelta(minutes=5)
ROOT = certs.make_ca("TLS test root", now=NOW)
ISSUING = certs.issue_intermediate_ca(ROOT, "TLS test issuing CA", now=NOW)
SERVER = certs.issue_tls_server(ISSUING, "server", hosts=["127.0.0.1"], now=NOW)
CLIENT = certs.issue_client(ROOT, "client", now=NOW)


def test_identity_pem_is_the_leaf_then_its_chain() -> None:
    loaded = certs.load_certs(identity_pem(SERVER))
    assert loaded == [SERVER.cert, *SERVER.chain]
    assert loaded[1] == ISSUING.cert


class ClientEnd(NamedTuple):
    version: str | None
    session: ssl.SSLSession | None
    reused: bool


def handshake(
    server: ssl.SSLContext,
    client: ssl.SSLContext,
    *,
    session: ssl.SSLSession | None = None,
    client_ends: list[ClientEnd] | None = None,
) -> x509.Certificate | None:
    """One handshake; the client certificate the server saw (None when there was none).

    The client offers ``session`` to resume; what its end saw after the server's first bytes
    (which come after any session ticket) is appended to ``client_ends``.
    """
    seen: list[x509.Certificate | None] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with server.wrap_socket(conn, server_side=True) as tls:
                    der = tls.getpeercert(binary_form=True)
                    seen.append(None if der is None else x509.load_der_x509_certificate(der))
                    tls.sendall(b"ok")
                    tls.unwrap()  # close_notify both ways: a cleanly ended session stays cached
            except (ssl.SSLError, OSError):
                seen.append(None)

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            port = listener.getsockname()[1]
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                client.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as tls,
            ):
                assert tls.recv(2) == b"ok"
                if client_ends is not None:
                    client_ends.append(ClientEnd(tls.version(), tls.session, tls.session_reused))
                tls.unwrap()
        finally:
            thread.join(10)
    return seen[0]


def test_a_client_of_the_trusted_ca_is_seen_by_the_server() -> None:
    server = server_context(SERVER, client_cas=[ROOT.cert], require_client_cert=True)
    client = client_context(CLIENT, trust=[ROOT.cert])
    assert handshake(server, client) == CLIENT.cert


def test_without_client_cas_no_client_certificate_is_asked_for() -> None:
    server = server_context(SERVER, client_cas=None, require_client_cert=False)
    assert handshake(server, client_context(CLIENT, trust=[ROOT.cert])) is None


def test_no_tls13_session_is_resumed_nor_any_ticket_issued() -> None:
    server = server_context(SERVER, client_cas=[ROOT.cert], require_client_cert=True)
    client = client_context(CLIENT, trust=[ROOT.cert])
    first: list[ClientEnd] = []
    assert handshake(server, client, client_ends=first) == CLIENT.cert
    offered = first[0].session
    assert first[0].version == "TLSv1.3"
    assert offered is not None
    assert not offered.has_ticket
    again: list[ClientEnd] = []
    assert handshake(server, client, session=offered, client_ends=again) == CLIENT.cert
    assert not again[0].reused


def test_the_server_keeps_no_session_of_tls12_clients_in_memory() -> None:
    server = server_context(SERVER, client_cas=[ROOT.cert], require_client_cert=True)
    for name in ("first client", "second client"):
        client = client_context(certs.issue_client(ROOT, name, now=NOW), trust=[ROOT.cert])
        client.maximum_version = ssl.TLSVersion.TLSv1_2
        ends: list[ClientEnd] = []
        assert handshake(server, client, client_ends=ends) is not None
        assert ends[0].version == "TLSv1.2"
    assert server.session_stats()["number"] == 0


def test_a_server_outside_the_trust_fails_the_handshake() -> None:
    other = certs.make_ca("another root", now=NOW)
    server = server_context(SERVER, client_cas=None, require_client_cert=False)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(server, client_context(None, trust=[other.cert]))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: server_context(SERVER, client_cas=[], require_client_cert=True),
            "require_client_cert needs at least one client CA",
        ),
        (lambda: client_context(None, trust=[]), "trust must name at least one certificate"),
    ],
)
def test_a_context_that_could_verify_nothing_is_refused(
    make: Callable[[], object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_an_identity_is_required_as_one() -> None:
    with pytest.raises(TypeError, match="identity must be an Identity"):
        server_context(SERVER.cert, client_cas=None, require_client_cert=False)  # type: ignore[arg-type]


async def test_abort_cuts_an_open_tls_connection_and_is_harmless_once_it_is_closed() -> None:
    """The hand-off's NETCONF client aborts in ``finally`` after closing: on CPython 3.11.1 to
    3.11.3 (Debian 12's 3.11.2) the TLS transport closed twice raised AttributeError there,
    and every day-0 hand-off failed as an internal error of the registrar."""
    ended = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client's side ends
        ended.set()
        writer.close()

    server_ctx = server_context(SERVER, client_cas=None, require_client_cert=False)
    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    client_ctx = client_context(None, trust=[ROOT.cert])
    async with server:
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx)
        transport = writer.transport
        assert isinstance(transport, asyncio.WriteTransport)
        abort_transport(transport)  # open: cut at once
        assert transport.is_closing()
        await asyncio.wait_for(ended.wait(), 10)

        ended.clear()
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx)
        transport = writer.transport
        assert isinstance(transport, asyncio.WriteTransport)
        transport.close()
        transport.close()  # as asyncio's streams may
        abort_transport(transport)  # no AttributeError on any 3.11
        assert transport.is_closing()
        await asyncio.wait_for(ended.wait(), 10)
