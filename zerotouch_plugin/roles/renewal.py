"""When a device renews its LDevID (RFC 7030 §4.2.2 simplereenroll), sans-IO.

The agent keeps its domain identity alive by re-enrolling at a configured fraction of the
LDevID's validity period (the first attempt spread by jitter over ``SPREAD`` of the lifetime
after it: devices enrolled in one wave hold LDevIDs of the same validity, and would otherwise
all renew in the same second), and retries failures on the shared backoff schedule
(``roles/backoff.py``) without letting a long backoff run past the certificate's expiry.
Nothing here reads the clock: the caller passes ``now`` and the random fraction for jitter.

API (stable, used by the pledge agent):

* ``RenewalPolicy(fraction=0.75, backoff=Backoff(...), min_retry=1.0)``: ``fraction`` of the
  validity period (0.5 to 0.9) after which renewal is due.
* ``Validity(not_before, not_after)``, ``Validity.of(cert)``: the current LDevID's period.
* ``RenewalAttempts(failures=0, last_failure=None, retry_after=0.0)``: failed tries since
  the last success; ``.failed(now, retry_after=0.0)`` counts one more, with the seconds the
  registrar asked to wait (its Retry-After, RFC 7030 §4.2.3).
* ``renewal_time(policy, validity) -> datetime``: when renewal becomes due.
* ``next_attempt(policy, validity, attempts=None, rand=0.0) -> datetime``: when to try
  next (``attempts`` None: no failure yet; ``rand`` in [0, 1) places it in the spread).
* ``renewal_due(policy, validity, now, attempts=None, rand=0.0) -> bool``.
* ``expired(validity, now) -> bool``: past ``not_after``, the LDevID can no longer
  authenticate a simplereenroll; the device must enroll again with its IDevID.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509

from zerotouch_plugin.roles.backoff import Backoff

__all__ = [
    "DEFAULT_BACKOFF",
    "MAX_FRACTION",
    "MIN_FRACTION",
    "SPREAD",
    "RenewalAttempts",
    "RenewalPolicy",
    "Validity",
    "expired",
    "next_attempt",
    "renewal_due",
    "renewal_time",
]

# Renewing before half the lifetime wastes certificates; after nine tenths leaves too little
# time to retry through a registrar outage.
MIN_FRACTION = 0.5
MAX_FRACTION = 0.9
# The first attempts of a fleet spread over this part of the lifetime after ``fraction``: at
# most 0.95 of it then, a twentieth left for the retries.
SPREAD = 0.05

DEFAULT_BACKOFF = Backoff(initial=5.0, factor=2.0, maximum=3600.0, jitter=0.2)


def _aware(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must carry a time zone")
    return value


@dataclass(frozen=True)
class Validity:
    """An LDevID's validity period (RFC 5280 §4.1.2.5)."""

    not_before: datetime
    not_after: datetime

    def __post_init__(self) -> None:
        _aware(self.not_before, "not_before")
        _aware(self.not_after, "not_after")
        if self.not_after <= self.not_before:
            raise ValueError("not_after must be later than not_before")

    @classmethod
    def of(cls, cert: x509.Certificate) -> Validity:
        return cls(cert.not_valid_before_utc, cert.not_valid_after_utc)

    @property
    def lifetime(self) -> timedelta:
        return self.not_after - self.not_before


@dataclass(frozen=True)
class RenewalPolicy:
    """Renew at ``fraction`` of the validity period; after a failure wait by ``backoff``,
    at least ``min_retry`` seconds and at most half the time left before expiry."""

    fraction: float = 0.75
    backoff: Backoff = field(default=DEFAULT_BACKOFF)
    min_retry: float = 1.0

    def __post_init__(self) -> None:
        for name in ("fraction", "min_retry"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise TypeError(f"{name} must be a number")
        if not MIN_FRACTION <= self.fraction <= MAX_FRACTION:
            raise ValueError(
                f"fraction {self.fraction} is outside {MIN_FRACTION}..{MAX_FRACTION} of the "
                "LDevID's lifetime"
            )
        if not isinstance(self.backoff, Backoff):
            raise TypeError("backoff must be a Backoff")
        if self.min_retry <= 0:
            raise ValueError("min_retry must be a positive number of seconds")


@dataclass(frozen=True)
class RenewalAttempts:
    """Failed renewals since the current LDevID was installed."""

    failures: int = 0
    last_failure: datetime | None = None
    retry_after: float = 0.0  # what the registrar asked of the last failure (Retry-After)

    def __post_init__(self) -> None:
        if not isinstance(self.failures, int) or isinstance(self.failures, bool):
            raise TypeError("failures must be an integer")
        if self.failures < 0:
            raise ValueError("failures must not be negative")
        if (self.failures == 0) != (self.last_failure is None):
            raise ValueError("last_failure is set exactly when there were failures")
        if self.last_failure is not None:
            _aware(self.last_failure, "last_failure")
        if not isinstance(self.retry_after, int | float) or isinstance(self.retry_after, bool):
            raise TypeError("retry_after must be a number")
        if self.retry_after < 0:
            raise ValueError("retry_after must not be negative")

    def failed(self, now: datetime, retry_after: float = 0.0) -> RenewalAttempts:
        """One more failure, at ``now``; ``retry_after``: the seconds the registrar asked to
        wait before the next try (0: no advice)."""
        return RenewalAttempts(self.failures + 1, _aware(now, "now"), retry_after)


def renewal_time(policy: RenewalPolicy, validity: Validity) -> datetime:
    """The moment renewal becomes due: ``fraction`` of the way through the validity period."""
    return validity.not_before + validity.lifetime * policy.fraction


def next_attempt(
    policy: RenewalPolicy,
    validity: Validity,
    attempts: RenewalAttempts | None = None,
    rand: float = 0.0,
) -> datetime:
    """When to try to renew next: at ``renewal_time`` at first, plus ``rand`` times ``SPREAD``
    of the lifetime (jitter); after a failure, the backoff
    delay for that failure (``rand`` in [0, 1) spreads it) or the registrar's Retry-After
    if longer (RFC 7030 §4.2.3: the client waits at least that long), but never more than
    half the time left before ``not_after``, so retries grow denser as expiry nears."""
    due = renewal_time(policy, validity)
    if attempts is None or attempts.last_failure is None:
        return due + validity.lifetime * (SPREAD * rand)
    delay = timedelta(
        seconds=max(policy.backoff.delay(attempts.failures, rand), attempts.retry_after)
    )
    left = (validity.not_after - attempts.last_failure) / 2
    wait = max(min(delay, left), timedelta(seconds=policy.min_retry))
    return max(due, attempts.last_failure + wait)


def renewal_due(
    policy: RenewalPolicy,
    validity: Validity,
    now: datetime,
    attempts: RenewalAttempts | None = None,
    rand: float = 0.0,
) -> bool:
    """Whether to send a simplereenroll now (a certificate already expired is never due:
    see ``expired``)."""
    _aware(now, "now")
    return not expired(validity, now) and now >= next_attempt(policy, validity, attempts, rand)


def expired(validity: Validity, now: datetime) -> bool:
    """Past ``not_after`` the LDevID no longer authenticates (RFC 5280 §4.1.2.5)."""
    return _aware(now, "now") > validity.not_after
