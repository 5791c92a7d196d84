"""ncclient NETCONF/TLS sessions that end without ncclient's close race.

ncclient (0.7) reads a TLS session in a thread of its own, and ``close_session()`` (also what
leaving ``with manager.connect_tls(...)`` does) closes the socket from the caller's thread
right after the reply, while that thread may be inside OpenSSL's read of the same socket. The
descriptor number is free at once: the caller's next connection gets it, and the late read
of the old session takes bytes of the new TLS stream. The new session then fails with
DECRYPTION_FAILED_OR_BAD_RECORD_MAC (or its handshake with WRONG_VERSION_NUMBER), and the
server logs a bad record from the client: the CPU load of a busy CI run is enough to make
the old thread that late.

``tls_session`` ends a session the other way round: close-session as an ordinary RPC, then the
server ends the session (RFC 6241 §7.8) and ncclient's own thread reads the end and closes
its socket, so no other thread ever touches it. Every server fault still shows: a broken
reply or stream fails the RPC, a close-session without ``<ok/>`` or a session the server
does not end fails here.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from pathlib import Path

from ncclient import manager

from zerotouch_plugin.demo.nms import end_session

__all__ = ["close_after_server", "ended", "tls_session"]


def close_after_server(session: manager.Manager, timeout: float) -> None:
    """close-session, then until the server has ended the session and ncclient's reader
    thread closed its socket (AssertionError when the server does not within ``timeout``)."""
    assert end_session(session, timeout), "close-session without <ok/>, or the session kept"


@contextlib.contextmanager
def tls_session(
    port: int,
    *,
    cert: Path,
    key: Path,
    ca: Path,
    host: str = "127.0.0.1",
    timeout: float = 20,
    check_hostname: bool = False,
) -> Iterator[manager.Manager]:
    """An ncclient session over NETCONF/TLS (RFC 7589) with the client certificate ``cert``
    (``key``) to a server chaining to ``ca`` (its name checked against ``host`` only with
    ``check_hostname``: an LDevID names its device by serial), closed as above."""
    session = manager.connect_tls(
        host=host,
        port=port,
        certfile=str(cert),
        keyfile=str(key),
        ca_certs=str(ca),
        protocol=ssl.PROTOCOL_TLS_CLIENT,
        check_hostname=check_hostname,
        timeout=timeout,
    )
    with ended(session, timeout):
        yield session


@contextlib.contextmanager
def ended(session: manager.Manager, timeout: float) -> Iterator[manager.Manager]:
    """An open ncclient NETCONF/TLS ``session`` (one a test connects itself, to see a refusal
    apart from a failed request), closed as above on the way out."""
    try:
        yield session
    except BaseException:
        with contextlib.suppress(Exception):  # the test's own failure is the one to report
            close_after_server(session, timeout)
        raise
    close_after_server(session, timeout)
