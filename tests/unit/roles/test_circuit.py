"""The per-MASA circuit breaker: opens after the threshold, refuses with the time left,
lets one trial through after the cooldown, closes on success, reopens longer on failure."""

from __future__ import annotations

import pytest

from zerotouch_plugin.roles.backoff import Backoff
from zerotouch_plugin.roles.circuit import Breaker, Breakers, BreakerState

COOLDOWN = Backoff(initial=10.0, factor=2.0, maximum=40.0, jitter=0.0)


def test_opens_after_threshold_failures_in_a_row() -> None:
    b = Breaker(3, COOLDOWN)
    for t in (0.0, 1.0):
        assert b.allow(t) == 0
        b.failed(t, 0.0)
        assert b.state is BreakerState.CLOSED
    b.failed(2.0, 0.0)
    assert b.state is BreakerState.OPEN
    assert b.allow(5.0) == pytest.approx(7.0)


def test_a_success_resets_the_count() -> None:
    b = Breaker(2, COOLDOWN)
    b.failed(0.0, 0.0)
    b.succeeded()
    b.failed(1.0, 0.0)
    assert b.state is BreakerState.CLOSED


def test_half_open_trial_closes_or_reopens_longer() -> None:
    b = Breaker(1, COOLDOWN)
    b.failed(0.0, 0.0)
    assert b.allow(9.9) > 0
    assert b.allow(10.0) == 0  # the trial
    assert b.state is BreakerState.HALF_OPEN
    assert b.allow(10.5) > 0  # only one trial at a time
    b.failed(11.0, 0.0)
    assert b.state is BreakerState.OPEN
    assert b.allow(11.0) == pytest.approx(20.0)  # second opening: doubled
    assert b.allow(31.0) == 0
    b.succeeded()
    assert b.state is BreakerState.CLOSED
    assert b.allow(31.0) == 0


def test_cooldown_is_capped() -> None:
    b = Breaker(1, COOLDOWN)
    now = 0.0
    for _ in range(6):
        b.failed(now, 0.0)
        now += b.allow(now)
        assert b.allow(now) == 0
    b.failed(now, 0.0)
    assert b.allow(now) == pytest.approx(40.0)


def test_a_trial_that_never_reports_frees_the_slot() -> None:
    b = Breaker(1, COOLDOWN)
    b.failed(0.0, 0.0)
    assert b.allow(10.0) == 0
    assert b.allow(30.0) > 0
    assert b.allow(51.0) == 0


def test_one_breaker_per_key() -> None:
    breakers = Breakers(1, COOLDOWN)
    breakers["https://a"].failed(0.0, 0.0)
    assert breakers["https://b"].allow(0.0) == 0
    assert breakers.states() == {"https://a": BreakerState.OPEN, "https://b": BreakerState.CLOSED}


def test_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError, match="threshold"):
        Breaker(0, COOLDOWN)
