"""identify_client skips the domain-CA path validation only for certificates that do not name
the domain CA as their issuer; one that names it but is signed by another key is refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.errors import UntrustedSigner
from zerotouch_plugin.roles import registrar as role
from zerotouch_plugin.roles.registrar import ClientKind

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def ctx() -> role.RegistrarContext:
    vendor = certs.make_ca("Vendor Root", now=NOW, organization="Vendor Inc")
    domain = certs.make_ca("Domain CA", now=NOW)
    return role.RegistrarContext(
        registrar=certs.issue_registrar(domain, "registrar", hosts=["127.0.0.1"], now=NOW),
        domain_ca=domain,
        manufacturer_cas=(vendor.cert,),
    )


def test_domain_issued_certificate_is_an_ldevid(ctx: role.RegistrarContext) -> None:
    csr = certs.make_csr(ec.generate_private_key(ec.SECP256R1()), serial="SN-7")
    ldevid = role.issue_ldevid(ctx, "SN-7", csr, now=NOW)
    found = role.identify_client(ctx, ldevid, now=NOW)
    assert (found.kind, found.serial) == (ClientKind.LDEVID, "SN-7")


def test_impostor_with_the_domain_ca_name_is_refused(ctx: role.RegistrarContext) -> None:
    impostor_ca = certs.make_ca("Domain CA", now=NOW)
    assert impostor_ca.cert.subject == ctx.domain_ca.cert.subject
    csr = certs.make_csr(ec.generate_private_key(ec.SECP256R1()), serial="SN-7")
    forged = certs.issue_from_csr(
        impostor_ca, csr, subject=csr.subject, san=[], now=NOW, server_auth=False
    )
    assert forged.issuer == ctx.domain_ca.cert.subject
    with pytest.raises(UntrustedSigner):
        role.identify_client(ctx, forged, now=NOW)
