"""The MASA walks the registrar's chain (RFC 8995 §5.5.2) with each request; whether one
certificate issued another is checked once per pair of exact certificates, and a certificate
of the issuer's name but another key is never taken, however often it comes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography import x509

from tests.support.cert_bags import cross_signed
from tests.support.masa_world import Domain
from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.roles import masa

NOW = datetime.now(UTC)


def test_the_registrar_chain_is_walked_with_each_signature_checked_once() -> None:
    domain = Domain("chain-once", NOW)
    registrar, ca = domain.registrar.cert, domain.ca.cert
    assert masa._issuer_chain(registrar, [ca]) == [registrar, ca]
    hits = masa._directly_issued.cache_info().hits
    assert masa._issuer_chain(registrar, [ca]) == [registrar, ca]
    assert masa._directly_issued.cache_info().hits == hits + 1


def test_an_impostor_of_the_issuers_name_is_refused_every_time() -> None:
    domain = Domain("chain-impostor", NOW)
    registrar, ca = domain.registrar.cert, domain.ca.cert
    impostor = certs.make_ca(f"{domain.name} domain CA", now=NOW).cert
    assert impostor.subject == ca.subject and impostor != ca
    for _ in range(2):
        assert masa._issuer_chain(registrar, [impostor]) == [registrar]
        assert masa._issuer_chain(registrar, [impostor, ca]) == [registrar, ca]


def test_a_bag_of_cross_signed_cas_gives_a_short_chain_without_repeats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The CMS certificates are the peer's choice: four CA keys of one name, each certified
    by every other, made the walk go round the cycle as long as the bag allowed."""
    leaf, bag = cross_signed("p256", 4, now=NOW)
    checks = 0
    real = masa._directly_issued

    def counted(child: x509.Certificate, parent: x509.Certificate) -> bool:
        nonlocal checks
        checks += 1
        return real(child, parent)

    monkeypatch.setattr(masa, "_directly_issued", counted)
    chain = masa._issuer_chain(leaf.cert, bag)
    assert len(chain) <= masa._MAX_CHAIN
    assert len({certs.der(cert) for cert in chain}) == len(chain)
    assert checks <= masa._MAX_CHAIN * len(bag)
