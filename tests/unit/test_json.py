"""The one JSON parser for outside text: its nesting bound holds on every interpreter."""

from __future__ import annotations

import json
from typing import Any

import pytest

from zerotouch_plugin._json import MAX_DEPTH, bounded_loads


def _arrays(depth: int) -> str:
    return "[" * depth + "]" * depth


def _objects(depth: int) -> str:
    return '{"a": ' * depth + "1" + "}" * depth


def _mixed(depth: int) -> str:
    """Objects and arrays taking turns, the innermost an empty array."""
    opening = "".join('{"a": ' if i % 2 == 0 else "[" for i in range(depth - 1)) + "["
    closing = "]" + "".join("}" if i % 2 == 0 else "]" for i in reversed(range(depth - 1)))
    return opening + closing


@pytest.mark.parametrize("shape", [_arrays, _objects, _mixed])
def test_nesting_up_to_the_bound_parses_one_more_level_is_refused(shape: Any) -> None:
    text = shape(MAX_DEPTH)
    assert bounded_loads(text) == json.loads(text)
    assert bounded_loads(text.encode()) == json.loads(text)
    with pytest.raises(ValueError, match=f"nested deeper than {MAX_DEPTH} levels"):
        bounded_loads(shape(MAX_DEPTH + 1))
    with pytest.raises(ValueError, match=f"nested deeper than {MAX_DEPTH} levels"):
        bounded_loads(shape(MAX_DEPTH + 1).encode())


@pytest.mark.parametrize("depth", [100, 1_100, 5_000, 9_000, 100_000])
def test_what_some_interpreter_parses_is_refused_alike(depth: int) -> None:
    """CPython 3.11's parser stops near 1,000 levels, 3.12's near 1,500, 3.13's near 10,000:
    every depth past the bound is the same ValueError, never a RecursionError."""
    with pytest.raises(ValueError, match="nested deeper than"):
        bounded_loads(_arrays(depth))


def test_a_deep_branch_among_shallow_ones_is_found() -> None:
    wide = {f"k{i}": [{"x": i}] for i in range(500)}
    wide["k250"] = json.loads(_arrays(MAX_DEPTH))
    with pytest.raises(ValueError, match="nested deeper"):
        bounded_loads(json.dumps({"top": wide}))
    del wide["k250"]
    assert bounded_loads(json.dumps({"top": wide})) == {"top": wide}


@pytest.mark.parametrize("text", ["5", '"s"', "null", "[]", "{}", '[1, "a", true]'])
def test_scalars_and_flat_documents(text: str) -> None:
    assert bounded_loads(text) == json.loads(text)


def test_utf16_text_is_bounded_too() -> None:
    with pytest.raises(ValueError, match="nested deeper"):
        bounded_loads(_arrays(MAX_DEPTH + 1).encode("utf-16"))
    assert bounded_loads(_arrays(3).encode("utf-16")) == [[[]]]


def test_errors_of_the_parser_stay_value_errors() -> None:
    with pytest.raises(ValueError):
        bounded_loads("{")
    with pytest.raises(ValueError):
        bounded_loads("9" * 5000)  # more digits than Python converts
    with pytest.raises(ValueError):
        bounded_loads(b"\xff")


def test_object_pairs_hook_sees_every_object() -> None:
    seen: list[list[tuple[str, Any]]] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen.append(pairs)
        return dict(pairs)

    assert bounded_loads('{"a": {"b": 1}}', object_pairs_hook=hook) == {"a": {"b": 1}}
    assert seen == [[("b", 1)], [("a", {"b": 1})]]
