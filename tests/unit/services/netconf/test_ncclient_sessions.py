"""ncclient over NETCONF/TLS, one session after another, each ended by
``tests/support/ncclient_tls.py``: no session breaks the next one, even when ncclient's reader
thread is held up between taking the session's SSL object and reading, as a preempted thread
is on a loaded machine.

With ncclient's own close (``with manager.connect_tls(...)``) the same hold-up makes the old
thread read from the descriptor the next session was given: that session fails with
DECRYPTION_FAILED_OR_BAD_RECORD_MAC (18 of 40 sessions with a 50 ms hold-up).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree
from ncclient.transport import tls as ncclient_tls

from tests.support.device_pki import make_device_pki
from tests.support.ncclient_tls import tls_session
from zerotouch_plugin.config import CertToName
from zerotouch_plugin.device.datastore import Datastore, Datastores
from zerotouch_plugin.device.schema import DeviceSchema
from zerotouch_plugin.services.netconf.server import build_netconf_server
from zerotouch_plugin.services.netconf.tls import TlsSettings, start_netconf_tls

SYS_NS = "urn:ietf:params:xml:ns:yang:ietf-system"
CONTACT = "noc@fleet.example"
HOLD = 0.05  # seconds the reader thread waits with the SSL object in hand
SESSIONS = 8


@pytest.fixture
def late_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Hold ncclient's reader thread up before every read; the reads it made on a session
    already closed (the descriptor may then be another session's) are listed."""
    late: list[str] = []

    def read(session: ncclient_tls.TLSSession) -> bytes:
        ssl_object = session._socket._sslobj  # what SSLSocket.read uses; its BIO keeps the fd
        if ssl_object is None:
            return session._socket.recv(ncclient_tls.BUF_SIZE)  # type: ignore[no-any-return]
        time.sleep(HOLD)
        if session._closing.is_set():
            late.append(f"session {session.id}")
        return ssl_object.read(ncclient_tls.BUF_SIZE)  # type: ignore[no-any-return]

    monkeypatch.setattr(ncclient_tls.TLSSession, "_transport_read", read)
    yield late


def _read_contacts(port: int, files: dict[str, Path]) -> list[str | None]:
    contacts = []
    for number in range(SESSIONS):
        datastore = ("running", "startup")[number % 2]
        with tls_session(port, cert=files["cert"], key=files["key"], ca=files["ca"]) as session:
            reply = session.get_config(
                datastore, filter=("subtree", f'<system xmlns="{SYS_NS}"><contact/></system>')
            )
        node = etree.fromstring(reply.data_xml.encode()).find(f".//{{{SYS_NS}}}contact")
        contacts.append(None if node is None else node.text)
    return contacts


async def test_sessions_one_after_another_each_read_back_whole(
    schema: DeviceSchema, tmp_path: Path, late_reads: list[str]
) -> None:
    pki = make_device_pki()
    stores = Datastores(schema, tmp_path)
    await stores.commit(Datastore.RUNNING, {"ietf-system:system": {"contact": CONTACT}},
                        session_id=0)  # fmt: skip
    await stores.copy(Datastore.RUNNING, Datastore.STARTUP, session_id=0)
    netconf = build_netconf_server(stores)
    settings = TlsSettings(
        pki.server_context(), (pki.ca.cert,), (CertToName("*", "specified", "nms"),)
    )
    listener = await start_netconf_tls(netconf, host="127.0.0.1", port=0, settings=lambda: settings)
    try:
        contacts = await asyncio.to_thread(_read_contacts, listener.port, pki.write(tmp_path))
    finally:
        await listener.close()
        await netconf.close()
    assert contacts == [CONTACT] * SESSIONS
    assert late_reads == []
