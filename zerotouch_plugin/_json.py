"""JSON text from outside, parsed with a nesting bound that does not depend on the interpreter.

``json.loads`` stops deep nesting only at the interpreter's recursion limit: about 1,000
levels on CPython 3.11, 1,500 on 3.12, 10,000 on 3.13. A document that parses on one would
then reach code that walks it recursively (YANG validation, copies, comparisons) and fail
there as a RecursionError, an internal error instead of the client's. Every JSON text a
peer, a client or an operator's file hands the product goes through ``bounded_loads``, which
refuses more than ``MAX_DEPTH`` levels of arrays and objects; the deepest YANG data the
product serves (RFC 7951) and the deepest BRSKI or SZTP artifact are a few levels deep.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["MAX_DEPTH", "bounded_loads"]

MAX_DEPTH = 64
_TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels"

Pairs = list[tuple[str, Any]]


def bounded_loads(
    data: bytes | str,
    *,
    object_pairs_hook: Callable[[Pairs], Any] | None = None,
) -> Any:
    """``json.loads``; ValueError for what is not JSON, for integers of more digits than
    Python converts (4,300), and for nesting deeper than ``MAX_DEPTH`` (RecursionError from
    the parser itself is turned into ValueError too, so callers catch one error)."""
    try:
        doc = json.loads(data, object_pairs_hook=object_pairs_hook)
    except RecursionError:
        raise ValueError(_TOO_DEEP) from None
    if _openers(data) > MAX_DEPTH:  # else no nesting can be deeper: most texts stop here
        _check_depth(doc)
    return doc


def _openers(data: bytes | str) -> int:
    if isinstance(data, str):
        return data.count("[") + data.count("{")
    return data.count(b"[") + data.count(b"{")


def _check_depth(doc: Any) -> None:
    """Iterative, so the check itself needs no recursion; only arrays and objects are
    visited, each once."""
    stack: list[tuple[Any, int]] = [(doc, 1)] if isinstance(doc, dict | list) else []
    while stack:
        node, depth = stack.pop()
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                if depth >= MAX_DEPTH:
                    raise ValueError(_TOO_DEEP)
                stack.append((child, depth + 1))
