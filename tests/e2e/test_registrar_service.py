"""The registrar as a real process over real TLS on 127.0.0.1, driven by curl and openssl.

A real MASA process (``zerotouch masa serve``) answers the registrar; the pledge side is
played by curl with the IDevID as client certificate and voucher-requests signed with the
project's CMS code. EST endpoints are exercised exactly as RFC 7030 clients would: base64
bodies, ``openssl req`` CSRs, ``openssl pkcs7 -print_certs`` on the responses.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.name import _ASN1Type

from tests.support.admin_openapi import check_admin_answer
from zerotouch_plugin.artifacts import certs, cms
from zerotouch_plugin.artifacts.voucher import Assertion, Tolerance, Voucher, VoucherRequest
from zerotouch_plugin.cli import main
from zerotouch_plugin.services import certfiles
from zerotouch_plugin.services.registrar import ROUTES

ZT = [sys.executable, "-m", "zerotouch_plugin"]
VOUCHER_CMS = "application/voucher-cms+json"
NONCE = base64.b64encode(b"e2e-registrar-nonce").decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def zt(*args: str | Path) -> str:
    """A one-shot CLI command, run in this process (servers run as real processes)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in args])
    assert status == 0, err.getvalue()
    return out.getvalue()


@dataclass
class Service:
    """A ``zerotouch ... serve`` process; ``url`` comes from its 'listening' line."""

    args: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        if self.proc is not None:
            return
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(
                [*ZT, *self.args], stdout=subprocess.PIPE, stderr=err, start_new_session=True
            )

    def wait_ready(self) -> None:
        if self.url:
            return
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        match = re.search(r"listening \S+ (https://\S+)", line)
        assert match, f"no 'listening' line from {self.args}: {line!r} {self.log.read_text()}"
        self.url = match.group(1)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=20) == 0, self.log.read_text()
        self.proc = None
        self.url = ""


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class World:
    root: Path
    masa: Service
    masa_url: str
    registrar: Service

    @property
    def r(self) -> Path:
        return self.root / "R"

    def pledge(self, serial: str, vendor: str = "V") -> Path:
        """A pledge folder with an IDevID from ``vendor`` (issued in-process: fast)."""
        folder = self.root / f"P-{serial}"
        if not (folder / "idevid.pem").exists():
            ca = certfiles.load_identity(
                self.root / vendor / "ca.pem", self.root / vendor / "ca.key"
            )
            idevid = certs.issue_idevid(ca, serial, masa_url=self.masa_url, now=datetime.now(UTC))
            folder.mkdir()
            certfiles.write_certs(folder / "idevid.pem", [idevid.cert, ca.cert])
            certfiles.write_key(folder / "idevid.key", idevid.key)
        return folder

    def allow(self, serial: str) -> None:
        assert self.admin(f"/admin/devices/{serial}/allow", method="POST").status == 200

    def curl(
        self,
        path: str,
        *,
        client: tuple[Path, Path] | None,
        data: bytes | None = None,
        content_type: str | None = None,
        method: str | None = None,
        base: str | None = None,
        cacert: Path | None = None,
        accept: str | None = None,
    ) -> Reply:
        out, hdr, body = (self.root / n for n in ("curl.out", "curl.hdr", "curl.body"))
        cmd = [
            "curl",
            "-sS",
            "--noproxy",
            "*",
            "--max-time",
            "30",
            "--cacert",
            str(cacert or self.r / "ca.pem"),
            *(["--cert", str(client[0]), "--key", str(client[1])] if client else []),
            "-o",
            str(out),
            "-D",
            str(hdr),
            "-w",
            "%{http_code}",
        ]
        if data is not None:
            body.write_bytes(data)
            cmd += ["--data-binary", f"@{body}"]
        if content_type is not None:
            cmd += ["-H", f"Content-Type: {content_type}"]
        if method is not None:
            cmd += ["-X", method]
        if accept is not None:
            cmd += ["-H", f"Accept: {accept}"]
        done = subprocess.run(
            [*cmd, (base or self.registrar.url) + path], capture_output=True, timeout=60
        )
        if done.returncode != 0:
            return Reply(0, {}, done.stderr)
        headers = {}
        for line in hdr.read_text().splitlines()[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        reply = Reply(int(done.stdout), headers, out.read_bytes())
        if path.startswith("/admin/") or path == "/metrics":
            verb = method or ("POST" if data is not None else "GET")
            check_admin_answer(verb, path, reply.status, headers.get("content-type"), reply.body)
        return reply

    def admin(self, path: str, **kw: object) -> Reply:
        a = self.root / "A"
        return self.curl(path, client=(a / "cert.pem", a / "key.pem"), **kw)  # type: ignore[arg-type]

    def device(self, serial: str) -> dict[str, object]:
        reply = self.admin(f"/admin/devices/{serial}")
        assert reply.status == 200, reply.body
        return json.loads(reply.body)  # type: ignore[no-any-return]


def idevid_of(pledge: Path) -> tuple[Path, Path]:
    return pledge / "idevid.pem", pledge / "idevid.key"


def voucher_request(
    world: World,
    pledge: Path,
    *,
    nonce: str | None = NONCE,
    proximity: Path | None = None,
    serial: str | None = None,
) -> bytes:
    """A pledge voucher-request (RFC 8995 §5.2) signed with the IDevID; the nonce in any form
    other pledges send (opaque), ``proximity`` the registrar certificate it names, ``serial``
    its serial-number if not the IDevID's."""
    identity = certfiles.load_identity(*idevid_of(pledge))
    registrar = certfiles.load_cert_file(proximity or world.r / "registrar.pem")
    request = VoucherRequest(
        serial_number=serial or certs.serial_number_of(identity.cert) or "",
        created_on=datetime.now(UTC),
        assertion=Assertion.PROXIMITY,
        nonce=nonce,
        proximity_registrar_cert=registrar.public_bytes(Encoding.DER),
        tolerances=frozenset({Tolerance.OPAQUE_NONCE}),
    )
    return cms.sign(request.to_json(), signer=identity, now=datetime.now(UTC))


def openssl(*args: str | Path, data: bytes | None = None) -> bytes:
    done = subprocess.run(
        ["openssl", *map(str, args)], input=data, capture_output=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def csr_body(
    world: World, name: str, subject: str, *extra: str, newkey: tuple[str, ...] = ()
) -> tuple[bytes, Path]:
    """A CSR made by ``openssl req`` (``extra``: e.g. ``-addext``; ``newkey``: the key
    options, default EC P-256), base64 DER as RFC 7030 §4.2.1 sends it."""
    key = world.root / f"{name}.key"
    der = openssl(
        "req",
        "-new",
        *(newkey or ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")),
        "-nodes",
        "-keyout",
        key,
        "-subj",
        subject,
        *extra,
        "-outform",
        "DER",
    )
    return base64.encodebytes(der), key


def certs_only(body: bytes) -> list[x509.Certificate]:
    pem = openssl("pkcs7", "-inform", "DER", "-print_certs", data=base64.b64decode(body))
    return x509.load_pem_x509_certificates(pem)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("registrar-e2e")
    masa_port = free_port()
    zt("vendor", "init", "--dir", root / "V", "--masa-url", f"https://127.0.0.1:{masa_port}")
    foreign = certs.make_ca("Foreign Vendor CA", now=datetime.now(UTC))
    (root / "V2").mkdir()
    certfiles.write_certs(root / "V2" / "ca.pem", [foreign.cert])
    certfiles.write_key(root / "V2" / "ca.key", foreign.key)
    zt(
        "registrar",
        "init",
        "--dir",
        root / "R",
        "--manufacturer-ca",
        root / "V" / "ca.pem",
        "--masa-trust",
        root / "V" / "ca.pem",
    )
    zt(
        "registrar",
        "issue-client-cert",
        "--dir",
        root / "R",
        "--name",
        "ops",
        "--out",
        root / "A",
        "--admin",
    )
    domain = certfiles.load_identity(root / "R" / "ca.pem", root / "R" / "ca.key")
    nms = certs.issue_client(domain, "nms", now=datetime.now(UTC))
    (root / "N").mkdir()
    certfiles.write_certs(root / "N" / "cert.pem", [nms.cert])
    certfiles.write_key(root / "N" / "key.pem", nms.key)
    masa = Service(
        ["masa", "serve", "--dir", str(root / "V"), "--listen", f"127.0.0.1:{masa_port}"],
        root / "masa.log",
    )
    registrar = Service(
        ["registrar", "serve", "--dir", str(root / "R"), "--listen", "127.0.0.1:0"],
        root / "registrar.log",
    )
    registrar.start()
    w = World(root, masa, f"https://127.0.0.1:{masa_port}", registrar)
    try:
        yield w
    finally:
        registrar.stop()
        masa.stop()


def bootstrap_voucher(world: World, serial: str) -> tuple[Path, Reply]:
    world.masa.start()
    pledge = world.pledge(serial)
    world.allow(serial)
    reply = world.curl(
        "/.well-known/brski/requestvoucher",
        client=idevid_of(pledge),
        data=voucher_request(world, pledge),
        content_type=VOUCHER_CMS,
    )
    return pledge, reply


# -- EST with curl and openssl ----------------------------------------------------------------


def test_cacerts_with_curl_and_openssl(world: World) -> None:
    reply = world.admin("/.well-known/est/cacerts")
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/pkcs7-mime; smime-type=certs-only"
    assert certs_only(reply.body) == certs.load_certs((world.r / "ca.pem").read_bytes())


def test_cacerts_with_openssl_s_client(world: World) -> None:
    """``openssl s_client`` as the EST client (mutual TLS with a domain certificate)."""
    a = world.root / "A"
    host_port = world.registrar.url.removeprefix("https://")
    request = f"GET /.well-known/est/cacerts HTTP/1.1\r\nHost: {host_port}\r\n"
    request += "Connection: close\r\n\r\n"
    answer = openssl(
        "s_client", "-quiet", "-connect", host_port, "-CAfile", world.r / "ca.pem",
        "-verify_return_error", "-cert", a / "cert.pem", "-key", a / "key.pem",
        data=request.encode(),
    )  # fmt: skip
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert b"application/pkcs7-mime; smime-type=certs-only" in head
    assert certs_only(body) == certs.load_certs((world.r / "ca.pem").read_bytes())


def test_cacerts_without_a_client_certificate(world: World) -> None:
    """RFC 7030 §4.1.1: /cacerts SHOULD NOT need a client certificate: curl
    without --cert gets the domain CA, which ``openssl pkcs7 -print_certs`` reads, and the
    handshake without a certificate completes (``openssl s_client``)."""
    reply = world.curl("/.well-known/est/cacerts", client=None)
    assert reply.status == 200, reply.body
    assert certs_only(reply.body) == certs.load_certs((world.r / "ca.pem").read_bytes())
    host_port = world.registrar.url.removeprefix("https://")
    request = f"GET /.well-known/est/cacerts HTTP/1.1\r\nHost: {host_port}\r\n"
    request += "Connection: close\r\n\r\n"
    answer = openssl(
        "s_client", "-quiet", "-connect", host_port, "-CAfile", world.r / "ca.pem",
        "-verify_return_error", data=request.encode(),
    )  # fmt: skip
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert certs_only(body) == certs.load_certs((world.r / "ca.pem").read_bytes())


def test_every_other_endpoint_needs_a_client_certificate(world: World) -> None:
    """Fail closed: every route of the table but /cacerts, and a path no route has, answers
    401 with a WWW-Authenticate challenge (RFC 7235 §3.1) and closes the connection."""
    routes = [(r.method, r.path) for r in ROUTES if not r.anonymous]
    assert ("POST", "/.well-known/brski/requestvoucher") in routes and len(routes) > 15
    for method, path in [*routes, ("GET", "/no/such/path"), ("POST", "/.well-known/est/cacerts")]:
        reply = world.curl(
            path.replace("{serial}", "SN-X"),
            client=None,
            method=method,
            data=b"x" if method in ("POST", "PUT") else None,
        )
        assert reply.status == 401, (method, path, reply.body)
        assert reply.headers["www-authenticate"] == (
            'TLS-Client-Certificate realm="zerotouch registrar"'
        ), (method, path)
        assert reply.headers["connection"] == "close", (method, path)
        assert b"needs a TLS client certificate" in reply.body, (method, path)


def test_admin_api_still_needs_an_admin_certificate(world: World) -> None:
    """A certificate the TLS layer accepts is not enough for the admin API: an NMS client of
    the domain CA is refused 403, no certificate 401."""
    nms = (world.root / "N" / "cert.pem", world.root / "N" / "key.pem")
    assert world.curl("/admin/devices", client=nms).status == 403
    assert world.curl("/admin/devices", client=None).status == 401
    assert world.admin("/admin/devices").status == 200


def test_csrattrs_with_curl(world: World) -> None:
    reply = world.admin("/.well-known/est/csrattrs")
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/csrattrs"
    dump = openssl("asn1parse", "-inform", "DER", data=base64.b64decode(reply.body)).decode()
    assert "ecdsa-with-SHA256" in dump


# -- the whole registrar flow -----------------------------------------------------------------


def test_voucher_status_audit_enroll_reenroll(world: World) -> None:
    pledge, reply = bootstrap_voucher(world, "E2E-OK")
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"] == VOUCHER_CMS
    # the relayed voucher verifies with openssl against the manufacturer CA
    (world.root / "voucher.der").write_bytes(reply.body)
    content = openssl(
        "cms",
        "-verify",
        "-inform",
        "DER",
        "-in",
        world.root / "voucher.der",
        "-CAfile",
        world.root / "V" / "ca.pem",
        "-purpose",
        "any",
    )
    voucher = Voucher.from_json(content)
    assert (voucher.serial_number, voucher.nonce) == ("E2E-OK", NONCE)
    assert voucher.pinned_domain_cert == certfiles.load_cert_file(world.r / "ca.pem").public_bytes(
        Encoding.DER
    )
    status = world.curl(
        "/.well-known/brski/voucher_status",
        client=idevid_of(pledge),
        data=b'{"version": 1, "status": true}',
        content_type="application/json",
    )
    assert status.status == 200, status.body
    record = world.device("E2E-OK")["device"]
    assert isinstance(record, dict)
    assert record["state"] == "voucher-accepted" and record["voucher_accepted"] is True
    assert record["audit_level"] == "clean", record

    body, key = csr_body(world, "ldevid", "/serialNumber=E2E-OK/CN=ignored")
    enrolled = world.curl(
        "/.well-known/est/simpleenroll",
        client=idevid_of(pledge),
        data=body,
        content_type="application/pkcs10",
    )
    assert enrolled.status == 200, enrolled.body
    assert enrolled.headers["content-type"] == "application/pkcs7-mime; smime-type=certs-only"
    (ldevid,) = certs_only(enrolled.body)
    assert certs.serial_number_of(ldevid) == "E2E-OK"
    ldevid_pem = world.root / "ldevid.pem"
    ldevid_pem.write_bytes(ldevid.public_bytes(Encoding.PEM))
    assert b"OK" in openssl("verify", "-CAfile", world.r / "ca.pem", ldevid_pem)

    huge = world.curl(  # more digits than Python's int() takes: 400, not 500
        "/.well-known/brski/enrollstatus",
        client=idevid_of(pledge),
        data=b'{"version": 1, "status": true, "reason-context": {"zerotouch-management": '
        + b'{"netconf-tls-port": ' + b"9" * 5000 + b"}}}",
        content_type="application/json",
    )  # fmt: skip
    assert huge.status == 400 and b"not JSON" in huge.body, huge
    # ports that are no TCP port are ignored with a log line; the TCP peer is still recorded
    bad_ports = b'{"netconf-tls-port": 70000, "restconf-port": "8443"}'
    done = world.curl(
        "/.well-known/brski/enrollstatus",
        client=idevid_of(pledge),
        data=b'{"version": 1, "status": true, "reason": "installed", '
        + b'"reason-context": {"zerotouch-management": ' + bad_ports + b"}}",
        content_type="application/json",
    )  # fmt: skip
    assert done.status == 200
    table = json.loads(zt("registrar", "devices", "--dir", world.r, "--json"))
    (row,) = [d for d in table["devices"] if d["serial"] == "E2E-OK"]
    assert row["state"] == "enroll-confirmed" and row["enroll_confirmed"] is True
    management = row["management"]
    assert management["host"] == "127.0.0.1" and management["address"] is None, management
    assert (management["netconf_tls_port"], management["restconf_port"]) == (None, None)
    registrar_log = (world.root / "registrar.log").read_text()
    for name in ("netconf-tls-port", "restconf-port"):
        assert f"E2E-OK: reason-context.zerotouch-management.{name} ignored" in registrar_log
    assert "E2E-OK" in zt("registrar", "devices", "--dir", world.r)

    # re-enrollment with the LDevID as client certificate (RFC 7030 §4.2.2)
    body, _ = csr_body(world, "ldevid2", "/serialNumber=E2E-OK")
    again = world.curl(
        "/.well-known/est/simplereenroll",
        client=(ldevid_pem, key),
        data=body,
        content_type="application/pkcs10",
    )
    assert again.status == 200, again.body
    (renewed,) = certs_only(again.body)
    assert renewed.serial_number != ldevid.serial_number
    assert renewed.subject == ldevid.subject


def accepted_voucher(world: World, serial: str) -> Path:
    """A pledge whose voucher was relayed and accepted (voucher_status true): may enroll."""
    pledge, reply = bootstrap_voucher(world, serial)
    assert reply.status == 200, reply.body
    status = world.curl(
        "/.well-known/brski/voucher_status",
        client=idevid_of(pledge),
        data=b'{"version": 1, "status": true}',
        content_type="application/json",
    )
    assert status.status == 200, status.body
    return pledge


def simple_enroll(
    world: World, pledge: Path, csr: bytes, name: str
) -> tuple[x509.Certificate, Path]:
    """The LDevID that simpleenroll gives ``pledge`` for ``csr``, and the file it is kept in."""
    enrolled = world.curl(
        "/.well-known/est/simpleenroll", client=idevid_of(pledge), data=csr,
        content_type="application/pkcs10",
    )  # fmt: skip
    assert enrolled.status == 200, enrolled.body
    (ldevid,) = certs_only(enrolled.body)
    pem = world.root / f"{name}.pem"
    pem.write_bytes(ldevid.public_bytes(Encoding.PEM))
    return ldevid, pem


def twin_of(world: World, serial: str) -> Path:
    """Another IDevID with the same serialNumber (another key): what a second manufacturer
    the registrar trusts could have issued."""
    folder = world.root / f"twin-{serial}"
    ca = certfiles.load_identity(world.root / "V" / "ca.pem", world.root / "V" / "ca.key")
    idevid = certs.issue_idevid(ca, serial, masa_url=world.masa_url, now=datetime.now(UTC))
    folder.mkdir()
    certfiles.write_certs(folder / "idevid.pem", [idevid.cert, ca.cert])
    certfiles.write_key(folder / "idevid.key", idevid.key)
    return folder


def test_status_reports_come_only_from_the_idevid_or_ldevid_of_the_device(world: World) -> None:
    """RFC 8995 §5.7, §5.9.4: the serialNumber alone names no device. Another IDevID with the
    same serial is refused 403 on voucher_status and enrollstatus and records nothing; the
    genuine pledge then reports and enrolls; its LDevID reports until it is revoked."""
    pledge, reply = bootstrap_voucher(world, "E2E-TWIN")
    assert reply.status == 200, reply.body
    twin = twin_of(world, "E2E-TWIN")
    for path, body in (
        ("/.well-known/brski/voucher_status", b'{"version": 1, "status": false, "reason": "x"}'),
        ("/.well-known/brski/enrollstatus", b'{"version": 1, "status": true}'),
    ):
        refused = world.curl(
            path, client=idevid_of(twin), data=body, content_type="application/json"
        )
        assert refused.status == 403, refused
        assert refused.body.startswith(b"bad-certificate: this IDevID is not the one"), refused
    shown = world.device("E2E-TWIN")
    record = shown["device"]
    assert isinstance(record, dict)
    assert (record["state"], record["voucher_accepted"], record["management"]) == (
        "voucher-issued",
        None,
        None,
    ), record
    assert shown["status_reports"] == []
    ok = b'{"version": 1, "status": true}'
    accepted = world.curl(
        "/.well-known/brski/voucher_status", client=idevid_of(pledge), data=ok,
        content_type="application/json",
    )  # fmt: skip
    assert accepted.status == 200, accepted.body
    body, key = csr_body(world, "twin-ldevid", "/serialNumber=E2E-TWIN")
    ldevid, pem = simple_enroll(world, pledge, body, "twin-ldevid")

    def enrollstatus() -> Reply:
        return world.curl(
            "/.well-known/brski/enrollstatus", client=(pem, key), data=ok,
            content_type="application/json",
        )  # fmt: skip

    assert enrollstatus().status == 200
    assert world.device("E2E-TWIN")["device"]["state"] == "enroll-confirmed"  # type: ignore[index]
    fingerprint = certs.fingerprint(ldevid)
    zt("registrar", "revoke", "--dir", world.r, "--fingerprint", fingerprint, "--reason", "test")
    revoked = enrollstatus()
    assert revoked.status == 403 and b"was revoked" in revoked.body, revoked
    assert len(world.device("E2E-TWIN")["status_reports"]) == 2  # type: ignore[arg-type]


def test_enrollment_refusals_are_recorded_on_the_device_and_only_its_own(world: World) -> None:
    """A simpleenroll refused for a device's own IDevID or LDevID is noted in its
    ``last_error`` (a malformed CSR, a revoked LDevID); the refusal of another IDevID with the
    same serialNumber (RFC 8995 §5.9.1) is not written on the device it claims to be."""

    def simpleenroll(client: tuple[Path, Path], data: bytes) -> Reply:
        return world.curl(
            "/.well-known/est/simpleenroll", client=client, data=data,
            content_type="application/pkcs10",
        )  # fmt: skip

    def last_error() -> object:
        return world.device("E2E-NOTED")["device"]["last_error"]  # type: ignore[index]

    pledge = accepted_voucher(world, "E2E-NOTED")
    body, key = csr_body(world, "noted", "/serialNumber=E2E-NOTED")
    twin = simpleenroll(idevid_of(twin_of(world, "E2E-NOTED")), body)
    assert twin.status == 403 and twin.body.startswith(b"bad-certificate: this IDevID"), twin
    assert last_error() is None
    malformed = simpleenroll(idevid_of(pledge), base64.encodebytes(b"not a CSR"))
    assert malformed.status == 400, malformed
    assert last_error() == malformed.body.decode().strip()
    ldevid, pem = simple_enroll(world, pledge, body, "noted-ldevid")
    fingerprint = certs.fingerprint(ldevid)
    zt("registrar", "revoke", "--dir", world.r, "--fingerprint", fingerprint, "--reason", "test")
    revoked = simpleenroll((pem, key), body)
    assert revoked.status == 403 and b"was revoked" in revoked.body, revoked
    assert last_error() == revoked.body.decode().strip()


def test_another_idevid_at_simpleenroll_gets_no_audit_log_judged_for_the_device(
    world: World,
) -> None:
    """A device whose voucher came from the MASA but whose audit log is not judged yet (the
    MASA was down for voucher_status): another IDevID with its serialNumber (RFC 8995
    §5.9.1) is refused at simpleenroll without the log being fetched by its MASA URL and
    judged for the device (RFC 8995 §5.8.3), so the device's own enrollment still waits for
    a verdict on its own request."""
    pledge = accepted_voucher(world, "E2E-UNJUDGED")
    with sqlite3.connect(world.r / "registrar.db") as db:
        db.execute(
            "UPDATE registrar_devices SET audit_level = NULL WHERE serial = ?", ("E2E-UNJUDGED",)
        )
    body, _ = csr_body(world, "unjudged", "/serialNumber=E2E-UNJUDGED")
    twin = world.curl(
        "/.well-known/est/simpleenroll", client=idevid_of(twin_of(world, "E2E-UNJUDGED")),
        data=body, content_type="application/pkcs10",
    )  # fmt: skip
    assert twin.status == 403 and twin.body.startswith(b"bad-certificate: this IDevID"), twin
    record = world.device("E2E-UNJUDGED")["device"]
    assert isinstance(record, dict)
    assert (record["audit_level"], record["last_error"]) == (None, None), record
    simple_enroll(world, pledge, body, "unjudged-ldevid")  # judged now, for its own request
    assert world.device("E2E-UNJUDGED")["device"]["audit_level"] == "clean"  # type: ignore[index]


def test_a_refused_voucher_request_of_another_idevid_leaves_the_device_alone(
    world: World,
) -> None:
    """Another IDevID with a device's serialNumber (RFC 8995 §5.9.1) sends a voucher-request
    that is refused: the device keeps its state, its IDevID on record and its last error, so
    it still enrolls."""
    pledge = accepted_voucher(world, "E2E-KEPT")
    before = world.device("E2E-KEPT")["device"]
    twin = twin_of(world, "E2E-KEPT")
    refused = world.curl(
        "/.well-known/brski/requestvoucher", client=idevid_of(twin),
        data=voucher_request(world, twin, serial="E2E-OTHER"), content_type=VOUCHER_CMS,
    )  # fmt: skip
    assert refused.status == 403 and refused.body.startswith(b"wrong-serial:"), refused
    assert world.device("E2E-KEPT")["device"] == before
    body, _ = csr_body(world, "kept", "/serialNumber=E2E-KEPT")
    simple_enroll(world, pledge, body, "kept-ldevid")


def odd_idevid(world: World, name: str, serial: str) -> Path:
    """A pledge folder with an IDevID of the trusted vendor whose subject serialNumber (a
    UTF8String) is ``serial``, which ``vendor idevid`` would not make."""
    ca = certfiles.load_identity(world.root / "V" / "ca.pem", world.root / "V" / "ca.key")
    model = certs.issue_idevid(ca, "MODEL", masa_url=world.masa_url, now=datetime.now(UTC))
    subject = x509.Name(
        [x509.NameAttribute(x509.NameOID.SERIAL_NUMBER, serial, _type=_ASN1Type.UTF8String)]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(model.cert.issuer)
        .public_key(model.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(model.cert.not_valid_before_utc)
        .not_valid_after(model.cert.not_valid_after_utc)
    )
    for extension in model.cert.extensions:
        builder = builder.add_extension(extension.value, extension.critical)
    folder = world.root / name
    folder.mkdir()
    certfiles.write_certs(folder / "idevid.pem", [builder.sign(ca.key, hashes.SHA256()), ca.cert])  # type: ignore[arg-type]
    certfiles.write_key(folder / "idevid.key", model.key)
    return folder


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_an_idevid_serial_no_device_can_have_is_refused_400_before_any_write(
    world: World, db: str, request: pytest.FixtureRequest
) -> None:
    """An IDevID whose serialNumber is longer than ub-serial-number (64, RFC 5280), or holds
    a NUL or another control character: requestvoucher and simpleenroll answer 400 on both
    databases (PostgreSQL refused the write with 500, SQLite kept a refusal under it) and
    nothing is recorded."""
    serials = {"long": "L" * 300, "65": "S" * 65, "nul": "E2E-N\x00UL", "ctl": "E2E-C\x01TL"}
    url = world.registrar.url
    db_args: tuple[str, ...] = ()
    service = None
    if db == "postgresql":
        pg = request.getfixturevalue("fresh_pg_url")
        db_args = ("--db", pg)
        service = Service(
            ["registrar", "serve", "--dir", str(world.r), "--listen", "127.0.0.1:0", *db_args],
            world.root / "registrar-odd-pg.log",
        )
        service.start()
        url = service.url
    try:
        for name, serial in serials.items():
            pledge = odd_idevid(world, f"odd-{db}-{name}", serial)
            csr, _ = csr_body(world, f"odd-{db}-{name}", "/CN=odd")
            # a YANG string holds no control character: such a pledge names itself otherwise
            pvr = voucher_request(world, pledge, serial=None if serial.isprintable() else "E2E")
            for path, data, media in (
                ("/.well-known/brski/requestvoucher", pvr, VOUCHER_CMS),
                ("/.well-known/est/simpleenroll", csr, "application/pkcs10"),
            ):
                reply = world.curl(
                    path, client=idevid_of(pledge), data=data, content_type=media, base=url
                )
                assert reply.status == 400, (name, path, reply)
                assert b"at most 64 printable characters" in reply.body, reply
    finally:
        if service is not None:
            service.stop()
    table = json.loads(zt("registrar", "devices", "--dir", world.r, "--json", *db_args))
    recorded = {row["serial"] for row in table["devices"]}
    assert not recorded & set(serials.values()), recorded


def test_a_status_report_without_version_1_is_refused_400_and_not_recorded(world: World) -> None:
    """RFC 8995 §5.7, §5.9.4: "version" is the integer 1 and "reason-context" an object."""
    pledge = accepted_voucher(world, "E2E-VERSION")
    for body, says in (
        (b'{"status":true}', b"schema-error: status report needs a 'version' member"),
        (
            b'{"version":"banana","status":true,"reason-context":"not-a-map"}',
            b"schema-error: 'version' must be a JSON integer",
        ),
        (
            b'{"version":1,"status":true,"reason-context":"not-a-map"}',
            b"schema-error: 'reason-context' must be a JSON object",
        ),
    ):
        refused = world.curl(
            "/.well-known/brski/enrollstatus", client=idevid_of(pledge), data=body,
            content_type="application/json",
        )  # fmt: skip
        assert refused.status == 400 and refused.body.startswith(says), refused
    shown = world.device("E2E-VERSION")
    assert shown["device"]["state"] == "voucher-accepted"  # type: ignore[index]
    assert [r["kind"] for r in shown["status_reports"]] == ["voucher_status"]  # type: ignore[attr-defined]


def test_ldevid_names_by_policy_not_by_the_csr(world: World) -> None:
    """Issue 9 item 13: an ``openssl req`` CSR asking for localhost, 127.0.0.1, a wildcard and
    another device's name gets none of them; the LDevID names <serial>.<device_domain> and
    the address the operator assigned (``openssl x509 -ext subjectAltName``); the registrar
    logs what it left out; the device record shows the name."""
    pledge = accepted_voucher(world, "E2E-SAN")
    assigned = world.admin(
        "/admin/devices/E2E-SAN/address", method="PUT", data=b'{"address": "192.0.2.10:6513"}',
        content_type="application/json",
    )  # fmt: skip
    assert assigned.status == 200, assigned.body
    asked = "DNS:localhost,IP:127.0.0.1,DNS:*.example.com,DNS:e2e-ok.devices.zerotouch.internal"
    body, _ = csr_body(world, "san", "/serialNumber=E2E-SAN", "-addext", f"subjectAltName={asked}")
    _, pem = simple_enroll(world, pledge, body, "san-ldevid")
    text = openssl("x509", "-in", pem, "-noout", "-ext", "subjectAltName").decode()
    names = text.split("\n", 1)[1].strip()
    assert names == "DNS:e2e-san.devices.zerotouch.internal, IP Address:192.0.2.10", text
    for foreign in ("localhost", "127.0.0.1", "example.com", "e2e-ok"):
        assert foreign not in text
    log_text = (world.root / "registrar.log").read_text()
    assert (
        "LDevID of E2E-SAN: names the CSR asks for are not in its policy set and left out: "
        "localhost, 127.0.0.1, *.example.com, e2e-ok.devices.zerotouch.internal"
    ) in log_text
    assert world.device("E2E-SAN")["device"]["dns_name"] == (  # type: ignore[index]
        "e2e-san.devices.zerotouch.internal"
    )


def test_weak_csr_key_is_refused_400(world: World) -> None:
    """Issue 11 hardening: an RSA-1024 CSR from openssl is 400 naming the key, not signed."""
    pledge = accepted_voucher(world, "E2E-WEAK")
    body, _ = csr_body(world, "weak", "/serialNumber=E2E-WEAK", newkey=("-newkey", "rsa:1024"))
    reply = world.curl(
        "/.well-known/est/simpleenroll", client=idevid_of(pledge), data=body,
        content_type="application/pkcs10",
    )  # fmt: skip
    assert reply.status == 400, reply.body
    assert reply.body.startswith(b"malformed: the CSR key is RSA-1024"), reply.body
    assert world.device("E2E-WEAK")["device"]["ldevid_fingerprint"] is None  # type: ignore[index]


def test_enroll_without_accepted_voucher_is_refused(world: World) -> None:
    pledge, reply = bootstrap_voucher(world, "E2E-NOSTATUS")
    assert reply.status == 200
    body, _ = csr_body(world, "x", "/serialNumber=E2E-NOSTATUS")
    refused = world.curl(
        "/.well-known/est/simpleenroll",
        client=idevid_of(pledge),
        data=body,
        content_type="application/pkcs10",
    )
    assert refused.status == 403
    assert b"voucher_status success" in refused.body


# -- refusals ---------------------------------------------------------------------------------


def test_device_not_allowed_gets_403_and_is_recorded(world: World) -> None:
    pledge = world.pledge("E2E-STRANGER")
    reply = world.curl(
        "/.well-known/brski/requestvoucher",
        client=idevid_of(pledge),
        data=voucher_request(world, pledge),
        content_type=VOUCHER_CMS,
    )
    assert reply.status == 403
    assert b"allow list" in reply.body
    record = world.device("E2E-STRANGER")["device"]
    assert isinstance(record, dict)
    assert record["state"] == "refused"
    assert "allow list" in str(record["last_error"])
    # allowing it while the registrar runs takes effect at once
    zt("registrar", "allow", "--dir", world.r, "--serial", "E2E-STRANGER")
    world.masa.start()
    again = world.curl(
        "/.well-known/brski/requestvoucher",
        client=idevid_of(pledge),
        data=voucher_request(world, pledge),
        content_type=VOUCHER_CMS,
    )
    assert again.status == 200, again.body


def test_unknown_manufacturer_is_refused(world: World) -> None:
    folder = world.pledge("E2E-F", vendor="V2")
    reply = world.curl(
        "/.well-known/brski/requestvoucher",
        client=idevid_of(folder),
        data=b"x",
        content_type=VOUCHER_CMS,
    )
    assert reply.status in (0, 403), reply  # 0: the TLS handshake itself was refused


def test_wrong_media_type_oversized_body_unacceptable_format(world: World) -> None:
    pledge = world.pledge("E2E-MEDIA")
    wrong = world.curl(
        "/.well-known/brski/requestvoucher",
        client=idevid_of(pledge),
        data=voucher_request(world, pledge),
        content_type="application/json",
    )
    assert wrong.status == 415
    csr = world.curl(
        "/.well-known/est/simpleenroll",
        client=idevid_of(pledge),
        data=b"MIIB",
        content_type="text/plain",
    )
    assert csr.status == 415
    big = world.curl(
        "/.well-known/brski/requestvoucher",
        client=idevid_of(pledge),
        data=b"A" * 70_000,
        content_type=VOUCHER_CMS,
    )
    assert big.status == 413
    assert b"limit is 65536 bytes" in big.body
    jws_only = world.curl(
        "/.well-known/brski/requestvoucher",
        client=idevid_of(pledge),
        data=voucher_request(world, pledge),
        content_type=VOUCHER_CMS,
        accept="application/voucher-jws+json",
    )
    assert jws_only.status == 406


def test_appendix_c_style_nonce_is_relayed_verbatim(world: World) -> None:
    """Issue 9 item 1: an unpadded base64url nonce (RFC 8995 Appendix C) got a 500. Through
    the real registrar and MASA the voucher now carries the very same string."""
    world.masa.start()
    nonce = "-_XE9zK9q8Ll1qylMtLKeg"
    pledge = world.pledge("E2E-NONCE-C")
    world.allow("E2E-NONCE-C")
    reply = world.curl(
        "/.well-known/brski/requestvoucher",
        client=idevid_of(pledge),
        data=voucher_request(world, pledge, nonce=nonce),
        content_type=VOUCHER_CMS,
    )
    assert reply.status == 200, reply.body
    content = cms.inspect(cms.decode(reply.body)).content
    assert b'"nonce":"' + nonce.encode() + b'"' in content.replace(b" ", b"")
    assert Voucher.from_json(content).nonce == nonce
    assert world.device("E2E-NONCE-C")["vouchers"][0]["nonce"] == nonce  # type: ignore[index]


def test_proximity_registrar_cert_of_another_registrar_is_401(world: World) -> None:
    """RFC 8995 §5.3: the pledge names another registrar (an on-path attacker): 401 with a
    challenge and the connection closed, not 403."""
    pledge = world.pledge("E2E-MITM")
    world.allow("E2E-MITM")
    mitm = world.root / "mitm.pem"
    other = certs.issue_registrar(
        certs.make_ca("MITM CA", now=datetime.now(UTC)), "mitm", hosts=["127.0.0.1"],
        now=datetime.now(UTC),
    )  # fmt: skip
    certfiles.write_certs(mitm, [other.cert])
    reply = world.curl(
        "/.well-known/brski/requestvoucher",
        client=idevid_of(pledge),
        data=voucher_request(world, pledge, proximity=mitm),
        content_type=VOUCHER_CMS,
    )
    assert reply.status == 401, reply.body
    assert reply.body.startswith(b"access-denied: ") and b"another registrar" in reply.body
    assert reply.headers["www-authenticate"].startswith("TLS-Client-Certificate realm=")
    assert reply.headers["connection"] == "close"


def test_tampered_voucher_request_is_refused(world: World) -> None:
    """One byte of the signed payload changed in transit: 403 and nothing relayed."""
    pledge = world.pledge("E2E-TAMPER")
    world.allow("E2E-TAMPER")
    body = voucher_request(world, pledge)
    assert b'"proximity"' in body
    reply = world.curl(
        "/.well-known/brski/requestvoucher",
        client=idevid_of(pledge),
        data=body.replace(b'"proximity"', b'"proximitx"'),
        content_type=VOUCHER_CMS,
    )
    assert reply.status == 403, reply.body
    assert reply.body.startswith((b"digest-mismatch:", b"bad-signature:")), reply.body
    record = world.device("E2E-TAMPER")["device"]
    assert isinstance(record, dict)
    assert record["state"] == "refused" and record["voucher_issued_at"] is None


def test_admin_api(world: World) -> None:
    huge = world.admin(  # more digits than Python's int() takes: 400, not 500
        "/admin/devices/E2E-ADMIN/allow",
        method="POST",
        data=b'{"manufacturer": ' + b"9" * 5000 + b"}",
        content_type="application/json",
    )
    assert huge.status == 400 and b"not JSON" in huge.body, huge
    allowed = world.admin(
        "/admin/devices/E2E-ADMIN/allow",
        method="POST",
        data=b'{"manufacturer": "CN=Test"}',
        content_type="application/json",
    )
    assert allowed.status == 200, allowed.body
    assert json.loads(allowed.body)["decision"] == "allow"
    denied = world.admin("/admin/devices/E2E-ADMIN/deny", method="POST")
    assert denied.status == 200
    detail = world.device("E2E-ADMIN")
    assert {(p["decision"], p["manufacturer"]) for p in detail["policy"]} == {  # type: ignore[union-attr]
        ("allow", "CN=Test"),
        ("deny", None),
    }
    removed = world.admin("/admin/devices/E2E-ADMIN/policy", method="DELETE")
    assert json.loads(removed.body)["removed"] == 2
    assert world.admin("/admin/devices/E2E-ADMIN").status == 404
    listing = world.admin("/admin/devices")
    assert listing.status == 200
    assert isinstance(json.loads(listing.body)["devices"], list)
    nms = world.root / "N"
    not_admin = world.curl("/admin/devices", client=(nms / "cert.pem", nms / "key.pem"))
    assert not_admin.status == 403


def test_masa_refusal_reaches_the_pledge(world: World) -> None:
    """A second domain asks for a device the MASA gave to the first (first-come): 403."""
    pledge, first = bootstrap_voucher(world, "E2E-OWNED")
    assert first.status == 200
    other = world.root / "R2"
    zt(
        "registrar",
        "init",
        "--dir",
        other,
        "--manufacturer-ca",
        world.root / "V" / "ca.pem",
    )
    second = Service(
        ["registrar", "serve", "--dir", str(other), "--listen", "127.0.0.1:0", "--auto-accept"],
        world.root / "registrar2.log",
    )
    second.start()
    try:
        identity = certfiles.load_identity(*idevid_of(pledge))
        request = VoucherRequest(
            serial_number="E2E-OWNED",
            assertion=Assertion.PROXIMITY,
            nonce=NONCE,
            proximity_registrar_cert=certfiles.load_cert_file(other / "registrar.pem").public_bytes(
                Encoding.DER
            ),
        )
        reply = world.curl(
            "/.well-known/brski/requestvoucher",
            client=idevid_of(pledge),
            data=cms.sign(request.to_json(), signer=identity, now=datetime.now(UTC)),
            content_type=VOUCHER_CMS,
            base=second.url,
            cacert=other / "ca.pem",
        )
    finally:
        second.stop()
    assert reply.status == 403, reply.body
    assert b"the MASA refused (403)" in reply.body


def test_registrar_restart_between_steps(world: World) -> None:
    """Nothing lives only in memory: a restarted registrar continues the bootstrap."""
    pledge, reply = bootstrap_voucher(world, "E2E-RESTART")
    assert reply.status == 200
    world.registrar.stop()
    world.registrar.start()
    status = world.curl(
        "/.well-known/brski/voucher_status",
        client=idevid_of(pledge),
        data=b'{"version": 1, "status": true}',
        content_type="application/json",
    )
    assert status.status == 200
    world.registrar.stop()
    world.registrar.start()
    body, _ = csr_body(world, "restart", "/serialNumber=E2E-RESTART")
    enrolled = world.curl(
        "/.well-known/est/simpleenroll",
        client=idevid_of(pledge),
        data=body,
        content_type="application/pkcs10",
    )
    assert enrolled.status == 200, enrolled.body
    record = world.device("E2E-RESTART")["device"]
    assert isinstance(record, dict)
    assert (record["state"], record["audit_level"]) == ("enrolled", "clean")


def test_masa_down_then_up(world: World) -> None:
    world.masa.stop()
    pledge = world.pledge("E2E-MASA")
    world.allow("E2E-MASA")
    request = voucher_request(world, pledge)
    down = world.curl(
        "/.well-known/brski/requestvoucher",
        client=idevid_of(pledge),
        data=request,
        content_type=VOUCHER_CMS,
    )
    assert down.status == 503
    assert int(down.headers["retry-after"]) > 0
    record = world.device("E2E-MASA")["device"]
    assert isinstance(record, dict)
    assert record["state"] == "voucher-requested"
    assert "unreachable" in str(record["last_error"])
    world.masa.start()
    up = world.curl(
        "/.well-known/brski/requestvoucher",
        client=idevid_of(pledge),
        data=request,
        content_type=VOUCHER_CMS,
    )
    assert up.status == 200, up.body


def nonceless_voucher(
    world: World, serial: str, *, days: int = 30, nonce: str | None = None, pin: Path | None = None
) -> Path:
    """A nonceless voucher (RFC 8366: expires-on, no nonce) signed by ``openssl cms -sign``
    with the vendor's MASA key, as a vendor would hand it to an owner; DER file."""
    now = datetime.now(UTC)
    inner: dict[str, object] = {
        "created-on": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "assertion": "verified",
        "serial-number": serial,
        "pinned-domain-cert": base64.b64encode(
            certfiles.load_cert_file(pin or world.r / "ca.pem").public_bytes(Encoding.DER)
        ).decode(),
    }
    if nonce is None:
        inner["expires-on"] = (now + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    else:
        inner["nonce"] = nonce
    name = f"escrow-{serial}-{days}-{nonce}-{pin.parent.name if pin else 'R'}"
    content = world.root / f"{name}.json"
    content.write_text(json.dumps({"ietf-voucher:voucher": inner}))
    out = world.root / f"{name}.der"
    v = world.root / "V"
    openssl(
        "cms", "-sign", "-binary", "-nodetach", "-in", content, "-outform", "DER",
        "-out", out, "-signer", v / "masa-signer.pem", "-inkey", v / "masa-signer.key",
        "-econtent_type", "1.2.840.113549.1.9.16.1.40", "-md", "sha256",
    )  # fmt: skip
    return out


def test_escrowed_voucher_is_relayed_while_the_masa_is_down(world: World) -> None:
    """Issue 9 item 10: a nonceless voucher imported into escrow (admin API and CLI, each
    verified) is what the pledge gets while the MASA is unreachable; the record says so."""
    pledge = world.pledge("E2E-ESCROW")
    world.allow("E2E-ESCROW")
    good = nonceless_voucher(world, "E2E-ESCROW")
    refusals = [
        (nonceless_voucher(world, "E2E-OTHER"), 403, b"wrong-serial: "),
        (nonceless_voucher(world, "E2E-ESCROW", nonce="abcd1234"), 400, b"carries a nonce"),
        (nonceless_voucher(world, "E2E-ESCROW", days=-1), 403, b"expired: "),
        (
            nonceless_voucher(world, "E2E-ESCROW", days=2, pin=world.root / "V" / "ca.pem"),
            403,
            b"for another domain",
        ),
    ]
    for path, status, needle in refusals:
        reply = world.admin(
            "/admin/devices/E2E-ESCROW/voucher", method="PUT", data=path.read_bytes(),
            content_type=VOUCHER_CMS,
        )  # fmt: skip
        assert (reply.status, needle in reply.body) == (status, True), (path, reply.body)
    assert world.admin("/admin/devices/E2E-ESCROW/voucher").status == 404
    put = world.admin(
        "/admin/devices/E2E-ESCROW/voucher", method="PUT", data=good.read_bytes(),
        content_type=VOUCHER_CMS,
    )  # fmt: skip
    assert put.status == 200, put.body
    assert world.admin("/admin/devices/E2E-ESCROW/voucher").body == good.read_bytes()
    # the CLI import verifies the same way: the bad file is named, the good one is held
    bad = refusals[1][0]  # the one with a nonce
    done = subprocess.run(
        [*ZT, "registrar", "vouchers", "import", "--dir", str(world.r), str(good), str(bad)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert f"{good}: held for E2E-ESCROW until " in done.stdout
    assert f"{bad}: refused: malformed: the voucher for E2E-ESCROW carries a nonce" in (done.stderr)

    world.masa.stop()
    try:
        reply = world.curl(
            "/.well-known/brski/requestvoucher", client=idevid_of(pledge),
            data=voucher_request(world, pledge), content_type=VOUCHER_CMS,
        )  # fmt: skip
        assert reply.status == 200, reply.body
        assert reply.body == good.read_bytes()
        voucher = Voucher.from_json(cms.inspect(cms.decode(reply.body)).content)
        assert voucher.nonce is None and voucher.expires_on is not None
        detail = world.device("E2E-ESCROW")
        device = detail["device"]
        assert isinstance(device, dict) and device["voucher_source"] == "escrow"
        assert device["state"] == "voucher-issued" and device["escrow"]["used_count"] == 1
        assert detail["vouchers"][-1]["source"] == "escrow"  # type: ignore[index]
        table = zt("registrar", "devices", "--dir", world.r)
        (line,) = [x for x in table.splitlines() if x.startswith("E2E-ESCROW")]
        assert " escrow " in line, table
        # without a held voucher the outage stays a 503
        assert world.admin("/admin/devices/E2E-ESCROW/voucher", method="DELETE").status == 200
        again = world.curl(
            "/.well-known/brski/requestvoucher", client=idevid_of(pledge),
            data=voucher_request(world, pledge), content_type=VOUCHER_CMS,
        )  # fmt: skip
        assert again.status == 503, again.body
    finally:
        world.masa.start()
    log_text = (world.root / "registrar.log").read_text()
    assert "voucher for E2E-ESCROW relayed (assertion verified, from escrow" in log_text


@pytest.mark.postgres
def test_two_registrars_share_one_postgresql(world: World, fresh_pg_url: str) -> None:
    """Two registrar processes on one database: the pledge alternates between them."""
    world.masa.start()
    pair = [
        Service(
            [
                "registrar",
                "serve",
                "--dir",
                str(world.r),
                "--listen",
                "127.0.0.1:0",
                "--db",
                fresh_pg_url,
            ],
            world.root / f"registrar-pg-{i}.log",
        )
        for i in range(2)
    ]
    for service in pair:  # both start at once
        service.launch()
    for service in pair:
        service.wait_ready()
    try:
        a, b = (s.url for s in pair)
        admin = world.root / "A"
        allow = world.curl(
            "/admin/devices/E2E-PG/allow",
            client=(admin / "cert.pem", admin / "key.pem"),
            method="POST",
            base=b,
        )
        assert allow.status == 200
        pledge = world.pledge("E2E-PG")
        json_media = "application/json"
        ok = b'{"version":1,"status":true}'
        csr = csr_body(world, "pg", "/serialNumber=E2E-PG")[0]
        steps = [
            (a, "/.well-known/brski/requestvoucher", voucher_request(world, pledge), VOUCHER_CMS),
            (b, "/.well-known/brski/voucher_status", ok, json_media),
            (a, "/.well-known/est/simpleenroll", csr, "application/pkcs10"),
            (b, "/.well-known/brski/enrollstatus", ok, json_media),
        ]
        for base, path, data, media in steps:
            reply = world.curl(
                path, client=idevid_of(pledge), data=data, content_type=media, base=base
            )
            assert reply.status == 200, (path, reply.body)
        table = json.loads(
            zt("registrar", "devices", "--dir", world.r, "--db", fresh_pg_url, "--json")
        )
        (row,) = table["devices"]
        assert (row["serial"], row["state"], row["audit_level"]) == (
            "E2E-PG",
            "enroll-confirmed",
            "clean",
        )
    finally:
        for service in pair:
            service.stop()
