"""``zerotouch masa serve`` as a real process on 127.0.0.1, over real TLS, with a registrar-side
client built from the project's certs/cms/voucher code (RFC 8995 §5.5-§5.8)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import ssl
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.masa_process import (
    MasaProcess,
    free_port,
    post,
    write_vendor_folder,
)
from tests.support.masa_world import NONCE, OTHER_NONCE, World, der
from zerotouch_plugin.artifacts import certs, cms
from zerotouch_plugin.artifacts.voucher import Voucher
from zerotouch_plugin.cli import main
from zerotouch_plugin.roles.masa import domain_id
from zerotouch_plugin.services import certfiles
from zerotouch_plugin.services._tls import client_context
from zerotouch_plugin.services.masa_app import AUDIT_PATH, DB_FILE
from zerotouch_plugin.store.db import open_database
from zerotouch_plugin.store.masa import MasaRepository


@pytest.fixture(scope="module")
def world() -> World:
    return World(now=datetime.now(UTC))


@pytest.fixture
def vendor(world: World, tmp_path: Path) -> Path:
    return write_vendor_folder(world, tmp_path / "V")


@pytest.fixture
def masa_proc(vendor: Path) -> Iterator[MasaProcess]:
    proc = MasaProcess(vendor, free_port()).start()
    yield proc
    proc.stop()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The real ``zerotouch`` entry point, run in this process (the MASA runs in another)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


async def test_voucher_is_issued_stored_and_verifies_with_openssl(
    world: World, masa_proc: MasaProcess, vendor: Path, tmp_path: Path
) -> None:
    status, headers, body = await post(masa_proc.url, world.good_rvr(), trust=world.vendor_ca)
    assert status == 200, body
    assert headers["Content-Type"] == cms.MEDIA_TYPE_VOUCHER_CMS
    signed = cms.verify(body, trust_anchors=[world.vendor_ca.cert], now=datetime.now(UTC))
    voucher = Voucher.from_json(signed.content)
    voucher.check(now=datetime.now(UTC), serial=world.serial, nonce=NONCE)
    assert voucher.pinned_domain_cert == der(world.domain().ca.cert)
    # Durable before the response: the stored copy is the one we received.
    repo = MasaRepository(open_database(vendor / DB_FILE))
    stored = repo.vouchers(world.serial)
    assert [v.cms for v in stored] == [body]
    repo.db.dispose()
    stored_file, out = tmp_path / "v.der", tmp_path / "out.json"
    stored_file.write_bytes(stored[0].cms)
    result = subprocess.run(
        [
            "openssl", "cms", "-verify", "-inform", "DER", "-binary", "-in", str(stored_file),
            "-CAfile", str(vendor / "ca.pem"), "-purpose", "any", "-out", str(out),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Verification successful" in result.stderr
    assert Voucher.from_json(out.read_bytes()).nonce == NONCE


async def test_every_failure_has_its_status_and_a_reason(
    world: World, masa_proc: MasaProcess
) -> None:
    url, trust = masa_proc.url, world.vendor_ca
    good = world.good_rvr()

    async def status_of(body: bytes, **kwargs: object) -> tuple[int, str]:
        status, headers, text = await post(url, body, trust=trust, **kwargs)  # type: ignore[arg-type]
        assert headers["Content-Type"].startswith("text/plain")
        return status, text.decode()

    assert await status_of(good, content_type="application/json") == (
        415,
        "unsupported-media-type: Content-Type 'application/json' is not supported: send the "
        "registrar voucher-request as application/voucher-cms+json\n",
    )
    status, text = await status_of(good, accept="application/voucher-jws+json")
    assert status == 406 and "does not allow application/voucher-cms+json" in text
    status, text = await status_of(b"not cms at all")
    assert status == 400 and text.startswith("not-cms:")
    assert b'"proximity"' in good
    status, text = await status_of(good.replace(b'"proximity"', b'"proximitx"', 1))
    assert status == 403 and text.startswith(("digest-mismatch:", "bad-signature:")), text
    status, text = await status_of(b"\x30" * (70 * 1024))
    assert status == 413 and "65536 bytes" in text
    other_nonce = base64.b64encode(b"another-nonce-16").decode()
    status, text = await status_of(world.rvr(world.pvr(), nonce=other_nonce))
    assert status == 403 and text.startswith("wrong-nonce:")
    foreign = certs.issue_idevid(
        certs.make_ca("Other Vendor", now=world.now), "ZT-X", masa_url=None, now=world.now
    )
    status, text = await status_of(world.rvr(world.pvr(idevid=foreign), serial="ZT-X"))
    assert status == 404 and "not signed by an IDevID of this manufacturer" in text
    status, text = await status_of(world.rvr(world.pvr(), serial="ZT-OTHER"))
    assert status == 403 and text.startswith("wrong-serial:")
    # first-come: alpha gets the device, beta is refused.
    assert (await post(url, good, trust=trust))[0] == 200
    beta = world.good_rvr("beta", nonce=OTHER_NONCE)
    status, text = await status_of(beta)
    assert status == 403 and "already belongs to domain" in text
    # The refusals are logged by the server.
    assert masa_proc.stop() == 0
    log = "".join(masa_proc.output)
    assert "refused 415" in log and "refused 403" in log and "refused 413" in log


async def test_replayed_voucher_request_is_refused_even_after_a_restart(
    world: World, vendor: Path
) -> None:
    """RFC 8995 §5.6: a registrar voucher-request whose nonce was answered is stale (403);
    the nonce record is the stored voucher, so a restart does not forget it."""
    serial = "ZT-REPLAY"
    reg = world.domain().registrar.cert
    body = world.rvr(world.pvr(idevid=world.idevid(serial), proximity=reg), serial=serial)
    proc = MasaProcess(vendor, free_port()).start()
    try:
        assert (await post(proc.url, body, trust=world.vendor_ca))[0] == 200
        status, _, text = await post(proc.url, body, trust=world.vendor_ca)
        assert status == 403 and text.startswith(b"replayed-request:"), text
        assert b"fresh nonce" in text
    finally:
        assert proc.stop() == 0
    again = MasaProcess(vendor, free_port()).start()
    try:
        status, _, text = await post(again.url, body, trust=world.vendor_ca)
        assert status == 403 and text.startswith(b"replayed-request:"), text
        fresh = world.pvr(idevid=world.idevid(serial), proximity=reg, nonce=OTHER_NONCE)
        renewed = world.rvr(fresh, serial=serial, nonce=OTHER_NONCE)
        assert (await post(again.url, renewed, trust=world.vendor_ca))[0] == 200
    finally:
        again.stop()
    repo = MasaRepository(open_database(vendor / DB_FILE))
    assert [e.nonce for e in repo.audit_entries(serial)] == [OTHER_NONCE, NONCE]
    repo.db.dispose()


async def test_restart_keeps_ownership_and_audit_log(world: World, vendor: Path) -> None:
    first = MasaProcess(vendor, free_port()).start()
    try:
        assert (await post(first.url, world.good_rvr(), trust=world.vendor_ca))[0] == 200
    finally:
        assert first.stop() == 0
    assert "masa stopped" in "".join(first.output)
    second = MasaProcess(vendor, free_port()).start()
    try:
        beta = world.good_rvr("beta", nonce=OTHER_NONCE)
        status, _, text = await post(second.url, beta, trust=world.vendor_ca)
        assert status == 403 and b"already belongs" in text
        alpha = world.domain().registrar
        status, headers, body = await post(
            second.url, world.good_rvr(), trust=world.vendor_ca, client=alpha, path=AUDIT_PATH,
            accept=None,
        )  # fmt: skip
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        log = json.loads(body)
        assert log["version"] == 1 and len(log["events"]) == 1
        event = log["events"][0]
        assert event["domainID"] == domain_id(world.domain().ca.cert)
        assert event["nonce"] == NONCE and event["assertion"] == "proximity"
        assert set(event) == {"date", "domainID", "nonce", "assertion", "truncated"}
        assert set(log["truncation"]) == {"nonced duplicates", "nonceless duplicates", "arbitrary"}
        # RFC 8995 §5.8.1: a domain that never owned the device gets 404.
        status, _, text = await post(
            second.url, world.good_rvr("beta"), trust=world.vendor_ca, client=alpha,
            path=AUDIT_PATH, accept=None,
        )  # fmt: skip
        assert status == 404 and b"never received a voucher" in text
        status, _, _ = await post(
            second.url, world.good_rvr(), trust=world.vendor_ca, client=alpha, path=AUDIT_PATH,
            accept="text/html",
        )  # fmt: skip
        assert status == 406
    finally:
        assert second.stop() == 0
    shown = cli("masa", "audit", "--dir", str(vendor), "--serial", world.serial)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["events"][0]["nonce"] == NONCE
    missing = cli("masa", "audit", "--dir", str(vendor), "--serial", "nope")
    assert missing.returncode == 1 and missing.stderr.startswith("not-found:")


async def test_claims_policy_via_cli(world: World, vendor: Path, tmp_path: Path) -> None:
    beta = world.domain("beta")
    certfiles.write_certs(tmp_path / "beta-ca.pem", [beta.ca.cert])
    serial = "ZT-CLAIMED"
    proc = MasaProcess(vendor, free_port(), ("--policy", "claims")).start()
    try:
        pvr = world.pvr(idevid=world.idevid(serial), proximity=beta.registrar.cert)
        body = world.rvr(pvr, domain="beta", serial=serial)
        status, _, text = await post(proc.url, body, trust=world.vendor_ca)
        assert status == 403 and b"not claimed by any domain" in text
        done = cli(
            "masa", "claim", "--dir", str(vendor), "--serial", serial,
            "--domain-ca", str(tmp_path / "beta-ca.pem"),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert domain_id(beta.ca.cert) in done.stdout
        # The claim, made by another process while the MASA runs, is honoured at once.
        status, _, voucher = await post(proc.url, body, trust=world.vendor_ca)
        assert status == 200, voucher
        signed = cms.verify(voucher, trust_anchors=[world.vendor_ca.cert], now=datetime.now(UTC))
        assert Voucher.from_json(signed.content).assertion == "verified"
        alpha_pvr = world.pvr(idevid=world.idevid(serial), nonce=OTHER_NONCE)
        status, _, text = await post(
            proc.url, world.rvr(alpha_pvr, serial=serial, nonce=OTHER_NONCE), trust=world.vendor_ca
        )
        assert status == 403 and b"claimed by domain" in text
    finally:
        proc.stop()


async def test_tls_client_certificate_must_be_the_signer(world: World, vendor: Path) -> None:
    alpha = world.domain()
    certfiles.write_certs(
        vendor / "registrar-cas.pem", [alpha.ca.cert, world.domain("beta").ca.cert]
    )
    (vendor / "masa.toml").write_text('registrar_cas = ["registrar-cas.pem"]\n')
    proc = MasaProcess(vendor, free_port()).start()
    try:
        status, _, body = await post(
            proc.url, world.good_rvr(), trust=world.vendor_ca, client=alpha.registrar
        )
        assert status == 200, body
        other = world.domain("beta").registrar
        status, _, text = await post(
            proc.url, world.good_rvr(), trust=world.vendor_ca, client=other
        )
        assert status == 403 and b"TLS client certificate" in text
    finally:
        proc.stop()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
async def test_tls_below_1_2_is_refused(world: World, masa_proc: MasaProcess) -> None:
    ctx = client_context(None, trust=[world.vendor_ca.cert])
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        await asyncio.open_connection("127.0.0.1", masa_proc.port, ssl=ctx)


async def test_two_masas_on_one_postgresql_give_a_device_to_one_domain(
    world: World, vendor: Path, fresh_pg_url: str
) -> None:
    a = MasaProcess(vendor, free_port(), ("--db", fresh_pg_url)).start()
    b = MasaProcess(vendor, free_port(), ("--db", fresh_pg_url)).start()
    try:
        serials = [f"ZT-PG-{i}" for i in range(6)]
        tasks, bodies = [], []
        for serial in serials:
            for dom, proc, nonce in (("alpha", a, NONCE), ("beta", b, OTHER_NONCE)):
                reg = world.domain(dom).registrar.cert
                pvr = world.pvr(idevid=world.idevid(serial), proximity=reg, nonce=nonce)
                bodies.append(world.rvr(pvr, domain=dom, serial=serial, nonce=nonce))
                tasks.append(post(proc.url, bodies[-1], trust=world.vendor_ca))
        results = await asyncio.gather(*tasks)
        statuses = [r[0] for r in results]
        for i in range(len(serials)):
            pair = sorted(statuses[2 * i : 2 * i + 2])
            assert pair == [200, 403], (serials[i], results[2 * i : 2 * i + 2])
            assert b"already belongs" in results[2 * i + statuses[2 * i : 2 * i + 2].index(403)][2]
        # the winning request replayed to the other process: refused, the nonce is on record
        winner = statuses.index(200)
        status, _, text = await post((b if winner % 2 == 0 else a).url, bodies[winner],
                                     trust=world.vendor_ca)  # fmt: skip
        assert status == 403 and text.startswith(b"replayed-request:"), text
        repo = MasaRepository(open_database(fresh_pg_url))
        for serial in serials:
            assert len(repo.vouchers(serial)) == 1
            assert len(repo.audit_entries(serial)) == 1
        repo.db.dispose()
    finally:
        a.stop()
        b.stop()
    assert not (vendor / DB_FILE).exists()  # everything went to PostgreSQL


async def test_a_serial_no_device_can_have_is_400_on_postgresql(
    world: World, vendor: Path, fresh_pg_url: str
) -> None:
    """A registrar voucher-request whose serial-number is longer than ub-serial-number (64,
    RFC 5280) or the store's column (255), or holds a NUL: 400 before the store is asked
    (PostgreSQL refused the device row or the lookup: 500), nothing recorded."""
    masa = MasaProcess(vendor, free_port(), ("--db", fresh_pg_url)).start()
    signer = world.domain().registrar_with_ca
    try:
        for serial in ("L" * 65, "E" * 300):
            body = world.rvr(world.pvr(idevid=world.idevid(serial), serial=serial), serial=serial)
            status, _, text = await post(masa.url, body, trust=world.vendor_ca)
            assert status == 400 and b"at most 64 printable characters" in text, text
        raw = b'{"ietf-voucher-request:voucher": {"serial-number": "N\\u0000UL"}}'
        nul = cms.sign(raw, signer=signer, now=datetime.now(UTC))
        status, _, text = await post(masa.url, nul, trust=world.vendor_ca)
        assert status == 400 and b"at most 64 printable characters" in text, text
    finally:
        masa.stop()
    repo = MasaRepository(open_database(fresh_pg_url))
    assert all(not repo.vouchers(serial) for serial in ("L" * 65, "E" * 300))
    repo.db.dispose()


def test_cli_refuses_bad_setups_with_one_line(tmp_path: Path, vendor: Path) -> None:
    missing = cli("masa", "serve", "--dir", str(tmp_path / "nope"), "--listen", "127.0.0.1:0")
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        f"config-error: vendor folder {tmp_path / 'nope'} does not exist "
        "(run zerotouch vendor init)"
    ]
    bad = cli("masa", "serve", "--dir", str(vendor), "--listen", "no-port")
    assert bad.returncode == 1 and "is not HOST:PORT" in bad.stderr
    (vendor / "masa.toml").write_text('policy = "anyone"\n')
    wrong = cli("masa", "claim", "--dir", str(vendor), "--serial", "X", "--domain-ca", "/dev/null")
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
