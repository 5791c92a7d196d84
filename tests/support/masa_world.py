"""A manufacturer, a domain and a pledge, built with the project's own PKI code, for MASA tests.

Everything is created at ``NOW``; voucher-requests are CMS-signed exactly as a pledge and a
registrar would sign them (RFC 8995 §5.2, §5.5).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from zerotouch_plugin.artifacts import certs, cms
from zerotouch_plugin.artifacts.certs import Identity
from zerotouch_plugin.artifacts.voucher import Assertion, VoucherRequest

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SERIAL = "ZT-0001"
NONCE = base64.b64encode(b"0123456789abcdef").decode()
OTHER_NONCE = base64.b64encode(b"fedcba9876543210").decode()  # another pledge request's nonce
MASA_URL = "https://127.0.0.1:9443"


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


@dataclass
class Domain:
    """An owner's domain: its CA and a registrar certificate (id-kp-cmcRA)."""

    name: str
    now: datetime = NOW

    @cached_property
    def ca(self) -> Identity:
        return certs.make_ca(f"{self.name} domain CA", now=self.now)

    @cached_property
    def registrar(self) -> Identity:
        return certs.issue_registrar(
            self.ca, f"{self.name} registrar", hosts=["127.0.0.1"], now=self.now
        )

    @property
    def registrar_with_ca(self) -> Identity:
        """The registrar identity whose CMS carries the domain CA (RFC 8995 §5.5.2)."""
        reg = self.registrar
        return Identity(reg.cert, reg.key, (*reg.chain, self.ca.cert))


@dataclass
class World:
    now: datetime = NOW
    serial: str = SERIAL
    domains: dict[str, Domain] = field(default_factory=dict)

    @cached_property
    def vendor_ca(self) -> Identity:
        return certs.make_ca("Test Vendor CA", now=self.now)

    @cached_property
    def masa_signer(self) -> Identity:
        return certs.issue_masa_signer(self.vendor_ca, "Test MASA", now=self.now)

    @cached_property
    def masa_tls(self) -> Identity:
        return certs.issue_tls_server(
            self.vendor_ca, "Test MASA TLS", hosts=["127.0.0.1"], now=self.now
        )

    def idevid(self, serial: str | None = None) -> Identity:
        serial = serial or self.serial
        cache = self.__dict__.setdefault("_idevids", {})
        if serial not in cache:
            cache[serial] = certs.issue_idevid(
                self.vendor_ca, serial, masa_url=MASA_URL, now=self.now
            )
        return cache[serial]  # type: ignore[no-any-return]

    def domain(self, name: str = "alpha") -> Domain:
        if name not in self.domains:
            self.domains[name] = Domain(name, self.now)
        return self.domains[name]

    def pvr(
        self,
        *,
        serial: str | None = None,
        nonce: str | None = NONCE,
        proximity: x509.Certificate | None = None,
        idevid: Identity | None = None,
        omit_proximity: bool = False,
    ) -> bytes:
        """A pledge voucher-request signed with the IDevID (RFC 8995 §5.2)."""
        idevid = idevid or self.idevid(serial)
        prox = None if omit_proximity else der(proximity or self.domain().registrar.cert)
        request = VoucherRequest(
            created_on=self.now,
            assertion=Assertion.PROXIMITY,
            serial_number=serial or certs.serial_number_of(idevid.cert) or self.serial,
            nonce=nonce,
            proximity_registrar_cert=prox,
        )
        return cms.sign(request.to_json(), signer=idevid, now=self.now)

    def rvr(
        self,
        pvr: bytes | None,
        *,
        domain: str = "alpha",
        serial: str | None = None,
        nonce: str | None = NONCE,
        idevid_issuer: bytes | None = None,
        signer: Identity | None = None,
        include_ca: bool = True,
    ) -> bytes:
        """A registrar voucher-request (RFC 8995 §5.5) wrapping ``pvr``."""
        dom = self.domain(domain)
        request = VoucherRequest(
            created_on=self.now,
            assertion=Assertion.PROXIMITY,
            serial_number=serial or self.serial,
            nonce=nonce,
            idevid_issuer=idevid_issuer,
            prior_signed_voucher_request=pvr,
        )
        signer = signer or (dom.registrar_with_ca if include_ca else dom.registrar)
        return cms.sign(request.to_json(), signer=signer, now=self.now)

    def good_rvr(self, domain: str = "alpha", *, nonce: str = NONCE, **kwargs: object) -> bytes:
        reg = self.domain(domain).registrar.cert
        pvr = self.pvr(proximity=reg, nonce=nonce)
        return self.rvr(pvr, domain=domain, nonce=nonce, **kwargs)  # type: ignore[arg-type]
