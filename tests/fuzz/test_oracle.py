"""The oracle itself must fail on each thing it is meant to catch, or every harness is vacuous."""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import settings

from tests.fuzz.oracle import TIME_BUDGET_S, handled
from zerotouch_plugin.errors import ConfigError, InvalidInput, SignatureInvalid


def _raise(exc: Exception) -> None:
    raise exc


def _spin() -> None:
    """Burn CPU past the budget (sleeping would not count: the budget is CPU time)."""
    start = time.process_time()
    while time.process_time() - start <= TIME_BUDGET_S + 0.05:
        pass


def test_profile_comes_from_the_environment() -> None:
    wanted = os.environ.get("ZEROTOUCH_FUZZ_PROFILE", "short")
    assert settings().max_examples == settings.get_profile(wanted).max_examples


def test_value_and_project_error_pass() -> None:
    assert handled(lambda: 7, 1) == 7
    error = handled(lambda: _raise(InvalidInput("bad")), 1)
    assert isinstance(error, InvalidInput)


def test_foreign_exception_propagates() -> None:
    with pytest.raises(ValueError):
        handled(lambda: _raise(ValueError("library internals")), 1)


def test_error_outside_allowed_fails() -> None:
    with pytest.raises(AssertionError, match="SignatureInvalid"):
        handled(lambda: _raise(SignatureInvalid("forged")), 1, allowed=(InvalidInput,))


def test_server_side_error_fails() -> None:
    with pytest.raises(AssertionError, match="HTTP 500"):
        handled(lambda: _raise(ConfigError("ours")), 1)


def test_slow_parse_fails() -> None:
    with pytest.raises(AssertionError, match="took"):
        handled(_spin, 1)


def test_memory_blowup_fails() -> None:
    with pytest.raises(AssertionError, match="peaked"):
        handled(lambda: bytearray(64 * 1024 * 1024), 10)
