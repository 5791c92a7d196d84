"""The owner's NMS in the demo: ncclient over NETCONF/TLS (RFC 7589) with a domain client
certificate, and the clients a device must refuse once enrolled.

Blocking (ncclient runs a thread per session); the flow calls these through
``asyncio.to_thread``, one device per thread.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from lxml import etree
from ncclient import manager
from ncclient.transport import session as ncclient_session

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.config import DEFAULT_DEVICE_DOMAIN
from zerotouch_plugin.roles.registrar import device_dns_name
from zerotouch_plugin.services import certfiles
from zerotouch_plugin.services._tls import client_context

__all__ = [
    "ClientFiles",
    "DeviceView",
    "end_session",
    "read_device",
    "refused",
    "restconf_hostname",
    "wait_ended",
]

SYS_NS = "urn:ietf:params:xml:ns:yang:ietf-system"
BOOTSTRAP_NS = "urn:zerotouch:params:xml:ns:yang:zerotouch-bootstrap"
SYSTEM_FILTER = f'<system xmlns="{SYS_NS}"><hostname/></system>'
BOOTSTRAP_FILTER = f'<bootstrap xmlns="{BOOTSTRAP_NS}"><phase/></bootstrap>'
TIMEOUT = 10.0

# ncclient's session thread looks at its send queue only between 0.1 s socket polls, which
# would add up to 100 ms to every RPC; 10 ms keeps the demo's few RPCs quick.
ncclient_session.TICK = 0.01


@dataclass(frozen=True)
class ClientFiles:
    """A TLS client identity as files: certificate (with chain), key, and the CA the
    device's certificate must chain to."""

    cert: Path
    key: Path
    ca: Path

    def context(self, *, check_hostname: bool) -> ssl.SSLContext:
        """A TLS client context presenting this identity, trusting only ``ca``."""
        return client_context(
            certfiles.load_identity(self.cert, self.key),
            trust=certs.load_certs(self.ca.read_bytes()),
            check_hostname=check_hostname,
        )


@dataclass(frozen=True)
class DeviceView:
    """What the NMS read from one device."""

    running_hostname: str | None
    startup_hostname: str | None
    phase: str | None


def _connect(port: int, client: ClientFiles) -> manager.Manager:
    # No host name check: the device's LDevID names the device by serialNumber (RFC 8995
    # §2.3.1), not by address; the chain to the domain CA is still verified.
    return manager.connect_tls(
        host="127.0.0.1",
        port=port,
        certfile=str(client.cert),
        keyfile=str(client.key),
        ca_certs=str(client.ca),
        protocol=ssl.PROTOCOL_TLS_CLIENT,
        check_hostname=False,
        timeout=TIMEOUT,
    )


def _leaf(reply: object, namespace: str, name: str) -> str | None:
    data = etree.fromstring(reply.data_xml.encode())  # type: ignore[attr-defined]
    node = data.find(f".//{{{namespace}}}{name}")
    return None if node is None else node.text


def end_session(session: manager.Manager, timeout: float = TIMEOUT) -> bool:
    """close-session, then wait until the device has ended the session (RFC 6241 §7.8) and
    ncclient's reader thread closed its socket; True when the device answered ``<ok/>`` and
    did. ncclient's own close_session closes the socket from this thread while the reader may
    be inside OpenSSL's read: the next connection gets the same descriptor and the late read
    breaks its TLS stream (bad record MAC)."""
    reply = session.dispatch("close-session")
    return wait_ended(session, timeout) and bool(reply.ok)


def wait_ended(session: manager.Manager, timeout: float) -> bool:
    """Until ncclient's reader thread has seen the transport end, closed its socket itself
    and stopped (at most ``timeout`` seconds); True when it did."""
    reader = session._session  # ncclient's transport session is the reader thread
    reader.join(timeout)
    return not reader.is_alive()


def read_device(port: int, client: ClientFiles) -> DeviceView:
    """Hostname from running and startup, and the bootstrap phase, over one session."""
    session = _connect(port, client)
    try:
        running = session.get_config("running", filter=("subtree", SYSTEM_FILTER))
        startup = session.get_config("startup", filter=("subtree", SYSTEM_FILTER))
        state = session.get(filter=("subtree", BOOTSTRAP_FILTER))
        return DeviceView(
            running_hostname=_leaf(running, SYS_NS, "hostname"),
            startup_hostname=_leaf(startup, SYS_NS, "hostname"),
            phase=_leaf(state, BOOTSTRAP_NS, "phase"),
        )
    finally:
        end_session(session)


def _peer_serial(tls: ssl.SSLSocket) -> str | None:
    der = tls.getpeercert(binary_form=True)
    return None if der is None else certs.serial_number_of(x509.load_der_x509_certificate(der))


class _ResolvedHTTPS(http.client.HTTPSConnection):
    """HTTPS to ``name`` on 127.0.0.1 (what ``curl --resolve`` does): TLS checks that the
    server's certificate carries ``name`` while the TCP connection goes to 127.0.0.1."""

    def __init__(self, name: str, port: int, context: ssl.SSLContext) -> None:
        super().__init__(name, port, context=context, timeout=TIMEOUT)
        self._create_connection = self._to_loopback

    @staticmethod
    def _to_loopback(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        return socket.create_connection(("127.0.0.1", address[1]), *args, **kwargs)


def restconf_hostname(port: int, client: ClientFiles, serial: str) -> str | None:
    """``GET /restconf/data/ietf-system:system/hostname`` (RFC 8040 §3.5) from the device by
    its LDevID name (``<serial>.<device domain>``, host name checked as curl without ``-k``
    does), after checking that its certificate names ``serial`` (RFC 8995 §5.9.1)."""
    context = client.context(check_hostname=True)
    name = device_dns_name(serial, DEFAULT_DEVICE_DOMAIN)
    connection = _ResolvedHTTPS(name, port, context)
    try:
        connection.request(
            "GET",
            "/restconf/data/ietf-system:system/hostname",
            headers={"Accept": "application/yang-data+json"},
        )
        assert isinstance(connection.sock, ssl.SSLSocket)
        named = _peer_serial(connection.sock)
        if named != serial:
            raise ssl.SSLCertVerificationError(
                f"the device certificate names {named}, not {serial}"
            )
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 200:
        return None
    value = json.loads(body).get("ietf-system:hostname")
    return value if isinstance(value, str) else None


def _refused_without_certificate(port: int, ca: Path) -> str | None:
    """None if the device refused a TLS client with no certificate; else what it sent."""
    context = client_context(None, trust=certs.load_certs(ca.read_bytes()), check_hostname=False)
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        try:
            with context.wrap_socket(raw) as tls:
                # TLS 1.3: the server judges the client after the client's handshake is
                # done, so the refusal shows as an alert or EOF instead of the hello.
                data = tls.recv(64)
        except (ssl.SSLError, ConnectionError):
            return None
    return data.decode(errors="replace") if data else None


def refused(port: int, ca: Path, client: ClientFiles | None) -> str | None:
    """None if the device refused this client (``None``: no certificate at all) before
    any NETCONF exchange; otherwise a description of what it let through."""
    if client is None:
        sent = _refused_without_certificate(port, ca)
        return None if sent is None else f"sent {sent!r}"
    try:
        session = _connect(port, client)
    except Exception as exc:  # ncclient raises several unrelated types
        text = str(exc)
        if text.startswith("Could not connect"):
            return f"the port did not answer ({text})"
        return None
    with contextlib.suppress(Exception):
        session.close_session()
    return f"NETCONF session {session.session_id} opened"
