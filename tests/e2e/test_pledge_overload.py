"""The pledge's one TLS connection and a registrar past its capacity, against real processes.

A real MASA and a real registrar (``--auto-accept``) on 127.0.0.1; pledges run the product's
machine and client in this process. One enrollment takes one TLS connection: voucher-request,
voucher_status, cacerts, csrattrs, simpleenroll and enrollstatus all go over the connection
whose certificate the voucher's pin validated (RFC 8995 §5.6.2). Then 300 pledges at once hit a
registrar capped at 50 connections: past the cap it answers 503 with Retry-After from a few
overload slots (and closes the rest before the handshake); the pledges back off and come back,
and every one enrolls, with no device left half-way in the registrar's database.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.processes import ServerProcess, free_port, run_cli, start_server
from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.roles.pledge import Enrollment, Pledge, PledgeAction, RetryPolicy, Wait
from zerotouch_plugin.services import certfiles
from zerotouch_plugin.services.pledge_client import (
    PledgeClient,
    drive,
    load_pledge_config,
    write_enrollment,
)

CAP = 50
PLEDGES = 300
# Patient pledges: a crowd six times the cap takes many rounds of Retry-After.
PATIENT = RetryPolicy(attempts=200, base_delay=0.5, max_delay=4.0)


@dataclass
class Site:
    root: Path
    masa: ServerProcess
    registrar: ServerProcess
    masa_url: str

    @property
    def url(self) -> str:
        return self.registrar.url

    def pledge(self, serial: str) -> Path:
        """A pledge folder as ``zerotouch vendor idevid`` writes it (in-process: faster)."""
        vendor = certfiles.load_identity(self.root / "V" / "ca.pem", self.root / "V" / "ca.key")
        idevid = certs.issue_idevid(vendor, serial, masa_url=self.masa_url, now=datetime.now(UTC))
        folder = self.root / "P" / serial
        folder.mkdir(parents=True)
        certfiles.write_certs(folder / "idevid.pem", [idevid.cert, vendor.cert])
        certfiles.write_key(folder / "idevid.key", idevid.key)
        certfiles.write_certs(folder / "masa-ca.pem", [vendor.cert])
        return folder


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("overload")
    port = free_port()
    masa_url = f"https://127.0.0.1:{port}"
    run_cli("vendor", "init", "--dir", root / "V", "--masa-url", masa_url)
    run_cli(
        "registrar", "init", "--dir", root / "R",
        "--manufacturer-ca", root / "V" / "ca.pem", "--masa-trust", root / "V" / "ca.pem",
    )  # fmt: skip
    # generous deadlines: a loaded test machine must not turn a slow handshake into a cut one
    with (root / "R" / "registrar.toml").open("a", encoding="utf-8") as fh:
        fh.write(
            f"\n[limits]\nmax_connections = {CAP}\nmax_connections_per_ip = {CAP}\n"
            "handshake_timeout = 30\n"
        )
    masa = start_server(
        "masa", "masa", "serve", "--dir", root / "V", "--listen", f"127.0.0.1:{port}"
    )
    try:
        registrar = start_server(
            "registrar", "registrar", "serve", "--dir", root / "R",
            "--listen", "127.0.0.1:0", "--auto-accept",
        )  # fmt: skip
        try:
            yield Site(root, masa, registrar, masa_url)
        finally:
            registrar.stop()
    finally:
        masa.stop()


async def enroll_counting(
    folder: Path, url: str, waits: Counter[str], *, retry: RetryPolicy = PATIENT
) -> tuple[Enrollment, int]:
    """One pledge, as ``pledge enroll`` runs it; counts its waits by cause; the enrollment and
    how many TLS connections it opened."""
    config = load_pledge_config(folder, retry=retry)

    def observe(action: PledgeAction) -> None:
        if isinstance(action, Wait):
            waits["503" if "answered 503" in action.reason else "closed"] += 1

    async def install(enrollment: Enrollment) -> None:
        await asyncio.to_thread(write_enrollment, folder, enrollment)

    async with PledgeClient(config, url, timeout=60) as client:
        machine = Pledge(config, random_bytes=os.urandom)
        enrollment = await drive(machine, client, on_action=observe, install=install)
        return enrollment, client.connections_opened


def database_counts(site: Site) -> tuple[Counter[str], int, int]:
    """Device states, issued certificates and distinct serials holding one, read from the
    registrar's SQLite file (WAL: a reader sees every committed write)."""
    with sqlite3.connect(f"file:{site.root / 'R' / 'registrar.db'}?mode=ro", uri=True) as db:
        states = Counter(state for (state,) in db.execute("SELECT state FROM registrar_devices"))
        issued = db.execute("SELECT COUNT(*) FROM registrar_certificates").fetchone()[0]
        holders = db.execute(
            "SELECT COUNT(DISTINCT serial) FROM registrar_certificates"
        ).fetchone()[0]
    return states, int(issued), int(holders)


def test_one_enrollment_takes_one_tls_connection(site: Site) -> None:
    folder = site.pledge("ONE-CONN-1")
    waits: Counter[str] = Counter()
    enrollment, opened = asyncio.run(enroll_counting(folder, site.url, waits))
    assert enrollment.serial == "ONE-CONN-1"
    assert opened == 1, f"{opened} TLS connections for one enrollment"
    assert waits == Counter()
    assert (folder / "domain-ca.pem").exists()  # installed, commit point last


def test_300_pledges_past_a_cap_of_50_all_enroll_after_503s(site: Site) -> None:
    before, issued_before, _ = database_counts(site)
    folders = [site.pledge(f"CROWD-{n:03d}") for n in range(PLEDGES)]
    waits: Counter[str] = Counter()

    async def crowd() -> list[Enrollment | BaseException]:
        return await asyncio.gather(
            *(enroll_counting(folder, site.url, waits) for folder in folders),
            return_exceptions=True,
        )  # type: ignore[return-value]

    results = asyncio.run(crowd())
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == [], f"{len(failures)} failed, first: {failures[0]!r}"
    assert all((folder / "ldevid.pem").exists() for folder in folders)
    # the pledges were told to come back, and did
    print(f"waits of the crowd by cause: {dict(waits)}")
    assert waits["503"] > 0, waits
    log = site.registrar.stderr
    answered = [int(n) for n in re.findall(r"(\d+) of them answered 503 with Retry-After", log)]
    assert sum(answered) > 0, log[-2000:]
    # nothing half-written: every device of the crowd is confirmed, one certificate each
    states, issued, holders = database_counts(site)
    crowd_states = states - before
    assert crowd_states == Counter({"enroll-confirmed": PLEDGES}), crowd_states
    assert issued - issued_before == PLEDGES
    assert holders == sum(states.values())
