"""The shared backoff schedule: exponential, capped, jitter spread by the caller's fraction,
and refused when it could not be a schedule."""

from __future__ import annotations

from typing import Any

import pytest

from zerotouch_plugin.roles.backoff import Backoff
from zerotouch_plugin.roles.handoff import HandoffPolicy, backoff_delay
from zerotouch_plugin.roles.pledge import RetryPolicy


def test_delays_grow_by_the_factor_up_to_the_maximum() -> None:
    backoff = Backoff(initial=1.0, factor=3.0, maximum=20.0, jitter=0.0)
    assert [backoff.delay(n, 0.5) for n in (1, 2, 3, 4)] == [1.0, 3.0, 9.0, 20.0]


def test_jitter_spreads_the_given_fraction_of_the_wait() -> None:
    backoff = Backoff(initial=8.0, factor=2.0, maximum=8.0, jitter=0.25)
    assert backoff.delay(1, 0.0) == 6.0
    assert backoff.delay(1, 0.5) == 7.0
    assert backoff.delay(1, 0.999) == pytest.approx(8.0, abs=0.01)


def test_the_pledge_and_the_handoff_follow_the_same_schedule() -> None:
    pledge = RetryPolicy(base_delay=2.0, max_delay=20.0, multiplier=2.0, jitter=0.5)
    handoff = HandoffPolicy(max_attempts=10, base_delay=2.0, max_delay=20.0)
    for attempt in range(1, 8):
        for rand in (0.0, 0.3, 0.9):
            assert pledge.delay(attempt, rand) == backoff_delay(handoff, attempt, rand)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"initial": -1.0}, ValueError),
        ({"maximum": 0.5}, ValueError),
        ({"factor": 0.5}, ValueError),
        ({"jitter": 1.5}, ValueError),
        ({"initial": True}, TypeError),
        ({"factor": "2"}, TypeError),
    ],
)
def test_a_schedule_that_cannot_be_is_refused(kwargs: dict[str, Any], error: type) -> None:
    values: dict[str, Any] = {"initial": 1.0, "factor": 2.0, "maximum": 10.0, "jitter": 0.5}
    with pytest.raises(error):
        Backoff(**(values | kwargs))


@pytest.mark.parametrize(("attempt", "rand"), [(0, 0.5), (1, 1.0), (1, -0.1)])
def test_an_attempt_or_fraction_out_of_range_is_refused(attempt: int, rand: float) -> None:
    with pytest.raises(ValueError):
        Backoff(initial=1.0, factor=2.0, maximum=10.0, jitter=0.5).delay(attempt, rand)
