"""Plain type aliases shared by the datastore and the plugin host, kept apart so that a host
(device/host.py) names them without importing the datastore and its I/O."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["RpcFunction", "Tree"]

# An RFC 7951 JSON instance tree: member names to values.
Tree = dict[str, Any]
# A YANG RPC implementation: RFC 7951 input members -> output members (or None).
RpcFunction = Callable[[Tree], Awaitable[Tree | None]]
