"""Hypothesis strategies that start from valid artifacts and break them the way an attacker or
a buggy peer would: bit flips, truncation, splices, ASN.1 tags and lengths that lie, and JSON
whose types, nesting, numbers and member names are not what the schema says."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st
from hypothesis.strategies import DrawFn as Draw

# Bytes that sit on the edges of DER: tags (SEQUENCE, SET, [0]), length forms (long form with
# 1, 2, 4 octets, indefinite), and the extremes.
_INTERESTING = (0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x30, 0x31, 0x7F, 0x80, 0x81, 0x82, 0x84, 0xA0)
_INTERESTING_EDGES = (*_INTERESTING, 0xA3, 0xFF)
_LYING_LENGTHS = (b"\x80", b"\x81\x00", b"\x84\xff\xff\xff\xff", b"\x89" + b"\xff" * 9, b"\x00")


def der_elements(der: bytes) -> list[tuple[int, int, int]]:
    """(start, header length, content length) of every DER element, depth first, as far as the
    bytes are well-formed; the mutators aim at these boundaries."""
    found: list[tuple[int, int, int]] = []

    def walk(pos: int, end: int, depth: int) -> None:
        while pos + 2 <= end and depth < 40:
            tag, first = der[pos], der[pos + 1]
            header = 2
            length = first
            if first & 0x80:
                count = first & 0x7F
                if count == 0 or count > 4 or pos + 2 + count > end:
                    return
                length = int.from_bytes(der[pos + 2 : pos + 2 + count], "big")
                header += count
            if pos + header + length > end:
                return
            found.append((pos, header, length))
            if tag & 0x20:
                walk(pos + header, pos + header + length, depth + 1)
            pos += header + length

    walk(0, len(der), 0)
    return found


def _flip(draw: Draw, data: bytearray, _: Sequence[bytes]) -> bytearray:
    if data:
        index = draw(st.integers(0, len(data) - 1))
        data[index] ^= 1 << draw(st.integers(0, 7))
    return data


def _set_byte(draw: Draw, data: bytearray, _: Sequence[bytes]) -> bytearray:
    if data:
        data[draw(st.integers(0, len(data) - 1))] = draw(st.sampled_from(_INTERESTING_EDGES))
    return data


def _truncate(draw: Draw, data: bytearray, _: Sequence[bytes]) -> bytearray:
    return data[: draw(st.integers(0, len(data)))]


def _delete(draw: Draw, data: bytearray, _: Sequence[bytes]) -> bytearray:
    start = draw(st.integers(0, len(data)))
    return data[:start] + data[start + draw(st.integers(1, 64)) :]


def _duplicate(draw: Draw, data: bytearray, _: Sequence[bytes]) -> bytearray:
    start = draw(st.integers(0, len(data)))
    end = min(len(data), start + draw(st.integers(1, 256)))
    return data[:end] + data[start:end] + data[end:]


def _insert(draw: Draw, data: bytearray, _: Sequence[bytes]) -> bytearray:
    at = draw(st.integers(0, len(data)))
    return data[:at] + draw(st.binary(min_size=1, max_size=32)) + data[at:]


def _splice(draw: Draw, data: bytearray, seeds: Sequence[bytes]) -> bytearray:
    other = draw(st.sampled_from(seeds))
    cut = draw(st.integers(0, len(data)))
    return data[:cut] + other[draw(st.integers(0, len(other))) :]


def _element(draw: Draw, data: bytearray) -> tuple[int, int, int] | None:
    elements = der_elements(bytes(data))
    return draw(st.sampled_from(elements)) if elements else None


def _retag(draw: Draw, data: bytearray, _: Sequence[bytes]) -> bytearray:
    element = _element(draw, data)
    if element is not None:
        data[element[0]] = draw(st.integers(0, 255))
    return data


def _relength(draw: Draw, data: bytearray, _: Sequence[bytes]) -> bytearray:
    """Replace an element's length with a lie: off by a little, huge, indefinite or zero."""
    element = _element(draw, data)
    if element is None:
        return data
    start, header, length = element
    lie = draw(
        st.one_of(
            st.sampled_from(_LYING_LENGTHS),
            st.integers(max(0, length - 3), length + 3).map(_der_length),
        )
    )
    return data[: start + 1] + lie + data[start + header :]


def _drop_element(draw: Draw, data: bytearray, _: Sequence[bytes]) -> bytearray:
    element = _element(draw, data)
    if element is None:
        return data
    start, header, length = element
    return data[:start] + data[start + header + length :]


def _repeat_element(draw: Draw, data: bytearray, _: Sequence[bytes]) -> bytearray:
    element = _element(draw, data)
    if element is None:
        return data
    start, header, length = element
    end = start + header + length
    return data[:end] + data[start:end] * draw(st.integers(1, 3)) + data[end:]


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


_BYTE_OPS = (_flip, _set_byte, _truncate, _delete, _duplicate, _insert, _splice)
_DER_OPS = (_retag, _relength, _drop_element, _repeat_element)


class Seeds(tuple[Any, ...]):
    """Seed artifacts with a short repr, so a failing example's report shows the mutant and
    not every seed the strategy was built from."""

    def __repr__(self) -> str:
        return f"<{len(self)} seeds>"


def mutated_bytes(
    seeds: Sequence[bytes], *, der: bool = True
) -> st.SearchStrategy[tuple[int, bytes]]:
    """(index of the seed it started from, the seed after one to four mutations)."""
    return _mutated_bytes(Seeds(seeds), der=der)


@st.composite
def _mutated_bytes(draw: Draw, seeds: Sequence[bytes], *, der: bool) -> tuple[int, bytes]:
    index = draw(st.integers(0, len(seeds) - 1))
    data = bytearray(seeds[index])
    ops = _BYTE_OPS + _DER_OPS if der else _BYTE_OPS
    for _ in range(draw(st.integers(1, 4))):
        data = draw(st.sampled_from(ops))(draw, data, seeds)
    return index, bytes(data)


# ---------------------------------------------------------------------------------------------
# JSON


def _digits(count: int) -> str:
    return "7" * count


def _power(exponent: int) -> int:
    return int(10**exponent)


# Built by named functions so Hypothesis's reports show the recipe, not 5000 digits.
_HOSTILE_STRINGS = st.one_of(
    st.sampled_from(
        ["", "\x00", "\ud800", "\ufeff", "é" * 3, "2026-13-45T99:99:99Z", "true", "null"]
    ),
    st.sampled_from([4300, 5000]).map(_digits),
)
_HOSTILE_NUMBERS = st.one_of(
    st.sampled_from([-(10**30), 2**63, 1e308, float("inf"), float("nan"), -0.0, 0, -1]),
    st.sampled_from([400, 4299]).map(_power),
)
json_leaves: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    _HOSTILE_STRINGS,
    _HOSTILE_NUMBERS,
)
json_values: st.SearchStrategy[Any] = st.recursive(
    json_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for key, value in obj.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            out += _paths(value, (*prefix, index))
    return out


def _replace(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(obj, dict):
        return {**obj, head: _replace(obj[head], rest, value)}
    copy = list(obj)
    copy[head] = _replace(obj[head], rest, value)
    return copy


def _get(obj: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        obj = obj[step]
    return obj


def mutate_tree(draw: Draw, obj: Any, values: st.SearchStrategy[Any] = json_values) -> Any:
    """One change at a random node of a decoded document (lists and dicts): a new value from
    ``values``, wrapped, emptied, a key dropped or added, or the node nested deep."""
    path = draw(st.sampled_from(_paths(obj)))
    node = _get(obj, path)
    choice = draw(st.integers(0, 5))
    if choice == 0:
        new = draw(values)
    elif choice == 1:
        new = [node]
    elif choice == 2:
        new = {draw(st.text(max_size=12)): node}
    elif choice == 3 and isinstance(node, dict) and node:
        dropped = draw(st.sampled_from(sorted(node)))
        new = {key: value for key, value in node.items() if key != dropped}
    elif choice == 4 and isinstance(node, dict):
        new = {**node, draw(st.text(max_size=30)): draw(values)}
    else:
        new = node
        for _ in range(draw(st.sampled_from([2, 50]))):
            new = [new]
    return _replace(obj, path, new)


def _splice_text(draw: Draw, obj: Any) -> Any:
    """A text leaf that keeps its type but not its alphabet: NUL, a lone surrogate, a terminal
    escape, a noncharacter or a bidi override, the things that break logs, rows and screens."""
    texts = [path for path in _paths(obj) if path and isinstance(_get(obj, path), str)]
    if not texts:
        return obj
    path = draw(st.sampled_from(texts))
    spliced = draw(st.sampled_from(["\x00", "\ud800", "\x1b[2J", "\ufffe", "\u202e"]))
    return _replace(obj, path, _get(obj, path) + spliced)


def _duplicate_member(draw: Draw, text: str) -> str:
    """Repeat the first member of the first object: JSON allows it, the artifact must not."""
    brace = text.find("{")
    colon = text.find(":", brace)
    end = text.find(",", colon)
    if brace < 0 or colon < 0 or end < 0:
        return text
    member = text[brace + 1 : end]
    return text[: brace + 1] + member + "," + member + text[end:]


def mutated_json(seeds: Sequence[Any]) -> st.SearchStrategy[bytes]:
    """JSON text from a seed document after tree mutations, and sometimes a text mutation
    (duplicate member, nesting, truncation, bytes that are not UTF-8)."""
    return _mutated_json(Seeds(seeds))


@st.composite
def _mutated_json(draw: Draw, seeds: Sequence[Any]) -> bytes:
    obj = draw(st.sampled_from(seeds))
    if draw(st.integers(0, 3)) == 0:
        obj = _splice_text(draw, obj)
    for _ in range(draw(st.integers(0, 3))):
        obj = mutate_tree(draw, obj)
    text = json.dumps(obj, ensure_ascii=draw(st.booleans()))
    step = draw(st.integers(0, 5))
    if step == 0:
        text = _duplicate_member(draw, text)
    elif step == 3:
        # Nesting past the interpreter's recursion limit, written as text: the tree would not
        # even serialize.
        depth = draw(st.sampled_from([1000, 100_000]))
        text = "[" * depth + text + "]" * depth
    raw = text.encode("utf-8", "surrogatepass")
    if step == 1:
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif step == 2:
        raw = draw(mutated_bytes([raw], der=False))[1]
    return raw
