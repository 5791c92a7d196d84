"""Waiting in a test on the condition itself, with a generous bound, never for a fixed time:
on a busy CI machine (two CPUs shared by every test process) a fixed sleep or a read right
after an action loses the race some day, while a bound only has to be long enough to mean
"never"."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["wait_until"]

T = TypeVar("T")


def wait_until(
    what: str, probe: Callable[[], T | None], timeout: float = 60, *, interval: float = 0.05
) -> T:
    """The first value of ``probe`` that is not None, polled every ``interval`` seconds;
    AssertionError naming ``what`` when there is none within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (value := probe()) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(interval)
    return value
