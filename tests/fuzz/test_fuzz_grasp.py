"""GRASP M_FLOOD datagrams (RFC 8990 §2.8.11) under fuzzing: every datagram decodes into a
Flood that re-encodes to itself, or raises GraspError with its counter kind, in budget; the
listener that faces the link never raises at all, it counts and drops."""

from __future__ import annotations

from typing import Any

import cbor2
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.strategies import DrawFn

from tests.fuzz.mutate import Seeds, mutate_tree, mutated_bytes
from tests.fuzz.oracle import handled
from tests.fuzz.seeds import grasp_floods
from zerotouch_plugin.artifacts.grasp import Flood, decode_flood
from zerotouch_plugin.errors import GraspError
from zerotouch_plugin.roles.grasp import FloodListener, Received, relay

FLOODS = grasp_floods()
KINDS = frozenset({"oversized", "cbor", "limits", "message-type", "structure"})

# CBOR items JSON lacks: byte strings, tags (known and not), undefined, simple values, big
# integers that become tag 2/3 bignums, and floats of every width.
cbor_leaves: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**64, max_value=2**80),
    st.floats(),
    st.binary(max_size=20),
    st.text(max_size=20),
    st.just(cbor2.undefined),
    st.sampled_from([*range(20), *range(32, 256)]).map(cbor2.CBORSimpleValue),
    st.builds(cbor2.CBORTag, st.integers(0, 2**16), st.binary(max_size=8) | st.integers()),
)
cbor_values: st.SearchStrategy[Any] = st.recursive(
    cbor_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)


@st.composite
def _cbor_mutants(draw: DrawFn, seeds: Seeds) -> bytes:
    """A seed decoded, changed at one to three nodes, encoded again: well-formed CBOR whose
    GRASP structure is wrong in the ways the CDDL forbids."""
    message = cbor2.loads(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 3))):
        message = mutate_tree(draw, message, cbor_values)
    return bytes(cbor2.dumps(message))


def _decoded(data: bytes) -> None:
    """Decoded floods survive their own round trip and relaying; refusals name their kind."""
    result = handled(lambda: decode_flood(data), len(data), allowed=(GraspError,))
    if isinstance(result, Flood):
        # Compared as bytes: an objective value may hold NaN, which equals nothing.
        assert decode_flood(result.encode()).encode() == result.encode()
        handled(lambda: relay(result), len(data))
    else:
        assert isinstance(result, GraspError) and result.kind in KINDS


def _listener_survives(data: bytes) -> None:
    listener = FloodListener()
    received = listener.receive(data, sender="fe80::1%eth0", interface="eth0", now=1.0)
    assert isinstance(received, Received)
    assert listener.counters.received == 1


@given(mutated_bytes(FLOODS, der=False))
def test_byte_mutants_decode_or_refuse(case: tuple[int, bytes]) -> None:
    _decoded(case[1])
    _listener_survives(case[1])


@given(_cbor_mutants(Seeds(FLOODS)))
def test_structure_mutants_decode_or_refuse(data: bytes) -> None:
    _decoded(data)
    _listener_survives(data)


@given(st.binary(max_size=1600))
def test_raw_datagrams_decode_or_refuse(data: bytes) -> None:
    _decoded(data)
    _listener_survives(data)


@given(st.integers(1, 2000), st.sampled_from([b"\x81", b"\xa1\x00", b"\xd8\x18"]))
def test_deep_nesting_is_refused_in_budget(depth: int, opener: bytes) -> None:
    """Arrays, maps or tags nested far past MAX_DEPTH: refused by the pre-scan, not by
    recursing."""
    data = b"\x85\x09\x01\x44\x00\x00\x00\x00\x01" + opener * depth + b"\x00"
    _decoded(data)
