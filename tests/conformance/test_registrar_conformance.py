"""Other vendors' pledges and MASAs against the real registrar and MASA: the conformance suite,
registrar part.

The conformance suite plays *other implementations* against zerotouch's real processes, the
way a deployment mixing vendors meets them. Here the registrar under test is the real
``zerotouch registrar serve`` and the MASA the real ``zerotouch masa serve`` (run from a
vendor folder whose every certificate and key the OpenSSL CLI made,
``tests/support/interop_pki.py``). The other side is played with standard tools only:
pledges of another vendor whose IDevIDs (P-256, P-384, RSA-2048, Ed25519) ``openssl ca``
issued, whose voucher-requests ``openssl cms -sign`` signed, sent by ``curl`` over TLS with
the IDevID as client certificate after ``openssl s_client`` fetched the registrar's
certificate (provisional TLS, RFC 8995 §5.1); the RFC 8995 Appendix C pledge with its
published voucher-request; EST clients without a certificate; ``openssl req`` CSRs; and
another vendor's MASA (a small HTTPS server in this test, signing with ``openssl cms``) that
answers its audit log with the RFC 8995 §5.8.1 example verbatim.

``CASES`` is the one table: per case the interoperability item it guards, what the other
implementation does and what the registrar must give. Every registrar item has its
cases: 1 (nonces in every observed form, relayed verbatim), 6 (/cacerts without a client
certificate, everything else refused), 7 (401 with WWW-Authenticate, the Appendix C request
refused 401), 8 (the §5.8.1 example), 10 (a held nonceless voucher relayed while the MASA is
unreachable), 13 (LDevID names by policy), 14 (every management listener recorded).
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.support import interop_pki as ip
from tests.support.admin_openapi import check_admin_answer
from tests.support.processes import ServerProcess, free_port, run_cli, start_server
from tests.vectors.provenance import DATA
from zerotouch_plugin.artifacts import certs, cms
from zerotouch_plugin.artifacts.certs import Identity
from zerotouch_plugin.services import certfiles

VOUCHER_CMS = "application/voucher-cms+json"
DOMAIN = "devices.zerotouch.internal"  # registrar init's default device_domain
APPENDIX_C_NONCE = "-_XE9zK9q8Ll1qylMtLKeg"

# RFC 8995 §5.8.1 "Example of an Audit-Log Response", byte for byte as the RFC prints it.
RFC8995_AUDIT_LOG_EXAMPLE = (DATA / "examples/rfc8995-inline/example-auditlog.json").read_bytes()


# ---------------------------------------------------------------------------------------------
# the table


@dataclass(frozen=True)
class Case:
    """One conformance case: the ``item`` of the module docstring, what the other
    implementation ``plays``, what the registrar ``must_give``; ``run`` names the runner
    (``RUNNERS``), ``args`` its parameters."""

    item: str
    name: str
    plays: str
    must_give: str
    run: str
    args: tuple[Any, ...] = ()


VOUCHER_200 = "200 with a voucher from the real MASA whose nonce is the pledge's, byte for byte"
NO_CERT_ROUTES = (
    ("POST", "/.well-known/brski/requestvoucher"),
    ("POST", "/.well-known/brski/voucher_status"),
    ("POST", "/.well-known/brski/enrollstatus"),
    ("GET", "/.well-known/est/csrattrs"),
    ("POST", "/.well-known/est/simpleenroll"),
    ("POST", "/.well-known/est/simplereenroll"),
    ("GET", "/admin/devices"),
    ("PUT", "/admin/devices/X/voucher"),
    ("GET", "/no/such/path"),
)

CASES: tuple[Case, ...] = (
    *(
        Case("1", f"nonce-{n}-{sample.form}",
             f"P-256 pledge (openssl) with the nonce {sample.value!r} of {sample.source}",
             VOUCHER_200, "voucher", ("p256", sample.value, ip.OID_ANIMA_JSON_VOUCHER))
        for n, sample in enumerate(ip.NONCE_SAMPLES)
    ),
    *(
        Case("1", f"idevid-{kind}",
             f"{kind} IDevID (openssl), Appendix C's unpadded base64url nonce",
             VOUCHER_200, "voucher", (kind, APPENDIX_C_NONCE, ip.OID_ANIMA_JSON_VOUCHER))
        for kind in ("p384", "rsa2048")
    ),
    Case("1", "idevid-ed25519",
         "Ed25519 IDevID (openssl); its request signed by zerotouch's CMS code, since OpenSSL "
         "cannot sign CMS with Ed25519 (interop_pki.CmsUnsupported)",
         VOUCHER_200, "voucher", ("ed25519", APPENDIX_C_NONCE, ip.OID_ANIMA_JSON_VOUCHER)),
    Case("1", "id-data-content-type",
         "P-256 pledge signing as Appendix C does: eContentType id-data (openssl's default)",
         VOUCHER_200, "voucher", ("p256", APPENDIX_C_NONCE, None)),
    Case("7", "appendix-c-voucher-request-verbatim",
         "the RFC 8995 Appendix C pledge: its IDevID as TLS client, its published "
         "voucher-request (proximity-registrar-cert: the Appendix C registrar jrc)",
         "401 access-denied 'another registrar', WWW-Authenticate, Connection: close "
         "(RFC 8995 §5.3), nothing relayed", "appendix-c"),
    Case("6", "cacerts-without-certificate",
         "an EST client without a certificate: curl GET /cacerts, openssl s_client",
         "200 certs-only (openssl pkcs7 -print_certs: the domain CA); the handshake without "
         "a certificate completes (RFC 7030 §4.1.1)", "cacerts"),
    *(
        Case("6/7", f"no-certificate-{method}-{path.strip('/').replace('/', '-')}",
             f"a client without a certificate: {method} {path}",
             '401 with WWW-Authenticate: TLS-Client-Certificate realm="zerotouch registrar" '
             "and Connection: close (RFC 7235 §3.1, RFC 8995 §5.3)", "no-certificate",
             (method, path))
        for method, path in NO_CERT_ROUTES
    ),
    Case("8", "rfc8995-audit-log-example",
         "another vendor's MASA (P-384, openssl cms) issues the voucher and answers "
         "/requestauditlog with the RFC 8995 §5.8.1 example verbatim (counts as strings)",
         "audit verdict 'warning' counting 3 truncated events and the other domain",
         "audit-log"),
    Case("10", "escrowed-nonceless-voucher",
         "the owner imports a nonceless voucher the vendor signed with openssl cms; the "
         "pledge's MASA (its IDevID's MASA URL) does not answer",
         "200 with the held voucher byte for byte; the device record says 'escrow'",
         "escrow"),
    Case("13", "csr-with-foreign-subject-alt-names",
         "a pledge's openssl req CSR asking for localhost, 127.0.0.1, *.example.com and "
         "another device's name",
         f"an LDevID whose subjectAltName is only DNS:<serial>.{DOMAIN} "
         "(openssl x509 -ext subjectAltName)", "csr-names"),
    Case("14", "enrollstatus-with-netconf-ssh-port",
         "a device reporting netconf-tls-port, netconf-ssh-port and restconf-port in its "
         "enrollstatus reason-context",
         "all three in the management record (admin API, 'registrar devices --json')",
         "enrollstatus"),
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# the lab: real MASA and registrar processes, OpenSSL-made PKI


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


class OtherVendorsMasa:
    """Another vendor's MASA (HTTPS with its OpenSSL-made TLS certificate): vouchers signed
    with ``openssl cms -sign`` by its P-384 MASA key, pinning the requesting domain's CA, and
    the RFC 8995 §5.8.1 example as every audit log."""

    def __init__(self, vendor: ip.VendorPki, domain_ca: Path) -> None:
        self.vendor = vendor
        self.domain_ca = certfiles.load_cert_file(domain_ca)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(vendor.masa_tls.chain, vendor.masa_tls.key)
        masa = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                media, answer = masa.answer(self.path, body)
                self.send_response(200)
                self.send_header("Content-Type", media)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, path: str, body: bytes) -> tuple[str, bytes]:
        if path.endswith("/requestauditlog"):
            return "application/json", RFC8995_AUDIT_LOG_EXAMPLE
        rvr = json.loads(ip.openssl("cms", "-verify", "-noverify", "-inform", "DER", data=body))
        request = rvr["ietf-voucher-request:voucher"]
        voucher = {
            "ietf-voucher:voucher": {
                "created-on": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "assertion": "logged",
                "serial-number": request["serial-number"],
                "nonce": request["nonce"],
                "pinned-domain-cert": base64.b64encode(
                    self.domain_ca.public_bytes(Encoding.DER)
                ).decode(),
            }
        }
        signed = ip.cms_sign(voucher, self.vendor.masa, econtent_type=ip.OID_ANIMA_JSON_VOUCHER)
        return VOUCHER_CMS, signed

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Lab:
    root: Path
    vendor: ip.VendorPki  # P-256: its MASA is the real one
    other: ip.VendorPki  # P-384: its MASA is OtherVendorsMasa
    appendix_c: ip.AppendixC
    masa: ServerProcess
    registrar: ServerProcess
    other_masa: OtherVendorsMasa
    registrar_cert: x509.Certificate  # as openssl s_client received it
    dead_masa_url: str
    serials: int = 0

    @property
    def r(self) -> Path:
        return self.root / "R"

    @property
    def host_port(self) -> str:
        return self.registrar.url.removeprefix("https://")

    def serial(self, prefix: str = "OV") -> str:
        self.serials += 1
        return f"{prefix}-{self.serials:04d}"

    def curl(
        self,
        method: str,
        path: str,
        *,
        client: ip.Cert | None = None,
        data: bytes | None = None,
        media: str | None = None,
        admin: bool = False,
    ) -> Reply:
        """curl as a pledge (provisional TLS: -k, RFC 8995 §5.1, its IDevID as client),
        as an admin (the domain CA verified, the admin certificate) or with no certificate."""
        folder = self.root / "curl"
        folder.mkdir(exist_ok=True)
        out, head, sent = folder / "out", folder / "head", folder / "sent"
        cmd = ["curl", "-sS", "--noproxy", "*", "--max-time", "60", "-X", method,
               "-o", str(out), "-D", str(head), "-w", "%{http_code}"]  # fmt: skip
        if admin:
            a = self.root / "A"
            cmd += ["--cacert", str(self.r / "ca.pem"), "--cert", str(a / "cert.pem"),
                    "--key", str(a / "key.pem")]  # fmt: skip
        else:
            cmd += ["--cacert", str(self.r / "ca.pem")] if client is None else ["-k"]
        if client is not None:
            cmd += ["--cert", str(client.chain), "--key", str(client.key)]
        if data is not None:
            sent.write_bytes(data)
            cmd += ["--data-binary", f"@{sent}"]
        if media is not None:
            cmd += ["-H", f"Content-Type: {media}"]
        done = subprocess.run([*cmd, self.registrar.url + path], capture_output=True, timeout=90)
        assert done.returncode == 0, done.stderr.decode()
        headers = {}
        for line in head.read_text().splitlines()[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        reply = Reply(int(done.stdout), headers, out.read_bytes())
        if path.startswith("/admin/"):
            check_admin_answer(method, path, reply.status, headers.get("content-type"), reply.body)
        return reply

    def device(self, serial: str) -> dict[str, Any]:
        reply = self.curl("GET", f"/admin/devices/{serial}", admin=True)
        assert reply.status == 200, reply.body
        return json.loads(reply.body)  # type: ignore[no-any-return]


def s_client_certificate(host_port: str, *extra: str) -> tuple[x509.Certificate, str]:
    """The certificate the server presents, as ``openssl s_client`` (no client certificate
    unless ``extra`` gives one) receives it, and what s_client printed."""
    done = subprocess.run(
        ["openssl", "s_client", "-connect", host_port, "-showcerts", *extra],
        input=b"", capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    text = done.stdout.decode(errors="replace")
    assert done.returncode == 0, text + done.stderr.decode(errors="replace")
    return x509.load_pem_x509_certificates(done.stdout)[0], text


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if shutil.which("curl") is None:
        pytest.fail("curl is needed (scripts/setup-system.sh installs it)")
    root = tmp_path_factory.mktemp("registrar-conformance")
    vendor = ip.make_vendor_pki(root / "vendor", "p256", name="Other Vendor")
    other = ip.make_vendor_pki(root / "vendor-b", "p384", name="Third Vendor")
    appendix_c = ip.make_appendix_c(root / "appendix-c")
    masa_port = free_port()
    vendor.write_folder(root / "V", masa_url=f"https://127.0.0.1:{masa_port}")
    run_cli(
        "registrar", "init", "--dir", root / "R",
        "--manufacturer-ca", vendor.ca.cert, "--manufacturer-ca", other.ca.cert,
        "--manufacturer-ca", appendix_c.vendor.cert,
        "--masa-trust", vendor.ca.cert, "--masa-trust", other.ca.cert,
    )  # fmt: skip
    with (root / "R" / "registrar.toml").open("a") as fh:
        fh.write("retry_after = 1\nmasa_timeout = 5.0\n")
    run_cli("registrar", "issue-client-cert", "--dir", root / "R", "--name", "ops",
            "--admin", "--out", root / "A")  # fmt: skip
    masa = start_server("masa", "masa", "serve", "--dir", root / "V",
                        "--listen", f"127.0.0.1:{masa_port}")  # fmt: skip
    registrar = start_server("registrar", "registrar", "serve", "--dir", root / "R",
                             "--listen", "127.0.0.1:0", "--auto-accept")  # fmt: skip
    other_masa = OtherVendorsMasa(other, root / "R" / "ca.pem")
    try:
        registrar_cert, _ = s_client_certificate(registrar.url.removeprefix("https://"))
        yield Lab(
            root, vendor, other, appendix_c, masa, registrar, other_masa, registrar_cert,
            f"https://127.0.0.1:{free_port()}",
        )  # fmt: skip
    finally:
        other_masa.close()
        registrar.stop()
        masa.stop()


# ---------------------------------------------------------------------------------------------
# what the other implementations send


def pledge_request(lab: Lab, idevid: ip.Cert, serial: str, nonce: str) -> Mapping[str, Any]:
    """A pledge voucher-request (RFC 8995 §5.2) naming the certificate s_client received."""
    return {
        "ietf-voucher-request:voucher": {
            "created-on": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "assertion": "proximity",
            "serial-number": serial,
            "nonce": nonce,
            "proximity-registrar-cert": base64.b64encode(
                lab.registrar_cert.public_bytes(Encoding.DER)
            ).decode(),
        }
    }


def sign_request(payload: Mapping[str, Any], idevid: ip.Cert, econtent: str | None) -> bytes:
    """``openssl cms -sign`` by the IDevID; for Ed25519, which OpenSSL cannot sign CMS with,
    the project's CMS code with the same key and certificate."""
    if idevid.key_type != "ed25519":
        return ip.cms_sign(payload, idevid, econtent_type=econtent)
    identity = certfiles.load_identity(idevid.cert, idevid.key)
    text = json.dumps(payload, separators=(",", ":")).encode()
    return cms.sign(text, signer=Identity(identity.cert, identity.key, ()), now=datetime.now(UTC))


def voucher_for(
    lab: Lab,
    *,
    kind: str = "p256",
    nonce: str = APPENDIX_C_NONCE,
    vendor: ip.VendorPki | None = None,
    econtent: str | None = ip.OID_ANIMA_JSON_VOUCHER,
) -> tuple[str, ip.Cert, Reply]:
    """A foreign pledge asks for a voucher: (serial, IDevID, the registrar's answer)."""
    issuer = vendor or lab.vendor
    serial = lab.serial()
    url = lab.other_masa.url if issuer is lab.other else lab.masa.url
    idevid = issuer.idevid(serial, masa_url=url, key_type=kind)
    body = sign_request(pledge_request(lab, idevid, serial, nonce), idevid, econtent)
    reply = lab.curl(
        "POST", "/.well-known/brski/requestvoucher", client=idevid, data=body, media=VOUCHER_CMS
    )
    return serial, idevid, reply


def voucher_content(body: bytes, anchor: Path) -> bytes:
    """The voucher's JSON after ``openssl cms -verify`` against the manufacturer CA."""
    return ip.cms_verify(body, anchor)


def accepted_and_enrolled(lab: Lab, *, san: str | None = None) -> tuple[str, ip.Cert, Path]:
    """A pledge with a voucher, voucher_status true, then simpleenroll with an ``openssl
    req`` CSR (asking for ``san`` if given): (serial, IDevID, the LDevID PEM file)."""
    serial, idevid, reply = voucher_for(lab)
    assert reply.status == 200, reply.body
    status = lab.curl(
        "POST", "/.well-known/brski/voucher_status", client=idevid,
        data=b'{"version":1,"status":true}', media="application/json",
    )  # fmt: skip
    assert status.status == 200, status.body
    key = lab.root / f"{serial}-ldevid.key"
    extra = ["-addext", f"subjectAltName={san}"] if san else []
    csr = ip.openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-subj", f"/serialNumber={serial}", *extra, "-outform", "DER",
    )  # fmt: skip
    enrolled = lab.curl(
        "POST", "/.well-known/est/simpleenroll", client=idevid,
        data=base64.encodebytes(csr), media="application/pkcs10",
    )  # fmt: skip
    assert enrolled.status == 200, enrolled.body
    pem = ip.openssl("pkcs7", "-inform", "DER", "-print_certs",
                     data=base64.b64decode(enrolled.body))  # fmt: skip
    ldevid = lab.root / f"{serial}-ldevid.pem"
    ldevid.write_bytes(pem)
    return serial, idevid, ldevid


# ---------------------------------------------------------------------------------------------
# the runners


def run_voucher(lab: Lab, case: Case) -> None:
    kind, nonce, econtent = case.args
    serial, _, reply = voucher_for(lab, kind=kind, nonce=nonce, econtent=econtent)
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"] == VOUCHER_CMS
    content = voucher_content(reply.body, lab.vendor.ca.cert)
    assert f'"nonce":"{nonce}"'.encode() in content.replace(b" ", b""), content
    voucher = json.loads(content)["ietf-voucher:voucher"]
    assert (voucher["serial-number"], voucher["nonce"]) == (serial, nonce)
    [relayed] = lab.device(serial)["vouchers"]
    assert relayed["nonce"] == nonce and relayed["source"] == "masa"


def run_appendix_c(lab: Lab, case: Case) -> None:
    """The published request was signed with an earlier issue of the published IDevID (same
    key and subject, serial 226734041): that certificate, taken from the request, is the
    one this pledge presents, as the real one did (RFC 8995 §5.3: the TLS client signs)."""
    c = lab.appendix_c
    body = base64.b64decode(c.originals.pledge_request.read_bytes())
    signer = cms.inspect(cms.decode(body)).signer
    pem = lab.root / "appendix-c-idevid-as-signed.pem"
    pem.write_bytes(signer.public_bytes(Encoding.PEM))
    client = ip.Cert("appendix-c", pem, c.idevid.key, pem, pem, c.vendor.cert, "p256")
    reply = lab.curl(
        "POST", "/.well-known/brski/requestvoucher", client=client, data=body,
        media=VOUCHER_CMS,
    )  # fmt: skip
    assert reply.status == 401, reply.body
    assert reply.body.startswith(b"access-denied: ") and b"another registrar" in reply.body
    assert reply.headers["www-authenticate"] == 'TLS-Client-Certificate realm="zerotouch registrar"'
    assert reply.headers["connection"] == "close"
    record = lab.device(c.serial)["device"]
    assert record["state"] == "refused" and record["voucher_issued_at"] is None


def run_cacerts(lab: Lab, case: Case) -> None:
    reply = lab.curl("GET", "/.well-known/est/cacerts")
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"] == "application/pkcs7-mime; smime-type=certs-only"
    pem = ip.openssl("pkcs7", "-inform", "DER", "-print_certs",
                     data=base64.b64decode(reply.body))  # fmt: skip
    assert x509.load_pem_x509_certificates(pem) == certs.load_certs((lab.r / "ca.pem").read_bytes())
    cert, text = s_client_certificate(lab.host_port, "-CAfile", str(lab.r / "ca.pem"))
    assert cert == lab.registrar_cert
    assert "Verify return code: 0 (ok)" in text


def run_no_certificate(lab: Lab, case: Case) -> None:
    method, path = case.args
    reply = lab.curl(method, path, data=b"x" if method in ("POST", "PUT") else None)
    assert reply.status == 401, (case.name, reply.body)
    assert reply.headers["www-authenticate"] == 'TLS-Client-Certificate realm="zerotouch registrar"'
    assert reply.headers["connection"] == "close"
    assert reply.body.startswith(b"access-denied: ") and b"TLS client certificate" in reply.body


def run_audit_log(lab: Lab, case: Case) -> None:
    serial, idevid, reply = voucher_for(lab, kind="p384", vendor=lab.other)
    assert reply.status == 200, reply.body
    status = lab.curl(
        "POST", "/.well-known/brski/voucher_status", client=idevid,
        data=b'{"version":1,"status":true}', media="application/json",
    )  # fmt: skip
    assert status.status == 200, status.body
    record = lab.device(serial)["device"]
    assert record["audit_level"] == "warning", record
    assert record["audit_summary"] == (
        "claimed before by 1 other domain(s); the log has no entry for this domain; "
        "3 event(s) truncated by the MASA"
    ), record


def run_escrow(lab: Lab, case: Case) -> None:
    serial = lab.serial("ESC")
    idevid = lab.vendor.idevid(serial, masa_url=lab.dead_masa_url)
    now = datetime.now(UTC)
    voucher = {
        "ietf-voucher:voucher": {
            "created-on": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "expires-on": (now + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "assertion": "verified",
            "serial-number": serial,
            "pinned-domain-cert": base64.b64encode(
                certfiles.load_cert_file(lab.r / "ca.pem").public_bytes(Encoding.DER)
            ).decode(),
        }
    }
    held = ip.cms_sign(voucher, lab.vendor.masa, econtent_type=ip.OID_ANIMA_JSON_VOUCHER)
    put = lab.curl("PUT", f"/admin/devices/{serial}/voucher", data=held, media=VOUCHER_CMS,
                   admin=True)  # fmt: skip
    assert put.status == 200, put.body
    body = sign_request(pledge_request(lab, idevid, serial, "abcd1234"), idevid, None)
    reply = lab.curl(
        "POST", "/.well-known/brski/requestvoucher", client=idevid, data=body, media=VOUCHER_CMS
    )
    assert reply.status == 200, reply.body
    assert reply.body == held
    detail = lab.device(serial)
    assert detail["device"]["voucher_source"] == "escrow"
    assert detail["device"]["escrow"]["used_count"] == 1
    assert [v["source"] for v in detail["vouchers"]] == ["escrow"]


def run_csr_names(lab: Lab, case: Case) -> None:
    other = f"ov-0001.{DOMAIN}"
    asked = f"DNS:localhost,IP:127.0.0.1,DNS:*.example.com,DNS:{other}"
    serial, _, ldevid = accepted_and_enrolled(lab, san=asked)
    text = ip.openssl("x509", "-in", ldevid, "-noout", "-ext", "subjectAltName").decode()
    assert text.split("\n", 1)[1].strip() == f"DNS:{serial.lower()}.{DOMAIN}", text
    assert lab.device(serial)["device"]["dns_name"] == f"{serial.lower()}.{DOMAIN}"


def run_enrollstatus(lab: Lab, case: Case) -> None:
    serial, _, ldevid = accepted_and_enrolled(lab)
    ldevid_client = ip.Cert("ldevid", ldevid, lab.root / f"{serial}-ldevid.key", ldevid,
                            ldevid, lab.r / "ca.pem", "p256")  # fmt: skip
    ports = {"netconf-tls-port": 6513, "netconf-ssh-port": 830, "restconf-port": 8443}
    report = {"version": 1, "status": True, "reason": "ok",
              "reason-context": {"zerotouch-management": ports}}  # fmt: skip
    done = lab.curl(
        "POST", "/.well-known/brski/enrollstatus", client=ldevid_client,
        data=json.dumps(report).encode(), media="application/json",
    )  # fmt: skip
    assert done.status == 200, done.body
    management = lab.device(serial)["device"]["management"]
    assert (management["netconf_tls_port"], management["netconf_ssh_port"],
            management["restconf_port"]) == (6513, 830, 8443), management  # fmt: skip
    listed = json.loads(run_cli("registrar", "devices", "--dir", lab.r, "--json").stdout)
    [row] = [d for d in listed["devices"] if d["serial"] == serial]
    assert row["management"]["netconf_ssh_port"] == 830


RUNNERS: Mapping[str, Callable[[Lab, Case], None]] = {
    "voucher": run_voucher,
    "appendix-c": run_appendix_c,
    "cacerts": run_cacerts,
    "no-certificate": run_no_certificate,
    "audit-log": run_audit_log,
    "escrow": run_escrow,
    "csr-names": run_csr_names,
    "enrollstatus": run_enrollstatus,
}


def test_the_table_covers_every_registrar_item_of_issue_9() -> None:
    assert {c.item for c in CASES} >= {"1", "6", "6/7", "7", "8", "10", "13", "14"}
    assert {c.run for c in CASES} == set(RUNNERS)
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.item}-{c.name}" for c in CASES])
def test_registrar_conformance(lab: Lab, case: Case) -> None:
    RUNNERS[case.run](lab, case)
