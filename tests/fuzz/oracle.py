"""The fuzzing oracle: an input parses, or it raises the project's own error, within budget.

Anything else (a ``ValueError`` from a library, ``RecursionError``, a parse that takes seconds or
allocates far more than the input is big) is what turns into a 500, a hang or a memory blow-up
on a listener, so it fails the harness.
"""

from __future__ import annotations

import os
import time
import tracemalloc
from collections.abc import Callable
from typing import TypeVar

from hypothesis import currently_in_test_context, event

from zerotouch_plugin.errors import ZerotouchError

T = TypeVar("T")

# CPU seconds one input may take: CPU rather than wall time, so that other processes on a
# loaded machine do not count; generous for CI, far below a hang.
TIME_BUDGET_S = float(os.environ.get("ZEROTOUCH_FUZZ_TIME_BUDGET", "1.0"))
# Peak allocation allowed: a fixed floor (library setup, error messages) plus a multiple of the
# input size, so a parser may copy and decode its input a few times but not explode it.
MEMORY_FLOOR = 4 * 1024 * 1024
MEMORY_PER_INPUT_BYTE = 64


def handled(
    parse: Callable[[], T],
    size: int,
    *,
    allowed: tuple[type[ZerotouchError], ...] = (ZerotouchError,),
) -> T | ZerotouchError:
    """Run ``parse`` and return its value or the allowed project error it raised.

    ``size`` is the input's length in bytes (or characters) for the memory budget. Any other
    exception propagates (the harness fails with its traceback); a project error outside
    ``allowed`` fails too, with the wire code it would have sent.
    """
    tracemalloc.start()
    start = time.process_time()
    try:
        result: T | ZerotouchError = parse()
    except ZerotouchError as exc:
        if not isinstance(exc, allowed):
            raise AssertionError(
                f"{type(exc).__name__} (HTTP {exc.http_status}) is not one of "
                f"{[cls.__name__ for cls in allowed]}: {exc}"
            ) from exc
        result = exc
    finally:
        elapsed = time.process_time() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert elapsed <= TIME_BUDGET_S, f"input of {size} bytes took {elapsed:.3f} s of CPU"
    limit = MEMORY_FLOOR + MEMORY_PER_INPUT_BYTE * size
    assert peak <= limit, f"input of {size} bytes peaked at {peak} bytes (budget {limit})"
    # Shown by --hypothesis-show-statistics: how deep the inputs get (accepted or which refusal).
    if currently_in_test_context():
        event(result.reason if isinstance(result, ZerotouchError) else "accepted")
    if isinstance(result, ZerotouchError):
        assert result.http_status != 500, f"{result!r} maps to HTTP 500, an unintended failure"
    return result
