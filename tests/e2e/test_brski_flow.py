"""BRSKI end to end with real processes on 127.0.0.1: ``zerotouch masa serve``, ``zerotouch
registrar serve`` and ``zerotouch pledge enroll``, over real TLS, checked with OpenSSL.

One lab (vendor, MASA, registrar) serves the module; tests that need a hostile registrar run
it in the test's own event loop with the real registrar's or another domain's certificate.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from tests.support.masa_process import post
from tests.support.processes import (
    ServerProcess,
    free_port,
    run_cli,
    run_cli_async,
    start_cli,
    start_server,
)
from zerotouch_plugin.artifacts import certs, cms
from zerotouch_plugin.artifacts.certs import Identity
from zerotouch_plugin.artifacts.voucher import Assertion, Voucher, VoucherRequest, sign_artifact
from zerotouch_plugin.roles.pledge import (
    PATH_REQUESTVOUCHER,
    PATH_VOUCHER_STATUS,
    Done,
    Enrollment,
    Failed,
    HttpRequest,
    Install,
    Pledge,
    RetryPolicy,
    Wait,
)
from zerotouch_plugin.services import certfiles
from zerotouch_plugin.services._tls import server_context
from zerotouch_plugin.services.pledge_client import (
    PLEDGE_FILES,
    PledgeClient,
    drive,
    load_pledge_config,
    write_enrollment,
)
from zerotouch_plugin.services.pledge_client import enroll as pledge_enroll

OUTPUTS = ("voucher", "domain-ca", "ldevid", "ldevid-key")
FAST_RETRY = ("--retries", "2", "--backoff", "0.2", "--max-backoff", "1", "--timeout", "15")


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


@dataclass
class Lab:
    root: Path
    masa_port: int
    masa: ServerProcess | None = None
    registrars: list[ServerProcess] = field(default_factory=list)
    serials: int = 0

    @property
    def vendor(self) -> Path:
        return self.root / "V"

    @property
    def domain(self) -> Path:
        return self.root / "R"

    @property
    def registrar_url(self) -> str:
        return self.registrars[0].url

    def start_masa(self) -> None:
        self.masa = start_server(
            "masa", "-v", "masa", "serve", "--dir", self.vendor,
            "--listen", f"127.0.0.1:{self.masa_port}",
        )  # fmt: skip

    def stop_masa(self) -> None:
        if self.masa is not None:
            self.masa.stop()
            self.masa = None

    def start_registrar(self, *extra: str, port: int = 0) -> ServerProcess:
        process = start_server(
            "registrar", "-v", "registrar", "serve", "--dir", self.domain,
            "--listen", f"127.0.0.1:{port}", *extra,
        )  # fmt: skip
        self.registrars.append(process)
        return process

    def new_serial(self) -> str:
        self.serials += 1
        return f"ZT-E2E-{self.serials:03d}"

    def pledge(self, *, allow: bool = True, cli: bool = False) -> tuple[str, Path]:
        """A pledge folder, made by ``zerotouch vendor idevid`` (``cli``) or, faster, by the
        same library calls in this process."""
        serial = self.new_serial()
        folder = self.root / "pledges" / serial
        if cli:
            run_cli("vendor", "idevid", "--dir", self.vendor, "--serial", serial, "--out", folder)
        else:
            write_pledge(self, serial, folder, now=datetime.now(UTC))
        if allow:
            run_cli("registrar", "allow", "--dir", self.domain, "--serial", serial)
        return serial, folder

    def device(self, serial: str, *db: str) -> dict[str, Any] | None:
        out = run_cli("registrar", "devices", "--dir", self.domain, "--json", *db).stdout
        rows = json.loads(out)
        rows = rows["devices"] if isinstance(rows, dict) else rows
        return next((r for r in rows if r["serial"] == serial), None)

    def state(self, serial: str, *db: str) -> str | None:
        record = self.device(serial, *db)
        return None if record is None else str(record["state"])

    def close(self) -> None:
        for process in self.registrars:
            process.stop()
        self.stop_masa()


def write_pledge(
    lab: Lab, serial: str, folder: Path, *, now: datetime, days: int | None = None
) -> None:
    """What ``zerotouch vendor idevid`` writes, done in-process (optionally short-lived)."""
    vendor_ca = certfiles.load_identity(lab.vendor / "ca.pem", lab.vendor / "ca.key")
    idevid = certs.issue_idevid(
        vendor_ca, serial, masa_url=f"https://127.0.0.1:{lab.masa_port}", now=now, days=days
    )
    folder.mkdir(parents=True, exist_ok=True)
    certfiles.write_certs(folder / "idevid.pem", [idevid.cert, vendor_ca.cert])
    certfiles.write_key(folder / "idevid.key", idevid.key)
    certfiles.write_certs(folder / "masa-ca.pem", [vendor_ca.cert])


def enroll_here(folder: Path, url: str) -> Enrollment:
    """``zerotouch pledge enroll`` as a library call (same code, no interpreter start-up)."""
    retry = RetryPolicy(attempts=3, base_delay=0.2, max_delay=1)
    return asyncio.run(pledge_enroll(folder, url, retry=retry, timeout=15))


def make_lab(root: Path) -> Lab:
    lab = Lab(root, free_port())
    run_cli(
        "vendor", "init", "--dir", lab.vendor, "--masa-url", f"https://127.0.0.1:{lab.masa_port}"
    )
    run_cli(
        "registrar", "init", "--dir", lab.domain,
        "--manufacturer-ca", lab.vendor / "ca.pem", "--masa-trust", lab.vendor / "ca.pem",
    )  # fmt: skip
    # a short Retry-After while the MASA is down keeps the retry tests quick
    with (lab.domain / "registrar.toml").open("a") as fh:
        fh.write("retry_after = 1\nmasa_timeout = 5.0\n")
    return lab


@contextmanager
def running_lab(root: Path) -> Iterator[Lab]:
    """``make_lab`` with its MASA and registrar started; both stopped on exit."""
    lab = make_lab(root)
    try:
        lab.start_masa()
        lab.start_registrar()
        yield lab
    finally:
        lab.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("brski")) as lab:
        yield lab


def enroll(lab: Lab, folder: Path, *extra: str, url: str | None = None) -> Any:
    return run_cli(
        "pledge", "enroll", "--dir", folder, "--registrar", url or lab.registrar_url,
        *FAST_RETRY, *extra, check=False,
    )  # fmt: skip


def assert_nothing_written(folder: Path) -> None:
    assert not [PLEDGE_FILES[n] for n in OUTPUTS if (folder / PLEDGE_FILES[n]).exists()]


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


# ---------------------------------------------------------------------------------------------
# the happy path


def test_enroll_writes_voucher_domain_ca_and_ldevid(lab: Lab) -> None:
    serial, folder = lab.pledge(cli=True)
    result = enroll(lab, folder)
    assert result.returncode == 0, result.stderr
    assert serial in result.stdout and "sha256:" in result.stdout
    for name in OUTPUTS:
        assert (folder / PLEDGE_FILES[name]).is_file()
    assert stat.S_IMODE((folder / "ldevid.key").stat().st_mode) == 0o600

    # the stored voucher verifies with OpenSSL against the manufacturer anchor
    verified = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", folder / "voucher.cms",
         "-CAfile", folder / "masa-ca.pem", "-purpose", "any"],
        capture_output=True, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    voucher = json.loads(verified.stdout)["ietf-voucher:voucher"]
    assert voucher["serial-number"] == serial
    assert voucher["nonce"]
    domain_ca = certfiles.load_cert_file(lab.domain / "ca.pem")
    assert certs.load_certs(base64.b64decode(voucher["pinned-domain-cert"])) == [domain_ca]

    # the LDevID verifies with OpenSSL against the domain CA the pledge installed
    check = subprocess.run(
        ["openssl", "verify", "-CAfile", folder / "domain-ca.pem", folder / "ldevid.pem"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert check.returncode == 0 and ": OK" in check.stdout, check.stdout + check.stderr
    assert certs.load_certs((folder / "domain-ca.pem").read_bytes()) == [domain_ca]
    ldevid = certfiles.load_identity(folder / "ldevid.pem", folder / "ldevid.key")
    assert certs.serial_number_of(ldevid.cert) == serial

    assert lab.state(serial) == "enroll-confirmed"


def test_masa_configured_to_pin_the_registrar_certificate(lab: Lab) -> None:
    """The configurable alternative (masa.toml ``pin = "registrar"``): the voucher pins the
    registrar certificate itself, and registrar and pledge accept that (RFC 8995 §5.6.2)."""
    config = lab.vendor / "masa.toml"
    lab.stop_masa()
    config.write_text('pin = "registrar"\n')
    try:
        lab.start_masa()
        serial, folder = lab.pledge()
        assert enroll_here(folder, lab.registrar_url).serial == serial
    finally:
        lab.stop_masa()
        config.unlink()
        lab.start_masa()
    voucher = Voucher.from_json(cms.inspect((folder / "voucher.cms").read_bytes()).content)
    registrar_cert = certfiles.load_cert_file(lab.domain / "registrar.pem")
    assert voucher.pinned_domain_cert == der(registrar_cert)
    assert certs.load_certs((folder / "domain-ca.pem").read_bytes()) == [
        certfiles.load_cert_file(lab.domain / "ca.pem")
    ]
    assert lab.state(serial) == "enroll-confirmed"


# ---------------------------------------------------------------------------------------------
# refusals by the registrar


def test_device_not_allowed_is_refused(lab: Lab) -> None:
    serial, folder = lab.pledge(allow=False)
    result = enroll(lab, folder)
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert line.startswith("policy-refused:") and "allow list" in line, line
    assert_nothing_written(folder)
    assert lab.state(serial) == "refused"


def test_unknown_manufacturer_is_refused(lab: Lab, tmp_path: Path) -> None:
    stranger = certs.make_ca("stranger vendor CA", now=datetime.now(UTC))
    idevid = certs.issue_idevid(
        stranger, "STRANGER-1", masa_url=f"https://127.0.0.1:{lab.masa_port}",
        now=datetime.now(UTC),
    )  # fmt: skip
    folder = tmp_path / "P"
    folder.mkdir()
    certfiles.write_certs(folder / "idevid.pem", [idevid.cert, stranger.cert])
    certfiles.write_key(folder / "idevid.key", idevid.key)
    certfiles.write_certs(folder / "masa-ca.pem", [stranger.cert])
    run_cli("registrar", "allow", "--dir", lab.domain, "--serial", "STRANGER-1")
    result = enroll(lab, folder)
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert "refused the TLS connection" in line and "unknown manufacturer" in line, line
    assert_nothing_written(folder)
    assert "STRANGER-1" not in run_cli("registrar", "devices", "--dir", lab.domain).stdout


def test_expired_idevid_is_refused(lab: Lab, tmp_path: Path) -> None:
    """An IDevID issued with a short validity, used after it: the registrar refuses it."""
    folder = tmp_path / "P"
    write_pledge(lab, "EXPIRED-1", folder, now=datetime.now(UTC) - timedelta(days=3), days=1)
    run_cli("registrar", "allow", "--dir", lab.domain, "--serial", "EXPIRED-1")
    result = enroll(lab, folder)
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert "refused the TLS connection" in line and "expired" in line, line
    assert_nothing_written(folder)
    # the registrar's TLS layer refused it: the device never reached the BRSKI handlers
    assert "EXPIRED-1" not in run_cli("registrar", "devices", "--dir", lab.domain).stdout
    # the same device with a valid IDevID is accepted: the refusal was about the expiry
    write_pledge(lab, "EXPIRED-1", folder, now=datetime.now(UTC))
    assert enroll_here(folder, lab.registrar_url).serial == "EXPIRED-1"


def test_replayed_voucher_request_from_another_client_is_refused(lab: Lab) -> None:
    """A captured pledge voucher-request replayed by someone else: the registrar refuses it
    because the TLS client is not the signer (RFC 8995 §5.3)."""
    victim_serial, victim = lab.pledge(allow=False)
    _, thief = lab.pledge(allow=False)
    victim_config = load_pledge_config(victim)
    registrar_cert = certfiles.load_cert_file(lab.domain / "registrar.pem")

    async def replay() -> tuple[int, str]:
        machine = Pledge(victim_config, random_bytes=os.urandom)
        machine.start()
        pvr = machine.connected(registrar_cert, now=datetime.now(UTC))
        assert isinstance(pvr, HttpRequest)
        async with PledgeClient(load_pledge_config(thief), lab.registrar_url, timeout=10) as client:
            answer = await client.send(pvr, now=lambda: datetime.now(UTC))
        return answer.status, answer.body.decode()

    status, body = asyncio.run(replay())
    assert status == 403, body
    assert "not by the TLS client" in body
    assert lab.state(victim_serial) is None  # nothing was recorded for the victim


def replay_pvr(folder: Path, urls: list[str], registrar_cert: x509.Certificate) -> list[str]:
    """The pledge of ``folder`` builds one voucher-request and sends it, unchanged, to each
    URL in turn over its own IDevID TLS; returns ``status reason`` per answer."""

    async def scenario() -> list[str]:
        config = load_pledge_config(folder)
        machine = Pledge(config, random_bytes=os.urandom)
        machine.start()
        pvr = machine.connected(registrar_cert, now=datetime.now(UTC))
        assert isinstance(pvr, HttpRequest)
        answers = []
        for url in urls:
            async with PledgeClient(config, url, timeout=15) as client:
                answer = await client.send(pvr, now=lambda: datetime.now(UTC))
            answers.append(f"{answer.status} {answer.body.decode('utf-8', 'replace')}")
        return answers

    return asyncio.run(scenario())


def test_replayed_voucher_request_is_refused(lab: Lab) -> None:
    """The same pledge voucher-request (same nonce) sent twice: the first gets a voucher, the
    replay a 403 replayed-request, recorded on the device (RFC 8995 §5.3 "stale")."""
    serial, folder = lab.pledge()
    registrar_cert = certfiles.load_cert_file(lab.domain / "registrar.pem")
    first, replay = replay_pvr(folder, [lab.registrar_url] * 2, registrar_cert)
    assert first.startswith("200 "), first
    assert replay.startswith("403 replayed-request:") and "fresh nonce" in replay, replay
    record = lab.device(serial)
    assert record is not None and record["state"] == "voucher-issued"
    assert str(record["last_error"]).startswith("replayed-request:")
    # a new request (fresh nonce) from the same pledge goes through: only the replay failed
    assert enroll_here(folder, lab.registrar_url).serial == serial


def test_masa_refuses_a_replay_the_registrar_cannot_see(lab: Lab, tmp_path: Path) -> None:
    """Two registrar processes of one domain with separate databases: the second has no
    record of the nonce, so the MASA's own check (stored vouchers) refuses the replay and
    the registrar passes its reason on to the pledge."""
    serial, folder = lab.pledge()
    separate = lab.start_registrar("--db", str(tmp_path / "other.db"), "--auto-accept")
    registrar_cert = certfiles.load_cert_file(lab.domain / "registrar.pem")
    try:
        first, replay = replay_pvr(folder, [lab.registrar_url, separate.url], registrar_cert)
    finally:
        lab.registrars.remove(separate)
        separate.stop()
    assert first.startswith("200 "), first
    assert replay.startswith("403 replayed-request: the MASA refused (403)"), replay
    assert lab.state(serial, "--db", str(tmp_path / "other.db")) == "voucher-requested"


# ---------------------------------------------------------------------------------------------
# a hostile registrar in the test's event loop: the pledge refuses what it answers


@dataclass
class FakeRegistrar:
    """Answers requestvoucher with ``make_voucher(pvr)``; records status reports."""

    identity: Identity
    client_ca: x509.Certificate
    make_voucher: Callable[[VoucherRequest, bytes], bytes]
    reports: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def request_voucher(self, request: web.Request) -> web.Response:
        body = await request.read()
        pvr = VoucherRequest.from_json(cms.inspect(body).content)
        return web.Response(
            body=self.make_voucher(pvr, body), content_type=cms.MEDIA_TYPE_VOUCHER_CMS
        )

    async def status(self, request: web.Request) -> web.Response:
        self.reports.append((request.path, json.loads(await request.read())))
        return web.Response(text="recorded")

    async def start(self) -> tuple[web.AppRunner, str]:
        app = web.Application()
        app.router.add_post(PATH_REQUESTVOUCHER, self.request_voucher)
        app.router.add_post(PATH_VOUCHER_STATUS, self.status)
        app.router.add_post("/.well-known/brski/enrollstatus", self.status)
        runner = web.AppRunner(app)
        await runner.setup()
        ctx = server_context(self.identity, client_cas=[self.client_ca], require_client_cert=True)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        port = runner.addresses[0][1]
        return runner, f"https://127.0.0.1:{port}"


def masa_voucher(lab: Lab, pvr: VoucherRequest, **changes: Any) -> bytes:
    """A voucher signed with the lab MASA's real signing key (a genuine-looking voucher)."""
    signer = certfiles.load_identity(lab.vendor / "masa-signer.pem", lab.vendor / "masa-signer.key")
    fields: dict[str, Any] = {
        "created_on": datetime.now(UTC),
        "assertion": Assertion.LOGGED,
        "serial_number": pvr.serial_number,
        "pinned_domain_cert": der(certfiles.load_cert_file(lab.domain / "ca.pem")),
        "nonce": pvr.nonce,
    }
    fields.update(changes)
    return cms.sign(Voucher(**fields).to_json(), signer=signer, now=datetime.now(UTC))


def run_against_fake(
    lab: Lab, fake: FakeRegistrar, folder: Path
) -> tuple[int, str, list[tuple[str, dict[str, Any]]]]:
    async def scenario() -> tuple[int, str]:
        runner, url = await fake.start()
        try:
            code, _, err = await run_cli_async(
                "pledge", "enroll", "--dir", folder, "--registrar", url, *FAST_RETRY
            )
        finally:
            await runner.cleanup()
        return code, err

    code, err = asyncio.run(scenario())
    return code, one_line(err), fake.reports


def real_registrar(lab: Lab) -> Identity:
    return certfiles.load_identity(lab.domain / "registrar.pem", lab.domain / "registrar.key")


def _refused_with_status(reports: list[tuple[str, dict[str, Any]]], reason: str) -> None:
    assert [path for path, _ in reports] == [PATH_VOUCHER_STATUS]
    document = reports[0][1]
    assert document["version"] == 1 and document["status"] is False
    assert reason in document["reason"], document
    assert document["reason-context"]["error"]


def test_voucher_for_another_serial_is_refused_by_the_pledge(lab: Lab) -> None:
    _, folder = lab.pledge(allow=False)
    fake = FakeRegistrar(
        real_registrar(lab),
        certfiles.load_cert_file(lab.vendor / "ca.pem"),
        lambda pvr, _: masa_voucher(lab, pvr, serial_number="SOMEONE-ELSE"),
    )
    code, line, reports = run_against_fake(lab, fake, folder)
    assert code == 1 and line.startswith("wrong-serial:"), line
    _refused_with_status(reports, "wrong-serial")
    assert_nothing_written(folder)


def test_tampered_voucher_is_refused_by_the_pledge(lab: Lab) -> None:
    _, folder = lab.pledge(allow=False)

    def tampered(pvr: VoucherRequest, _: bytes) -> bytes:
        body = masa_voucher(lab, pvr)
        assert b'"logged"' in body
        return body.replace(b'"logged"', b'"verify"')

    fake = FakeRegistrar(
        real_registrar(lab), certfiles.load_cert_file(lab.vendor / "ca.pem"), tampered
    )
    code, line, reports = run_against_fake(lab, fake, folder)
    assert code == 1 and line.startswith(("digest-mismatch:", "bad-signature:")), line
    _refused_with_status(reports, line.split(":", 1)[0])
    assert_nothing_written(folder)


def test_man_in_the_middle_registrar_is_refused(lab: Lab, tmp_path: Path) -> None:
    """A registrar of ANOTHER domain hands the pledge a genuine MASA voucher for this
    pledge (right serial, right nonce) that pins the real domain: the pinned-domain-cert
    does not validate the registrar the pledge talked to (RFC 8995 §5.6.2)."""
    evil = tmp_path / "R-evil"
    run_cli("registrar", "init", "--dir", evil, "--manufacturer-ca", lab.vendor / "ca.pem",
            "--ca-name", "evil domain CA")  # fmt: skip
    _, folder = lab.pledge(allow=False)
    fake = FakeRegistrar(
        certfiles.load_identity(evil / "registrar.pem", evil / "registrar.key"),
        certfiles.load_cert_file(lab.vendor / "ca.pem"),
        lambda pvr, _: masa_voucher(lab, pvr),
    )
    code, line, reports = run_against_fake(lab, fake, folder)
    assert code == 1 and line.startswith("untrusted-signer:"), line
    assert "man-in-the-middle" in line
    _refused_with_status(reports, "man-in-the-middle")
    assert_nothing_written(folder)


def test_replayed_voucher_is_refused_by_the_pledge(lab: Lab) -> None:
    """A voucher this pledge received before, replayed to it: its nonce is not the new one."""
    _, folder = lab.pledge()
    enroll_here(folder, lab.registrar_url)
    old_voucher = (folder / "voucher.cms").read_bytes()
    for name in OUTPUTS:
        (folder / PLEDGE_FILES[name]).unlink()
    fake = FakeRegistrar(
        real_registrar(lab),
        certfiles.load_cert_file(lab.vendor / "ca.pem"),
        lambda pvr, _: old_voucher,
    )
    code, line, reports = run_against_fake(lab, fake, folder)
    assert code == 1 and line.startswith("wrong-nonce:"), line
    _refused_with_status(reports, "wrong-nonce")
    assert_nothing_written(folder)


# ---------------------------------------------------------------------------------------------
# faults: MASA down, restarts between steps


def test_masa_down_then_up(lab: Lab) -> None:
    """The registrar answers 503 + Retry-After while the MASA is down; the pledge retries
    with backoff and succeeds once the MASA is back."""
    serial, folder = lab.pledge()
    registrar_log = lab.registrars[0]
    earlier = len(registrar_log.stderr)  # the lab is shared: earlier tests' 503s do not count
    refused = "requestvoucher from 127.0.0.1 refused 503"  # not a timestamp's ",503"
    lab.stop_masa()
    try:
        pledge = start_cli(
            "-v", "pledge", "enroll", "--dir", folder, "--registrar", lab.registrar_url,
            "--retries", "30", "--backoff", "0.5", "--max-backoff", "2",
        )  # fmt: skip
        deadline = datetime.now(UTC) + timedelta(seconds=60)
        while refused not in registrar_log.stderr[earlier:] and datetime.now(UTC) < deadline:
            assert pledge.poll() is None, pledge.communicate()
            time.sleep(0.2)
        assert refused in registrar_log.stderr[earlier:]
    finally:
        lab.start_masa()
    out, err = pledge.communicate(timeout=120)
    masa_log = lab.masa.stderr if lab.masa is not None else ""
    assert pledge.returncode == 0, (err, registrar_log.stderr[-4000:], masa_log[-4000:])
    assert "retrying in" in err  # it did back off while the MASA was down
    assert serial in out
    assert (folder / "ldevid.pem").is_file()
    assert lab.state(serial) == "enroll-confirmed"


def test_escrowed_nonceless_voucher_enrolls_a_pledge_that_allows_it(lab: Lab) -> None:
    """Issue 9 item 10 end to end: the owner holds a nonceless voucher signed with the MASA's
    key ('registrar vouchers import'); with the MASA stopped the registrar relays it; the
    real pledge refuses it without --allow-nonceless and enrolls with it."""
    serial, folder = lab.pledge()
    now = datetime.now(UTC)
    held = Voucher(
        created_on=now,
        assertion=Assertion.VERIFIED,
        serial_number=serial,
        pinned_domain_cert=der(certfiles.load_cert_file(lab.domain / "ca.pem")),
        expires_on=now + timedelta(days=7),
    )
    signer = certfiles.load_identity(lab.vendor / "masa-signer.pem", lab.vendor / "masa-signer.key")
    voucher_file = lab.root / f"{serial}.voucher"
    voucher_file.write_bytes(sign_artifact(held, signer=signer, now=now))
    imported = run_cli("registrar", "vouchers", "import", "--dir", lab.domain, voucher_file)
    assert f"held for {serial} until " in imported.stdout
    lab.stop_masa()
    try:
        refused = enroll(lab, folder)
        assert refused.returncode != 0
        assert "does not accept nonceless vouchers (allow them with --allow-nonceless" in (
            refused.stderr
        ), refused.stderr
        assert_nothing_written(folder)
        accepted = enroll(lab, folder, "--allow-nonceless")
        assert accepted.returncode == 0, accepted.stderr
    finally:
        lab.start_masa()
    assert (folder / "ldevid.pem").is_file()
    record = lab.device(serial)
    assert record is not None and record["state"] == "enroll-confirmed"
    assert record["voucher_source"] == "escrow" and record["escrow"]["used_count"] == 2
    stored = Voucher.from_json(
        cms.inspect(cms.decode((folder / PLEDGE_FILES["voucher"]).read_bytes())).content
    )
    assert stored.nonce is None and stored.serial_number == serial


def test_registrar_and_masa_restarted_between_steps(lab: Lab) -> None:
    """Before every step after the voucher request the registrar is restarted (a new process,
    same port and database), and the MASA too before voucher_status (the one later step
    that needs it: the audit log): the pledge continues and the device ends enrolled."""
    serial, folder = lab.pledge()
    registrar = lab.registrars[0]
    port = int(registrar.url.rsplit(":", 1)[1])
    restarted: list[str] = []
    registrar_now = [registrar]

    def hook(action: object) -> None:
        if not isinstance(action, HttpRequest) or action.path == PATH_REQUESTVOUCHER:
            return
        restarted.append(action.path.rsplit("/", 1)[1])
        if action.path == PATH_VOUCHER_STATUS:
            lab.stop_masa()
            lab.start_masa()
        lab.registrars.remove(registrar_now[0])
        registrar_now[0].stop()
        registrar_now[0] = lab.start_registrar(port=port)

    async def keep(enrollment: Enrollment) -> None:
        write_enrollment(folder, enrollment)

    async def scenario() -> Any:
        config = load_pledge_config(folder, retry=RetryPolicy(attempts=5, base_delay=0.2,
                                                              max_delay=1))  # fmt: skip
        async with PledgeClient(config, registrar.url, timeout=15) as client:
            machine = Pledge(config, random_bytes=os.urandom)
            return await drive(machine, client, on_action=hook, install=keep)

    enrollment = asyncio.run(scenario())
    assert restarted[0] == "voucher_status" and restarted[-1] == "enrollstatus", restarted
    assert {"cacerts", "simpleenroll"} <= set(restarted), restarted
    assert enrollment.serial == serial
    record = lab.device(serial)
    assert record is not None and record["state"] == "enroll-confirmed"
    assert record["audit_level"] == "clean", record  # fetched from the restarted MASA


@dataclass
class ClaimsLab:
    """A lab whose MASA runs policy claims with nonceless vouchers allowed, our registrar
    (domain R) and a second domain B (folder only; its registrar is started on demand)."""

    lab: Lab
    other: Path

    def claim(self, serial: str, domain_ca: Path) -> None:
        run_cli("masa", "claim", "--dir", self.lab.vendor, "--serial", serial,
                "--domain-ca", domain_ca)  # fmt: skip


@pytest.fixture(scope="module")
def claims_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClaimsLab]:
    lab = make_lab(tmp_path_factory.mktemp("claims"))
    other = lab.root / "R-B"
    run_cli("registrar", "init", "--dir", other, "--manufacturer-ca", lab.vendor / "ca.pem",
            "--masa-trust", lab.vendor / "ca.pem", "--ca-name", "domain B CA")  # fmt: skip
    (lab.vendor / "masa.toml").write_text(
        'policy = "claims"\nnonceless_allowed = true\nvoucher_lifetime = 600\n'
    )
    try:
        lab.start_masa()
        lab.start_registrar()
        yield ClaimsLab(lab, other)
    finally:
        lab.close()


def test_audit_log_of_a_resold_device_warns_the_new_owner(claims_lab: ClaimsLab) -> None:
    """A device claimed by domain R enrolls there, is resold (claimed for domain B) and
    enrolls again through B's registrar. B's registrar fetches the audit log after
    voucher_status and records a warning naming the earlier owner (RFC 8995 §5.8.3); R's
    record stays clean."""
    lab, other = claims_lab.lab, claims_lab.other
    serial, folder = lab.pledge()
    claims_lab.claim(serial, lab.domain / "ca.pem")
    assert enroll_here(folder, lab.registrar_url).serial == serial
    record = lab.device(serial)
    assert record is not None and record["audit_level"] == "clean", record
    claims_lab.claim(serial, other / "ca.pem")  # resale
    run_cli("registrar", "allow", "--dir", other, "--serial", serial)
    second = start_server(
        "registrar", "registrar", "serve", "--dir", other, "--listen", "127.0.0.1:0"
    )
    lab.registrars.append(second)
    for name in OUTPUTS:
        (folder / PLEDGE_FILES[name]).unlink()
    assert enroll_here(folder, second.url).serial == serial
    rows = json.loads(run_cli("registrar", "devices", "--dir", other, "--json").stdout)
    rows = rows["devices"] if isinstance(rows, dict) else rows
    (row,) = [r for r in rows if r["serial"] == serial]
    assert row["state"] == "enroll-confirmed"
    assert row["audit_level"] == "warning", row
    assert "claimed before by 1 other domain" in row["audit_summary"], row
    assert certs.load_certs((folder / "domain-ca.pem").read_bytes()) == [
        certfiles.load_cert_file(other / "ca.pem")
    ]


def nonceless_rvr(domain: Path, serial: str, folder: Path) -> tuple[bytes, Identity]:
    """A nonceless registrar voucher-request of ``domain`` for the pledge of ``folder``."""
    registrar = certfiles.load_identity(domain / "registrar.pem", domain / "registrar.key")
    signer = Identity(registrar.cert, registrar.key, (certfiles.load_cert_file(domain / "ca.pem"),))
    idevid = certfiles.load_identity(folder / "idevid.pem", folder / "idevid.key")
    now = datetime.now(UTC)
    pvr = VoucherRequest(
        created_on=now,
        assertion=Assertion.PROXIMITY,
        serial_number=serial,
        proximity_registrar_cert=der(registrar.cert),
    )
    rvr = VoucherRequest(
        created_on=now,
        assertion=Assertion.PROXIMITY,
        serial_number=serial,
        prior_signed_voucher_request=cms.sign(pvr.to_json(), signer=idevid, now=now),
    )
    return cms.sign(rvr.to_json(), signer=signer, now=now), registrar


def test_nonceless_voucher_of_another_domain_blocks_enrollment(claims_lab: ClaimsLab) -> None:
    """Nonceless vouchers are allowed for an authenticated registrar (here: the claimed
    domain's CA), always with expires-on (RFC 8995 §5.5.4). Domain B, which holds the claim,
    gets one. After a resale to domain R, R's registrar reads it in the audit log, judges it
    ``alert`` (§5.8.3: B can take the device at any time) and refuses the enrollment; the
    pledge fails with that reason."""
    lab, other = claims_lab.lab, claims_lab.other
    assert lab.masa is not None
    serial, folder = lab.pledge()
    claims_lab.claim(serial, other / "ca.pem")
    rvr, client = nonceless_rvr(other, serial, folder)
    vendor_ca = certfiles.load_cert_file(lab.vendor / "ca.pem")
    status, _, body = asyncio.run(post(lab.masa.url, rvr, trust=[vendor_ca], client=client))
    assert status == 200, body
    voucher = Voucher.from_json(cms.inspect(body).content)
    assert voucher.nonce is None and voucher.expires_on is not None
    assert voucher.expires_on - voucher.created_on == timedelta(seconds=600)
    claims_lab.claim(serial, lab.domain / "ca.pem")  # resale to domain R
    result = enroll(lab, folder)
    assert result.returncode == 1, result.stdout
    line = one_line(result.stderr)
    assert "nonceless voucher for another domain" in line, line
    record = lab.device(serial)
    assert record is not None and record["audit_level"] == "alert", record
    assert not (folder / "ldevid.pem").exists()


# ---------------------------------------------------------------------------------------------
# scale-out: two registrar processes, one PostgreSQL database


@pytest.mark.postgres
def test_two_registrars_share_one_postgresql_database(fresh_pg_url: str, tmp_path: Path) -> None:
    lab = make_lab(tmp_path)
    try:
        lab.start_masa()
        first = lab.start_registrar("--db", fresh_pg_url, "--auto-accept")
        second = lab.start_registrar("--db", fresh_pg_url, "--auto-accept")
        urls = [first.url, second.url]
        serials = []
        for index in range(4):
            serial, folder = lab.pledge(allow=False)
            assert enroll_here(folder, urls[index % 2]).serial == serial
            serials.append(serial)
        # one pledge whose voucher comes from the first process and whose LDevID from the
        # second: the enrollment decision rests on the state the first one stored
        serial, folder = lab.pledge(allow=False)
        split = SplitClient(load_pledge_config(folder), urls)
        assert asyncio.run(split.run()).serial == serial
        assert split.used == {urls[0], urls[1]}
        serials.append(serial)
        # a voucher-request answered by the first process, replayed to the second: refused,
        # the nonce is on record in the shared database
        _, folder = lab.pledge(allow=False)
        registrar_cert = certfiles.load_cert_file(lab.domain / "registrar.pem")
        answered, replay = replay_pvr(folder, urls, registrar_cert)
        assert answered.startswith("200 ") and replay.startswith("403 replayed-request:"), replay
        out = run_cli("registrar", "devices", "--dir", lab.domain, "--json",
                      "--db", fresh_pg_url).stdout  # fmt: skip
        rows = json.loads(out)
        rows = rows["devices"] if isinstance(rows, dict) else rows
        states = {r["serial"]: r["state"] for r in rows}
        assert {s: states.get(s) for s in serials} == dict.fromkeys(serials, "enroll-confirmed")
        assert not (lab.domain / "registrar.db").exists()
    finally:
        lab.close()


class SplitClient:
    """Drives one pledge with the BRSKI steps on one registrar process and EST on another."""

    def __init__(self, config: Any, urls: list[str]) -> None:
        self.config = config
        self.urls = urls
        self.used: set[str] = set()

    async def run(self) -> Enrollment:
        brski, est_side = (PledgeClient(self.config, url, timeout=15) for url in self.urls)
        machine = Pledge(self.config, random_bytes=os.urandom)
        action = machine.start()
        try:
            while not isinstance(action, Done | Failed):
                if isinstance(action, Wait):
                    await asyncio.sleep(action.seconds)
                    action = action.then
                elif isinstance(action, Install):
                    action = machine.installed()
                elif isinstance(action, HttpRequest):
                    est_step = action.path.startswith("/.well-known/est/") or (
                        action.path == "/.well-known/brski/enrollstatus"
                    )
                    client = est_side if est_step else brski
                    self.used.add(self.urls[1] if est_step else self.urls[0])
                    action = machine.received(
                        await client.send(action, now=lambda: datetime.now(UTC)),
                        now=datetime.now(UTC),
                    )
                else:
                    action = machine.connected(await brski.probe(), now=datetime.now(UTC))
        finally:
            await brski.close()
            await est_side.close()
        if isinstance(action, Failed):
            raise action.error
        return action.enrollment
