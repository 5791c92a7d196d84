"""Key value -> position of the entries of a YANG list held in an RFC 7951 tree, cached.

Trees are never changed in place (an edit copies what it changes and shares the rest), so
an index built for one list object stays right for as long as that object lives; an edit
that keeps every key in its place hands its index on to the list it makes (``adopt``).
Finding one entry then costs a dictionary lookup, not a walk of the list, and a datastore
of 10,000 interfaces answers a get or an edit of one in the time of a small one. The cache
holds the list objects it indexes (so an id is never reused while cached), a bounded number.
"""

from __future__ import annotations

import json
import operator
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

__all__ = ["Index", "adopt", "entry_key", "key_index", "key_of_values"]

Index = Mapping[Hashable, int]
_LIMIT = 16  # lists indexed at once: each index of a long list is a dict as long
_SMALL = 32  # lists shorter than this are walked, not indexed
_cache: dict[tuple[int, tuple[str, ...]], tuple[list[Any], Index]] = {}
_lock = threading.Lock()


def entry_key(names: Sequence[str]) -> Callable[[Mapping[str, Any]], Hashable]:
    """A function giving a list entry's key values, hashable (KeyError if one is missing)."""
    values = operator.itemgetter(*names)
    return lambda entry: key_of_values(values(entry))


def key_of_values(found: Any) -> Hashable:
    """Key values as ``entry_key`` gives them: the value of a single key, else the tuple."""
    try:
        hash(found)
    except TypeError:  # an empty-type key is [null] in RFC 7951
        return json.dumps(found)
    return found  # type: ignore[no-any-return]


def key_index(entries: list[Any], names: Sequence[str]) -> Index:
    """Key values (as ``entry_key`` gives them) -> position, for a list of valid entries."""
    names = tuple(names)
    slot = (id(entries), names)
    with _lock:
        hit = _cache.get(slot)
    if hit is not None and hit[0] is entries and len(hit[1]) == len(entries):
        return hit[1]
    key = entry_key(names)
    index = {
        key(e): i
        for i, e in enumerate(entries)
        if isinstance(e, Mapping) and all(n in e for n in names)
    }
    if len(entries) >= _SMALL:
        adopt(entries, names, index)
    return index


def adopt(entries: list[Any], names: Sequence[str], index: Index) -> None:
    """Remember ``index`` as the index of ``entries`` (built or handed on by an edit)."""
    with _lock:
        if len(_cache) >= _LIMIT:
            del _cache[next(iter(_cache))]
        _cache[(id(entries), tuple(names))] = (entries, index)
