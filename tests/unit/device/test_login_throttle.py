"""LoginThrottle: failed SSH logins per source address in a sliding window (sans-IO)."""

from __future__ import annotations

from zerotouch_plugin.device.login_throttle import LoginThrottle


def _throttle() -> LoginThrottle:
    return LoginThrottle(limit=3, window=10.0, lockout=60.0)


def test_the_limit_th_failure_in_the_window_locks_the_source_out() -> None:
    t = _throttle()
    assert not t.failed("10.0.0.1", 0.0)
    assert not t.failed("10.0.0.1", 1.0)
    assert t.failed("10.0.0.1", 2.0)
    assert t.locked("10.0.0.1", 2.0)
    assert t.locked("10.0.0.1", 61.9)
    assert not t.locked("10.0.0.2", 2.0)  # other sources are not affected


def test_the_lockout_ends_and_the_count_starts_afresh() -> None:
    t = _throttle()
    for now in (0.0, 1.0, 2.0):
        t.failed("10.0.0.1", now)
    assert not t.locked("10.0.0.1", 62.0)
    assert not t.failed("10.0.0.1", 63.0)
    assert not t.failed("10.0.0.1", 64.0)
    assert t.failed("10.0.0.1", 65.0)


def test_failures_older_than_the_window_do_not_count() -> None:
    t = _throttle()
    for now in (0.0, 5.0, 11.0, 16.0, 22.0, 27.0):  # never 3 within 10 s
        assert not t.failed("10.0.0.1", now)
    assert not t.locked("10.0.0.1", 27.0)


def test_the_table_of_sources_stays_bounded() -> None:
    t = LoginThrottle(limit=3, window=10.0, lockout=60.0, max_sources=100)
    for i in range(10_000):
        t.failed(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", float(i) / 1000)
    assert len(t._failures) <= 100
