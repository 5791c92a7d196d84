"""The connection gate's caps and overload slots, counted in memory."""

from __future__ import annotations

import logging

import pytest

from zerotouch_plugin.config import ConnectionLimits
from zerotouch_plugin.services._limits import Admission, ConnectionGate, overload_slots


@pytest.mark.parametrize(("cap", "slots"), [(1, 4), (50, 12), (1000, 64), (100_000, 64)])
def test_overload_slots_are_a_bounded_share_of_the_cap(cap: int, slots: int) -> None:
    assert overload_slots(ConnectionLimits(max_connections=cap)) == slots


def test_past_the_caps_overload_slots_then_refusal(caplog: pytest.LogCaptureFixture) -> None:
    limits = ConnectionLimits(max_connections=3, max_connections_per_ip=2)
    gate = ConnectionGate("registrar", limits, overload=2)
    with caplog.at_level(logging.WARNING):
        got = [gate.admission(ip) for ip in ("a", "a", "a", "b", "c", "c")]
    assert got == [
        Admission.ADMITTED,
        Admission.ADMITTED,
        Admission.OVERLOAD,  # per-address cap
        Admission.ADMITTED,
        Admission.OVERLOAD,  # global cap
        Admission.REFUSED,  # every overload slot taken: closed
    ]
    assert gate.open == 3
    # the first refusal of the burst is reported at once, the others in the next report
    assert "registrar: refusing connections" in caplog.text
    assert "(max_connections_per_ip)" in caplog.text
    assert "1 of them answered 503 with Retry-After" in caplog.text
    gate.release_overload()
    assert gate.admission("d") is Admission.OVERLOAD  # a freed slot serves the next one
    gate.release("a")
    assert gate.admission("d") is Admission.ADMITTED


def test_without_overload_slots_past_a_cap_is_refused() -> None:
    """NETCONF/TLS has no HTTP answer to give: its gate closes at once."""
    gate = ConnectionGate("netconf-tls", ConnectionLimits(max_connections=1))
    assert gate.admit("a")
    assert not gate.admit("a")
    assert gate.admission("b") is Admission.REFUSED
