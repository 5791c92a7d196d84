"""LDevID renewal by EST simplereenroll (RFC 7030 §4.2.2, RFC 8995 §5.9.3) against the real
``zerotouch registrar serve`` and MASA on 127.0.0.1: devices enrolled by the real pledge
renew with ``services.reenroll_client.reenroll`` and with curl + OpenSSL, and every attack
on the endpoint is refused with its own error.

The registrar issues LDevIDs for ``ldevid_lifetime_seconds`` (registrar.toml); an older
LDevID stops working once a newer one has authenticated a renewal.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.e2e.test_brski_flow import Lab, enroll_here, make_lab, write_pledge
from tests.support.processes import run_cli
from tests.support.waiting import wait_until
from zerotouch_plugin.artifacts import certs, est
from zerotouch_plugin.artifacts.certs import Identity
from zerotouch_plugin.config import RegistrarConfig, load_config
from zerotouch_plugin.errors import (
    CertificateError,
    ConfigError,
    Expired,
    InvalidInput,
    PayloadTooLarge,
    StorageUnavailable,
    ZerotouchError,
)
from zerotouch_plugin.roles.registrar import ldevid_subject
from zerotouch_plugin.roles.renewal import (
    RenewalPolicy,
    Validity,
    next_attempt,
    renewal_due,
    renewal_time,
)
from zerotouch_plugin.services import certfiles
from zerotouch_plugin.services.reenroll_client import reenroll
from zerotouch_plugin.services.registrar import (
    Registrar,
    load_registrar,
    registrar_app,
    tls_context,
)
from zerotouch_plugin.services.registrar_files import CONFIG_FILE, DB_FILE
from zerotouch_plugin.store.db import open_role_database
from zerotouch_plugin.store.registrar import EnrollmentView, RegistrarRepository

LIFETIME = 3600  # ldevid_lifetime_seconds of the lab's registrar


@contextmanager
def lifetime_lab(root: Path, seconds: int) -> Iterator[Lab]:
    """A MASA and a registrar issuing LDevIDs for ``seconds``; both stopped on exit."""
    lab = make_lab(root)
    with (lab.domain / "registrar.toml").open("a") as fh:
        fh.write(f"ldevid_lifetime_seconds = {seconds}\n")
    try:
        lab.start_masa()
        lab.start_registrar()
        yield lab
    finally:
        lab.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with lifetime_lab(tmp_path_factory.mktemp("reenroll"), LIFETIME) as lab:
        yield lab


@dataclass
class Device:
    serial: str
    folder: Path

    @property
    def ldevid(self) -> Identity:
        return certfiles.load_identity(self.folder / "ldevid.pem", self.folder / "ldevid.key")

    @property
    def domain_ca(self) -> list[x509.Certificate]:
        return certs.load_certs((self.folder / "domain-ca.pem").read_bytes())


def enrolled(lab: Lab) -> Device:
    """A device the real pledge enrolled (IDevID, voucher, simpleenroll, enrollstatus)."""
    serial, folder = lab.pledge()
    enroll_here(folder, lab.registrar_url)
    return Device(serial, folder)


def csr_for(
    serial: str, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, **extra: x509.ExtensionType
) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(x509.NameOID.SERIAL_NUMBER, serial)])
    )
    for value in extra.values():
        builder = builder.add_extension(value, critical=False)
    return builder.sign(key, hashes.SHA256())


def post_csr(
    lab: Lab,
    device: Device,
    csr_der: bytes,
    tmp_path: Path,
    *,
    client: str = "ldevid",
    path: str = "/.well-known/est/simplereenroll",
    url: str | None = None,
) -> tuple[str, str]:
    """curl POSTs a DER CSR to ``path`` of ``url`` (the lab's registrar) with the device's
    ``client`` certificate: the status and the answer's text."""
    (tmp_path / "csr.der").write_bytes(csr_der)
    out = tmp_path / "answer.txt"
    done = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "--max-time", "30",
         "--cacert", device.folder / "domain-ca.pem",
         "--cert", device.folder / f"{client}.pem", "--key", device.folder / f"{client}.key",
         "-H", "Content-Type: application/pkcs10", "--data-binary", f"@{tmp_path / 'csr.der'}",
         "-w", "%{http_code}", "-o", out, (url or lab.registrar_url) + path],
        capture_output=True, text=True,
    )  # fmt: skip
    return done.stdout, out.read_text() if out.exists() else ""


def renew(
    lab: Lab, device: Device, csr: x509.CertificateSigningRequest, current: Identity | None = None
) -> tuple[x509.Certificate, ...]:
    return asyncio.run(
        reenroll(
            lab.registrar_url,
            current=current or device.ldevid,
            csr=csr,
            trust=device.domain_ca,
            timeout=20,
        )
    )


def spki(key: object) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined,no-any-return]


@contextmanager
def registrar_here(lab: Lab) -> Iterator[tuple[Registrar, str]]:
    """A registrar of the lab's domain served in this process (a thread with its own event
    loop), so that a test can place an event between two steps of a request: the registrar
    and its URL."""
    config = load_config(RegistrarConfig, lab.domain / CONFIG_FILE, {})
    registrar = load_registrar(lab.domain, config)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(registrar_app(registrar), access_log=None)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> str:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls_context(registrar))
        await site.start()
        return f"https://127.0.0.1:{runner.addresses[0][1]}"

    try:
        yield registrar, asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def repository(lab: Lab) -> RegistrarRepository:
    """The registrar's own database (SQLite in WAL mode, shared with the running process)."""
    return RegistrarRepository(open_role_database(lab.domain, None, DB_FILE))


# ---------------------------------------------------------------------------------------------
# renewal


def test_renewal_with_a_new_key_then_the_same_key(lab: Lab) -> None:
    device = enrolled(lab)
    first = device.ldevid
    assert lab.state(device.serial) == "enroll-confirmed"
    lifetime = first.cert.not_valid_after_utc - first.cert.not_valid_before_utc
    # ldevid_lifetime_seconds, backdated by a tenth of it at most (5 min)
    assert lifetime == timedelta(seconds=LIFETIME + min(300, LIFETIME // 10))

    new_key = ec.generate_private_key(ec.SECP256R1())
    renewed = renew(lab, device, csr_for(device.serial, new_key))
    second = renewed[0]
    assert spki(second.public_key()) == spki(new_key.public_key())
    assert second.subject == ldevid_subject(device.serial)
    assert second.serial_number != first.cert.serial_number
    assert second.not_valid_after_utc - second.not_valid_before_utc == lifetime
    record = lab.device(device.serial)
    assert record is not None
    assert record["state"] == "enroll-confirmed"  # renewal keeps the confirmed enrollment
    assert record["ldevid_fingerprint"] == certs.fingerprint(second)

    # the same key again (RFC 7030 §4.2.2 allows it), authenticated by the second LDevID
    current = Identity(second, new_key)
    third = renew(lab, device, csr_for(device.serial, new_key), current=current)[0]
    assert spki(third.public_key()) == spki(new_key.public_key())

    # the first LDevID was superseded when the second authenticated a renewal
    with pytest.raises(CertificateError, match=r"revoked .*superseded by"):
        renew(lab, device, csr_for(device.serial, ec.generate_private_key(ec.SECP256R1())))
    repo = repository(lab)
    events = [e for e, _, _ in repo.certificate_events(certs.fingerprint(first.cert))]
    assert events == ["renewed", "revoked"]
    assert [e for e, _, _ in repo.certificate_events(certs.fingerprint(second))] == ["renewed"]
    # the second still renews (until the third is used)
    assert renew(lab, device, csr_for(device.serial, new_key), current=current)


def test_curl_and_openssl_renew(lab: Lab, tmp_path: Path) -> None:
    """``openssl req`` makes the CSR, curl POSTs it base64 (RFC 7030 §4.2.1) with the LDevID
    as client certificate, ``openssl pkcs7`` reads the certs-only answer."""
    device = enrolled(lab)
    key, csr_der = tmp_path / "new.key", tmp_path / "csr.der"
    subprocess.run(
        ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", key, "-subj", f"/serialNumber={device.serial}",
         "-outform", "DER", "-out", csr_der],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        ["openssl", "base64", "-in", csr_der, "-out", tmp_path / "csr.b64"], check=True
    )  # fmt: skip
    done = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "--max-time", "30",
         "--cacert", device.folder / "domain-ca.pem",
         "--cert", device.folder / "ldevid.pem", "--key", device.folder / "ldevid.key",
         "-H", "Content-Type: application/pkcs10", "--data-binary", f"@{tmp_path / 'csr.b64'}",
         "-w", "\n%{http_code} %{content_type}", "-o", tmp_path / "answer.b64",
         lab.registrar_url + "/.well-known/est/simplereenroll"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    assert done.stdout.split()[-3:] == ["200", "application/pkcs7-mime;", "smime-type=certs-only"]
    p7 = tmp_path / "answer.p7"
    subprocess.run(
        ["openssl", "base64", "-d", "-in", tmp_path / "answer.b64", "-out", p7], check=True
    )  # fmt: skip
    pem = subprocess.run(
        ["openssl", "pkcs7", "-inform", "DER", "-in", p7, "-print_certs"],
        check=True,
        capture_output=True,
    ).stdout
    (renewed,) = certs.load_certs(pem)
    assert certs.serial_number_of(renewed) == device.serial
    key_pub = subprocess.run(
        ["openssl", "pkey", "-in", key, "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    assert spki(renewed.public_key()) == key_pub
    (tmp_path / "renewed.pem").write_bytes(pem)
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", device.folder / "domain-ca.pem", tmp_path / "renewed.pem"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert verified.returncode == 0 and ": OK" in verified.stdout, verified.stderr


def test_an_idevid_is_sent_to_simpleenroll(lab: Lab, tmp_path: Path) -> None:
    device = enrolled(lab)
    csr = csr_for(device.serial, ec.generate_private_key(ec.SECP256R1()))
    status, answer = post_csr(
        lab, device, csr.public_bytes(Encoding.DER), tmp_path, client="idevid"
    )
    assert status == "403"
    assert answer.startswith("bad-certificate:") and "/.well-known/est/simpleenroll" in answer


# ---------------------------------------------------------------------------------------------
# attacks


def test_expired_ldevid_is_refused_at_the_handshake(lab: Lab, tmp_path: Path) -> None:
    """An LDevID this registrar issued and recorded, past its notAfter: the registrar's TLS
    handshake refuses it and logs why; the client refuses to try, naming the validity."""
    device = enrolled(lab)
    ca = certfiles.load_identity(lab.domain / "ca.pem", lab.domain / "ca.key")
    key = ec.generate_private_key(ec.SECP256R1())
    past = datetime.now(UTC) - timedelta(days=3)
    old = certs.issue_from_csr(
        ca, csr_for(device.serial, key), subject=ldevid_subject(device.serial), san=[],
        now=past, lifetime=timedelta(days=1),
    )  # fmt: skip
    repository(lab).record_certificate(
        device.serial, cert_der=old.public_bytes(Encoding.DER), fingerprint=certs.fingerprint(old),
        not_after=old.not_valid_after_utc, kind="enroll", advance=lambda s: s or "enrolled",
        now=past,
    )  # fmt: skip
    expired = tmp_path / "expired"
    expired.mkdir()
    certfiles.write_certs(expired / "ldevid.pem", [old])
    certfiles.write_key(expired / "ldevid.key", key)
    (expired / "domain-ca.pem").write_bytes((device.folder / "domain-ca.pem").read_bytes())
    csr = csr_for(device.serial, ec.generate_private_key(ec.SECP256R1()))
    log = lab.registrars[0].log_path
    before = log.read_text().count("certificate has expired")
    status, answer = post_csr(
        lab, Device(device.serial, expired), csr.public_bytes(Encoding.DER), tmp_path
    )
    assert status == "000" and answer == ""  # no HTTP answer: the handshake failed
    # the registrar logs the refusal after curl has its alert: wait for the line, then count
    wait_until(
        "the registrar logs the expired certificate",
        lambda: log.read_text().count("certificate has expired") > before or None,
    )
    assert log.read_text().count("certificate has expired") == before + 1
    with pytest.raises(Expired, match="cannot renew; enroll again with the IDevID"):
        renew(lab, device, csr, current=Identity(old, key))


def test_another_devices_ldevid_cannot_renew_for_a_different_serial(
    lab: Lab, tmp_path: Path
) -> None:
    mine, theirs = enrolled(lab), enrolled(lab)
    csr = csr_for(theirs.serial, ec.generate_private_key(ec.SECP256R1()))
    status, answer = post_csr(lab, mine, csr.public_bytes(Encoding.DER), tmp_path)
    assert status == "403"
    assert answer.startswith(f"wrong-serial: the CSR asks for serialNumber '{theirs.serial}'")
    # the client refuses to send such a request at all
    with pytest.raises(ConfigError, match="must ask for serialNumber"):
        renew(lab, mine, csr)
    record = lab.device(mine.serial)
    assert record is not None and "wrong-serial" in str(record["last_error"])


def test_revoked_and_unknown_ldevids_are_refused(lab: Lab, tmp_path: Path) -> None:
    device = enrolled(lab)
    key = ec.generate_private_key(ec.SECP256R1())
    # unknown: from the domain CA, names the device, but never issued by the registrar
    ca = certfiles.load_identity(lab.domain / "ca.pem", lab.domain / "ca.key")
    forged = certs.issue_from_csr(
        ca, csr_for(device.serial, key), subject=ldevid_subject(device.serial), san=[],
        now=datetime.now(UTC), lifetime=timedelta(hours=1),
    )  # fmt: skip
    with pytest.raises(CertificateError, match="not one this registrar issued"):
        renew(lab, device, csr_for(device.serial, key), current=Identity(forged, key))
    # revoked by the operator while the registrar serves
    fingerprint = certs.fingerprint(device.ldevid.cert)
    revoked = run_cli(
        "registrar", "revoke", "--dir", lab.domain, "--serial", device.serial,
        "--reason", "key compromised",
    )  # fmt: skip
    assert revoked.stdout == f"revoked {fingerprint}\n"
    with pytest.raises(CertificateError, match=r"revoked .*key compromised"):
        renew(lab, device, csr_for(device.serial, key))
    # nor does it enroll by simpleenroll
    csr_der = csr_for(device.serial, key).public_bytes(Encoding.DER)
    path = "/.well-known/est/simpleenroll"
    status, answer = post_csr(lab, device, csr_der, tmp_path, path=path)
    assert status == "403" and answer.startswith("bad-certificate:") and "revoked" in answer
    record = lab.device(device.serial)
    assert record is not None and record["ldevid_fingerprint"] == fingerprint  # unchanged
    assert "was revoked at" in str(record["last_error"])  # the refusal noted on the device


def test_a_revocation_during_simpleenroll_with_the_ldevid_wins(lab: Lab, tmp_path: Path) -> None:
    """``registrar revoke --serial`` lands between the check of the LDevID that
    authenticates a simpleenroll and the write of the new certificate (a registrar of the
    lab's domain in this process, so the revocation can be placed there): the revocation
    holds under the device's lock and no certificate is issued on the revoked LDevID."""
    device = enrolled(lab)
    csr_der = csr_for(device.serial, ec.generate_private_key(ec.SECP256R1())).public_bytes(
        Encoding.DER
    )
    with registrar_here(lab) as (registrar, url):
        read_view = registrar.repo.enrollment_view

        def revoke_then_read(serial: str) -> EnrollmentView:
            registrar.repo.revoke_device_certificates(
                serial, reason="key compromised", now=datetime.now(UTC)
            )
            return read_view(serial)

        registrar.repo.enrollment_view = revoke_then_read  # type: ignore[method-assign]
        status, answer = post_csr(
            lab, device, csr_der, tmp_path, path="/.well-known/est/simpleenroll", url=url
        )
    assert status == "409" and answer.startswith("conflict:") and "revoked" in answer, answer
    assert (lab.device(device.serial) or {}).get("last_error") == answer.strip()
    history = list(repository(lab).certificates(device.serial))
    assert [certs.fingerprint(x509.load_der_x509_certificate(der)) for der in history] == [
        certs.fingerprint(device.ldevid.cert)
    ]


def test_serials_equal_but_for_case_enrolling_at_once_do_not_share_a_name(
    lab: Lab, tmp_path: Path
) -> None:
    """Two devices whose serials differ only in case enroll at the same moment: both have
    read that no device holds their LDevID name before either wrote; under the lock the
    second sees the first's LDevID and is refused, so the name stays one device's."""
    serials = ("CASE-TWIN-ab", "CASE-TWIN-AB")
    devices = []
    for serial in serials:
        folder = lab.root / "pledges" / serial
        write_pledge(lab, serial, folder, now=datetime.now(UTC))
        run_cli("registrar", "allow", "--dir", lab.domain, "--serial", serial)
        shutil.copy(lab.domain / "ca.pem", folder / "domain-ca.pem")  # for curl --cacert
        devices.append(Device(serial, folder))
        (tmp_path / serial).mkdir()
    with registrar_here(lab) as (registrar, url):
        record = registrar.repo.record_certificate

        def unavailable(*args: object, **kwargs: object) -> None:
            raise StorageUnavailable("no LDevID yet")

        # both pledges get their voucher accepted; their simpleenroll fails
        registrar.repo.record_certificate = unavailable  # type: ignore[method-assign]
        for device in devices:
            with pytest.raises(ZerotouchError, match="503"):
                enroll_here(device.folder, url)
        assert [lab.state(serial) for serial in serials] == ["voucher-accepted"] * 2
        registrar.repo.record_certificate = record  # type: ignore[method-assign]
        # both read their view before either records its certificate
        both_read = threading.Barrier(2, timeout=20)
        read_view = registrar.repo.enrollment_view

        def read_together(serial: str) -> EnrollmentView:
            view = read_view(serial)
            both_read.wait()
            return view

        registrar.repo.enrollment_view = read_together  # type: ignore[method-assign]

        def simpleenroll(device: Device) -> tuple[str, str]:
            key = ec.generate_private_key(ec.SECP256R1())
            csr_der = csr_for(device.serial, key).public_bytes(Encoding.DER)
            path = "/.well-known/est/simpleenroll"
            return post_csr(
                lab, device, csr_der, tmp_path / device.serial, client="idevid", path=path, url=url
            )

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(simpleenroll, devices))
    assert sorted(status for status, _ in answers) == ["200", "403"], answers
    refused = next(answer for status, answer in answers if status == "403")
    assert refused.startswith("policy-refused:") and "already holds" in refused, refused
    holders = [s for s in serials if (lab.device(s) or {}).get("ldevid_fingerprint")]
    assert len(holders) == 1, holders
    (other,) = set(serials) - set(holders)
    assert (lab.device(other) or {}).get("last_error") == refused.strip()  # why, on record


def test_oversize_csr_and_weak_key_are_refused(lab: Lab) -> None:
    device = enrolled(lab)
    names = [x509.DNSName(f"name-{i:05d}.example.com") for i in range(4000)]
    big = csr_for(
        device.serial,
        ec.generate_private_key(ec.SECP256R1()),
        san=x509.SubjectAlternativeName(names),
    )
    with pytest.raises(PayloadTooLarge, match="too-large"):
        renew(lab, device, big)
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(InvalidInput, match="RSA-1024"):
        renew(lab, device, csr_for(device.serial, weak))
    record = lab.device(device.serial)
    assert record is not None and record["ldevid_fingerprint"] == certs.fingerprint(
        device.ldevid.cert
    )


def test_an_ed448_key_is_enrolled_and_renewed(lab: Lab, tmp_path: Path) -> None:
    """Ed448 is one of the LDevID keys the registrar accepts (docs/cli/registrar.md): a CSR
    for one gets its LDevID by simpleenroll (IDevID) and by simplereenroll (LDevID)."""
    device = enrolled(lab)
    key = ed448.Ed448PrivateKey.generate()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.SERIAL_NUMBER, device.serial)]))
        .sign(key, None)
    )
    for client, path in (
        ("idevid", "/.well-known/est/simpleenroll"),
        ("ldevid", "/.well-known/est/simplereenroll"),
    ):
        status, answer = post_csr(
            lab, device, csr.public_bytes(Encoding.DER), tmp_path, client=client, path=path
        )
        assert status == "200", answer
        (issued,) = est.decode_certs_only(answer.encode())
        assert spki(issued.public_key()) == spki(key.public_key())
        assert issued.subject == ldevid_subject(device.serial)


# ---------------------------------------------------------------------------------------------
# renewal on schedule


SHORT = 20  # seconds: ldevid_lifetime_seconds of the short-lived lab


def test_a_short_lived_ldevid_is_renewed_twice_on_schedule(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """``roles.renewal`` says when, ``reenroll`` renews: with a 20 s LDevID renewed at half
    its validity, two renewals in a row, each before the LDevID it replaces expires."""
    with lifetime_lab(tmp_path_factory.mktemp("short"), SHORT) as lab:
        device = enrolled(lab)
        policy = RenewalPolicy(fraction=0.5)
        current = device.ldevid
        history = [current.cert]
        deadline = time.monotonic() + 4 * SHORT
        while len(history) < 3 and time.monotonic() < deadline:
            validity = Validity.of(current.cert)
            now = datetime.now(UTC)
            if not renewal_due(policy, validity, now):
                wait = (next_attempt(policy, validity) - now).total_seconds()
                time.sleep(min(max(wait, 0.05), 1.0))
                continue
            key = ec.generate_private_key(ec.SECP256R1())
            (renewed,) = renew(lab, device, csr_for(device.serial, key), current=current)
            assert now < current.cert.not_valid_after_utc  # renewed before expiry
            assert now >= renewal_time(policy, validity)  # and not before it was due
            assert renewed.not_valid_after_utc - now <= timedelta(seconds=SHORT + 1)
            current = Identity(renewed, key)
            history.append(renewed)
        assert len(history) == 3, f"{len(history) - 1} renewal(s) in {4 * SHORT} s"
        record = lab.device(device.serial)
        assert record is not None and record["state"] == "enroll-confirmed"
        assert record["ldevid_fingerprint"] == certs.fingerprint(history[-1])
        first = repository(lab).issued_certificate(certs.fingerprint(history[0]))
        assert first is not None and first.revoked_reason == (
            f"superseded by {certs.fingerprint(history[1])}"
        )
