"""When the vendor's MASA goes away or stops answering, with real processes on 127.0.0.1.

* Out of business: while the MASA (claims mode) is alive the registrar fetches long-lived
  nonceless vouchers ahead (``registrar prefetch``), they show with their expiry, they are
  exported and imported again (each verified); then the MASA is stopped for good and the
  pledges that allow nonceless vouchers enroll from escrow.
* Unresponsive: a burst of pledges meets a MASA that is stopped and restarted; the registrar
  answers 503 with Retry-After (its circuit breaker open) and every pledge enrolls.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.test_brski_flow import Lab, enroll, make_lab
from tests.e2e.test_malicious_masa import scrape
from tests.support.processes import run_cli, start_cli
from zerotouch_plugin.artifacts import cms
from zerotouch_plugin.artifacts.voucher import Voucher
from zerotouch_plugin.services.pledge_client import PLEDGE_FILES


def claims_lab(root: Path) -> Lab:
    """A lab whose MASA issues only for claimed devices, nonceless to their domain, and
    whose registrar knows the MASA's URL and gives up on a dead MASA quickly."""
    lab = make_lab(root)
    (lab.vendor / "masa.toml").write_text('policy = "claims"\nnonceless_allowed = true\n')
    with (lab.domain / "registrar.toml").open("a") as fh:
        fh.write(
            f'masa_url = "https://127.0.0.1:{lab.masa_port}"\n'
            "masa_breaker_threshold = 2\nmasa_breaker_cooldown = 0.5\n"
            "masa_breaker_max_cooldown = 2.0\n"
        )
    return lab


def claimed_pledge(lab: Lab) -> tuple[str, Path]:
    serial, folder = lab.pledge()
    run_cli(
        "masa", "claim", "--dir", lab.vendor, "--serial", serial,
        "--domain-ca", lab.domain / "ca.pem",
    )  # fmt: skip
    return serial, folder


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = claims_lab(tmp_path)
    try:
        yield lab
    finally:
        lab.stop_masa()
        lab.close()


def test_prefetched_vouchers_enroll_pledges_after_the_masa_is_gone(lab: Lab) -> None:
    pledges = [claimed_pledge(lab) for _ in range(2)]
    unclaimed, _ = lab.pledge()
    lab.start_masa()
    lab.start_registrar()

    fetched = run_cli(
        "registrar", "prefetch", "--dir", lab.domain, "--all-allowed", "--lifetime", "30",
        check=False,
    )  # fmt: skip
    assert fetched.returncode == 1  # the unclaimed device got none
    assert f"{unclaimed}: not fetched: " in fetched.stderr
    assert "not claimed by any domain" in fetched.stderr
    soon = datetime.now(UTC) + timedelta(days=30)
    for serial, _ in pledges:
        record = lab.device(serial)
        assert record is not None, serial
        expires = datetime.fromisoformat(record["escrow"]["expires_on"])
        assert abs(expires - soon) < timedelta(minutes=5), record["escrow"]
    table = run_cli("registrar", "devices", "--dir", lab.domain).stdout
    assert "escrow until" in table
    assert f"{soon:%Y-%m-%d}" in table

    exported = lab.root / "export"
    out = run_cli("registrar", "vouchers", "export", "--dir", lab.domain, "--out", exported)
    files = sorted(exported.glob("*.cms"))
    assert [f.name for f in files] == sorted(f"{s}.cms" for s, _ in pledges), out.stdout
    again = run_cli(
        "registrar", "vouchers", "export", "--dir", lab.domain, "--out", exported, check=False
    )
    assert again.returncode != 0 and "not overwritten" in again.stderr
    tampered = lab.root / "tampered.cms"
    data = bytearray(files[0].read_bytes())
    data[-10] ^= 0x01
    tampered.write_bytes(bytes(data))
    imported = run_cli(
        "registrar", "vouchers", "import", "--dir", lab.domain, exported, tampered, check=False
    )
    assert imported.returncode == 1
    assert f"{tampered}: refused: " in imported.stderr
    assert imported.stdout.count("held for ") == len(pledges)

    lab.stop_masa()  # for good
    refused = enroll(lab, pledges[0][1])
    assert refused.returncode != 0
    assert "does not accept nonceless vouchers" in refused.stderr
    for serial, folder in pledges:
        done = enroll(lab, folder, "--allow-nonceless")
        assert done.returncode == 0, done.stderr
        record = lab.device(serial)
        assert record is not None and record["state"] == "enroll-confirmed"
        assert record["voucher_source"] == "escrow"
        voucher = Voucher.from_json(
            cms.inspect(cms.decode((folder / PLEDGE_FILES["voucher"]).read_bytes())).content
        )
        assert voucher.nonce is None and voucher.expires_on is not None
    assert "from escrow: the MASA is unreachable" in lab.registrars[0].stderr
    samples = scrape(lab)
    # 30-day vouchers are inside the default 30-day renewal window: both are due
    escrow = {k: v for k, v in samples.items() if k[0] == "zerotouch_registrar_escrow_vouchers"}
    assert samples[("zerotouch_registrar_escrow_vouchers", frozenset({("status", "held")}))] == 2, (
        escrow
    )
    assert samples[("zerotouch_registrar_escrow_vouchers", frozenset({("status", "due")}))] == 2
    masa = frozenset({("masa", f"https://127.0.0.1:{lab.masa_port}")})
    states = {s for (name, labels), v in samples.items() if name.endswith("masa_circuit") and v
              for k, s in labels if k == "state" and masa <= labels}  # fmt: skip
    assert states and states <= {"open", "half-open", "closed"}


def test_a_burst_of_pledges_survives_the_masa_stopping_and_restarting(lab: Lab) -> None:
    pledges = [claimed_pledge(lab) for _ in range(6)]
    lab.start_registrar()  # the MASA is down from the start
    pledge_args = ("--retries", "40", "--backoff", "0.3", "--max-backoff", "1.5", "--timeout", "15")
    started = [
        start_cli("pledge", "enroll", "--dir", f, "--registrar", lab.registrar_url, *pledge_args)
        for _, f in pledges
    ]
    registrar = lab.registrars[0]
    deadline = time.monotonic() + 60
    while "circuit open" not in registrar.stderr and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "circuit open" in registrar.stderr
    lab.start_masa()
    for process, (serial, _) in zip(started, pledges, strict=True):
        out, err = process.communicate(timeout=180)
        assert process.returncode == 0, err
        assert serial in out
    records = json.loads(run_cli("registrar", "devices", "--dir", lab.domain, "--json").stdout)
    states = {r["serial"]: (r["state"], r["voucher_source"]) for r in records["devices"]}
    assert states == {s: ("enroll-confirmed", "masa") for s, _ in pledges}


def test_the_running_registrar_renews_held_vouchers_before_they_expire(lab: Lab) -> None:
    with (lab.domain / "registrar.toml").open("a") as fh:
        fh.write("escrow_renew_days = 60\nescrow_renew_poll = 0.5\nescrow_lifetime_days = 90\n")
    serial, _ = claimed_pledge(lab)
    lab.start_masa()
    run_cli("registrar", "prefetch", "--dir", lab.domain, "--serial", serial, "--lifetime", "7")
    record = lab.device(serial)
    assert record is not None
    first = datetime.fromisoformat(record["escrow"]["expires_on"])
    assert first - datetime.now(UTC) < timedelta(days=8)
    lab.start_registrar()  # 7 days left is within the 60-day window: renewed for 90 days
    deadline = time.monotonic() + 30
    renewed = first
    while renewed == first and time.monotonic() < deadline:
        time.sleep(0.3)
        record = lab.device(serial)
        assert record is not None
        renewed = datetime.fromisoformat(record["escrow"]["expires_on"])
    assert renewed - datetime.now(UTC) > timedelta(days=89), record
    assert "renewing 1 voucher(s) held in escrow" in lab.registrars[0].stderr
