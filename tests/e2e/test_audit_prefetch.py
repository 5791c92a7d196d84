"""The registrar fetches the MASA audit log in the background as soon as it relayed the
MASA's voucher (RFC 8995 §5.8.3), so voucher_status finds the verdict recorded and answers
without asking the MASA again while the pledge waits. Real MASA and registrar processes on
127.0.0.1; the pledge runs the product's machine and client in this process and holds its
voucher_status until the background verdict is on record."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from tests.e2e.test_brski_flow import Lab, lab
from zerotouch_plugin.roles.pledge import PATH_VOUCHER_STATUS, HttpRequest, Pledge, PledgeAction
from zerotouch_plugin.services.pledge_client import (
    PledgeClient,
    drive,
    load_pledge_config,
    write_enrollment,
)

__all__ = ["lab"]

SERVED = "audit log served to"
WAIT = 20.0  # seconds the pledge holds its voucher_status for the background verdict


def audit_logs_served(lab: Lab) -> int:
    """How many audit logs the MASA answered so far, from its log."""
    assert lab.masa is not None
    return lab.masa.stderr.count(SERVED)


def wait_for_background_verdict(lab: Lab, serial: str, served_before: int) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        record = lab.device(serial)
        if record is not None and record["audit_level"] is not None:
            assert audit_logs_served(lab) == served_before + 1
            return
        time.sleep(0.1)
    raise AssertionError(f"no audit verdict for {serial} within {WAIT} s of its voucher")


async def enroll_holding_voucher_status(lab: Lab, folder: Path, serial: str) -> str:
    served_before = audit_logs_served(lab)
    config = load_pledge_config(folder)

    def observe(action: PledgeAction) -> None:
        if isinstance(action, HttpRequest) and action.path == PATH_VOUCHER_STATUS:
            wait_for_background_verdict(lab, serial, served_before)

    async def install(enrollment: object) -> None:
        await asyncio.to_thread(write_enrollment, folder, enrollment)  # type: ignore[arg-type]

    async with PledgeClient(config, lab.registrar_url, timeout=30) as client:
        machine = Pledge(config, random_bytes=os.urandom)
        enrollment = await drive(machine, client, on_action=observe, install=install)
    return enrollment.serial


def test_voucher_status_asks_the_masa_nothing_once_the_background_verdict_is_in(
    lab: Lab,
) -> None:
    serial, folder = lab.pledge()
    served_before = audit_logs_served(lab)
    assert asyncio.run(enroll_holding_voucher_status(lab, folder, serial)) == serial
    assert audit_logs_served(lab) == served_before + 1, "voucher_status asked the MASA again"
    record = lab.device(serial)
    assert record is not None
    assert record["audit_level"] == "clean", record
    assert record["state"] == "enroll-confirmed", record
