"""Recording the calls of a function under test while it still does its work."""

from __future__ import annotations

from typing import Any

import pytest


def recorded(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[Any]:
    """The first argument of every call of ``owner.name`` from now on (for a method: the
    instance), in order; the real function still runs."""
    real = getattr(owner, name)
    seen: list[Any] = []

    def recording(*args: Any, **kwargs: Any) -> Any:
        seen.append(args[0] if args else None)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, recording)
    return seen
