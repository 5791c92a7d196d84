"""TLS contexts for every HTTPS service and client of zerotouch (TLS 1.2 or newer only).

``ssl`` loads keys only from files. On Linux the key goes to an anonymous in-memory file
(``memfd_create``), closed right after loading; elsewhere to a private temporary file encrypted
with a random one-time password and removed right after loading. Either way the clear key never
touches the disk.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from zerotouch_plugin.artifacts.certs import Identity, certs_pem

__all__ = [
    "ServerCertRecorder",
    "abort_transport",
    "client_context",
    "identity_pem",
    "peer_certificate",
    "server_context",
]

_MIN_VERSION = ssl.TLSVersion.TLSv1_2


def abort_transport(transport: asyncio.WriteTransport) -> None:
    """``transport.abort()``, also when the connection has already gone away: an asyncio TLS
    transport closed twice drops its protocol, and on CPython 3.11.1 to 3.11.3 (gh-98539;
    Debian 12 ships 3.11.2) its ``abort()`` then raises AttributeError instead of doing
    nothing."""
    try:
        transport.abort()
    except AttributeError:
        if not transport.is_closing():
            raise


def identity_pem(identity: Identity) -> bytes:
    """Leaf certificate followed by its chain, PEM."""
    return certs_pem([identity.cert, *identity.chain])


def _load_identity(ctx: ssl.SSLContext, identity: Identity) -> None:
    if not isinstance(identity, Identity):
        raise TypeError(f"identity must be an Identity, not {type(identity).__name__}")
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        _load_from_memory(ctx, identity)
    else:
        _load_from_encrypted_file(ctx, identity)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _load_from_memory(ctx: ssl.SSLContext, identity: Identity) -> None:
    """Certificate chain and key through memory-only files: no disk, no key encryption (a
    context is built per pledge connection setup, so its cost counts)."""
    key_pem = identity.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_fd = os.memfd_create("zt-tls-cert", os.MFD_CLOEXEC)
    key_fd = os.memfd_create("zt-tls-key", os.MFD_CLOEXEC)
    try:
        _write_all(cert_fd, identity_pem(identity))
        _write_all(key_fd, key_pem)
        ctx.load_cert_chain(f"/proc/self/fd/{cert_fd}", f"/proc/self/fd/{key_fd}")
    finally:
        os.close(key_fd)
        os.close(cert_fd)


def _load_from_encrypted_file(ctx: ssl.SSLContext, identity: Identity) -> None:
    password = secrets.token_bytes(32)
    key_pem = identity.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    with tempfile.TemporaryDirectory(prefix="zt-tls-") as tmp:
        cert_path = Path(tmp) / "cert.pem"
        key_path = Path(tmp) / "key.pem"
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key_pem)
        cert_path.write_bytes(identity_pem(identity))
        ctx.load_cert_chain(cert_path, key_path, password=password)


def server_context(
    identity: Identity,
    *,
    client_cas: Sequence[x509.Certificate] | None,
    require_client_cert: bool,
) -> ssl.SSLContext:
    """A server context presenting ``identity``.

    Client certificates are requested only when ``client_cas`` is given (they must chain to
    one of them); ``require_client_cert`` makes them mandatory.

    TLS 1.3 connections get no session ticket (RFC 8446 §4.6.1), so none is resumed: a
    resumed connection would carry the client certificate verified by an earlier handshake,
    where every connection must be checked against the trust of its own moment, and the two
    tickets OpenSSL sends by default, client certificate inside, cost about a fifth of an
    in-memory mutual-TLS handshake's CPU. TLS 1.2 keeps its ticket (RFC 5077): without it
    OpenSSL keeps every session, client chain included, in the context's cache (about 6 kB
    each, up to 20,480 of them), and ``ssl`` cannot turn that cache off.
    """
    if require_client_cert and not client_cas:
        raise ValueError("require_client_cert needs at least one client CA")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _MIN_VERSION
    ctx.num_tickets = 0
    _load_identity(ctx, identity)
    if client_cas:
        ctx.load_verify_locations(cadata=certs_pem(client_cas).decode("ascii"))
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass
class ServerCertRecorder:
    """Collects the certificate each server presented, in handshake order (RFC 8995 §5.1).

    A pledge on provisional TLS cannot verify the registrar yet; it records the certificate
    and checks it later against the voucher's pinned-domain-cert (RFC 8995 §5.6.2).
    """

    certificates: list[x509.Certificate] = field(default_factory=list)

    def record(self, der: bytes) -> None:
        self.certificates.append(x509.load_der_x509_certificate(der))

    @property
    def last(self) -> x509.Certificate | None:
        return self.certificates[-1] if self.certificates else None


def _recording_class(recorder: ServerCertRecorder) -> type[ssl.SSLObject]:
    """An ``SSLObject`` subclass that hands the peer certificate to ``recorder``.

    asyncio (and so aiohttp) wraps sockets with ``SSLContext.wrap_bio``, which builds
    ``SSLContext.sslobject_class``: overriding it is the documented hook.
    """

    class _RecordingSSLObject(ssl.SSLObject):
        _recorder: ClassVar[ServerCertRecorder] = recorder

        def do_handshake(self) -> None:
            super().do_handshake()
            der = self.getpeercert(binary_form=True)
            if der:
                self._recorder.record(der)

    return _RecordingSSLObject


def client_context(
    identity: Identity | None,
    *,
    trust: Sequence[x509.Certificate] | None,
    recorder: ServerCertRecorder | None = None,
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """A client context, optionally presenting ``identity`` as client certificate.

    ``trust`` None is the pledge's provisional TLS (RFC 8995 §5.1): the server is not
    verified; pass a ``recorder`` to keep the certificate it presented. Otherwise the server
    must chain to ``trust`` (and match the host name unless ``check_hostname`` is false).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = _MIN_VERSION
    if trust is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        if not trust:
            raise ValueError("trust must name at least one certificate (or be None)")
        ctx.load_verify_locations(cadata=certs_pem(trust).decode("ascii"))
        ctx.check_hostname = check_hostname
    if identity is not None:
        _load_identity(ctx, identity)
    if recorder is not None:
        ctx.sslobject_class = _recording_class(recorder)
    return ctx


def peer_certificate(request_or_transport: Any) -> x509.Certificate | None:
    """The peer's certificate of an aiohttp request, an asyncio transport or an SSL object.

    None when the connection is not TLS or the peer sent no certificate (on a server, only
    certificates that verified against the client CAs are visible).
    """
    ssl_object: Any = request_or_transport
    transport = getattr(request_or_transport, "transport", None)
    if transport is not None:
        ssl_object = transport.get_extra_info("ssl_object")
    elif hasattr(request_or_transport, "get_extra_info"):
        ssl_object = request_or_transport.get_extra_info("ssl_object")
    if ssl_object is None or not hasattr(ssl_object, "getpeercert"):
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    return x509.load_der_x509_certificate(der)
