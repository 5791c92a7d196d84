"""The pledge client's one connection against real TLS servers on 127.0.0.1: what a closed
handshake means, and which connection a verified request may use (RFC 8995 §5.6.2)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.roles.pledge import HttpRequest, PledgeConfig, TlsMode
from zerotouch_plugin.services import certfiles
from zerotouch_plugin.services import pledge_client as client
from zerotouch_plugin.services._tls import server_context
from zerotouch_plugin.services.pledge_client import (
    ClosedBeforeHandshake,
    HandshakeRefused,
    PinMismatch,
    PledgeClient,
    load_pledge_config,
)

NOW = datetime.now(UTC)
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], object]


def pledge(folder: Path) -> tuple[PledgeConfig, certs.Identity]:
    vendor = certs.make_ca("vendor", now=NOW)
    idevid = certs.issue_idevid(vendor, "SN-CONN-1", masa_url=None, now=NOW)
    certfiles.write_certs(folder / "idevid.pem", [idevid.cert, vendor.cert])
    certfiles.write_key(folder / "idevid.key", idevid.key)
    certfiles.write_certs(folder / "masa-ca.pem", [vendor.cert])
    return load_pledge_config(folder), vendor


def registrar(client_ca: x509.Certificate) -> tuple[ssl.SSLContext, certs.Identity]:
    """A registrar's TLS context (its own domain CA) accepting IDevIDs of ``client_ca``."""
    domain = certs.make_ca("domain", now=NOW)
    identity = certs.issue_registrar(domain, "registrar", hosts=["127.0.0.1"], now=NOW)
    ctx = server_context(identity, client_cas=[client_ca], require_client_cert=True)
    return ctx, domain


@asynccontextmanager
async def listening(handler: Handler, ctx: ssl.SSLContext | None) -> AsyncIterator[str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ctx)  # type: ignore[arg-type]
    try:
        yield f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


def verified(path: str, pin: x509.Certificate) -> HttpRequest:
    return HttpRequest("GET", path, None, None, None, TlsMode.VERIFIED, (pin,))


async def test_a_connection_closed_before_the_hello_is_answered_is_no_refusal(
    tmp_path: Path,
) -> None:
    """A server past its caps closes before the handshake: transient, retried."""

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.transport.abort()

    config, _ = pledge(tmp_path)
    async with listening(cut, None) as url, PledgeClient(config, url, timeout=5) as pc:
        with pytest.raises(ClosedBeforeHandshake) as caught:
            await pc.probe()
    assert not client._tls_refusal(caught.value)


async def test_a_handshake_cut_after_the_idevid_is_a_refusal(tmp_path: Path) -> None:
    """The registrar does not know this manufacturer: it drops the handshake once it has seen
    the IDevID (asyncio sends no alert), which the pledge reports as a refusal."""

    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    config, _ = pledge(tmp_path)
    ctx, _ = registrar(certs.make_ca("another vendor", now=NOW).cert)
    async with listening(never, ctx) as url, PledgeClient(config, url, timeout=5) as pc:
        with pytest.raises((HandshakeRefused, ssl.SSLError)) as caught:
            await pc.probe()
    assert client._tls_refusal(caught.value)


async def test_verified_requests_reuse_the_probed_connection_only_under_the_pin(
    tmp_path: Path,
) -> None:
    config, vendor = pledge(tmp_path)
    ctx, domain = registrar(vendor.cert)
    received: list[bytes] = []
    accepted: list[int] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                received.append(head)
                writer.write(OK)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            writer.close()

    async with listening(answer, ctx) as url, PledgeClient(config, url, timeout=5) as pc:
        seen = await pc.probe()
        stranger = certs.make_ca("not the domain", now=NOW).cert
        with pytest.raises(PinMismatch, match="does not validate the registrar certificate"):
            await pc.send(verified("/denied", stranger), now=lambda: NOW)
        await asyncio.sleep(0.1)
        assert received == []  # not one byte of the request went out
        # a pin that validates the certificate this very handshake showed
        first = await pc.send(verified("/a", domain.cert), now=lambda: NOW)
        second = await pc.send(verified("/b", domain.cert), now=lambda: NOW)
    assert (first.status, second.status) == (200, 200)
    assert first.server_cert == seen == second.server_cert
    assert [head.split(b" ")[1] for head in received] == [b"/a", b"/b"]
    # the probe's connection, dropped with the mismatch; then one more for /a and /b
    assert (len(accepted), pc.connections_opened) == (2, 2)


async def test_a_connection_idle_too_long_is_replaced_and_checked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server closes idle connections (the registrar after header_timeout): a kept one
    idle past the limit is not written to; the new one is checked against the pin."""
    monkeypatch.setattr(client, "_IDLE_REUSE", 0.2)  # instead of 5 s of waiting
    config, vendor = pledge(tmp_path)
    ctx, domain = registrar(vendor.cert)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(OK)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            writer.close()

    async with listening(answer, ctx) as url, PledgeClient(config, url, timeout=5) as pc:
        await pc.probe()
        assert (await pc.send(verified("/a", domain.cert), now=lambda: NOW)).status == 200
        assert (await pc.send(verified("/b", domain.cert), now=lambda: NOW)).status == 200
        assert pc.connections_opened == 1
        await asyncio.sleep(0.3)
        assert (await pc.send(verified("/c", domain.cert), now=lambda: NOW)).status == 200
        assert pc.connections_opened == 2
        stranger = certs.make_ca("not the domain", now=NOW).cert
        await asyncio.sleep(0.3)
        with pytest.raises(PinMismatch):  # the replacement is checked like any other
            await pc.send(verified("/d", stranger), now=lambda: NOW)
        assert pc.connections_opened == 3


def _der(tag: int, body: bytes) -> bytes:
    size = len(body)
    length = size.to_bytes((size.bit_length() + 7) // 8 or 1, "big")
    return bytes([tag]) + (length if size < 128 else bytes([0x80 | len(length)]) + length) + body


def ber_boolean_server(folder: Path) -> ssl.SSLContext:
    """A TLS server context whose certificate marks basicConstraints critical with the BER
    BOOLEAN 0x01 rather than DER's 0xFF: OpenSSL sends and reads it, cryptography does not."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name.from_rfc4514_string("CN=odd registrar")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    der_critical = bytes.fromhex("0603551d130101ff")  # id-ce-basicConstraints, TRUE
    tbs = cert.tbs_certificate_bytes.replace(der_critical, der_critical[:-1] + b"\x01")
    ecdsa_sha256 = _der(0x30, _der(0x06, bytes.fromhex("2a8648ce3d040302")))
    signature = _der(0x03, b"\x00" + key.sign(tbs, ec.ECDSA(hashes.SHA256())))
    (folder / "odd.pem").write_text(
        ssl.DER_cert_to_PEM_cert(_der(0x30, tbs + ecdsa_sha256 + signature))
    )
    certfiles.write_key(folder / "odd.key", key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(folder / "odd.pem", folder / "odd.key")
    return ctx


async def test_a_registrar_certificate_cryptography_cannot_read_is_an_outage(
    tmp_path: Path,
) -> None:
    """Not a crash of the pledge (nor of the device agent hosting it): the candidate is
    unreachable, retried, and then the next one is tried."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(OK)

    config, _ = pledge(tmp_path)
    ctx = ber_boolean_server(tmp_path)
    async with listening(answer, ctx) as url, PledgeClient(config, url, timeout=5) as pc:
        with pytest.raises(OSError, match="cannot read") as caught:
            await pc.probe()  # what drive() turns into machine.unreachable()
    assert not client._tls_refusal(caught.value)
