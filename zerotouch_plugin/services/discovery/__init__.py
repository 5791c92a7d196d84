"""Discovery I/O: finders that look for registrar candidates (GRASP, mDNS, unicast DNS-SD,
the vendor URL) and announcers that make a registrar or a join proxy findable.

Every method has a finder (``Finder``) and, where the method announces, an announcer
(``Announcer``); the pledge agent keeps a table method -> finder, so a new method is one entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from zerotouch_plugin.roles.discovery import Candidate, Method

__all__ = ["Announcer", "Finder"]


class Finder(Protocol):
    """Looks for candidates by one method for at most ``timeout`` seconds; returns what it
    found (possibly nothing), never raises for a hostile or silent network."""

    method: Method

    async def find(self, *, timeout: float) -> Sequence[Candidate]: ...


class Announcer(Protocol):
    """Announces a service until closed (GRASP M_FLOOD every interval, an mDNS record)."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...
