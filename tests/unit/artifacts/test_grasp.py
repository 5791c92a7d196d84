"""GRASP M_FLOOD codec (artifacts/grasp.py): the RFC examples byte for byte, round trips,
one specific error for every malformation, and fuzzing (Hypothesis) showing that any input
decodes or raises GraspError, quickly, never anything else."""

from __future__ import annotations

import ipaddress
import time
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zerotouch_plugin.artifacts.grasp import (
    ABSENT,
    AN_JOIN_REGISTRAR,
    AN_PROXY,
    GRASP_DEF_MAX_SIZE,
    IPPROTO_TCP,
    IPPROTO_UDP,
    M_FLOOD,
    MAX_DEPTH,
    MAX_ITEMS,
    O_FQDN_LOCATOR,
    O_URI_LOCATOR,
    SYNC_ONLY,
    Flood,
    Locator,
    O_IPv4_LOCATOR,
    O_IPv6_LOCATOR,
    Objective,
    decode_flood,
    encode_flood,
)
from zerotouch_plugin.errors import GraspError, InvalidInput

LL1 = ipaddress.IPv6Address("fe80::1")
ACP = ipaddress.IPv6Address("fda3:79a6:f6ee:0:200:0:6400:1")
EX_INITIATOR = ipaddress.IPv6Address("2001:db8:f000:baaa:28cc:dc4c:9703:6781")

# RFC 8995 §4.1.1, "Example of Proxy Discovery Message":
#   [M_FLOOD, 12340815, h'fe800000000000000000000000000001', 180000,
#       [["AN_Proxy", 4, 1, ""],
#        [O_IPv6_LOCATOR, h'fe800000000000000000000000000001', IPPROTO_TCP, 4443]]]
# The RFC gives only the diagnostic notation; the octets below are written out by hand from
# RFC 8949 §3 (shortest heads), not by the encoder under test.
PROXY_EXAMPLE = bytes.fromhex(
    "85"  # array(5)
    "09"  # M_FLOOD
    "1a00bc4e4f"  # 12340815
    "50fe800000000000000000000000000001"  # bytes(16) initiator
    "1a0002bf20"  # ttl 180000
    "82"  # [objective, locator]
    "84"
    "68414e5f50726f7879"
    "04"
    "01"
    "60"  # ["AN_Proxy", 4, 1, ""]
    "84"
    "1867"
    "50fe800000000000000000000000000001"
    "06"
    "19115b"  # [103, addr, 6, 4443]
)

# RFC 8995 §4.3, "An Example of a Registrar Announcement Message":
#   [M_FLOOD, 51804321, h'fda379a6f6ee00000200000064000001', 180000,
#       [["AN_join_registrar", 4, 255, "EST-TLS"],
#        [O_IPv6_LOCATOR, h'fda379a6f6ee00000200000064000001', IPPROTO_TCP, 8443]]]
REGISTRAR_EXAMPLE = bytes.fromhex(
    "85"
    "09"
    "1a031678a1"  # 51804321
    "50fda379a6f6ee00000200000064000001"
    "1a0002bf20"
    "82"
    "84"
    "71414e5f6a6f696e5f726567697374726172"
    "04"
    "18ff"
    "674553542d544c53"
    "84"
    "1867"
    "50fda379a6f6ee00000200000064000001"
    "06"
    "1920fb"  # port 8443
)

# RFC 8990 Appendix A.2 (the text of draft-ietf-anima-grasp-16 Appendix A.2):
#   [9, 3504974, h'20010db8f000baaa28ccdc4c97036781', 10000,
#       [["EX1", 5, 2, ["Example 1 value=", 100]],[] ] ]
# printed as this hex, whose head 0x86 announces six elements where the message has five.
RFC8990_FLOOD_AS_PRINTED = bytes.fromhex(
    "86091a00357b4e5020010db8f000baaa28ccdc4c97036781192710"
    "828463455831050282704578616d706c6520312076616c75653d186480"
)
RFC8990_FLOOD = b"\x85" + RFC8990_FLOOD_AS_PRINTED[1:]


def proxy_flood() -> Flood:
    return Flood(
        12340815,
        LL1,
        180000,
        ((Objective(AN_PROXY, SYNC_ONLY, 1, ""), Locator.ip(LL1, port=4443)),),
    )


# ---------------------------------------------------------------------------------------------
# the examples of the RFCs


def test_rfc8995_proxy_announcement_byte_for_byte() -> None:
    assert proxy_flood().encode() == PROXY_EXAMPLE
    flood = decode_flood(PROXY_EXAMPLE)
    assert flood == proxy_flood()
    (objective, locator), *_ = flood.entries
    assert (objective.name, objective.flags, objective.loop_count, objective.value) == (
        "AN_Proxy",
        4,
        1,
        "",
    )
    assert locator is not None
    assert (locator.option, locator.host, locator.protocol, locator.port) == (
        O_IPv6_LOCATOR,
        "fe80::1",
        IPPROTO_TCP,
        4443,
    )


def test_rfc8995_registrar_announcement_byte_for_byte() -> None:
    flood = Flood(
        51804321,
        ACP,
        180000,
        ((Objective(AN_JOIN_REGISTRAR, 4, 255, "EST-TLS"), Locator.ip(ACP, port=8443)),),
    )
    assert flood.encode() == REGISTRAR_EXAMPLE
    assert decode_flood(REGISTRAR_EXAMPLE) == flood


def test_rfc8990_appendix_flood_example() -> None:
    # as printed, the array head promises a sixth element that never comes
    with pytest.raises(GraspError, match="truncated") as info:
        decode_flood(RFC8990_FLOOD_AS_PRINTED)
    assert info.value.kind == "cbor"
    flood = decode_flood(RFC8990_FLOOD)
    assert flood == Flood(
        3504974,
        EX_INITIATOR,
        10000,
        ((Objective("EX1", 5, 2, ("Example 1 value=", 100)), None),),
    )
    assert flood.encode() == RFC8990_FLOOD


def test_rfc8990_appendix_objective_and_locator_octets() -> None:
    # A.1: the objective ["EX1", 5, 2, 0] and the locator [103, h'2001...baaa', 6, 49443]
    assert cbor2.dumps(Objective("EX1", 5, 2, 0).to_cbor()) == bytes.fromhex("8463455831050200")
    locator = Locator.ip("2001:db8:f000:baaa:f000:baaa:f000:baaa", port=49443)
    assert cbor2.dumps(locator.to_cbor()) == bytes.fromhex(
        "8418675020010db8f000baaaf000baaaf000baaa0619c123"
    )


# ---------------------------------------------------------------------------------------------
# round trips and value objects


@pytest.mark.parametrize(
    "entries",
    [
        ((Objective(AN_PROXY, value="BRSKI"), Locator.ip("fe80::abcd", port=8443)),),
        ((Objective(AN_PROXY), Locator.ip("192.0.2.7", port=443)),),  # O_IPv4_LOCATOR
        ((Objective("EX2", 5, 3, None), None),),  # null value, null locator
        ((Objective("EX3", 0, 1), Locator(O_FQDN_LOCATOR, "reg.example.net", 6, 443)),),
        ((Objective("EX4", 4, 1, {"a": [1, 2]}), Locator(O_URI_LOCATOR, "coap://x", None, None)),),
        (
            (Objective("AN_ACP", 4, 1, "IKEv2"), Locator.ip("fe80::1", protocol=17, port=500)),
            (Objective(AN_PROXY, 4, 1, ""), Locator.ip("fe80::1", port=4443)),
        ),
    ],
)
def test_round_trip(entries: tuple[tuple[Objective, Locator | None], ...]) -> None:
    for ttl in (0, 1, 180000, 0xFFFFFFFF):
        flood = Flood(0xFFFFFFFF, LL1, ttl, entries)
        assert decode_flood(flood.encode()) == flood
        assert encode_flood(flood) == flood.encode()


def test_absent_value_is_not_null() -> None:
    without = Objective("EX1", 4, 1)
    assert without.value is ABSENT and without.to_cbor() == ["EX1", 4, 1]
    assert Objective("EX1", 4, 1, None).to_cbor() == ["EX1", 4, 1, None]
    assert Objective("EX1", 4, 1, None) != without


def test_values_are_frozen() -> None:
    objective = Objective("EX1", value={"k": [1, [2, 3]]})
    assert isinstance(objective.value["k"], tuple)
    with pytest.raises(TypeError):
        objective.value["k"] = 1  # type: ignore[index]
    hash(Locator.ip("fe80::1", port=1))


def test_initiator_may_be_ipv4() -> None:
    flood = Flood(1, ipaddress.IPv4Address("192.0.2.1"), 0, ((Objective("EX"), None),))
    assert decode_flood(flood.encode()).initiator == ipaddress.IPv4Address("192.0.2.1")


@pytest.mark.parametrize(
    ("build", "error"),
    [
        (lambda: Objective(1), TypeError),  # type: ignore[arg-type]
        (lambda: Objective(""), ValueError),
        (lambda: Objective("x", loop_count=256), ValueError),
        (lambda: Objective("x", loop_count=True), TypeError),
        (lambda: Objective("x", flags=-1), ValueError),
        (lambda: Objective("x", value=object()), TypeError),
        (lambda: Objective("x", value=ipaddress.IPv6Address("::1")), TypeError),  # a CBOR tag
        (lambda: Locator(O_IPv6_LOCATOR, "192.0.2.1", 6, 1), ValueError),
        (lambda: Locator(O_IPv4_LOCATOR, "fe80::1", 6, 1), ValueError),
        (lambda: Locator(O_IPv6_LOCATOR, "fe80::1%eth0", 6, 1), ValueError),
        (lambda: Locator(O_IPv6_LOCATOR, "fe80::1", 256, 1), ValueError),
        (lambda: Locator(O_IPv6_LOCATOR, "fe80::1", 6, 65536), ValueError),
        (lambda: Locator(107, "x", 6, 1), ValueError),
        (lambda: Locator(O_FQDN_LOCATOR, "", 6, 1), ValueError),
        (lambda: Locator(O_FQDN_LOCATOR, b"x", 6, 1), TypeError),  # type: ignore[arg-type]
        (lambda: Flood(-1, LL1, 0, ((Objective("x"), None),)), ValueError),
        (lambda: Flood(1, "fe80::1", 0, ((Objective("x"), None),)), TypeError),  # type: ignore[arg-type]
        (lambda: Flood(1, LL1, 2**32, ((Objective("x"), None),)), ValueError),
        (lambda: Flood(1, LL1, 0, ()), ValueError),
        (lambda: Flood(1, LL1, 0, [(Objective("x"), None)]), TypeError),  # type: ignore[arg-type]
        (lambda: Flood(1, LL1, 0, ((Objective("x"), "fe80::1"),)), TypeError),  # type: ignore[arg-type]
    ],
)
def test_value_objects_validate(build: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        build()


def test_encode_refuses_more_than_the_maximum_size() -> None:
    flood = Flood(1, LL1, 0, ((Objective("EX1", value="x" * 3000), None),))
    with pytest.raises(ValueError, match="more than 2048"):
        flood.encode()
    assert decode_flood(flood.encode(max_size=4096), max_size=4096) == flood


# ---------------------------------------------------------------------------------------------
# every malformation, its kind and what the message says


def _flood(*items: Any, head: tuple[Any, ...] = (M_FLOOD, 1, LL1.packed, 1000)) -> bytes:
    return cbor2.dumps([*head, *items])


GOOD_OBJECTIVE = [AN_PROXY, 4, 1, ""]
GOOD_LOCATOR = [O_IPv6_LOCATOR, LL1.packed, 6, 4443]
NESTED = b"\x81" * (MAX_DEPTH + 1) + b"\x00"

WITH_MAP = _flood([["EX", 4, 1, "MAP"], []])  # the text "MAP" (63 4d 41 50) to be replaced

# fmt: off
MALFORMED: list[tuple[str, bytes, str, str]] = [
    ("oversized", b"\x80" * (GRASP_DEF_MAX_SIZE + 1), "oversized", "2049 octets"),
    ("empty", b"", "cbor", "empty"),
    ("truncated head", b"\x85\x09\x1a\x00", "cbor", "claims 5 items, 3 octets are left"),
    ("truncated argument", b"\x1a\x00", "cbor", "truncated at octet 1"),
    ("truncated array", b"\x85\x09", "cbor", "claims 5 items"),
    ("string longer than datagram", b"\x5a\xff\xff\xff\xff", "cbor", "claims 4294967295"),
    ("array claims 2^32 items", b"\x9b\x00\x00\x00\x00\xff\xff\xff\xff", "cbor", "claims"),
    ("map claims more than is left", b"\xa3\x01\x02", "cbor", "claims 6 items"),
    ("indefinite array", b"\x9f\x09\xff", "cbor", "indefinite-length"),
    ("indefinite text", b"\x7f\x61\x61\xff", "cbor", "indefinite-length"),
    ("break alone", b"\xff", "cbor", "indefinite-length"),
    ("tag", b"\xc1\x00", "cbor", "tag 1"),
    ("bignum tag", b"\xc2\x41\x01", "cbor", "tag 2"),
    ("self-describe tag deep inside", _flood([[AN_PROXY, 4, 1, cbor2.CBORTag(55799, 1)], []]),
     "cbor", "tag 55799"),
    ("undefined", b"\xf7", "cbor", "simple value"),
    ("simple(16)", b"\xf0", "cbor", "simple value"),
    ("simple one-octet", b"\xf8\x20", "cbor", "simple value"),
    ("reserved additional info", b"\x1c", "cbor", "reserved"),
    ("trailing octets", PROXY_EXAMPLE + b"\x00", "cbor", "1 octets after"),
    ("two messages", PROXY_EXAMPLE * 2, "cbor", "after the end"),
    ("invalid UTF-8", WITH_MAP.replace(b"cMAP", b"c\xff\xfe\xfd"), "cbor", "CBOR"),
    ("duplicate map key", WITH_MAP.replace(b"cMAP", b"\xa2\x01\x01\x01\x02"), "cbor", "uplicate"),
    ("too deep", NESTED, "limits", f"deeper than {MAX_DEPTH}"),
    ("too many items", cbor2.dumps([0] * MAX_ITEMS), "limits", f"more than {MAX_ITEMS}"),
    ("not an array", b"\x09", "structure", "an integer"),
    ("a map", cbor2.dumps({9: 1}), "structure", "a map"),
    ("empty array", b"\x80", "structure", "non-empty array"),
    ("type as text", cbor2.dumps(["9", 1]), "structure", "type 0..255"),
    ("type 256", cbor2.dumps([256, 1]), "structure", "type 0..255"),
    ("M_NOOP", cbor2.dumps([0]), "message-type", "M_NOOP"),
    ("M_DISCOVERY", cbor2.dumps([1, 7, LL1.packed, GOOD_OBJECTIVE]), "message-type",
     "M_DISCOVERY"),
    ("M_INVALID", cbor2.dumps([99, 7]), "message-type", "M_INVALID"),
    ("unassigned", cbor2.dumps([42, 7]), "message-type", "unassigned"),
    ("no objective", _flood(), "structure", "not 4 elements"),
    ("session id negative", _flood([GOOD_OBJECTIVE, []], head=(9, -1, LL1.packed, 0)),
     "structure", "session id"),
    ("session id 2^32", _flood([GOOD_OBJECTIVE, []], head=(9, 2**32, LL1.packed, 0)),
     "structure", "session id"),
    ("session id boolean", _flood([GOOD_OBJECTIVE, []], head=(9, True, LL1.packed, 0)),
     "structure", "session id"),
    ("ttl text", _flood([GOOD_OBJECTIVE, []], head=(9, 1, LL1.packed, "1000")), "structure",
     "ttl"),
    ("ttl float", _flood([GOOD_OBJECTIVE, []], head=(9, 1, LL1.packed, 1.5)), "structure",
     "ttl"),
    ("initiator text", _flood([GOOD_OBJECTIVE, []], head=(9, 1, "fe80::1", 0)), "structure",
     "initiator"),
    ("initiator 5 octets", _flood([GOOD_OBJECTIVE, []], head=(9, 1, b"12345", 0)),
     "structure", "initiator"),
    ("item not a pair", _flood([GOOD_OBJECTIVE]), "structure", "[objective, locator"),
    ("item a triple", _flood([GOOD_OBJECTIVE, [], []]), "structure", "[objective, locator"),
    ("objective flat", _flood(GOOD_OBJECTIVE), "structure", "[objective, locator"),
    ("objective too short", _flood([[AN_PROXY, 4], []]), "structure", "name, flags"),
    ("objective too long", _flood([[AN_PROXY, 4, 1, "", 0], []]), "structure", "name, flags"),
    ("objective name bytes", _flood([[b"AN_Proxy", 4, 1], []]), "structure", "must be text"),
    ("objective name empty", _flood([["", 4, 1], []]), "structure", "name is empty"),
    ("flags negative", _flood([[AN_PROXY, -4, 1], []]), "structure", "flags"),
    ("loop count 256", _flood([[AN_PROXY, 4, 256], []]), "structure", "loop count"),
    ("loop count null", _flood([[AN_PROXY, 4, None], []]), "structure", "loop count"),
    ("locator not array", _flood([GOOD_OBJECTIVE, 103]), "structure", "locator option is an"),
    ("locator option text", _flood([GOOD_OBJECTIVE, ["103"]]), "structure", "option number"),
    ("locator unknown", _flood([GOOD_OBJECTIVE, [107, LL1.packed, 6, 1]]), "structure",
     "unknown locator option 107"),
    ("O_DIVERT in a flood", _flood([GOOD_OBJECTIVE, [100, GOOD_LOCATOR]]), "structure",
     "unknown locator option 100"),
    ("locator short", _flood([GOOD_OBJECTIVE, [103, LL1.packed, 6]]), "structure",
     "4 elements, not 3"),
    ("IPv6 address 4 octets", _flood([GOOD_OBJECTIVE, [103, b"\x7f\0\0\1", 6, 1]]),
     "structure", "bytes .size 16"),
    ("IPv4 address 16 octets", _flood([GOOD_OBJECTIVE, [104, LL1.packed, 6, 1]]),
     "structure", "bytes .size 4"),
    ("IPv6 address as text", _flood([GOOD_OBJECTIVE, [103, "fe80::1", 6, 1]]), "structure",
     "bytes .size 16"),
    ("protocol 256", _flood([GOOD_OBJECTIVE, [103, LL1.packed, 256, 1]]), "structure",
     "protocol"),
    ("port 65536", _flood([GOOD_OBJECTIVE, [103, LL1.packed, 6, 65536]]), "structure", "port"),
    ("port text", _flood([GOOD_OBJECTIVE, [103, LL1.packed, 6, "443"]]), "structure", "port"),
    ("FQDN bytes", _flood([GOOD_OBJECTIVE, [105, b"x", 6, 1]]), "structure", "carries text"),
]
# fmt: on


@pytest.mark.parametrize(
    ("data", "kind", "says"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_every_malformation_is_a_grasp_error(data: bytes, kind: str, says: str) -> None:
    with pytest.raises(GraspError) as info:
        decode_flood(data)
    assert info.value.kind == kind
    assert says in str(info.value)
    assert isinstance(info.value, InvalidInput)
    assert info.value.one_line().startswith("malformed-grasp: ")


def test_error_names_the_item() -> None:
    data = _flood([GOOD_OBJECTIVE, GOOD_LOCATOR], [[AN_PROXY, 4, 999], []])
    with pytest.raises(GraspError) as info:
        decode_flood(data)
    assert info.value.path == "item 2"


def test_decode_accepts_any_bytes_like_only() -> None:
    assert decode_flood(bytearray(PROXY_EXAMPLE)) == decode_flood(memoryview(PROXY_EXAMPLE))
    with pytest.raises(TypeError):
        decode_flood("85")  # type: ignore[arg-type]


def test_limits_hold_at_the_edge() -> None:
    # exactly MAX_DEPTH levels and MAX_ITEMS items are fine as CBOR (the CDDL then decides)
    deepest = b"\x81" * MAX_DEPTH + b"\x00"
    with pytest.raises(GraspError) as info:
        decode_flood(deepest)
    assert info.value.kind == "structure"
    widest = cbor2.dumps([0] * (MAX_ITEMS - 1))
    with pytest.raises(GraspError) as info:
        decode_flood(widest)
    assert info.value.kind == "message-type"
    value: Any = 1
    for _ in range(MAX_DEPTH - 3):  # message > pair > objective > 13 arrays: MAX_DEPTH deep
        value = [value]
    decode_flood(_flood([[AN_PROXY, 4, 1, value], []]))
    with pytest.raises(GraspError, match="deeper"):
        decode_flood(_flood([[AN_PROXY, 4, 1, [value]], []]))


# ---------------------------------------------------------------------------------------------
# fuzzing: anything decodes or raises GraspError, within a time budget

BUDGET = 0.25  # seconds for one datagram; a decode takes well under a millisecond
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _decodes_or_refuses(data: bytes) -> Flood | None:
    started = time.perf_counter()
    try:
        flood = decode_flood(data)
    except GraspError:
        flood = None
    assert time.perf_counter() - started < BUDGET
    return flood


@FUZZ
@given(st.binary(max_size=GRASP_DEF_MAX_SIZE + 64))
def test_fuzz_random_bytes(data: bytes) -> None:
    _decodes_or_refuses(data)


@FUZZ
@given(st.binary(max_size=64).map(lambda tail: b"\x85\x09" + tail))
def test_fuzz_random_bytes_after_a_flood_head(data: bytes) -> None:
    _decodes_or_refuses(data)


cbor_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.floats(allow_nan=True)
    | st.binary(max_size=20)
    | st.text(max_size=12)
    | st.sampled_from([9, 103, 104, 105, 106, 6, 17, 0, 1, 255, 256, AN_PROXY, LL1.packed])
)
cbor_values = st.recursive(
    cbor_leaves,
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.dictionaries(st.integers(0, 50) | st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=30,
)


@FUZZ
@given(cbor_values)
def test_fuzz_any_cbor_value(value: Any) -> None:
    _decodes_or_refuses(cbor2.dumps(value))


@FUZZ
@given(
    session=cbor_values,
    initiator=cbor_values | st.just(LL1.packed),
    ttl=cbor_values | st.integers(0, 2**32),
    objective=st.lists(cbor_values, max_size=5)
    | st.tuples(st.text(max_size=8), cbor_values, cbor_values).map(list),
    locator=st.lists(cbor_values, max_size=5)
    | st.tuples(
        st.sampled_from([103, 104, 105, 106, 0]), cbor_values, cbor_values, cbor_values
    ).map(list),
)
def test_fuzz_flood_shaped_but_wrong(
    session: Any, initiator: Any, ttl: Any, objective: Any, locator: Any
) -> None:
    data = cbor2.dumps([M_FLOOD, session, initiator, ttl, [objective, locator]])
    _decodes_or_refuses(data)


@FUZZ
@given(st.data())
def test_fuzz_mutated_examples(data: st.DataObject) -> None:
    message = bytearray(data.draw(st.sampled_from([PROXY_EXAMPLE, REGISTRAR_EXAMPLE])))
    for _ in range(data.draw(st.integers(1, 6))):
        position = data.draw(st.integers(0, len(message)))
        action = data.draw(st.sampled_from(["flip", "insert", "delete", "set"]))
        if action == "insert":
            message.insert(position, data.draw(st.integers(0, 255)))
        elif position < len(message):
            if action == "delete":
                del message[position]
            elif action == "flip":
                message[position] ^= 1 << data.draw(st.integers(0, 7))
            else:
                message[position] = data.draw(st.integers(0, 255))
    _decodes_or_refuses(bytes(message))


addresses6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)
addresses4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
locators = st.none() | st.builds(
    lambda address, protocol, port: Locator.ip(address, protocol=protocol, port=port),
    addresses6 | addresses4,
    st.sampled_from([IPPROTO_TCP, IPPROTO_UDP, 41]),
    st.integers(0, 65535),
)
objectives = st.builds(
    Objective,
    st.text(min_size=1, max_size=20),
    st.integers(0, 255),
    st.integers(0, 255),
    st.just(ABSENT)
    | st.none()
    | st.text(max_size=20)
    | st.lists(st.integers(-(2**64), 2**64 - 1), max_size=3),
)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    addresses6 | addresses4,
    st.integers(0, 2**32 - 1),
    st.lists(st.tuples(objectives, locators), min_size=1, max_size=4).map(tuple),
)
def test_fuzz_round_trip(
    session: int,
    initiator: ipaddress.IPv4Address | ipaddress.IPv6Address,
    ttl: int,
    entries: tuple[tuple[Objective, Locator | None], ...],
) -> None:
    flood = Flood(session, initiator, ttl, entries)
    assert decode_flood(flood.encode()) == flood


def test_worst_case_inputs_stay_within_budget() -> None:
    """The costliest shapes a 2048-octet datagram can take, each decoded 200 times."""
    worst = [
        cbor2.dumps([0] * (MAX_ITEMS - 1)),  # the most items
        b"\x81" * MAX_DEPTH + b"\x00",  # the deepest
        cbor2.dumps(["x" * 2000]),  # the longest string
        cbor2.dumps(
            [9, 1, LL1.packed, 0, *([[AN_PROXY, 4, 1, ""], GOOD_LOCATOR] for _ in range(40))]
        ),
        cbor2.dumps([2**64 - 1] * 200),
        b"\x9b" + b"\xff" * 8,
    ]
    for data in worst:
        assert len(data) <= GRASP_DEF_MAX_SIZE
        started = time.perf_counter()
        for _ in range(200):
            _decodes_or_refuses(data)
        assert time.perf_counter() - started < 200 * BUDGET / 10
