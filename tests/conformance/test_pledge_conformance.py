"""Other vendors' registrars and MASAs against the real pledge: the conformance suite, pledge part.

The conformance suite plays other implementations against zerotouch's processes, the way
deployments will meet them. Here the pledge is the real ``zerotouch pledge enroll`` process
(its IDevID, manufacturer CA and every certificate made with the OpenSSL CLI by
``tests/support/interop_pki.py``), and the other side is a registrar this test runs in its
own event loop: real TLS with an OpenSSL-made registrar certificate, vouchers signed with
``openssl cms -sign`` by the other vendor's MASA key, EST answers made with ``openssl
crl2pkcs7`` and ``openssl x509 -req``. Its behaviour per case (202s, redirects, csrattrs
answers, voucher contents) is data. Other registrars are also played against the real MASA
(``zerotouch masa serve``), and the whole chain runs once with the real registrar and MASA
on OpenSSL-made PKI.

``CASES`` is the one table: for every pledge-side interoperability item below, what the
foreign registrar does and what the pledge must give (exit status, the text of its answer or log,
what the registrar recorded). Each item has its cases:

* 2: vouchers carrying idevid-issuer in each form (keyIdentifier per RFC 8366 §5.3, the
  AuthorityKeyIdentifier SEQUENCE, its extnValue OCTET STRING) are accepted, another
  vendor's is refused; the real MASA takes each form from a foreign registrar
  (``test_masa_takes_every_idevid_issuer_form``);
* 3: a registrar answering 202, 202, 200 sees three byte-identical voucher-requests;
* 4: a registrar certificate with EKU id-kp-cmcRA only (as Appendix C's), or serverAuth
  only, passes the pledge's verified TLS; clientAuth only is refused before the pledge
  sends anything over it; the real registrar with a cmcRA-only certificate enrolls the real
  pledge (``test_real_registrar_with_cmcra_only_certificate``);
* 5: csrattrs answered 404 or garbage gives a default CSR with a warning; a P-384 + SHA-384
  request (RFC 7030 §4.5.2's example), RSA-3072, Ed25519, subjectAltName and serialNumber
  are honoured in the CSR the registrar receives;
* 9 (redirects): one redirect to another origin is followed (the other registrar gets a
  voucher-request naming its own certificate), a second one is refused;
* 10 (pledge part): a nonceless voucher with a future expires-on is accepted with
  ``--allow-nonceless``, refused without it, refused when expired or without expires-on;
* vouchers signed by ``openssl cms -sign`` with and without the id-ct-animaJSONVoucher
  content type by MASAs of each key type OpenSSL can sign CMS with (P-256, P-384,
  RSA-2048; for Ed25519, whose CMS OpenSSL cannot make, the real MASA signs in the
  whole-chain test).
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.support import interop_pki as ip
from tests.support.device_process import start_device
from tests.support.masa_process import post
from tests.support.processes import run_cli_async, server
from zerotouch_plugin.artifacts import cms
from zerotouch_plugin.config import hash_password

SERIAL = "OV-PLEDGE-1"
RVR_SERIAL = "OV-MASA-1"
VOUCHER_PATH = "/.well-known/brski/requestvoucher"
EXPIRES_SOON = timedelta(minutes=20)  # RFC 8995 §5.6 expires-on: the RECOMMENDED lifetime


# ---------------------------------------------------------------------------------------------
# material: other vendors' PKIs, made with the OpenSSL CLI


@dataclass(frozen=True)
class Material:
    vendors: dict[str, ip.VendorPki]
    idevids: dict[str, ip.Cert]
    domain: ip.DomainPki
    other_domain: ip.DomainPki  # a domain no voucher here pins
    server_auth_only: ip.Cert
    client_auth_only: ip.Cert
    folder: Path


def _registrar_with_eku(domain: ip.DomainPki, name: str, eku: str, folder: Path) -> ip.Cert:
    """A registrar certificate of ``domain`` whose only EKU is ``eku`` (openssl x509 -req)."""
    key = folder / f"{name}.key"
    ip.openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key)
    csr = folder / f"{name}.csr"
    ip.openssl("req", "-new", "-key", key, "-subj", f"/O={domain.name}/CN={name}", "-out", csr)
    ext = folder / f"{name}.ext"
    ext.write_text(
        f"extendedKeyUsage = {eku}\nkeyUsage = critical, digitalSignature\n"
        "subjectAltName = IP:127.0.0.1, DNS:localhost\n"
    )
    cert = folder / f"{name}.pem"
    ip.openssl(
        "x509", "-req", "-in", csr, "-CA", domain.ca.cert, "-CAkey", domain.ca.key,
        "-set_serial", "0x5eed" + name.encode().hex()[:16], "-days", "30", "-extfile", ext,
        "-out", cert,
    )  # fmt: skip
    chain = folder / f"{name}.chain.pem"
    chain.write_bytes(cert.read_bytes())
    full = folder / f"{name}.full.pem"
    full.write_bytes(cert.read_bytes() + domain.ca.cert.read_bytes())
    return ip.Cert(name, cert, key, chain, full, domain.ca.cert, "p256")


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    folder = tmp_path_factory.mktemp("pledge-conformance")
    vendors = {kind: ip.make_vendor_pki(folder / kind, kind) for kind in ip.KEY_TYPES}
    idevids = {kind: vendor.idevid(SERIAL) for kind, vendor in vendors.items()}
    domain = ip.make_domain_pki(folder / "domain")
    return Material(
        vendors,
        idevids,
        domain,
        ip.make_domain_pki(folder / "other-domain", name="Other Owner"),
        _registrar_with_eku(domain, "registrar-serverauth-only", "serverAuth", folder),
        _registrar_with_eku(domain, "registrar-clientauth-only", "clientAuth", folder),
        folder,
    )


def pledge_folder(material: Material, kind: str, folder: Path) -> Path:
    """Folder P of a pledge of vendor ``kind``: its IDevID and the vendor CA as MASA anchor."""
    folder.mkdir(parents=True, exist_ok=True)
    idevid = material.idevids[kind]
    shutil.copyfile(idevid.chain, folder / "idevid.pem")
    shutil.copyfile(idevid.key, folder / "idevid.key")
    (folder / "idevid.key").chmod(0o600)
    shutil.copyfile(material.vendors[kind].ca.cert, folder / "masa-ca.pem")
    return folder


# ---------------------------------------------------------------------------------------------
# a registrar of another implementation, in the test's event loop


def _b64(der: bytes) -> str:
    return base64.b64encode(der).decode()


def _certs_only(*pems: Path) -> bytes:
    """A certs-only PKCS#7 made by OpenSSL, base64 as RFC 7030 §4.1.3 sends it."""
    args: list[str | Path] = ["crl2pkcs7", "-nocrl", "-outform", "DER"]
    for pem in pems:
        args += ["-certfile", pem]
    return base64.encodebytes(ip.openssl(*args))


@dataclass
class Behaviour:
    """What the foreign registrar does. ``voucher_statuses``: the answer to each
    requestvoucher in turn (the last repeats); ``redirect``: a URL (or a callable giving one)
    requestvoucher is sent to with 307; ``voucher``: changes to the voucher it signs (None
    value: leaf left out); ``econtent_type``: None is OpenSSL's id-data; ``csrattrs``:
    (status, body) or None for the registrar's default answer (404)."""

    voucher_statuses: tuple[int, ...] = (200,)
    redirect: str | Callable[[], str] | None = None
    voucher: dict[str, Any] = field(default_factory=dict)
    econtent_type: str | None = ip.OID_ANIMA_JSON_VOUCHER
    csrattrs: tuple[int, bytes] | None = None
    idevid_issuer: str | None = None  # a form of interop_pki.IdevidIssuerForms
    cacerts_redirect: str | None = None  # where GET cacerts is sent with 301


@dataclass
class Recorded:
    voucher_requests: list[bytes] = field(default_factory=list)
    voucher_status: list[dict[str, Any]] = field(default_factory=list)
    csrs: list[x509.CertificateSigningRequest] = field(default_factory=list)
    enrollstatus: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


class ForeignRegistrar:
    """BRSKI + EST over real TLS, every artifact made with the OpenSSL CLI."""

    def __init__(
        self, material: Material, kind: str, tls: ip.Cert, behaviour: Behaviour, work: Path
    ) -> None:
        self.material, self.kind, self.tls, self.behaviour = material, kind, tls, behaviour
        self.work = work
        self.recorded = Recorded()
        self.url = ""

    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.tls.chain, self.tls.key)
        ctx.load_verify_locations(cafile=str(self.material.vendors[self.kind].ca.cert))
        ctx.verify_mode = ssl.CERT_OPTIONAL  # the IDevID, as RFC 8995 §5.1 asks
        return ctx

    async def requestvoucher(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.recorded.voucher_requests.append(body)
        statuses = self.behaviour.voucher_statuses
        status = statuses[min(len(self.recorded.voucher_requests), len(statuses)) - 1]
        redirect = self.behaviour.redirect
        if redirect is not None:
            target = redirect() if callable(redirect) else redirect
            return web.Response(status=307, headers={"Location": target})
        if status != 200:
            return web.Response(
                status=status, text="pending approval", headers={"Retry-After": "1"}
            )
        pvr = json.loads(ip.openssl("cms", "-verify", "-binary", "-inform", "DER", "-noverify",
                                    data=body))["ietf-voucher-request:voucher"]  # fmt: skip
        voucher: dict[str, Any] = {
            "assertion": "logged",
            "created-on": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "serial-number": pvr["serial-number"],
            "nonce": pvr["nonce"],
            "pinned-domain-cert": _b64(self.material.domain.ca.der),
        }
        if self.behaviour.idevid_issuer is not None:
            forms = ip.idevid_issuer_forms(self.material.idevids[self.kind].cert)
            assert forms is not None
            voucher["idevid-issuer"] = _b64(getattr(forms, self.behaviour.idevid_issuer))
        for name, value in self.behaviour.voucher.items():
            if value is None:
                voucher.pop(name, None)
            else:
                voucher[name] = value
        signed = ip.cms_sign(
            {"ietf-voucher:voucher": voucher},
            self.material.vendors[self.kind].masa,
            econtent_type=self.behaviour.econtent_type,
        )
        return web.Response(body=signed, content_type=cms.MEDIA_TYPE_VOUCHER_CMS)

    async def voucher_status(self, request: web.Request) -> web.Response:
        self.recorded.voucher_status.append(await request.json())
        return web.Response(text="recorded")

    async def cacerts(self, request: web.Request) -> web.Response:
        if self.behaviour.cacerts_redirect is not None:
            return web.Response(status=301, headers={"Location": self.behaviour.cacerts_redirect})
        return web.Response(
            body=_certs_only(self.material.domain.ca.cert),
            headers={"Content-Type": "application/pkcs7-mime; smime-type=certs-only"},
        )

    async def csrattrs(self, request: web.Request) -> web.Response:
        if self.behaviour.csrattrs is None:
            return web.Response(status=404, text="no CSR attributes here")
        status, body = self.behaviour.csrattrs
        return web.Response(status=status, body=body, content_type="application/csrattrs")

    async def simpleenroll(self, request: web.Request) -> web.Response:
        der = base64.b64decode(await request.read())
        csr = x509.load_der_x509_csr(der)
        self.recorded.csrs.append(csr)
        csr_path = self.work / f"csr-{len(self.recorded.csrs)}.der"
        csr_path.write_bytes(der)
        ext = self.work / "ldevid.ext"
        ext.write_text("extendedKeyUsage = serverAuth, clientAuth\n")
        ldevid = self.work / f"ldevid-{len(self.recorded.csrs)}.pem"
        ca = self.material.domain.ca
        ip.openssl(
            "x509", "-req", "-inform", "DER", "-in", csr_path, "-CA", ca.cert, "-CAkey",
            ca.key, "-set_serial", f"0x{len(self.recorded.csrs) + 4096:x}", "-days", "30",
            "-extfile", ext, "-copy_extensions", "copy", "-out", ldevid,
        )  # fmt: skip
        return web.Response(
            body=_certs_only(ldevid),
            headers={"Content-Type": "application/pkcs7-mime; smime-type=certs-only"},
        )

    async def enrollstatus(self, request: web.Request) -> web.Response:
        self.recorded.enrollstatus.append(await request.json())
        return web.Response(text="recorded")

    @web.middleware
    async def _record_path(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        self.recorded.paths.append(request.path)
        response: web.StreamResponse = await handler(request)
        return response

    @asynccontextmanager
    async def running(self) -> AsyncIterator[ForeignRegistrar]:
        app = web.Application(middlewares=[self._record_path])
        app.router.add_post("/.well-known/brski/requestvoucher", self.requestvoucher)
        app.router.add_post("/.well-known/brski/voucher_status", self.voucher_status)
        app.router.add_get("/.well-known/est/cacerts", self.cacerts)
        app.router.add_get("/.well-known/est/csrattrs", self.csrattrs)
        app.router.add_post("/.well-known/est/simpleenroll", self.simpleenroll)
        app.router.add_post("/.well-known/brski/enrollstatus", self.enrollstatus)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self._ssl())
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"https://127.0.0.1:{port}"
        try:
            yield self
        finally:
            await runner.cleanup()


async def enroll(folder: Path, url: str, *extra: str) -> tuple[int, str]:
    """The real pledge, ``zerotouch pledge enroll``: its exit status and all it printed."""
    code, out, err = await run_cli_async(
        "pledge", "enroll", "--dir", folder, "--registrar", url, "--retries", "3",
        "--backoff", "0.2", "--max-backoff", "1", "--timeout", "15", *extra,
        timeout=120,
    )  # fmt: skip
    return code, out + err


# ---------------------------------------------------------------------------------------------
# the table


def _csrattrs(conf: str, tmp: Path) -> bytes:
    """A CsrAttrs body encoded by OpenSSL (``openssl asn1parse -genconf``), base64."""
    path, out = tmp / "csrattrs.cnf", tmp / "csrattrs.der"
    path.write_text(conf)
    ip.openssl("asn1parse", "-genconf", path, "-noout", "-out", out)
    return base64.encodebytes(out.read_bytes())


_ATTR = "asn1 = SEQUENCE:a\n[a]\n"
RFC7030_EXAMPLE = base64.b64decode(
    "MEEGCSqGSIb3DQEJBzASBgcqhkjOPQIBMQcGBSuBBAAiMBYGCSqGSIb3DQEJDjEJBgcrBgEBAQEWBggqhkjOPQQDAw=="
)
CSRATTRS_CONF = {
    "rsa3072": _ATTR + "k = SEQUENCE:r\ns = OID:sha384WithRSAEncryption\n[r]\n"
    "t = OID:rsaEncryption\nv = SET:n\n[n]\nn = INTEGER:3072\n",
    "ed25519": _ATTR + "e = OID:ED25519\n",
    "san-serial": _ATTR + "s = OID:serialNumber\nx = SEQUENCE:x\n[x]\nt = OID:extReq\n"
    "v = SET:e\n[e]\ne = SEQUENCE:exts\n[exts]\nsan = SEQUENCE:san\n[san]\n"
    "id = OID:subjectAltName\nv = OCTWRAP,SEQUENCE:names\n[names]\n"
    "d = IMPLICIT:2,IA5STRING:ov-pledge-1.devices.example\n",
}


def _key(csr: x509.CertificateSigningRequest) -> str:
    key = csr.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.curve.name
    if isinstance(key, rsa.RSAPublicKey):
        return f"rsa{key.key_size}"
    return "ed25519" if isinstance(key, ed25519.Ed25519PublicKey) else type(key).__name__


def _hash(csr: x509.CertificateSigningRequest) -> str | None:
    algorithm = csr.signature_hash_algorithm
    return algorithm.name if algorithm is not None else None


Check = Callable[[Recorded], None]


def _enrolled(rec: Recorded) -> None:
    assert rec.enrollstatus and rec.enrollstatus[-1]["status"] is True, rec.enrollstatus


def _csr(key: str, hash_name: str | None, san: list[str] | None = None) -> Check:
    def check(rec: Recorded) -> None:
        _enrolled(rec)
        (csr,) = rec.csrs
        assert (_key(csr), _hash(csr)) == (key, hash_name)
        if san is not None:
            names = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert names.get_values_for_type(x509.DNSName) == san
        serials = csr.subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)
        assert [a.value for a in serials] == [SERIAL]

    return check


def _identical_requests(count: int) -> Check:
    def check(rec: Recorded) -> None:
        _enrolled(rec)
        assert len(rec.voucher_requests) == count
        assert len(set(rec.voucher_requests)) == 1, "the pledge re-signed after a 202"

    return check


def _nothing_verified(rec: Recorded) -> None:
    """Refused before the voucher_status went out over verified TLS (§5.6.2)."""
    assert rec.voucher_requests and not rec.voucher_status and not rec.csrs, rec


def _voucher_refused(rec: Recorded) -> None:
    assert rec.voucher_status and rec.voucher_status[-1]["status"] is False, rec.voucher_status
    assert not rec.csrs


@dataclass(frozen=True)
class Case:
    """One foreign registrar's behaviour and what the real pledge must give."""

    name: str
    item: str  # the item of the module docstring's list
    behaviour: Behaviour = field(default_factory=Behaviour)
    kind: str = "p256"  # the vendor (MASA and IDevID key type)
    tls: str = "cmcra-only"  # the registrar's TLS certificate
    flags: tuple[str, ...] = ()
    exit: int = 0
    says: str = "enrolled OV-PLEDGE-1"  # in the pledge's output
    check: Check = _enrolled
    csrattrs_conf: str | None = None  # OpenSSL-encoded csrattrs answer


NONCELESS = {"nonce": None, "expires-on": "FUTURE"}
CASES = [
    # item 4: the registrar's TLS certificate after the voucher pins the domain
    Case("cmcra-only registrar", "4", tls="cmcra-only"),
    Case("serverAuth-only registrar", "4", tls="serverauth-only"),
    Case("clientAuth-only registrar refused", "4", tls="clientauth-only", exit=1,
         says="extendedKeyUsage does not allow registrar", check=_voucher_refused),
    # item 3
    Case("202, 202, 200 with identical requests", "3",
         Behaviour(voucher_statuses=(202, 202, 200)), check=_identical_requests(3)),
    # vouchers signed by other MASAs with openssl cms -sign
    *[
        Case(f"openssl cms voucher {kind} {'id-data' if content is None else 'animaJSON'}",
             "cms", Behaviour(econtent_type=content), kind=kind)
        for kind in ("p256", "p384", "rsa2048")
        for content in (None, ip.OID_ANIMA_JSON_VOUCHER)
    ],
    # item 2
    *[
        Case(f"idevid-issuer {form}", "2", Behaviour(idevid_issuer=form))
        for form in ("key_identifier", "aki_der", "extn_value")
    ],
    Case("idevid-issuer of another vendor refused", "2",
         Behaviour(voucher={"idevid-issuer": _b64(b"\x5a" * 20)}), exit=1,
         says="does not name the issuer of this device's IDevID", check=_voucher_refused),
    # item 5
    Case("csrattrs 404", "5", says="csrattrs answered 404", check=_csr("secp256r1", "sha256")),
    Case("csrattrs garbage", "5", Behaviour(csrattrs=(200, b"<html>nope</html>")),
         says="csrattrs answer ignored", check=_csr("secp256r1", "sha256")),
    Case("csrattrs RFC 7030 example: P-384, SHA-384", "5",
         Behaviour(csrattrs=(200, base64.encodebytes(RFC7030_EXAMPLE))),
         says="1.2.840.113549.1.9.7, which this pledge does not support",
         check=_csr("secp384r1", "sha384")),
    Case("csrattrs RSA-3072, SHA-384", "5", csrattrs_conf="rsa3072",
         check=_csr("rsa3072", "sha384")),
    Case("csrattrs Ed25519", "5", csrattrs_conf="ed25519", check=_csr("ed25519", None)),
    Case("csrattrs subjectAltName and serialNumber", "5", csrattrs_conf="san-serial",
         check=_csr("secp256r1", "sha256", ["ov-pledge-1.devices.example"])),
    # item 10
    Case("nonceless allowed", "10", Behaviour(voucher=NONCELESS), flags=("--allow-nonceless",)),
    Case("nonceless refused by default", "10", Behaviour(voucher=NONCELESS), exit=1,
         says="does not accept nonceless vouchers", check=_voucher_refused),
    Case("nonceless expired", "10", Behaviour(voucher={"nonce": None, "expires-on": "PAST"}),
         flags=("--allow-nonceless",), exit=1, says="expired", check=_voucher_refused),
    Case("nonceless without expires-on", "10", Behaviour(voucher={"nonce": None}),
         flags=("--allow-nonceless",), exit=1, says="neither a nonce nor an expires-on",
         check=_voucher_refused),
]  # fmt: skip

_WHEN = {
    "FUTURE": lambda: datetime.now(UTC) + EXPIRES_SOON,
    "PAST": lambda: datetime.now(UTC) - timedelta(minutes=1),
}


def _tls(material: Material, which: str) -> ip.Cert:
    return {
        "cmcra-only": material.domain.registrar_cmcra_only,
        "serverauth-only": material.server_auth_only,
        "clientauth-only": material.client_auth_only,
    }[which]


def _resolve(behaviour: Behaviour) -> Behaviour:
    """Times are taken when the case runs."""
    voucher = {
        name: (_WHEN[value]().strftime("%Y-%m-%dT%H:%M:%SZ") if value in _WHEN else value)
        for name, value in behaviour.voucher.items()
    }
    return Behaviour(
        behaviour.voucher_statuses,
        behaviour.redirect,
        voucher,
        behaviour.econtent_type,
        behaviour.csrattrs,
        behaviour.idevid_issuer,
        behaviour.cacerts_redirect,
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"item{c.item}:{c.name}")
async def test_foreign_registrar(case: Case, material: Material, tmp_path: Path) -> None:
    behaviour = _resolve(case.behaviour)
    if case.csrattrs_conf is not None:
        behaviour.csrattrs = (200, _csrattrs(CSRATTRS_CONF[case.csrattrs_conf], tmp_path))
    folder = pledge_folder(material, case.kind, tmp_path / "P")
    registrar = ForeignRegistrar(material, case.kind, _tls(material, case.tls), behaviour, tmp_path)
    async with registrar.running():
        code, output = await enroll(folder, registrar.url, *case.flags)
    assert code == case.exit, output
    assert case.says in output, output
    case.check(registrar.recorded)
    assert (folder / "ldevid.pem").exists() is (case.exit == 0)


# -- item 9: redirects (RFC 8995 §5.6: at most one, to another origin) ----------------------------


async def test_one_redirect_to_another_origin_is_followed(
    material: Material, tmp_path: Path
) -> None:
    folder = pledge_folder(material, "p256", tmp_path / "P")
    other = ForeignRegistrar(material, "p256", material.server_auth_only, Behaviour(), tmp_path)
    async with other.running():
        target = other.url + VOUCHER_PATH
        first = ForeignRegistrar(
            material, "p256", material.domain.registrar_cmcra_only, Behaviour(redirect=target),
            tmp_path,
        )  # fmt: skip
        async with first.running():
            code, output = await enroll(folder, first.url)
    assert code == 0, output
    assert len(first.recorded.voucher_requests) == 1 and first.recorded.paths == [
        "/.well-known/brski/requestvoucher"
    ]
    _enrolled(other.recorded)
    # the voucher-request the other registrar got names the other registrar's certificate
    (body,) = other.recorded.voucher_requests
    pvr = json.loads(ip.openssl("cms", "-verify", "-binary", "-inform", "DER", "-noverify",
                                data=body))["ietf-voucher-request:voucher"]  # fmt: skip
    assert base64.b64decode(pvr["proximity-registrar-cert"]) == material.server_auth_only.der
    assert body != first.recorded.voucher_requests[0]


async def test_a_second_redirect_is_refused(material: Material, tmp_path: Path) -> None:
    folder = pledge_folder(material, "p256", tmp_path / "P")
    cert = material.domain.registrar_cmcra_only
    third = ForeignRegistrar(material, "p256", cert, Behaviour(), tmp_path)
    async with third.running():
        to_third = Behaviour(redirect=third.url + VOUCHER_PATH)
        second = ForeignRegistrar(material, "p256", cert, to_third, tmp_path)
        async with second.running():
            to_second = Behaviour(redirect=second.url + VOUCHER_PATH)
            first = ForeignRegistrar(material, "p256", cert, to_second, tmp_path)
            async with first.running():
                code, output = await enroll(folder, first.url)
    assert code == 1, output
    assert "a pledge follows at most one (RFC 8995 §5.6)" in output
    assert not third.recorded.paths and len(second.recorded.voucher_requests) == 1


async def test_verified_redirect_to_an_unpinned_registrar_gets_nothing(
    material: Material, tmp_path: Path
) -> None:
    """After the voucher every connection is verified against the pin, a redirected one too:
    a server of another domain is refused inside the TLS handshake, before the request."""
    folder = pledge_folder(material, "p256", tmp_path / "P")
    stranger = ForeignRegistrar(
        material, "p256", material.other_domain.registrar, Behaviour(), tmp_path
    )
    async with stranger.running():
        moved = Behaviour(cacerts_redirect=stranger.url + "/.well-known/est/cacerts")
        first = ForeignRegistrar(
            material, "p256", material.domain.registrar_cmcra_only, moved, tmp_path
        )
        async with first.running():
            code, output = await enroll(folder, first.url)
    assert code == 1, output
    assert "does not validate the registrar certificate" in output, output
    assert stranger.recorded.paths == []  # not one HTTP request reached it
    assert first.recorded.voucher_status[-1]["status"] is True
    assert not (folder / "ldevid.pem").exists()


# -- item 2: other registrars against the real MASA -------------------------------------------


def _pvr_and_rvr(
    idevid: ip.Cert, registrar: ip.Cert, idevid_issuer: bytes | None, nonce: str
) -> bytes:
    """A foreign pledge's and registrar's requests, both signed with openssl cms -sign."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    pvr = ip.cms_sign(
        {"ietf-voucher-request:voucher": {
            "assertion": "proximity", "created-on": now, "serial-number": RVR_SERIAL,
            "nonce": nonce, "proximity-registrar-cert": _b64(registrar.der)}},
        idevid,
    )  # fmt: skip
    rvr: dict[str, Any] = {
        "assertion": "proximity", "created-on": now, "serial-number": RVR_SERIAL,
        "nonce": nonce, "prior-signed-voucher-request": _b64(pvr),
    }  # fmt: skip
    if idevid_issuer is not None:
        rvr["idevid-issuer"] = _b64(idevid_issuer)
    return ip.cms_sign(
        {"ietf-voucher-request:voucher": rvr}, registrar, include_root=True,
        econtent_type=ip.OID_ANIMA_JSON_VOUCHER,
    )  # fmt: skip


# a fresh nonce per request (the MASA refuses replays), in the forms captured pledges send
MASA_CASES = [
    ("key_identifier", "-_XE9zK9q8Ll1qylMtLKeg", 200),  # RFC 8995 Appendix C, base64url
    ("aki_der", "aMjgueKUT-22wVimj6z27Q", 200),
    ("extn_value", "OUtTbm9ZWmlSRWtHSzBjbQ==", 200),
    (None, "c2VjcmV0LW5vbmNlLTQ", 200),  # no idevid-issuer: it is optional (RFC 8366 §5.3)
    ("another vendor", "bm9uY2UtZm9yLWFub3RoZXI", 403),
]


async def test_masa_takes_every_idevid_issuer_form(material: Material, tmp_path: Path) -> None:
    vendor = material.vendors["p256"]
    folder = vendor.write_folder(tmp_path / "V", masa_url="https://127.0.0.1")
    idevid = vendor.idevid(RVR_SERIAL)
    forms = ip.idevid_issuer_forms(idevid.cert)
    other = ip.idevid_issuer_forms(material.idevids["p384"].cert)
    assert forms is not None and other is not None
    values = {name: getattr(forms, name) for name in ("key_identifier", "aki_der", "extn_value")}
    values["another vendor"] = other.key_identifier
    anchor = [vendor.ca.x509()]
    with server("masa", "masa", "serve", "--dir", folder, "--listen", "127.0.0.1:0") as masa:
        for form, nonce, expected in MASA_CASES:
            value = values[form] if form is not None else None
            body = _pvr_and_rvr(idevid, material.domain.registrar, value, nonce)
            status, _, answer = await post(masa.url, body, trust=anchor)  # type: ignore[arg-type]
            assert status == expected, (form, answer)
            if expected != 200:
                assert b"idevid-issuer does not match" in answer, answer
                continue
            voucher = json.loads(ip.cms_verify(answer, vendor.ca.cert))["ietf-voucher:voucher"]
            assert (voucher["serial-number"], voucher["nonce"]) == (RVR_SERIAL, nonce)


# -- item 4 and the Ed25519 vendor: the real registrar and MASA on OpenSSL-made PKI --------------


async def test_real_registrar_with_cmcra_only_certificate(
    material: Material, tmp_path: Path
) -> None:
    vendor = material.vendors["ed25519"]
    masa_folder = vendor.write_folder(tmp_path / "V", masa_url="https://127.0.0.1")
    with server("masa", "masa", "serve", "--dir", masa_folder, "--listen", "127.0.0.1:0") as masa:
        registrar_folder = ip.write_registrar_folder(
            tmp_path / "R", ca=material.domain.ca, registrar=material.domain.registrar_cmcra_only,
            manufacturer_cas=[vendor.ca.cert], masa_trust=[vendor.ca.cert], masa_url=masa.url,
            listen="127.0.0.1:0", auto_accept=True,
            # cmcRA alone cannot be a TLS client: the audit log is fetched with another
            # certificate of the domain
            masa_client=material.domain.registrar,
        )  # fmt: skip
        with server("registrar", "registrar", "serve", "--dir", registrar_folder) as registrar:
            folder = pledge_folder(material, "ed25519", tmp_path / "P")
            code, output = await enroll(folder, registrar.url)
    assert code == 0, output
    assert f"enrolled {SERIAL}" in output
    ldevid = x509.load_pem_x509_certificate((folder / "ldevid.pem").read_bytes())
    assert ldevid.issuer == material.domain.ca.x509().subject
    signed = cms.verify((folder / "voucher.cms").read_bytes(), trust_anchors=[vendor.ca.x509()],
                        now=datetime.now(UTC))  # fmt: skip
    assert signed.signer == vendor.masa.x509()


# -- item 10 in the device agent: device run --allow-nonceless, the state says so --------------

BOOTSTRAP_NS = "urn:zerotouch:params:xml:ns:yang:zerotouch-bootstrap"


def _voucher_state(port: int) -> dict[str, str]:
    """The voucher summary of zerotouch-bootstrap over NETCONF/SSH (ncclient)."""
    from ncclient import manager

    with manager.connect(
        host="127.0.0.1", port=port, username="admin", password="secret", hostkey_verify=False,
        allow_agent=False, look_for_keys=False, timeout=15,
    ) as m:  # fmt: skip
        reply = m.get(
            filter=("subtree", f'<bootstrap xmlns="{BOOTSTRAP_NS}"><voucher/></bootstrap>')
        )
    voucher = reply.data_ele.find(f"{{{BOOTSTRAP_NS}}}bootstrap/{{{BOOTSTRAP_NS}}}voucher")
    assert voucher is not None, reply.xml
    return {child.tag.split("}")[1]: str(child.text) for child in voucher}


@pytest.mark.parametrize("allowed", [True, False], ids=["allowed", "refused"])
async def test_device_agent_nonceless_voucher(
    material: Material, tmp_path: Path, allowed: bool
) -> None:
    folder = pledge_folder(material, "p256", tmp_path / "P")
    password = hash_password("secret", salt=b"fixed-test-salt!", iterations=1000)
    (folder / "device.toml").write_text(
        "bootstrap_retry_delay = 0.3\nbootstrap_max_delay = 1.0\nbootstrap_timeout = 10.0\n"
        f'bootstrap_rounds = 1\n[[users]]\nname = "admin"\npassword = "{password}"\n'
    )
    registrar = ForeignRegistrar(
        material, "p256", material.domain.registrar_cmcra_only,
        _resolve(Behaviour(voucher=NONCELESS)), tmp_path,
    )  # fmt: skip
    flags = ["--allow-nonceless"] if allowed else []
    async with registrar.running():
        device = await asyncio.to_thread(
            start_device, folder, {"netconf-ssh": "127.0.0.1:0"},
            extra=["--registrar", registrar.url, *flags], wait=["netconf-ssh"],
        )  # fmt: skip
        try:
            if allowed:
                assert await asyncio.to_thread(device.wait_for, "enrolled ") == f"enrolled {SERIAL}"
                state = await asyncio.to_thread(_voucher_state, device.ports["netconf-ssh"])
            else:
                await asyncio.to_thread(_wait_for_report, registrar.recorded)
        finally:
            await asyncio.to_thread(device.stop)
    if allowed:
        assert state["nonceless"] == "true" and "nonce" not in state, state
        assert state["expires-on"].startswith(str(datetime.now(UTC).year)), state
        _enrolled(registrar.recorded)
    else:
        report = registrar.recorded.voucher_status[-1]
        assert report["status"] is False and "does not accept nonceless" in report["reason"]
        assert not (folder / "ldevid.pem").exists()


def _wait_for_report(recorded: Recorded, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not recorded.voucher_status:
        assert time.monotonic() < deadline, "no voucher_status arrived"
        time.sleep(0.2)


def test_every_item_has_its_case() -> None:
    assert {case.item for case in CASES} == {"2", "3", "4", "5", "10", "cms"}
    for item in ("2", "3", "4", "5", "10"):
        assert any(case.exit == 0 for case in CASES if case.item == item), item
