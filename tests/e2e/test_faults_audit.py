"""The MASA audit log must not be skipped by a fault: the registrar reads it after
voucher_status (RFC 8995 §5.8.3) and that verdict gates the enrollment."""

from __future__ import annotations

from tests.e2e.test_faults import FaultLab, assert_consistent, enroll, faults, once
from tests.support.faults import DROP, FORWARD

__all__ = ["faults"]


def test_masa_killed_when_the_registrar_fetches_the_audit_log(faults: FaultLab) -> None:
    """SIGKILL the MASA when the registrar's second call (the audit log it fetches after
    voucher_status) reaches it: the enrollment may only complete once the audit log has
    been read and judged."""
    serial, folder = faults.lab.pledge()
    fire = once(faults.kill_masa)

    def on_connect(n: int) -> str:
        return DROP if n == 2 and fire() else FORWARD

    with faults.relay(on_connect) as relay:
        assert enroll(faults, folder).serial == serial
    assert relay.connections >= 2
    assert_consistent(faults, serial, folder)
