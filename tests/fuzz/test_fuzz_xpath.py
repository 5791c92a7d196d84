"""Fuzzing XPath filters (RFC 6241 §8.9) through a session, its XPath worker and its budget.

Expressions come from an XPath 1.0 grammar with YANG's functions (RFC 7950 §10): location
paths with every axis and predicates, every operator, every function with any number of
arguments, literals in any script, numbers of any size, deep nesting; the ``<filter>``
declares prefixes for the device's modules, for unknown namespaces, or none. Each is sent as a
``<get>`` to a real session over a populated datastore. The reply is ``<data>`` holding a part
of the datastore, or an ``<rpc-error>`` invalid-value (the expression is wrong),
operation-failed (the engine could not evaluate it) or resource-denied (over the budget) with
a message; never the session's internal error, and never later than the budget allows.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.test_fuzz_netconf_rpc import ErrorLog, check_reply
from zerotouch_plugin.config import NetconfLimits
from zerotouch_plugin.device.datastore import Datastore, Datastores
from zerotouch_plugin.device.schema import load_device_schema
from zerotouch_plugin.device.xmlcodec import tree_from_xml
from zerotouch_plugin.services.netconf import build_netconf_server
from zerotouch_plugin.services.netconf.protocol import NetconfSession, SessionInfo

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
BUDGET_S = 0.5  # NetconfLimits.xpath_budget for the run
# The worker's grace period (at least 1 s) and the round trip on a loaded machine.
SLACK_S = 3.0

CONFIG = {
    "ietf-system:system": {
        "hostname": "device-1",
        "location": "lab ☃",
        "contact": "noc@example.com",
        "clock": {"timezone-utc-offset": -300},
    },
    "ietf-interfaces:interfaces": {
        "interface": [
            {"name": f"eth{i}", "type": "iana-if-type:ethernetCsmacd", "enabled": i % 2 == 0}
            for i in range(6)
        ]
    },
}

_NAMES = [
    "sys:system", "sys:hostname", "sys:location", "sys:clock", "sys:timezone-utc-offset",
    "if:interfaces", "if:interface", "if:name", "if:type", "if:enabled", "yanglib:yang-library",
    "yanglib:module-set", "yanglib:module", "yanglib:name", "ncm:netconf-state", "ncm:schema",
    "*", "sys:*", "node()", "text()", "comment()", "processing-instruction('x')", ".", "..",
    "hostname", "zz:system", "x:y", "é:ü", "if:interface-ref",
]  # fmt: skip
_AXES = [
    "", "", "", "child::", "descendant::", "descendant-or-self::", "self::", "parent::",
    "ancestor::", "ancestor-or-self::", "following-sibling::", "preceding-sibling::",
    "following::", "preceding::", "attribute::", "namespace::", "@", "bogus::",
]  # fmt: skip
_FUNCTIONS = [
    "last", "position", "count", "id", "local-name", "namespace-uri", "name", "string",
    "concat", "starts-with", "contains", "substring-before", "substring-after", "substring",
    "string-length", "normalize-space", "translate", "boolean", "not", "true", "false", "lang",
    "number", "sum", "floor", "ceiling", "round", "current", "re-match", "deref",
    "derived-from", "derived-from-or-self", "enum-value", "bit-is-set", "no-such-function",
    "sys:hostname",
]  # fmt: skip
_OPERATORS = ["or", "and", "=", "!=", "<", "<=", ">", ">=", "+", "-", "*", "div", "mod", "|"]
_NUMBERS = [
    "0", "1", "-1", "2", "1.5", ".5", "5.", "1e3", "99999999999999999999999999999",
    "9" * 400, "0.000000000000000000001", "1 div 0", "-1 div 0", "0 div 0", "-0",
]  # fmt: skip
_STRINGS = ["", "eth0", "device-1", "iana-if-type:ethernetCsmacd", "[a-z]+", "(", "\\", "☃", "ü"]

# What an XML attribute may carry (XML 1.0 §2.2).
_xml_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), max_size=8)
_literal = (st.sampled_from(_STRINGS) | _xml_text).map(
    lambda s: f"'{s}'" if "'" not in s else f'"{s}"' if '"' not in s else "''"
)
_number = st.sampled_from(_NUMBERS)


def _expressions() -> st.SearchStrategy[str]:
    """The grammar: primaries, paths with predicates, calls and operators, recursively."""
    atom = st.one_of(
        _number,
        _literal,
        st.sampled_from(_NAMES),
        st.sampled_from(["/", "//*", "$var", "current()", "/sys:system/sys:hostname"]),
    )

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        step = st.tuples(
            st.sampled_from(_AXES), st.sampled_from(_NAMES), st.lists(inner, max_size=1)
        ).map(lambda t: t[0] + t[1] + "".join(f"[{p}]" for p in t[2]))
        path = st.tuples(
            st.sampled_from(["/", "//", ""]), st.lists(step, min_size=1, max_size=2)
        ).map(lambda t: t[0] + "/".join(t[1]))
        call = st.tuples(st.sampled_from(_FUNCTIONS), st.lists(inner, max_size=2)).map(
            lambda t: f"{t[0]}({', '.join(t[1])})"
        )
        binary = st.tuples(inner, st.sampled_from(_OPERATORS), inner).map(" ".join)
        return st.one_of(
            path,
            call,
            binary,
            inner.map(lambda e: f"({e})"),
            inner.map(lambda e: f"-{e}"),
            st.tuples(inner, inner).map(lambda t: f"({t[0]})[{t[1]}]"),
        )

    nested = st.tuples(st.integers(1, 300), st.sampled_from(["(", "[", "not("])).map(
        lambda t: {"(": "(" * t[0] + "1" + ")" * t[0],
                   "[": "/sys:system" + "[." * t[0] + "]" * t[0],
                   "not(": "not(" * t[0] + "true()" + ")" * t[0]}[t[1]]
    )  # fmt: skip
    return st.one_of(
        st.recursive(atom, extend, max_leaves=5),
        nested,
        _xml_text.filter(bool),
    )


_PREFIXES = {
    "sys": "urn:ietf:params:xml:ns:yang:ietf-system",
    "if": "urn:ietf:params:xml:ns:yang:ietf-interfaces",
    "yanglib": "urn:ietf:params:xml:ns:yang:ietf-yang-library",
    "ncm": "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring",
    "zz": "urn:x-not-a-module",
}
_declarations = st.one_of(
    st.just(_PREFIXES),
    st.dictionaries(
        st.sampled_from(sorted(_PREFIXES)), st.sampled_from(sorted(_PREFIXES.values()))
    ),
)


@pytest.fixture
def errors() -> Iterator[ErrorLog]:
    yield from ErrorLog.attached()


def is_part_of(part: Any, whole: Any) -> bool:
    """Every member and list entry of ``part`` is in ``whole``: what a filter may return."""
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(
            k in whole and is_part_of(v, whole[k]) for k, v in part.items()
        )
    if isinstance(part, list):
        return isinstance(whole, list) and all(any(is_part_of(p, w) for w in whole) for p in part)
    return bool(part == whole)


def test_any_xpath_filter_answers_within_its_budget(tmp_path: Path, errors: ErrorLog) -> None:
    loop = asyncio.new_event_loop()
    schema = load_device_schema()
    stores = Datastores(schema, tmp_path)
    stores.publish_state("config", CONFIG)
    server = build_netconf_server(stores, NetconfLimits(xpath_budget=BUDGET_S))
    whole = stores.view(Datastore.OPERATIONAL)

    async def open_session() -> NetconfSession:
        return server.open_session(
            SessionInfo("fuzz", "memory", "local"), lambda _data: None, lambda: None
        )

    session = loop.run_until_complete(open_session())
    # The worker process starts (and compiles the schema) once, outside any one budget.
    loop.run_until_complete(server.xpath.apply(whole, "/", {}))

    @settings(deadline=None)
    @given(_expressions(), _declarations)
    def check(select: str, prefixes: dict[str, str]) -> None:
        xmlns = "".join(f" xmlns:{p}={quoteattr(ns)}" for p, ns in prefixes.items())
        rpc = (
            f'<rpc xmlns="{NC}" message-id="1"><get><filter type="xpath"{xmlns} '
            f"select={quoteattr(select)}/></get></rpc>"
        )
        start = time.perf_counter()
        reply = loop.run_until_complete(session.handle_rpc(rpc.encode()))
        elapsed = time.perf_counter() - start
        assert elapsed < BUDGET_S + SLACK_S, (select, elapsed)
        root = check_reply(reply)
        data = root.find(f"{{{NC}}}data")
        if data is not None:
            assert is_part_of(tree_from_xml(schema, data), whole), select
        else:
            tag = root.findtext(f"{{{NC}}}rpc-error/{{{NC}}}error-tag")
            expected = ["invalid-value", "operation-failed", "resource-denied"]
            assert tag in expected, (select, tag)
            message = root.findtext(f"{{{NC}}}rpc-error/{{{NC}}}error-message") or ""
            # A reason the client can act on, not a Python exception's name.
            assert not re.search(r"\w(Error|Exception)\b", message.replace(select, "")), message
        assert not errors.records, (select, [r.getMessage() for r in errors.records])

    try:
        check()
    finally:
        loop.run_until_complete(server.close())
        loop.close()
