"""What a registrar sends the MASA of a vendor folder (``zerotouch vendor init``), built with the
project's own roles: a new device's IDevID from the vendor CA, the pledge's voucher-request
signed with it (RFC 8995 §5.2), checked and wrapped by the registrar role of a fresh domain as
the registrar service does (§5.3, §5.5). Benchmarks use it to talk to a real MASA as a
registrar would, without the test suite's fixtures."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from zerotouch_plugin.artifacts import certs, cms
from zerotouch_plugin.artifacts.certs import Identity
from zerotouch_plugin.artifacts.voucher import Assertion, VoucherRequest, new_nonce
from zerotouch_plugin.roles import registrar as role
from zerotouch_plugin.services import certfiles

__all__ = ["registrar_request"]


def registrar_request(
    vendor: Path, *, serial: str = "BENCH-0001", now: datetime
) -> tuple[Identity, bytes]:
    """A registrar identity and its voucher-request (CMS) for a device of ``vendor``."""
    vendor_ca = certfiles.load_identity(vendor / "ca.pem", vendor / "ca.key")
    idevid = certs.issue_idevid(vendor_ca, serial, masa_url="https://127.0.0.1:9", now=now)
    domain_ca = certs.make_ca("Bench domain CA", now=now)
    registrar = certs.issue_registrar(domain_ca, "Bench registrar", hosts=["127.0.0.1"], now=now)
    pledge_request = VoucherRequest(
        created_on=now,
        assertion=Assertion.PROXIMITY,
        serial_number=serial,
        nonce=new_nonce(os.urandom(16)),
        proximity_registrar_cert=role.der(registrar.cert),
    )
    signed = cms.sign(pledge_request.to_json(), signer=idevid, now=now)
    ctx = role.RegistrarContext(registrar, domain_ca, (vendor_ca.cert,), auto_accept=True)
    pledge = role.check_voucher_request(ctx, signed, tls_cert=idevid.cert, rules=(), now=now)
    return registrar, role.build_registrar_request(ctx, pledge, now=now)
