"""Shared argument types: what argparse prints when a duration option is refused."""

from __future__ import annotations

import argparse

import pytest

from zerotouch_plugin.cli._args import positive_seconds


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zerotouch", exit_on_error=False)
    parser.add_argument("--timeout", type=positive_seconds)
    return parser


def test_a_positive_duration_is_a_float() -> None:
    assert _parser().parse_args(["--timeout", "2.5"]).timeout == 2.5


@pytest.mark.parametrize("text", ["0", "-1", "-0.001"])
def test_zero_and_below_are_refused_with_the_reason(text: str) -> None:
    with pytest.raises(argparse.ArgumentError, match="must be a positive number of seconds"):
        _parser().parse_args(["--timeout", text])


def test_a_word_is_refused() -> None:
    with pytest.raises(argparse.ArgumentError, match="invalid positive_seconds value: 'soon'"):
        _parser().parse_args(["--timeout", "soon"])
