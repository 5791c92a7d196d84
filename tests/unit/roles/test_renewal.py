"""LDevID renewal timing: due at the configured fraction of the validity period, retried on
the backoff schedule without sleeping past expiry, never due once expired; bad policies and
periods refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.roles.backoff import Backoff
from zerotouch_plugin.roles.renewal import (
    RenewalAttempts,
    RenewalPolicy,
    Validity,
    expired,
    next_attempt,
    renewal_due,
    renewal_time,
)

START = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
DAY = Validity(START, START + timedelta(hours=24))
NO_JITTER = Backoff(initial=60.0, factor=2.0, maximum=7200.0, jitter=0.0)


def at(hours: float) -> datetime:
    return START + timedelta(hours=hours)


@pytest.mark.parametrize(("fraction", "hours"), [(0.5, 12), (0.75, 18), (0.9, 21.6)])
def test_renewal_is_due_at_the_fraction_of_the_lifetime(fraction: float, hours: float) -> None:
    policy = RenewalPolicy(fraction=fraction)
    assert renewal_time(policy, DAY) == at(hours)
    assert not renewal_due(policy, DAY, at(hours) - timedelta(seconds=1))
    assert renewal_due(policy, DAY, at(hours))
    assert renewal_due(policy, DAY, at(23.9))


def test_an_expired_ldevid_is_never_due_but_expired() -> None:
    policy = RenewalPolicy()
    after = DAY.not_after + timedelta(seconds=1)
    assert not renewal_due(policy, DAY, after)
    assert expired(DAY, after)
    assert not expired(DAY, DAY.not_after)


def test_failures_back_off_on_the_shared_schedule() -> None:
    policy = RenewalPolicy(fraction=0.5, backoff=NO_JITTER)
    first = RenewalAttempts().failed(at(12))
    assert first == RenewalAttempts(1, at(12))
    assert next_attempt(policy, DAY, first) == at(12) + timedelta(seconds=60)
    second = first.failed(at(12.1))
    assert next_attempt(policy, DAY, second) == at(12.1) + timedelta(seconds=120)
    assert not renewal_due(policy, DAY, at(12.1) + timedelta(seconds=119), second)
    assert renewal_due(policy, DAY, at(12.1) + timedelta(seconds=120), second)


def test_jitter_comes_from_the_callers_random_fraction() -> None:
    policy = RenewalPolicy(backoff=Backoff(initial=100.0, factor=2.0, maximum=100.0, jitter=0.5))
    failed = RenewalAttempts(1, at(18))
    assert next_attempt(policy, DAY, failed, rand=0.0) == at(18) + timedelta(seconds=50)
    assert next_attempt(policy, DAY, failed, rand=0.5) == at(18) + timedelta(seconds=75)


def test_a_long_backoff_never_waits_past_half_the_time_left() -> None:
    policy = RenewalPolicy(fraction=0.5, backoff=NO_JITTER)
    many = RenewalAttempts(10, at(22))  # backoff capped at 2 h, but only 2 h are left
    assert next_attempt(policy, DAY, many) == at(23)
    close = RenewalAttempts(10, DAY.not_after - timedelta(seconds=1))
    assert next_attempt(policy, DAY, close) == DAY.not_after  # min_retry of 1 s


def test_a_retry_is_not_earlier_than_the_renewal_time() -> None:
    policy = RenewalPolicy(fraction=0.75, backoff=NO_JITTER)
    early = RenewalAttempts(1, at(1))  # a failure recorded before renewal was due
    assert next_attempt(policy, DAY, early) == renewal_time(policy, DAY)


def test_validity_of_a_certificate() -> None:
    ca = certs.make_ca("renewal test CA", now=START)
    validity = Validity.of(ca.cert)
    assert validity.not_before == ca.cert.not_valid_before_utc
    assert validity.not_after == ca.cert.not_valid_after_utc
    assert validity.lifetime == validity.not_after - validity.not_before


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"fraction": 0.4}, ValueError, "outside 0.5..0.9"),
        ({"fraction": 0.95}, ValueError, "outside 0.5..0.9"),
        ({"fraction": "0.5"}, TypeError, "fraction must be a number"),
        ({"fraction": True}, TypeError, "fraction must be a number"),
        ({"min_retry": 0}, ValueError, "min_retry must be a positive"),
        ({"backoff": 5}, TypeError, "backoff must be a Backoff"),
    ],
)
def test_bad_policies_are_refused(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        RenewalPolicy(**kwargs)


def test_bad_periods_and_attempts_are_refused() -> None:
    with pytest.raises(ValueError, match="later than not_before"):
        Validity(START, START)
    with pytest.raises(ValueError, match="time zone"):
        Validity(datetime(2026, 1, 1), datetime(2026, 1, 2))
    with pytest.raises(ValueError, match="exactly when there were failures"):
        RenewalAttempts(1, None)
    with pytest.raises(ValueError, match="exactly when there were failures"):
        RenewalAttempts(0, START)
    with pytest.raises(ValueError, match="must not be negative"):
        RenewalAttempts(-1, START)
    with pytest.raises(ValueError, match="time zone"):
        renewal_due(RenewalPolicy(), DAY, datetime(2026, 12, 1, 12))


def test_values_are_frozen() -> None:
    policy = RenewalPolicy()
    with pytest.raises(AttributeError):
        policy.fraction = 0.6  # type: ignore[misc]
    with pytest.raises(AttributeError):
        DAY.not_after = START  # type: ignore[misc]


def test_a_retry_waits_at_least_the_registrars_retry_after() -> None:
    """RFC 7030 §4.2.3: the client waits at least Retry-After; still never past half the
    time left before expiry."""
    policy = RenewalPolicy(fraction=0.5, backoff=Backoff(60.0, 2.0, 3600.0, 0.0))
    asked = RenewalAttempts().failed(at(12), retry_after=600)
    assert next_attempt(policy, DAY, asked) == at(12) + timedelta(seconds=600)
    late = RenewalAttempts().failed(at(23.9), retry_after=3600)
    assert next_attempt(policy, DAY, late) == at(23.9) + timedelta(minutes=3)
