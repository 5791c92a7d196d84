"""The simplereenroll client against a registrar stand-in served over real TLS on 127.0.0.1:
what it sends (RFC 7030 §4.2.1 base64 PKCS#10, client certificate = the current LDevID),
what it refuses before sending, and each wrong answer turned into the error that says what
to do (retry, enroll again, or distrust the answer)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from zerotouch_plugin.artifacts import certs, est
from zerotouch_plugin.artifacts.certs import Identity
from zerotouch_plugin.errors import (
    CertificateError,
    ConfigError,
    Expired,
    InvalidInput,
    PolicyRefused,
    UpstreamInvalid,
    UpstreamUnavailable,
    WrongSerial,
)
from zerotouch_plugin.roles import registrar as role
from zerotouch_plugin.services._tls import peer_certificate, server_context
from zerotouch_plugin.services.reenroll_client import (
    DEFAULT_RETRY_AFTER,
    PATH_SIMPLEREENROLL,
    reenroll,
)

NOW = datetime.now(UTC)


@dataclass
class Domain:
    ca: Identity = field(default_factory=lambda: certs.make_ca("Test Domain CA", now=NOW))

    def __post_init__(self) -> None:
        self.ctx = role.RegistrarContext(
            registrar=certs.issue_registrar(self.ca, "reg", hosts=["127.0.0.1"], now=NOW),
            domain_ca=self.ca,
            manufacturer_cas=(certs.make_ca("Vendor", now=NOW).cert,),
            ldevid_lifetime=timedelta(hours=1),
        )

    def ldevid(self, serial: str = "SN-1", *, now: datetime = NOW) -> Identity:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = role.issue_ldevid(self.ctx, serial, certs.make_csr(key, serial=serial), now=now)
        return Identity(cert, key)


Handler = Callable[[web.Request, x509.CertificateSigningRequest], web.Response]


@dataclass
class StandIn:
    """A TLS server answering simplereenroll with ``answer``; records what it saw."""

    domain: Domain
    answer: Handler
    url: str = ""
    seen: list[tuple[x509.Certificate | None, str, x509.CertificateSigningRequest]] = field(
        default_factory=list
    )

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        csr = est.parse_csr(body)
        self.seen.append((peer_certificate(request), request.content_type, csr))
        return self.answer(request, csr)


@pytest.fixture(scope="module")
def domain() -> Domain:
    return Domain()


@pytest.fixture
async def standin(domain: Domain) -> AsyncIterator[StandIn]:
    stand = StandIn(domain, lambda _r, _c: web.Response(status=500))
    app = web.Application()
    app.router.add_post(PATH_SIMPLEREENROLL, stand.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    ssl = server_context(
        domain.ctx.registrar, client_cas=[domain.ca.cert], require_client_cert=True
    )
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    stand.url = f"https://127.0.0.1:{port}"
    yield stand
    await runner.cleanup()


def issue(domain: Domain, csr: x509.CertificateSigningRequest, serial: str = "SN-1") -> bytes:
    return est.encode_certs_only([role.issue_ldevid(domain.ctx, serial, csr, now=NOW)])


def certs_only(body: bytes, media: str = est.MEDIA_PKCS7_CERTS) -> web.Response:
    return web.Response(body=body, headers={"Content-Type": media})


async def renew(
    stand: StandIn, current: Identity, serial: str = "SN-1"
) -> tuple[x509.Certificate, ...]:
    csr = certs.make_csr(ec.generate_private_key(ec.SECP256R1()), serial=serial)
    return await reenroll(
        stand.url, current=current, csr=csr, trust=[stand.domain.ca.cert], timeout=10
    )


async def test_a_renewal_sends_base64_pkcs10_with_the_ldevid(standin: StandIn) -> None:
    standin.answer = lambda _r, csr: certs_only(issue(standin.domain, csr))
    current = standin.domain.ldevid()
    (renewed,) = await renew(standin, current)
    ((client, media, csr),) = standin.seen
    assert client == current.cert and media == est.MEDIA_PKCS10
    assert renewed.public_key() == csr.public_key()
    assert certs.serial_number_of(renewed) == "SN-1"


async def test_the_ldevid_is_found_in_any_order_of_the_answer(standin: StandIn) -> None:
    domain = standin.domain

    def ca_first(_r: web.Request, csr: x509.CertificateSigningRequest) -> web.Response:
        leaf = role.issue_ldevid(domain.ctx, "SN-1", csr, now=NOW)
        return certs_only(est.encode_certs_only([domain.ca.cert, leaf]))

    standin.answer = ca_first
    renewed = await renew(standin, domain.ldevid())
    assert certs.serial_number_of(renewed[0]) == "SN-1" and renewed[1] == domain.ca.cert


async def test_a_refusal_text_is_escaped(standin: StandIn) -> None:
    standin.answer = lambda _r, _c: web.Response(status=403, text="policy-refused: \x1b[2Jgone")
    with pytest.raises(PolicyRefused) as caught:
        await renew(standin, standin.domain.ldevid())
    assert "\x1b" not in str(caught.value) and "\\x1b[2Jgone" in str(caught.value)


@pytest.mark.parametrize(
    ("status", "text", "error", "message"),
    [
        (403, "bad-certificate: the LDevID was revoked", CertificateError, "revoked"),
        (403, "expired: the LDevID is outside its validity", Expired, "outside"),
        (403, "wrong-serial: the CSR asks for another", WrongSerial, "another"),
        (400, "malformed: the CSR key is RSA-1024", InvalidInput, "RSA-1024"),
        (403, "something-new: a reason we do not know", PolicyRefused, "something-new"),
        (400, "bad-certificate: a reason with the wrong status", InvalidInput, "wrong status"),
        (500, "internal error", UpstreamInvalid, r"\(500\)"),
    ],
)
async def test_refusals_keep_the_registrars_reason(
    standin: StandIn, status: int, text: str, error: type[Exception], message: str
) -> None:
    standin.answer = lambda _r, _c: web.Response(status=status, text=text)
    with pytest.raises(error, match=message):
        await renew(standin, standin.domain.ldevid())


@pytest.mark.parametrize("status", [503, 202])
async def test_503_or_202_says_when_to_retry(standin: StandIn, status: int) -> None:
    # 202: accepted, the certificate is not ready; Retry-After says when (RFC 7030 §4.2.3)
    standin.answer = lambda _r, _c: web.Response(
        status=status, text="storage-unavailable: disk full", headers={"Retry-After": "7"}
    )
    with pytest.raises(UpstreamUnavailable, match="disk full") as caught:
        await renew(standin, standin.domain.ldevid())
    assert caught.value.retry_after == 7


@pytest.mark.parametrize(
    "value",
    [
        "\u00b2",  # passes str.isdigit, which int() then refuses
        "9" * 5000,  # more digits than int() converts (4300)
    ],
)
async def test_503_with_an_unreadable_retry_after_waits_the_default(
    standin: StandIn, value: str
) -> None:
    # not a crash of the renewal, but no advice
    standin.answer = lambda _r, _c: web.Response(
        status=503, text="busy", headers={"Retry-After": value}
    )
    with pytest.raises(UpstreamUnavailable, match="busy") as caught:
        await renew(standin, standin.domain.ldevid())
    assert caught.value.retry_after == DEFAULT_RETRY_AFTER


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d, c: certs_only(issue(d, c), "text/plain"), "answered 'text/plain'"),
        (lambda d, c: certs_only(b"not base64 at all!"), "no certs-only message"),
        (lambda d, c: certs_only(b"A" * 70000), "more than 65536 bytes"),
        (
            lambda d, c: certs_only(
                issue(d, certs.make_csr(ec.generate_private_key(ec.SECP256R1()), serial="SN-1"))
            ),
            "not for the key of the CSR",
        ),
        (lambda d, c: certs_only(issue(d, c, serial="SN-2")), "names serialNumber 'SN-2'"),
        (lambda d, c: certs_only(issue(Domain(), c)), "does not verify"),
    ],
)
async def test_wrong_answers_are_refused(
    standin: StandIn,
    make: Callable[[Domain, x509.CertificateSigningRequest], web.Response],
    message: str,
) -> None:
    standin.answer = lambda _r, csr: make(standin.domain, csr)
    with pytest.raises(UpstreamInvalid, match=message):
        await renew(standin, standin.domain.ldevid())


async def test_requests_that_cannot_succeed_are_not_sent(standin: StandIn) -> None:
    domain = standin.domain
    with pytest.raises(ConfigError, match="must ask for serialNumber 'SN-1'"):
        await renew(standin, domain.ldevid(), serial="SN-2")
    old = domain.ldevid(now=NOW - timedelta(hours=3))
    with pytest.raises(Expired, match="cannot renew; enroll again with the IDevID"):
        await renew(standin, old)
    no_serial = certs.issue_client(domain.ca, "nms", now=NOW)
    with pytest.raises(ConfigError, match="no subject serialNumber"):
        await renew(standin, no_serial)
    with pytest.raises(ConfigError, match="https"):
        await reenroll(
            "http://127.0.0.1:1", current=domain.ldevid(), trust=[domain.ca.cert],
            csr=certs.make_csr(ec.generate_private_key(ec.SECP256R1()), serial="SN-1"),
        )  # fmt: skip
    assert standin.seen == []


async def test_a_registrar_of_another_domain_is_not_trusted(standin: StandIn) -> None:
    current = standin.domain.ldevid()
    csr = certs.make_csr(ec.generate_private_key(ec.SECP256R1()), serial="SN-1")
    with pytest.raises(CertificateError, match="does not verify against the domain CA"):
        await reenroll(standin.url, current=current, csr=csr, trust=[Domain().ca.cert], timeout=10)
    assert standin.seen == []


async def test_an_unreachable_registrar_is_retried_later(domain: Domain) -> None:
    csr = certs.make_csr(ec.generate_private_key(ec.SECP256R1()), serial="SN-1")
    with pytest.raises(UpstreamUnavailable, match="did not answer"):
        await reenroll(
            "https://127.0.0.1:1", current=domain.ldevid(), csr=csr, trust=[domain.ca.cert],
            timeout=5,
        )  # fmt: skip


async def test_a_certificate_refused_at_the_handshake_says_so(domain: Domain) -> None:
    """A registrar whose TLS stack answers a refused client certificate with an alert
    (RFC 8446 §6.2; here OpenSSL with TLS 1.2 trusting another CA): unknown_ca."""
    ctx = server_context(
        domain.ctx.registrar, client_cas=[Domain().ca.cert], require_client_cert=True
    )
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    listener = socket.create_server(("127.0.0.1", 0))

    def serve_one() -> None:
        conn, _ = listener.accept()
        with contextlib.suppress(OSError), ctx.wrap_socket(conn, server_side=True):
            pass

    thread = threading.Thread(target=serve_one)
    thread.start()
    port = listener.getsockname()[1]
    csr = certs.make_csr(ec.generate_private_key(ec.SECP256R1()), serial="SN-1")
    try:
        with pytest.raises(CertificateError, match="refused the LDevID at the TLS handshake"):
            await reenroll(
                f"https://127.0.0.1:{port}", current=domain.ldevid(), csr=csr,
                trust=[domain.ca.cert], timeout=10,
            )  # fmt: skip
    finally:
        thread.join(10)
        listener.close()
