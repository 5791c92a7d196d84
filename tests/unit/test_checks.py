"""The shared number checks: a bool is no number, zero is no duration, the message names the key."""

from __future__ import annotations

import pytest

from zerotouch_plugin._checks import require_count, require_number, require_positive


@pytest.mark.parametrize("value", [0.5, 1, 3600, 10**400])
def test_positive_numbers_pass(value: float) -> None:
    require_positive(value, "timeout")


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (True, TypeError, "timeout must be a number of seconds"),
        ("5", TypeError, "timeout must be a number of seconds"),
        (None, TypeError, "timeout must be a number of seconds"),
        (0, ValueError, "timeout must be positive"),
        (-0.1, ValueError, "timeout must be positive"),
        (float("nan"), ValueError, "timeout must be finite"),
        (float("inf"), ValueError, "timeout must be finite"),
        (float("-inf"), ValueError, "timeout must be finite"),
    ],
)
def test_positive_refuses(value: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=f"^{message}$"):
        require_positive(value, "timeout", "a number of seconds")


def test_positive_unit_defaults_to_a_number() -> None:
    with pytest.raises(TypeError, match=r"^backoff must be a number$"):
        require_positive("x", "backoff")


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (False, TypeError, "limits.max_connections must be an integer"),
        (1.0, TypeError, "limits.max_connections must be an integer"),
        (0, ValueError, "limits.max_connections must be at least 1"),
        (-3, ValueError, "limits.max_connections must be at least 1"),
    ],
)
def test_count_refuses(value: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=f"^{message}$"):
        require_count(value, "limits.max_connections")


def test_count_of_one_passes() -> None:
    require_count(1, "max_connections")


@pytest.mark.parametrize("value", [0, -2.5, 1e300, 10**400])
def test_a_finite_number_of_any_sign_is_a_number(value: float) -> None:
    assert require_number(value, "base_delay") == value


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (False, TypeError, "base_delay must be a number"),
        ("1", TypeError, "base_delay must be a number"),
        (float("nan"), ValueError, "base_delay must be finite"),
        (float("inf"), ValueError, "base_delay must be finite"),
    ],
)
def test_number_refuses(value: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=f"^{message}$"):
        require_number(value, "base_delay")
