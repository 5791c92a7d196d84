"""A MASA that turns malicious, against the real registrar and the real pledge on 127.0.0.1.

The vendor's MASA is replaced by one that holds the vendor's genuine TLS and voucher-signing
keys and misuses them: it signs with a new key that is not under the manufacturer anchor,
vouches the device to another domain, replays a voucher it issued earlier, or reports an
audit log that names an earlier owner. Each is refused, with the reason in the registrar's
device record and in the pledge's error; nothing is enrolled.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_brski_flow import Lab, der, enroll, make_lab, masa_voucher
from tests.support.processes import run_cli
from zerotouch_plugin.artifacts import certs, cms
from zerotouch_plugin.artifacts.voucher import Assertion, Voucher, VoucherRequest
from zerotouch_plugin.roles.registrar import domain_id
from zerotouch_plugin.services import certfiles
from zerotouch_plugin.services._tls import server_context
from zerotouch_plugin.services.pledge_client import PLEDGE_FILES
from zerotouch_plugin.store.db import open_role_database
from zerotouch_plugin.store.registrar import RegistrarRepository

Answer = Callable[[VoucherRequest], tuple[int, bytes]]


@dataclass
class EvilMasa:
    """Serves /requestvoucher with ``answer(pvr)`` and /requestauditlog with ``audit`` on the
    port the IDevIDs name, in a thread of its own."""

    lab: Lab
    answer: Answer
    audit: dict[str, Any] = field(default_factory=dict)
    asked: list[VoucherRequest] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None

    async def _voucher(self, request: web.Request) -> web.Response:
        rvr = VoucherRequest.from_json(cms.inspect(await request.read()).content)
        assert rvr.prior_signed_voucher_request is not None
        pvr = VoucherRequest.from_json(cms.inspect(rvr.prior_signed_voucher_request).content)
        self.asked.append(pvr)
        status, body = self.answer(pvr)
        if status != 200:
            return web.Response(status=status, text=body.decode())
        return web.Response(body=body, content_type=cms.MEDIA_TYPE_VOUCHER_CMS)

    async def _audit(self, _: web.Request) -> web.Response:
        return web.json_response(self.audit)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/.well-known/brski/requestvoucher", self._voucher)
        app.router.add_post("/.well-known/brski/requestauditlog", self._audit)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        tls = certfiles.load_identity(
            self.lab.vendor / "masa-tls.pem", self.lab.vendor / "masa-tls.key"
        )
        context = server_context(tls, client_cas=None, require_client_cert=False)
        site = web.TCPSite(self._runner, "127.0.0.1", self.lab.masa_port, ssl_context=context)
        await site.start()

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        threading.Thread(target=loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._start(), loop).result(10)

    def stop(self) -> None:
        if self._loop is None or self._runner is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = make_lab(tmp_path)
    with (lab.domain / "registrar.toml").open("a") as fh:
        fh.write("refuse_on_audit_alert = true\n")
    lab.start_registrar()
    try:
        yield lab
    finally:
        lab.close()


def evil(lab: Lab, answer: Answer, audit: dict[str, Any] | None = None) -> EvilMasa:
    masa = EvilMasa(lab, answer, audit or {})
    masa.start()
    return masa


def own_audit_log(lab: Lab, nonce: str | None) -> dict[str, Any]:
    """An audit log with one event, this domain's voucher (RFC 8995 §5.8.1)."""
    ca = certfiles.load_cert_file(lab.domain / "ca.pem")
    return {
        "version": 1,
        "events": [
            {
                "date": datetime.now(UTC).isoformat(),
                "domainID": base64.b64encode(domain_id(ca)).decode(),
                "nonce": nonce,
                "assertion": "logged",
                "truncated": 0,
            }
        ],
        "truncation": {},
    }


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(lab: Lab) -> Samples:
    """The registrar's GET /metrics with an admin client certificate, parsed."""
    admin = lab.root / "metrics-admin"
    if not admin.exists():
        run_cli(
            "registrar", "issue-client-cert", "--dir", lab.domain, "--name", "ops",
            "--out", admin, "--admin",
        )  # fmt: skip
    done = subprocess.run(
        ["curl", "-sS", "--fail", "--noproxy", "*", "--max-time", "20",
         "--cacert", str(lab.domain / "ca.pem"), "--cert", str(admin / "cert.pem"),
         "--key", str(admin / "key.pem"), f"{lab.registrar_url}/metrics"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return {
        (sample.name, frozenset((k, str(v)) for k, v in sample.labels.items())): sample.value
        for family in text_string_to_metric_families(done.stdout)
        for sample in family.samples
    }


def refused(lab: Lab, masa: EvilMasa, *extra: str) -> tuple[str, str]:
    """A new pledge enrolls against the evil MASA: it fails, nothing is installed; its
    error (the registrar's 502) and the registrar's last error for it, with the reason."""
    serial, folder = lab.pledge()
    try:
        result = enroll(lab, folder, *extra)
    finally:
        masa.stop()
    assert result.returncode != 0, result.stdout
    assert not (folder / PLEDGE_FILES["ldevid"]).exists()
    record = lab.device(serial)
    assert record is not None and record["state"] != "enroll-confirmed"
    return result.stderr, str(record["last_error"])


def test_a_voucher_signed_with_a_new_key_outside_the_manufacturer_anchor(lab: Lab) -> None:
    now = datetime.now(UTC)
    rogue_ca = certs.make_ca("vendor's new signing CA", now=now)
    rogue = certs.issue_masa_signer(rogue_ca, "new MASA signing key", now=now)

    def resign(pvr: VoucherRequest) -> tuple[int, bytes]:
        content = cms.inspect(masa_voucher(lab, pvr)).content
        return 200, cms.sign(content, signer=rogue, now=datetime.now(UTC))

    pledge_error, registrar_error = refused(lab, evil(lab, resign))
    assert "the MASA's voucher was refused: untrusted-signer" in registrar_error
    assert "answered 502" in pledge_error


def test_a_voucher_pinning_another_domain(lab: Lab) -> None:
    other = certs.make_ca("the MASA's friend's domain CA", now=datetime.now(UTC))

    def elsewhere(pvr: VoucherRequest) -> tuple[int, bytes]:
        return 200, masa_voucher(lab, pvr, pinned_domain_cert=der(other.cert))

    pledge_error, registrar_error = refused(lab, evil(lab, elsewhere))
    assert "pins a certificate that is neither this registrar's domain CA" in registrar_error
    assert "answered 502" in pledge_error


def test_a_replayed_older_voucher(lab: Lab) -> None:
    """The MASA issued a voucher for the device's first request but said 503; the device's
    next request (a new nonce) gets that older voucher back."""
    issued: dict[str | None, bytes] = {}

    def replay(pvr: VoucherRequest) -> tuple[int, bytes]:
        if not issued or pvr.nonce in issued:  # the registrar's own retries included
            issued.setdefault(pvr.nonce, masa_voucher(lab, pvr))
            return 503, b"busy"
        return 200, next(iter(issued.values()))

    masa = evil(lab, replay)
    serial, folder = lab.pledge()
    for _ in range(3):  # until the MASA saw the first request (a busy machine may cut one)
        first = enroll(lab, folder, "--retries", "0")
        assert first.returncode != 0, first.stdout
        if issued:
            break
    assert "answered 503" in first.stderr, first.stderr
    try:
        second = enroll(lab, folder)
    finally:
        masa.stop()
    assert masa.asked[0].nonce != masa.asked[-1].nonce
    assert second.returncode != 0 and "answered 502" in second.stderr
    record = lab.device(serial)
    assert record is not None and "wrong-nonce" in str(record["last_error"])
    assert not (folder / PLEDGE_FILES["ldevid"]).exists()


def test_refuse_on_audit_alert_refuses_a_warning(lab: Lab) -> None:
    """A genuine voucher, but the audit log shows an earlier owner (a warning, RFC 8995
    §5.8.3): with refuse_on_audit_alert the registrar does not enroll, and the verdict is on
    its event stream (the stored event GET /admin/events serves)."""
    audit = own_audit_log(lab, "n")
    audit["events"].append(dict(audit["events"][0], domainID=base64.b64encode(b"x" * 20).decode()))
    masa = evil(lab, lambda pvr: (200, masa_voucher(lab, pvr)), audit)
    serial, folder = lab.pledge()
    try:
        result = enroll(lab, folder)
    finally:
        masa.stop()
    assert result.returncode != 0
    assert "refuses enrollment on any audit alert" in result.stderr
    record = lab.device(serial)
    assert record is not None and record["audit_level"] == "warning"
    assert "refuse_on_audit_alert" in str(record["last_error"])
    assert not (folder / PLEDGE_FILES["ldevid"]).exists()
    repo = RegistrarRepository(open_role_database(lab.domain, None, "registrar.db"))
    try:
        events = repo.events_after(0, limit=1000)
    finally:
        repo.db.dispose()
    assert any(e.type == "audit-warning" and e.serial == serial for e in events), events
    samples = scrape(lab)
    assert samples[("zerotouch_registrar_audit_events", frozenset({("level", "warning")}))] == 1
    circuit = frozenset({("masa", f"https://127.0.0.1:{lab.masa_port}"), ("state", "closed")})
    assert samples[("zerotouch_registrar_masa_circuit", circuit)] == 1


def test_a_held_voucher_enrolls_the_device_despite_a_hostile_masa(lab: Lab) -> None:
    """The owner holds a nonceless voucher from before; the MASA now vouches the device to
    another domain: its voucher is refused and the held one relayed instead."""
    serial, folder = lab.pledge()
    now = datetime.now(UTC)
    held = Voucher(
        created_on=now,
        assertion=Assertion.VERIFIED,
        serial_number=serial,
        pinned_domain_cert=der(certfiles.load_cert_file(lab.domain / "ca.pem")),
        expires_on=now + timedelta(days=30),
    )
    signer = certfiles.load_identity(lab.vendor / "masa-signer.pem", lab.vendor / "masa-signer.key")
    escrowed = lab.root / f"{serial}.cms"
    escrowed.write_bytes(cms.sign(held.to_json(), signer=signer, now=now))
    run_cli("registrar", "vouchers", "import", "--dir", lab.domain, escrowed)
    other = certs.make_ca("the MASA's friend's domain CA", now=now)
    masa = evil(
        lab,
        lambda pvr: (200, masa_voucher(lab, pvr, pinned_domain_cert=der(other.cert))),
        own_audit_log(lab, None),
    )
    try:
        done = enroll(lab, folder, "--allow-nonceless")
    finally:
        masa.stop()
    assert done.returncode == 0, done.stderr
    record = lab.device(serial)
    assert record is not None and record["state"] == "enroll-confirmed"
    assert record["voucher_source"] == "escrow"
    assert "from escrow: the MASA's voucher was refused" in lab.registrars[0].stderr
    assert (folder / PLEDGE_FILES["ldevid"]).exists()
