"""``zerotouch sztp serve`` as a real process on 127.0.0.1, driven by curl with an IDevID and
checked with ``openssl cms -verify`` (RFC 8572 §7.1, §7.3; RFC 8040 errors), and the attacks
that concern the bootstrap server: no client certificate, an unknown manufacturer, oversize
and malformed input."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree
from openapi_spec_validator import validate

from tests.support.admin_openapi import check_admin_answer
from tests.support.processes import ServerProcess, free_port, run_cli, server
from zerotouch_plugin.artifacts import certs, sztp

# curl and openssl are installed by make test (scripts/setup-system.sh); in CI they must be.
pytestmark = pytest.mark.skipif(
    os.environ.get("CI") != "true" and not (shutil.which("curl") and shutil.which("openssl")),
    reason="curl or openssl missing (make test installs them)",
)

GBD = "/restconf/operations/ietf-sztp-bootstrap-server:get-bootstrapping-data"
PROGRESS = "/restconf/operations/ietf-sztp-bootstrap-server:report-progress"
JSON = "application/yang-data+json"
XML = "application/yang-data+xml"
SIGNED_INPUT = b'{"ietf-sztp-bootstrap-server:input": {"signed-data-preferred": [null]}}'
CONFIG = b'{"ietf-system:system": {"hostname": "sztp-device"}}'


@dataclass
class Lab:
    root: Path
    folder: Path
    device: Path  # IDevID folder of SN-1 (idevid.pem, idevid.key)
    stranger: Path  # IDevID of another manufacturer
    proc: ServerProcess
    admin_port: int

    def curl(
        self,
        path: str,
        body: bytes | None = None,
        *,
        media: str = JSON,
        identity: Path | None = None,
        extra: tuple[str, ...] = (),
    ) -> tuple[int, bytes, str]:
        """(HTTP status, body, headers) of one request; status 0 when TLS failed."""
        who = self.device if identity is None else identity
        args = ["curl", "-sS", "-D", "-", "--max-time", "20", "--cacert"]
        args += [str(self.folder / "sztp-ca.pem")]
        if who != self.root:
            args += ["--cert", str(who / "idevid.pem"), "--key", str(who / "idevid.key")]
        if body is not None:
            args += ["-H", f"Content-Type: {media}", "--data-binary", "@-"]
        args += [*extra, self.proc.url + path]
        done = subprocess.run(args, input=body, capture_output=True, timeout=30)
        if done.returncode != 0:
            return 0, b"", done.stderr.decode()
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        return int(head.split()[1]), payload, head.decode()


def _voucher(root: Path, folder: Path, serial: str) -> Path:
    owner_ca = certs.load_certs((folder / "owner-ca.pem").read_bytes())[0]
    payload = {
        "ietf-voucher:voucher": {
            "created-on": "2026-01-01T00:00:00Z",
            "expires-on": "2036-01-01T00:00:00Z",
            "assertion": "verified",
            "serial-number": serial,
            "pinned-domain-cert": base64.b64encode(owner_ca.public_bytes(Encoding.DER)).decode(),
        }
    }
    (root / "v.json").write_text(json.dumps(payload))
    vendor = root / "vendor"
    run_cli(
        "voucher", "sign", "--payload", root / "v.json", "--cert", vendor / "masa-signer.pem",
        "--key", vendor / "masa-signer.key", "--out", root / "v.cms",
    )  # fmt: skip
    return root / "v.cms"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("sztp")
    folder, vendor, other = root / "server", root / "vendor", root / "other-vendor"
    run_cli("vendor", "init", "--dir", vendor, "--masa-url", "https://127.0.0.1:9443")
    run_cli("vendor", "idevid", "--dir", vendor, "--serial", "SN-1", "--out", root / "dev")
    run_cli("vendor", "idevid", "--dir", vendor, "--serial", "SN-2", "--out", root / "dev2")
    run_cli("vendor", "init", "--dir", other, "--masa-url", "https://127.0.0.1:9443")
    run_cli("vendor", "idevid", "--dir", other, "--serial", "SN-1", "--out", root / "stranger")
    run_cli("sztp", "init", "--dir", folder, "--manufacturer-ca", vendor / "ca.pem")
    (folder / "sztp.toml").write_text("trusted = true\nbasic_auth = true\nmax_body_bytes = 4096\n")
    (root / "password").write_text("correct horse\n")
    (root / "config.json").write_bytes(CONFIG)
    run_cli("sztp", "response", "set", "--dir", folder, "--name", "onboard",
            "--config", root / "config.json", "--handling", "replace")  # fmt: skip
    run_cli("sztp", "devices", "--dir", folder, "--set", "SN-1", "--response", "onboard",
            "--voucher", _voucher(root, folder, "SN-1"),
            "--password-file", root / "password")  # fmt: skip
    admin_port = free_port()
    with server("sztp", "sztp", "serve", "--dir", folder, "--listen", "127.0.0.1:0",
                "--admin-listen", f"127.0.0.1:{admin_port}") as proc:  # fmt: skip
        yield Lab(root, folder, root / "dev", root / "stranger", proc, admin_port)


def _output(body: bytes) -> dict[str, str]:
    return json.loads(body)["ietf-sztp-bootstrap-server:output"]  # type: ignore[no-any-return]


def test_host_meta_points_at_the_restconf_root(lab: Lab) -> None:
    status, body, head = lab.curl("/.well-known/host-meta", identity=lab.root)
    assert status == 200
    assert "application/xrd+xml" in head
    assert b"rel='restconf' href='/restconf'" in body


def _openssl_verify(lab: Lab, output: sztp.GetBootstrappingDataOutput) -> tuple[bytes, str]:
    """``openssl cms -verify`` of the signed conveyed information with the owner chain of the
    answer and the owner CA as anchor: (the verified content, the eContentType shown by
    ``openssl cms -cmsout -print``). The project's own reader must agree on the content."""
    assert output.owner_certificate is not None and output.ownership_voucher is not None
    conveyed = lab.root / "conveyed.der"
    conveyed.write_bytes(output.conveyed_information)
    owner = lab.root / "owner.p7b"
    owner.write_bytes(output.owner_certificate)
    chain = lab.root / "owner-chain.pem"
    subprocess.run(
        ["openssl", "pkcs7", "-inform", "DER", "-in", owner, "-print_certs", "-out", chain],
        check=True,
        capture_output=True,
    )
    verified = subprocess.run(
        ["openssl", "cms", "-verify", "-inform", "DER", "-in", conveyed, "-binary",
         "-certfile", chain, "-CAfile", lab.folder / "owner-ca.pem", "-purpose", "any"],
        capture_output=True,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    shown = subprocess.run(
        ["openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", conveyed],
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"eContentType: \D*([0-9.]+)", shown.stdout)  # "undefined (OID)"
    assert found is not None, shown.stdout
    owner_cert = sztp.end_entity(sztp.decode_certs_only(output.owner_certificate))
    got = sztp.verify_conveyed_information(
        output.conveyed_information, owner_certificate=owner_cert, now=None
    )
    assert isinstance(got, sztp.OnboardingInformation) and got.configuration == CONFIG
    assert output.ownership_voucher == (lab.root / "v.cms").read_bytes()
    return verified.stdout, found.group(1)


def test_signed_conveyed_information_verifies_with_openssl(lab: Lab) -> None:
    status, body, head = lab.curl(GBD, SIGNED_INPUT)
    assert status == 200, body
    assert JSON in head
    content, content_type = _openssl_verify(
        lab, sztp.GetBootstrappingDataOutput.parse(body, sztp.Encoding.JSON)
    )
    info = json.loads(content)["ietf-sztp-conveyed-info:onboarding-information"]
    assert base64.b64decode(info["configuration"]) == CONFIG
    assert info["configuration-handling"] == "replace"
    assert content_type == sztp.OID_SZTP_CONVEYED_INFO_JSON  # RFC 8572 §3.1


@pytest.mark.parametrize(
    ("media", "body", "accept"),
    [
        (XML, b'<input xmlns="urn:ietf:params:xml:ns:yang:ietf-sztp-bootstrap-server">'
              b"<signed-data-preferred/></input>", XML),
        (JSON, SIGNED_INPUT, XML),
    ],
    ids=["xml-request", "json-request-accept-xml"],
)  # fmt: skip
def test_a_device_that_reads_xml_gets_conveyed_information_signed_as_xml(
    lab: Lab, media: str, body: bytes, accept: str
) -> None:
    """RFC 8572 §3.1: the conveyed information is encoded as the answer is, so a device that
    speaks XML gets id-ct-sztpConveyedInfoXML, verified by openssl like the JSON one."""
    status, answer, head = lab.curl(GBD, body, media=media, extra=("-H", f"Accept: {accept}"))
    assert status == 200, answer
    assert XML in head
    output = sztp.GetBootstrappingDataOutput.parse(answer, sztp.Encoding.XML)
    content, content_type = _openssl_verify(lab, output)
    assert content_type == sztp.OID_SZTP_CONVEYED_INFO_XML
    root = etree.fromstring(content)
    assert root.tag == "{urn:ietf:params:xml:ns:yang:ietf-sztp-conveyed-info}onboarding-information"
    assert base64.b64decode(root.findtext("{*}configuration") or "") == CONFIG


def test_xml_request_gets_an_xml_answer(lab: Lab) -> None:
    body = (
        b'<input xmlns="urn:ietf:params:xml:ns:yang:ietf-sztp-bootstrap-server">'
        b"<signed-data-preferred/><hw-model>m-1</hw-model></input>"
    )
    status, answer, head = lab.curl(GBD, body, media=XML)
    assert status == 200, answer
    assert XML in head
    output = sztp.GetBootstrappingDataOutput.parse(answer, sztp.Encoding.XML)
    assert output.owner_certificate is not None and output.ownership_voucher is not None
    # visits are written once a second: the device shows up with its hw-model soon after
    deadline = time.monotonic() + 10
    while True:
        devices = json.loads(run_cli("sztp", "devices", "--dir", lab.folder, "--json").stdout)
        if devices[0]["hw-model"] == "m-1" or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert {"serial": "SN-1", "hw-model": "m-1"}.items() <= devices[0].items()


def test_trusted_server_sends_unsigned_data_only_when_not_asked_to_sign(lab: Lab) -> None:
    status, body, _ = lab.curl(GBD, b"")
    assert status == 200, body
    output = _output(body)
    assert "owner-certificate" not in output and "ownership-voucher" not in output
    info = sztp.read_unsigned_conveyed_information(base64.b64decode(output["conveyed-information"]))
    assert isinstance(info, sztp.OnboardingInformation)


def test_progress_reports_are_stored_and_shown(lab: Lab) -> None:
    report = {
        "ietf-sztp-bootstrap-server:input": {
            "progress-type": "config-error",
            "message": "hostname refused",
        }
    }
    status, body, _ = lab.curl(PROGRESS, json.dumps(report).encode())
    assert status == 204, body
    shown = json.loads(
        run_cli("sztp", "progress", "--dir", lab.folder, "--serial", "SN-1", "--json").stdout
    )
    assert shown[-1]["progress-type"] == "config-error"
    assert shown[-1]["message"] == "hostname refused"


def _error(body: bytes) -> dict[str, str]:
    return json.loads(body)["ietf-restconf:errors"]["error"][0]  # type: ignore[no-any-return]


def test_device_without_client_certificate_is_refused(lab: Lab) -> None:
    status, body, head = lab.curl(GBD, SIGNED_INPUT, identity=lab.root)
    assert status == 401
    assert "TLS-Client-Certificate" in head
    assert _error(body)["error-tag"] == "access-denied"


def test_idevid_of_an_unknown_manufacturer_is_refused_at_the_handshake(lab: Lab) -> None:
    status, _, stderr = lab.curl(GBD, SIGNED_INPUT, identity=lab.stranger)
    assert status == 0, "the TLS handshake must fail"
    assert stderr


def test_device_without_a_response_is_told_so(lab: Lab) -> None:
    status, body, _ = lab.curl(GBD, SIGNED_INPUT, identity=lab.root / "dev2")
    assert status == 409
    assert _error(body)["error-tag"] == "data-missing"
    assert "SN-2" in _error(body)["error-message"]


@pytest.mark.parametrize(
    ("body", "media", "status", "tag"),
    [
        (b"{", JSON, 400, "malformed-message"),
        (b'{"ietf-sztp-bootstrap-server:input": {"bogus": 1}}', JSON, 400, "invalid-value"),
        (b'{"ietf-sztp-bootstrap-server:input": {"nonce": "AA=="}}', JSON, 400, "invalid-value"),
        (
            b'{"ietf-sztp-bootstrap-server:input":'
            b' {"ietf-sztp-bootstrap-server:signed-data-preferred": [null]}}',
            JSON,
            400,
            "invalid-value",
        ),
        (b"<input xmlns='urn:x'/>", XML, 400, "invalid-value"),
        (b"<!DOCTYPE a [<!ENTITY b 'c'>]><a>&b;</a>", XML, 400, "malformed-message"),
        (SIGNED_INPUT, "text/plain", 415, "invalid-value"),
    ],
)
def test_malformed_rpc_input_is_refused(
    lab: Lab, body: bytes, media: str, status: int, tag: str
) -> None:
    got, answer, _ = lab.curl(GBD, body, media=media)
    assert got == status, answer
    error = _error(answer) if answer.startswith(b"{") else None
    if error is not None:
        assert error["error-tag"] == tag


def test_oversize_body_is_refused(lab: Lab) -> None:
    big = b'{"ietf-sztp-bootstrap-server:input": {"hw-model": "' + b"x" * 10000 + b'"}}'
    status, body, _ = lab.curl(GBD, big)
    assert status == 413, body
    assert _error(body)["error-tag"] == "too-big"


def _curl_admin(
    lab: Lab, method: str, path: str, body: bytes | None, media: str
) -> tuple[int, str, bytes]:
    """(status, Content-Type, body) of one admin request with the operator certificate."""
    args = ["curl", "-sS", "-o", "-", "-w", "\n%{content_type}\n%{http_code}", "--max-time", "20"]
    args += ["-X", method, "--cacert", str(lab.folder / "sztp-ca.pem")]
    args += ["--cert", str(lab.folder / "admin.pem"), "--key", str(lab.folder / "admin.key")]
    if body is not None:
        args += ["-H", f"Content-Type: {media}", "--data-binary", "@-"]
    args.append(f"https://127.0.0.1:{lab.admin_port}{path}")
    done = subprocess.run(args, input=body, capture_output=True, timeout=30, check=True)
    rest, _, status = done.stdout.rpartition(b"\n")
    payload, _, content_type = rest.rpartition(b"\n")
    return int(status), content_type.decode(), payload


def _admin_document(lab: Lab) -> dict[str, Any]:
    """The OpenAPI document the admin listener serves, checked to be valid OpenAPI 3.1."""
    status, _, body = _curl_admin(lab, "GET", "/admin/openapi.json", None, "")
    assert status == 200, body
    doc: dict[str, Any] = json.loads(body)
    validate(doc)
    return doc


def _admin(
    lab: Lab, method: str, path: str, body: bytes | None = None, media: str = "application/json"
) -> tuple[int, bytes]:
    """One admin request; its answer must be one the served OpenAPI document describes."""
    status, content_type, payload = _curl_admin(lab, method, path, body, media)
    check_admin_answer(method, path, status, content_type, payload, _admin_document(lab))
    return status, payload


def test_admin_api_manages_responses_devices_and_shows_progress(lab: Lab) -> None:
    redirect = b'{"ietf-sztp-conveyed-info:redirect-information": {"bootstrap-server": [{"address": "sztp2.example.net", "port": 8443}]}}'  # noqa: E501
    assert _admin(lab, "PUT", "/admin/responses/elsewhere", redirect)[0] == 200
    status, body = _admin(lab, "GET", "/admin/responses/elsewhere")
    assert status == 200
    assert json.loads(body)["conveyed-information"] == json.loads(redirect) | {
        "ietf-sztp-conveyed-info:redirect-information": {
            "bootstrap-server": [{"address": "sztp2.example.net", "port": 8443}]
        }
    }
    bad = b'{"ietf-sztp-conveyed-info:redirect-information": {"bootstrap-server": []}}'
    status, body = _admin(lab, "PUT", "/admin/responses/broken", bad)
    assert status == 400 and b"schema-error" in body
    status, body = _admin(lab, "PUT", "/admin/devices/SN-2", b'{"response": "elsewhere"}')
    assert status == 200, body
    status, body = _admin(lab, "GET", "/admin/devices")
    assert {"serial": "SN-2", "response": "elsewhere"}.items() <= next(
        d for d in json.loads(body)["devices"] if d["serial"] == "SN-2"
    ).items()
    status, body = _admin(lab, "GET", "/admin/progress?serial=SN-1")
    assert status == 200 and isinstance(json.loads(body)["progress"], list)


def test_admin_api_checks_vouchers(lab: Lab) -> None:
    voucher = (lab.root / "v.cms").read_bytes()  # issued for SN-1
    media = "application/voucher-cms+json"
    status, body = _admin(lab, "PUT", "/admin/devices/SN-2/voucher", voucher, media)
    assert status == 403 and b"wrong-serial" in body
    status, body = _admin(lab, "PUT", "/admin/devices/SN-1/voucher", voucher, media)
    assert status == 200 and json.loads(body)["voucher-expires"].startswith("2036-01-01")


REDIRECT = b'{"ietf-sztp-conveyed-info:redirect-information": {"bootstrap-server": [{"address": "sztp3.example.net"}]}}'  # noqa: E501
ONBOARDING_XML = (
    b'<onboarding-information xmlns="urn:ietf:params:xml:ns:yang:ietf-sztp-conveyed-info">'
    b"<configuration-handling>merge</configuration-handling>"
    b"<configuration>" + base64.b64encode(CONFIG) + b"</configuration></onboarding-information>"
)
YANG_JSON = "application/yang-data+json"
# (method, path, body, media type, status): each admin route, answers and refusals
ADMIN_CALLS = [
    ("PUT", "/admin/responses/spare", REDIRECT, YANG_JSON, 200),
    ("PUT", "/admin/responses/spare-xml", ONBOARDING_XML, "application/yang-data+xml", 200),
    ("PUT", "/admin/responses/bad", b'{"nope": 1}', YANG_JSON, 400),
    ("PUT", "/admin/responses/bad", REDIRECT, "text/plain", 415),
    ("GET", "/admin/responses", None, "", 200),
    ("GET", "/admin/responses/spare", None, "", 200),
    ("GET", "/admin/responses/missing", None, "", 404),
    ("PUT", "/admin/devices/SN-9", b'{"response": "spare"}', "application/json", 200),
    ("PUT", "/admin/devices/SN-9", b'{"response": "missing"}', "application/json", 404),
    ("PUT", "/admin/devices/SN-9", b'{"answer": 1}', "application/json", 400),
    ("GET", "/admin/devices", None, "", 200),
    ("DELETE", "/admin/responses/spare", None, "", 404),  # still assigned to SN-9
    ("DELETE", "/admin/responses/spare-xml", None, "", 200),
    ("PUT", "/admin/devices/SN-9/voucher", b"not a voucher", "application/json", 400),
    ("PUT", "/admin/devices/SN-9/voucher", b"garbage", "application/voucher-cms+json", 400),
    ("GET", "/admin/progress", None, "", 200),
    ("GET", "/admin/progress?serial=SN-1", None, "", 200),
    ("GET", "/admin/openapi.json", None, "", 200),
]


def test_admin_api_answers_as_its_openapi_document_says(lab: Lab) -> None:
    """The served document names every route the admin listener answers, and every answer,
    refusals included, validates against it (``_admin`` checks each)."""
    reached = set()
    for method, path, body, media, expected in ADMIN_CALLS:
        status, payload = _admin(lab, method, path, body, media)
        assert status == expected, (method, path, payload)
        reached.add((method, path.partition("?")[0]))
    doc = _admin_document(lab)
    templates = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}

    def served(method: str, template: str) -> bool:
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        return any(m == method and re.fullmatch(pattern, p) for m, p in reached)

    assert sorted(t for t in templates if not served(*t)) == []
    # a path outside the document is not answered as an operation
    status, _, _ = _curl_admin(lab, "GET", "/admin/nothing-here", None, "")
    assert status == 404


def test_admin_api_refuses_a_device_certificate(lab: Lab) -> None:
    args = ["curl", "-sS", "--max-time", "20", "--cacert", str(lab.folder / "sztp-ca.pem"),
            "--cert", str(lab.device / "idevid.pem"), "--key", str(lab.device / "idevid.key"),
            f"https://127.0.0.1:{lab.admin_port}/admin/devices"]  # fmt: skip
    done = subprocess.run(args, capture_output=True, timeout=30)
    assert done.returncode != 0 or b"devices" not in done.stdout


@pytest.mark.parametrize(
    ("user", "status"), [("SN-1:correct horse", 200), ("SN-1:wrong", 401), ("SN-2:x", 401)]
)
def test_http_basic_where_configured(lab: Lab, user: str, status: int) -> None:
    got, body, head = lab.curl(GBD, b"", identity=lab.root, extra=("-u", user))
    assert got == status, body
    if status == 401:
        assert "Basic realm" in head
        assert _error(body)["error-tag"] == "access-denied"
    else:
        assert "conveyed-information" in _output(body)


def test_bootstrap_complete_keeps_host_keys_and_trust_anchors(lab: Lab) -> None:
    key = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519" + bytes(36)).decode()
    anchor = base64.b64encode(b"certs-only cms").decode()
    report = {
        "ietf-sztp-bootstrap-server:input": {
            "progress-type": "bootstrap-complete",
            "ssh-host-keys": {"ssh-host-key": [{"algorithm": "ssh-ed25519", "key-data": key}]},
            "trust-anchor-certs": {"trust-anchor-cert": [anchor]},
        }
    }
    status, body, _ = lab.curl(PROGRESS, json.dumps(report).encode())
    assert status == 204, body
    shown = json.loads(
        run_cli("sztp", "progress", "--dir", lab.folder, "--serial", "SN-1", "--json").stdout
    )[-1]
    assert shown["progress-type"] == "bootstrap-complete"
    assert shown["ssh-host-keys"] == [{"algorithm": "ssh-ed25519", "key-data": key}]
    assert shown["trust-anchor-certs"] == [anchor]


@pytest.mark.parametrize(
    ("user", "status"), [("SN-1:correct horse", 200), ("SN-1:wrong", 401), ("SN-2:x", 401)]
)
def test_http_basic_beside_the_idevid_is_checked(lab: Lab, user: str, status: int) -> None:
    """Credentials a device offers with its IDevID must be right and name the same device."""
    got, body, _ = lab.curl(GBD, b"", extra=("-u", user))
    assert got == status, body
    if status == 401:
        assert _error(body)["error-tag"] == "access-denied"
