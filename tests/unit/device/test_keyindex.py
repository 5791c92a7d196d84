"""The key index of a list: positions by key values, kept per list object, bounded."""

from __future__ import annotations

from collections.abc import Hashable

from zerotouch_plugin.device import keyindex
from zerotouch_plugin.device.keyindex import adopt, entry_key, key_index


def _entries(count: int, prefix: str = "e") -> list[dict[str, object]]:
    return [{"name": f"{prefix}{i}", "unit": i % 3} for i in range(count)]


def test_positions_by_key_and_the_index_is_kept_for_that_list() -> None:
    entries = _entries(100)
    index = key_index(entries, ["name"])
    assert index["e42"] == 42 and "e100" not in index
    assert key_index(entries, ["name"]) is index  # the same list: no second walk
    copy = list(entries)
    assert key_index(copy, ["name"]) is not index  # another list object: its own index


def test_two_keys_and_an_empty_type_key() -> None:
    entries = _entries(40)
    index = key_index(entries, ["name", "unit"])
    assert index[("e5", 2)] == 5
    assert entry_key(["name", "unit"])(entries[5]) == ("e5", 2)
    empty = [{"flag": [None]}]
    assert key_index(empty, ["flag"]) == {"[null]": 0}


def test_a_list_changed_in_place_is_indexed_again() -> None:
    """Trees are not changed in place, but if one is, a length that no longer matches the
    index makes the index be rebuilt rather than answer wrong."""
    entries = _entries(50)
    key_index(entries, ["name"])
    entries.append({"name": "late", "unit": 0})
    assert key_index(entries, ["name"])["late"] == 50


def test_an_edit_hands_its_index_on_and_the_cache_stays_bounded() -> None:
    first = _entries(50)
    handed: dict[Hashable, int] = {
        f"e{i}": i for i in range(50)
    }  # equal to what a walk gives, another object
    adopt(first, ["name"], handed)
    assert key_index(first, ["name"]) is handed
    lists = [_entries(40, prefix=f"l{n}-") for n in range(keyindex._LIMIT + 5)]
    for one in lists:
        key_index(one, ["name"])
    assert len(keyindex._cache) <= keyindex._LIMIT
    assert key_index(first, ["name"]) is not handed  # evicted, then built from the list
    assert key_index(first, ["name"])["e7"] == 7
