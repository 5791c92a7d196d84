"""Issue 11 hardening of inputs, against real processes on 127.0.0.1 with real clients.

* The MASA's audit log (RFC 8995 §5.8.1) goes only to a registrar that authenticates with a
  TLS client certificate of a domain the device was vouched to; a replayed registrar
  voucher-request alone gets nothing.
* Database files are readable by their owner only.
* Client-supplied text is escaped and bounded wherever it is logged or printed.
* The registrar names what is wrong with a CSR (SHA-1, two serialNumbers) and refuses a
  pledge voucher-request too large for the MASA itself (413) instead of relaying it (502).
* RESTCONF (RFC 8040) refuses a DOCTYPE and answers 400, not 500, for JSON Python cannot
  hold (nesting past the recursion limit, integers of more than 4300 digits).
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from tests.e2e.test_registrar_service import (  # noqa: F401
    NONCE,
    VOUCHER_CMS,
    Reply,
    accepted_voucher,
    bootstrap_voucher,
    csr_body,
    idevid_of,
    world,
    zt,
)
from tests.e2e.test_registrar_service import World as Lab
from tests.interop.test_restconf_curl import XML, Server, schema, server  # noqa: F401
from tests.support.masa_process import MasaProcess, free_port, post, write_vendor_folder
from tests.support.masa_world import World
from zerotouch_plugin.artifacts import cms
from zerotouch_plugin.artifacts.certs import Identity
from zerotouch_plugin.artifacts.voucher import Assertion, VoucherRequest
from zerotouch_plugin.device.datastore import Datastore
from zerotouch_plugin.roles.masa import domain_id
from zerotouch_plugin.services import certfiles
from zerotouch_plugin.services.masa_app import AUDIT_PATH, DB_FILE
from zerotouch_plugin.store.db import open_database


@pytest.fixture(scope="module")
def masa_world() -> World:
    return World(now=datetime.now(UTC))


@pytest.fixture
def vendor(masa_world: World, tmp_path: Path) -> Path:
    return write_vendor_folder(masa_world, tmp_path / "V")


@pytest.fixture
def masa_proc(vendor: Path) -> Iterator[MasaProcess]:
    proc = MasaProcess(vendor, free_port()).start()
    yield proc
    proc.stop()


async def test_audit_log_needs_the_owners_registrar_certificate(
    masa_world: World, masa_proc: MasaProcess, vendor: Path
) -> None:
    url, trust = masa_proc.url, masa_world.vendor_ca
    alpha, beta = masa_world.domain("alpha"), masa_world.domain("beta")
    rvr = masa_world.good_rvr()  # the voucher-request an attacker replays
    assert (await post(url, rvr, trust=trust))[0] == 200
    # Beta gets a voucher for another device, so TLS knows beta's CA from now on.
    other = masa_world.rvr(
        masa_world.pvr(serial="ZT-0002", proximity=beta.registrar.cert),
        domain="beta",
        serial="ZT-0002",
    )
    assert (await post(url, other, trust=trust))[0] == 200

    async def audit(client: Identity | None) -> tuple[int, bytes]:
        status, _, body = await post(
            url,
            rvr,
            trust=trust,
            client=client,
            path=AUDIT_PATH,
            accept=None,
        )
        return status, body

    status, body = await audit(None)
    assert status == 401 and body.startswith(b"access-denied:"), body
    assert b"client certificate" in body and b"none was presented" in body
    status, body = await audit(beta.registrar)
    assert status == 403 and body.startswith(b"policy-refused:"), body
    assert b"does not chain to the domain of any voucher issued for device" in body
    status, body = await audit(alpha.registrar)
    assert status == 200, body
    events = json.loads(body)["events"]
    assert [e["domainID"] for e in events] == [domain_id(alpha.ca.cert)]
    assert masa_proc.stop() == 0
    log = "".join(masa_proc.output)
    assert "refused 401" in log and "refused 403" in log


def test_database_files_are_private(vendor: Path) -> None:
    db_file = vendor / DB_FILE
    db_file.touch(mode=0o644)
    db_file.chmod(0o644)
    db = open_database(db_file)
    db.create_all()
    for name in (DB_FILE, DB_FILE + "-wal", DB_FILE + "-shm"):
        assert stat.S_IMODE((vendor / name).stat().st_mode) == 0o600, name
    db.dispose()
    fresh = vendor / "new.db"
    db = open_database(fresh)
    db.create_all()
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    db.dispose()


SYSTEM = "/restconf/data/ietf-system:system"
XXE = (
    '<?xml version="1.0"?>\n<!DOCTYPE system [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>\n'
    '<system xmlns="urn:ietf:params:xml:ns:yang:ietf-system"><contact>&xxe;</contact></system>'
)


def _restconf_error(body: bytes) -> dict[str, str]:
    error: dict[str, str] = json.loads(body)["ietf-restconf:errors"]["error"][0]
    return error


async def test_restconf_refuses_a_doctype_and_json_it_cannot_hold(server: Server) -> None:  # noqa: F811
    before = server.ds.get(Datastore.RUNNING)
    reply = await server.curl("PATCH", SYSTEM, body=XXE, media=XML)
    assert reply.code == 400, reply
    assert b"DOCTYPE" in reply.body and b"malformed-message" in reply.body
    deep = '{"ietf-system:system": ' + "[" * 5000 + "]" * 5000 + "}"
    reply = await server.curl("PUT", SYSTEM, body=deep)
    assert reply.code == 400, reply
    error = _restconf_error(reply.body)
    assert error["error-tag"] == "malformed-message" and "not valid JSON" in error["error-message"]
    huge = '{"ietf-system:system": {"contact": ' + "9" * 5000 + "}}"
    reply = await server.curl("PUT", SYSTEM, body=huge)
    assert reply.code == 400 and "not valid JSON" in _restconf_error(reply.body)["error-message"]
    assert server.ds.get(Datastore.RUNNING) == before
    # A legitimate client is still served.
    patch = (
        '<system xmlns="urn:ietf:params:xml:ns:yang:ietf-system"><contact>ops</contact></system>'
    )
    assert (await server.curl("PATCH", SYSTEM, body=patch, media=XML)).code == 204
    assert server.ds.get(Datastore.RUNNING)["ietf-system:system"]["contact"] == "ops"


PKCS10 = "application/pkcs10"
FORGED = "%0d%0a2026-01-01%20masa:%20voucher%20issued%1b%5b31m"


def test_percent_encoded_controls_in_a_path_are_logged_escaped(world: Lab) -> None:  # noqa: F811
    for base, cacert, log in (
        (world.masa_url, world.root / "V" / "ca.pem", world.root / "masa.log"),
        (world.registrar.url, None, world.root / "registrar.log"),
    ):
        world.masa.start()
        reply = world.curl("/x" + FORGED, client=None, base=base, cacert=cacert)
        assert reply.status in (401, 404), reply
        text = log.read_bytes()
        line = next(ln for ln in text.splitlines() if b"/x\\x0d\\x0a2026" in ln)
        assert b"\x1b" not in text and b"\r" not in text, line
        assert b"voucher issued\\x1b[31m" in line
    # Still serving legitimate clients.
    assert world.curl("/.well-known/est/cacerts", client=None).status == 200


def test_a_pledges_status_reason_is_escaped_and_bounded_in_the_table(world: Lab) -> None:  # noqa: F811
    pledge, relayed = bootstrap_voucher(world, "E2E-ESC")
    assert relayed.status == 200, relayed

    def report(reason: str) -> Reply:
        body = json.dumps({"version": 1, "status": False, "reason": reason})
        return world.curl(
            "/.well-known/brski/voucher_status",
            client=idevid_of(pledge),
            data=body.encode(),
            content_type="application/json",
        )

    # Terminal escapes and line breaks are refused before anything is stored or logged.
    refused = report("\x1b[2J\x1b[31mred\r\nforged row")
    assert refused.status == 400, refused
    assert b"schema-error: 'reason' holds a control character" in refused.body
    assert b"(at /reason)" in refused.body
    # A printable but hostile reason (bidi override, 60,000 characters) is stored as sent and
    # shown escaped and cut in the table.
    reason = "red forged row\u202e" + "A" * 60_000
    done = report(reason)
    assert done.status == 200, done
    table = zt("registrar", "devices", "--dir", world.r)
    assert "\x1b" not in table and "\r" not in table and "\u202e" not in table
    (row,) = [ln for ln in table.splitlines() if ln.startswith("E2E-ESC")]
    assert "red forged row\\u202e" in row and len(row) < 400, row
    # --json keeps the exact stored value.
    listing = json.loads(zt("registrar", "devices", "--dir", world.r, "--json"))
    (record,) = [d for d in listing["devices"] if d["serial"] == "E2E-ESC"]
    assert record["last_error"] == f"voucher_status: {reason}"
    log = (world.root / "registrar.log").read_bytes()
    assert b"\x1b" not in log and b"A" * 1000 not in log


def test_csr_faults_are_named(world: Lab) -> None:  # noqa: F811
    pledge = accepted_voucher(world, "E2E-CSR")
    enroll = "/.well-known/est/simpleenroll"
    sha1, _ = csr_body(world, "sha1", "/serialNumber=E2E-CSR", "-sha1")
    reply = world.curl(enroll, client=idevid_of(pledge), data=sha1, content_type=PKCS10)
    assert reply.status == 400, reply
    assert b"signed with SHA-1, which is not accepted" in reply.body
    assert b"SHA-256, SHA-384 or SHA-512" in reply.body
    two, _ = csr_body(world, "two", "/serialNumber=E2E-CSR/serialNumber=E2E-OTHER")
    reply = world.curl(enroll, client=idevid_of(pledge), data=two, content_type=PKCS10)
    assert reply.status == 403, reply
    assert b"the CSR subject has 2 serialNumber attributes" in reply.body
    good, _ = csr_body(world, "good", "/serialNumber=E2E-CSR")
    assert (
        world.curl(enroll, client=idevid_of(pledge), data=good, content_type=PKCS10).status == 200
    )


def test_a_pledge_request_too_large_for_the_masa_is_413_here(world: Lab) -> None:  # noqa: F811
    world.masa.start()
    pledge = world.pledge("E2E-BIG")
    world.allow("E2E-BIG")
    identity = certfiles.load_identity(*idevid_of(pledge))
    registrar = certfiles.load_cert_file(world.r / "registrar.pem").public_bytes(Encoding.DER)
    request = VoucherRequest(
        serial_number="E2E-BIG",
        created_on=datetime.now(UTC),
        assertion=Assertion.PROXIMITY,
        nonce=NONCE,
        proximity_registrar_cert=registrar,
    )
    # The IDevID's CA over and over in the CMS bag: a valid request of about 50 KB.
    padded = Identity(identity.cert, identity.key, identity.chain * 100)
    body = cms.sign(request.to_json(), signer=padded, now=datetime.now(UTC))
    assert 40_000 < len(body) < 65_536
    masa_log = (world.root / "masa.log").read_bytes()
    reply = world.curl(
        "/.well-known/brski/requestvoucher",
        client=idevid_of(pledge),
        data=body,
        content_type=VOUCHER_CMS,
    )
    assert reply.status == 413, reply
    assert b"more than the 65536 bytes the MASA accepts" in reply.body
    assert (world.root / "masa.log").read_bytes() == masa_log  # the MASA was never asked
    small = cms.sign(request.to_json(), signer=identity, now=datetime.now(UTC))
    reply = world.curl(
        "/.well-known/brski/requestvoucher",
        client=idevid_of(pledge),
        data=small,
        content_type=VOUCHER_CMS,
    )
    assert reply.status == 200, reply
