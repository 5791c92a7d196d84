"""The end of a service's background task, shared by the services that run one."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

__all__ = ["cancel_task"]


async def cancel_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (None: nothing runs) and wait until it has ended."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
