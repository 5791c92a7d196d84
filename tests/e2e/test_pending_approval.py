"""Registrar policy ``ask`` with a real registrar, MASA and pledge CLI on 127.0.0.1: a trusted
pledge that is not on the allow list gets 202 + Retry-After and resends its voucher-request
while it waits; ``registrar approve`` (another process, through the database) lets the next
resend through, ``registrar deny`` refuses it, and each decision is recorded with who made it."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from tests.e2e.test_brski_flow import Lab, enroll_here, make_lab
from tests.support.admin_openapi import check_admin_answer
from tests.support.processes import _command, _env, run_cli
from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.store.db import open_role_database
from zerotouch_plugin.store.registrar import RegistrarRepository

PATIENT = ("--retries", "60", "--backoff", "0.2", "--max-backoff", "1", "--timeout", "15")


@pytest.fixture(scope="module")
def ask_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = make_lab(tmp_path_factory.mktemp("ask"))
    ask(lab)
    try:
        lab.start_masa()
        lab.start_registrar()
        yield lab
    finally:
        lab.close()


def ask(lab: Lab) -> None:
    """Turn on policy ``ask`` in the lab registrar's configuration (init writes it off)."""
    config = lab.domain / "registrar.toml"
    text = config.read_text()
    assert "ask = false\n" in text
    config.write_text(text.replace("ask = false\n", "ask = true\n"))


def repo(lab: Lab) -> RegistrarRepository:
    return RegistrarRepository(open_role_database(lab.domain, None, "registrar.db"))


def start_pledge(lab: Lab, folder: Path) -> subprocess.Popen[str]:
    args = ("pledge", "enroll", "--dir", folder, "--registrar", lab.registrar_url, *PATIENT)
    return subprocess.Popen(
        _command(args, ()), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
    )


def wait_pending(lab: Lab, serial: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(p.decision == "pending" for p in repo(lab).policy_for(serial)):
            return
        time.sleep(0.2)
    raise AssertionError(f"{serial} never became pending")


def test_a_held_device_enrolls_once_approved(ask_lab: Lab) -> None:
    serial, folder = ask_lab.pledge(allow=False)
    pledge = start_pledge(ask_lab, folder)
    try:
        wait_pending(ask_lab, serial)
        time.sleep(1.5)  # a resend or two while it waits: still held, nothing issued
        assert pledge.poll() is None
        assert ask_lab.state(serial) is None
        out = run_cli("registrar", "approve", "--dir", ask_lab.domain, "--serial", serial).stdout
        assert f"approved {serial}" in out
        _, err = pledge.communicate(timeout=60)
    finally:
        pledge.kill()
    assert pledge.returncode == 0, err
    assert (folder / "ldevid.pem").is_file()
    assert ask_lab.state(serial) == "enroll-confirmed"
    events = [e for e in repo(ask_lab).device_events(serial, limit=50)]
    kinds = [e.type for e in events]
    assert kinds.index("device-pending") < kinds.index("device-allowed") < kinds.index("enrolled")
    action = next(e for e in events if e.type == "operator-action")
    assert action.data["action"] == "allow" and str(action.data["by"]).startswith("cli")
    # the approval replaced the held entry: one allow entry, with the IDevID's issuer
    assert [p.decision for p in repo(ask_lab).policy_for(serial)] == ["allow"]


def test_a_held_device_that_is_denied_is_refused(ask_lab: Lab) -> None:
    serial, folder = ask_lab.pledge(allow=False)
    pledge = start_pledge(ask_lab, folder)
    try:
        wait_pending(ask_lab, serial)
        run_cli("registrar", "deny", "--dir", ask_lab.domain, "--serial", serial)
        _, err = pledge.communicate(timeout=60)
    finally:
        pledge.kill()
    assert pledge.returncode == 1
    assert "deny list" in err
    assert not (folder / "ldevid.pem").exists()
    assert [p.decision for p in repo(ask_lab).policy_for(serial)] == ["deny"]


def test_approve_names_a_device_that_is_not_waiting(ask_lab: Lab) -> None:
    result = run_cli(
        "registrar", "approve", "--dir", ask_lab.domain, "--serial", "NOBODY", check=False
    )
    assert result.returncode != 0
    assert "not waiting for approval" in result.stderr


def curl(cert_dir: Path, base: str, method: str, path: str) -> tuple[int, str, bytes]:
    """``curl`` with a client certificate: status, content type, body."""
    result = subprocess.run(
        [
            "curl", "-sS", "--cacert", str(cert_dir / "ca.pem"),
            "--cert", str(cert_dir / "cert.pem"), "--key", str(cert_dir / "key.pem"),
            "-X", method, "-o", "-", "-w", "\n%{http_code} %{content_type}",
            f"{base}{path}",
        ],
        capture_output=True, timeout=30, check=True,
    )  # fmt: skip
    body, _, tail = result.stdout.rpartition(b"\n")
    status, _, media = tail.decode().partition(" ")
    check_admin_answer(method, path, int(status), media or None, body)
    return int(status), media, body


def test_another_registrar_on_the_database_approves_by_the_admin_api(ask_lab: Lab) -> None:
    """The pledge waits at one registrar process; the operator approves at another one on
    the same database (admin API, admin certificate; an NMS certificate cannot)."""
    admin, nms = ask_lab.root / "ops-admin", ask_lab.root / "ops-nms"
    out = run_cli(
        "registrar", "issue-client-cert", "--dir", ask_lab.domain, "--name", "ops",
        "--out", admin, "--admin", "--p12",
    ).stdout  # fmt: skip
    assert "client.p12" in out
    password = (admin / "client.p12.password").read_text().strip()
    assert (admin / "client.p12").stat().st_mode & 0o077 == 0
    shown = subprocess.run(
        ["openssl", "pkcs12", "-in", str(admin / "client.p12"), "-nokeys", "-passin",
         f"pass:{password}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "OU=zerotouch-admin" in shown.replace(" = ", "=")
    run_cli("registrar", "issue-client-cert", "--dir", ask_lab.domain, "--name", "nms",
            "--out", nms)  # fmt: skip
    serial, folder = ask_lab.pledge(allow=False)
    other = ask_lab.start_registrar().url
    pledge = start_pledge(ask_lab, folder)  # to the first registrar
    try:
        wait_pending(ask_lab, serial)
        status, _, body = curl(admin, other, "GET", f"/admin/devices/{serial}")
        assert status == 200 and json.loads(body)["policy"][0]["decision"] == "pending"
        assert curl(nms, other, "POST", f"/admin/devices/{serial}/approve")[0] == 403
        status, _, body = curl(admin, other, "POST", f"/admin/devices/{serial}/approve")
        assert status == 200 and json.loads(body)["decided"] == 1
        assert curl(admin, other, "POST", f"/admin/devices/{serial}/approve")[0] == 404
        _, err = pledge.communicate(timeout=60)
    finally:
        pledge.kill()
        ask_lab.registrars.pop().stop()
    assert pledge.returncode == 0, err
    action = next(
        e for e in repo(ask_lab).device_events(serial, limit=50) if e.type == "operator-action"
    )
    assert action.data["by"] == "admin certificate ops"


def enroll_with_idevid(folder: Path, url: str) -> tuple[int, str, bytes]:
    """curl POSTs a DER CSR for the device's serial to simpleenroll with its IDevID: the
    status, the Retry-After header (empty if none) and the body."""
    idevid = certs.load_certs((folder / "idevid.pem").read_bytes())[0]
    name = idevid.subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(name))
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    )
    (folder / "csr.der").write_bytes(csr.public_bytes(Encoding.DER))
    result = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "--max-time", "30",
         "--cacert", folder / "domain-ca.pem",
         "--cert", folder / "idevid.pem", "--key", folder / "idevid.key",
         "-H", "Content-Type: application/pkcs10", "--data-binary", f"@{folder / 'csr.der'}",
         "-D", folder / "headers.txt", "-o", folder / "answer.bin", "-w", "%{http_code}",
         f"{url}/.well-known/est/simpleenroll"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    headers = (folder / "headers.txt").read_text().splitlines()
    retry = [h.split(":", 1)[1].strip() for h in headers if h.lower().startswith("retry-after:")]
    return int(result.stdout), retry[0] if retry else "", (folder / "answer.bin").read_bytes()


def test_an_idevid_enrollment_held_for_approval_is_answered_202(ask_lab: Lab) -> None:
    """A device enrolled once, then taken off the allow list, enrolls again with its IDevID
    (its LDevID lapsed): with policy ``ask`` it is held like a voucher-request, 202 with
    Retry-After (RFC 7030 §4.2.3) until an operator approves, then enrolled."""
    serial, folder = ask_lab.pledge()
    enroll_here(folder, ask_lab.registrar_url)
    run_cli("registrar", "remove", "--dir", ask_lab.domain, "--serial", serial)
    for _ in range(2):  # held, and still held on the retry
        status, retry_after, body = enroll_with_idevid(folder, ask_lab.registrar_url)
        assert (status, retry_after) == (202, "1"), body
        assert [p.decision for p in repo(ask_lab).policy_for(serial)] == ["pending"]
    run_cli("registrar", "approve", "--dir", ask_lab.domain, "--serial", serial)
    status, _, body = enroll_with_idevid(folder, ask_lab.registrar_url)
    assert status == 200, body
