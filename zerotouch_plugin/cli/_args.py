"""Argument types shared by the command groups, so a refused value reads the same in each."""

from __future__ import annotations

import argparse

__all__ = ["positive_seconds"]


def positive_seconds(text: str) -> float:
    """A timeout or duration option: zero or less would never wait or never end."""
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value
