"""client_identity classifies a TLS connection's client once and reuses it on the
connection's later requests, as long as the certificate is the same and ``now`` lies in the
validated path's validity window; every refusal is worked out again, nothing of it is kept."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.errors import AccessDenied, Expired, UntrustedSigner
from zerotouch_plugin.roles import registrar as role
from zerotouch_plugin.roles.registrar import ClientKind
from zerotouch_plugin.services.registrar import common
from zerotouch_plugin.services.registrar.common import APP_KEY, client_identity

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@dataclass
class Pki:
    ctx: role.RegistrarContext
    vendor: certs.Identity
    idevid: x509.Certificate  # valid for one day from NOW
    stranger: x509.Certificate


@pytest.fixture(scope="module")
def pki() -> Pki:
    vendor = certs.make_ca("Vendor Root", now=NOW, organization="Vendor Inc")
    domain = certs.make_ca("Domain CA", now=NOW)
    ctx = role.RegistrarContext(
        registrar=certs.issue_registrar(domain, "registrar", hosts=["127.0.0.1"], now=NOW),
        domain_ca=domain,
        manufacturer_cas=(vendor.cert,),
    )
    idevid = certs.issue_idevid(vendor, "SN-1", masa_url=None, now=NOW, days=1).cert
    stranger_ca = certs.make_ca("Stranger Root", now=NOW)
    stranger = certs.issue_idevid(stranger_ca, "SN-9", masa_url=None, now=NOW).cert
    return Pki(ctx, vendor, idevid, stranger)


class FakeSslObject:
    """The SSL object of one connection: the peer certificate it verified."""

    def __init__(self, cert: x509.Certificate | None) -> None:
        self.cert = cert

    def getpeercert(self, binary_form: bool = False) -> bytes | None:
        assert binary_form
        return None if self.cert is None else role.der(self.cert)


def request_on(conn: FakeSslObject, ctx: role.RegistrarContext) -> Any:
    """A request as client_identity sees it, over the connection ``conn``."""
    transport = SimpleNamespace(get_extra_info=lambda name: conn if name == "ssl_object" else None)
    return SimpleNamespace(app={APP_KEY: SimpleNamespace(context=ctx)}, transport=transport)


@pytest.fixture
def classified(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[x509.Certificate | None]]:
    """The certificates role.classify_client was asked about, in order."""
    calls: list[x509.Certificate | None] = []
    real = role.classify_client

    def counting(ctx: role.RegistrarContext, cert: x509.Certificate | None, **kw: Any) -> Any:
        calls.append(cert)
        return real(ctx, cert, **kw)

    monkeypatch.setattr(role, "classify_client", counting)
    yield calls
    common._CLASSIFIED.clear()


def test_one_connection_is_classified_once(pki: Pki, classified: list[Any]) -> None:
    conn = FakeSslObject(pki.idevid)
    found = [
        client_identity(request_on(conn, pki.ctx), NOW + timedelta(minutes=i)) for i in range(6)
    ]
    assert found[0].kind is ClientKind.IDEVID and found[0].serial == "SN-1"
    assert all(identity is found[0] for identity in found)
    assert len(classified) == 1


def test_a_new_connection_is_classified_again(pki: Pki, classified: list[Any]) -> None:
    first = client_identity(request_on(FakeSslObject(pki.idevid), pki.ctx), NOW)
    second = client_identity(request_on(FakeSslObject(pki.idevid), pki.ctx), NOW)
    assert first == second and first is not second
    assert len(classified) == 2


def test_the_entry_goes_with_the_connection(pki: Pki, classified: list[Any]) -> None:
    conn = FakeSslObject(pki.idevid)
    client_identity(request_on(conn, pki.ctx), NOW)
    assert len(common._CLASSIFIED) == 1
    del conn
    gc.collect()
    assert len(common._CLASSIFIED) == 0


def test_expiry_during_a_kept_connection_is_refused(pki: Pki, classified: list[Any]) -> None:
    conn = FakeSslObject(pki.idevid)
    end = pki.idevid.not_valid_after_utc
    assert client_identity(request_on(conn, pki.ctx), NOW).kind is ClientKind.IDEVID
    assert client_identity(request_on(conn, pki.ctx), end).kind is ClientKind.IDEVID
    for _ in range(2):  # refused each time, nothing of the refusal kept
        with pytest.raises(Expired):
            client_identity(request_on(conn, pki.ctx), end + timedelta(seconds=1))
    assert len(classified) == 3


def test_before_the_window_is_classified_again(pki: Pki, classified: list[Any]) -> None:
    conn = FakeSslObject(pki.idevid)
    client_identity(request_on(conn, pki.ctx), NOW)
    with pytest.raises(Expired):
        client_identity(request_on(conn, pki.ctx), NOW - timedelta(days=400))
    assert len(classified) == 2


def test_a_stranger_is_refused_on_every_request(pki: Pki, classified: list[Any]) -> None:
    conn = FakeSslObject(pki.stranger)
    for _ in range(3):
        with pytest.raises(UntrustedSigner):
            client_identity(request_on(conn, pki.ctx), NOW)
    assert len(classified) == 3
    assert len(common._CLASSIFIED) == 0


def test_no_certificate_is_refused(pki: Pki, classified: list[Any]) -> None:
    with pytest.raises(AccessDenied):
        client_identity(request_on(FakeSslObject(None), pki.ctx), NOW)


def test_another_certificate_on_the_connection_is_classified(
    pki: Pki, classified: list[Any]
) -> None:
    """A TLS 1.2 renegotiation may present another certificate on the same connection."""
    conn = FakeSslObject(pki.idevid)
    assert client_identity(request_on(conn, pki.ctx), NOW).serial == "SN-1"
    conn.cert = pki.stranger
    with pytest.raises(UntrustedSigner):
        client_identity(request_on(conn, pki.ctx), NOW)


def test_another_context_is_classified_again(pki: Pki, classified: list[Any]) -> None:
    """A reloaded registrar context (other manufacturer CAs) decides afresh."""
    conn = FakeSslObject(pki.idevid)
    client_identity(request_on(conn, pki.ctx), NOW)
    other = role.RegistrarContext(
        registrar=pki.ctx.registrar,
        domain_ca=pki.ctx.domain_ca,
        manufacturer_cas=(certs.make_ca("Other Vendor", now=NOW).cert,),
    )
    with pytest.raises(UntrustedSigner):
        client_identity(request_on(conn, other), NOW)


def test_an_idevid_naming_the_domain_ca_is_not_kept(pki: Pki) -> None:
    """Refused a domain path at one time, such a certificate might have one at another: its
    classification is not reused."""
    vendor = certs.make_ca("Domain CA", now=NOW)
    assert vendor.cert.subject == pki.ctx.domain_ca.cert.subject
    ctx = role.RegistrarContext(
        registrar=pki.ctx.registrar,
        domain_ca=pki.ctx.domain_ca,
        manufacturer_cas=(vendor.cert,),
    )
    csr = certs.make_csr(ec.generate_private_key(ec.SECP256R1()), serial="SN-2")
    idevid = certs.issue_from_csr(vendor, csr, subject=csr.subject, san=[], now=NOW)
    identity, window = role.classify_client(ctx, idevid, now=NOW)
    assert identity.kind is ClientKind.IDEVID and window is None


def test_the_window_is_the_validated_paths(pki: Pki) -> None:
    _, window = role.classify_client(pki.ctx, pki.idevid, now=NOW)
    assert window == (
        max(pki.idevid.not_valid_before_utc, pki.vendor.cert.not_valid_before_utc),
        pki.idevid.not_valid_after_utc,
    )
