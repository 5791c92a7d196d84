"""Fuzzing subtree filters (RFC 6241 §6) through a session over a populated datastore.

Filters are drawn from the device's own data (structure-aware: containment, selection and
content match nodes along real paths, with real or random values) and then bent: other or no
namespaces (§6.2.1 ``xmlns=""``), unknown elements, attributes (§6.2.2), values of other types,
prefixes that are not declared, many siblings, deep nesting. Each is sent as ``<get>`` or
``<get-config>``; the reply is ``<data>`` holding a part of what the unfiltered request returns
(§6.4), or an ``<rpc-error>`` with an RFC 6241 tag and a message, within a time budget.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from tests.fuzz.test_fuzz_netconf_rpc import ErrorLog, check_reply
from tests.fuzz.test_fuzz_xpath import CONFIG, is_part_of
from zerotouch_plugin.device.datastore import Datastore, Datastores
from zerotouch_plugin.device.schema import load_device_schema
from zerotouch_plugin.device.xmlcodec import tree_from_xml
from zerotouch_plugin.services.netconf import build_netconf_server
from zerotouch_plugin.services.netconf.protocol import NetconfSession, SessionInfo

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
TIME_BUDGET_S = 5.0  # one request on a shared machine; a hang is far beyond it
_OTHER_NAMESPACES = ["", "urn:x-fuzz", "urn:ietf:params:xml:ns:yang:ietf-system", NC]
_VALUES = [
    "", "eth0", "eth3", "true", "false", "1", "-300", "99999999999999999999999", "1e400",
    "ianaift:ethernetCsmacd", "iana-if-type:ethernetCsmacd", "nope:ethernetCsmacd", "☃",
    " lab ☃ ", "x" * 500,
]  # fmt: skip
_ATTRIBUTES = [("name", "eth0"), ("type", "subtree"), ("{urn:x-fuzz}a", "1"), ("select", "/")]


@pytest.fixture
def errors() -> Iterator[ErrorLog]:
    yield from ErrorLog.attached()


@st.composite
def _filter_node(draw: st.DrawFn, data: etree._Element, depth: int) -> etree._Element:
    """A filter element for ``data`` (a real element): selection, content match or
    containment of some of its children, possibly bent."""
    el = copy.copy(data)  # the tag and the namespaces in scope (prefixes in values)
    el.clear()
    children = [c for c in data if isinstance(c.tag, str)]
    kind = draw(st.sampled_from(["select", "match", "contain", "contain"]))
    if kind == "match" or (not children and kind == "contain"):
        real = (data.text or "").strip()
        el.text = draw(st.sampled_from([real, real, *_VALUES]) | st.text(max_size=6).filter(
            lambda t: all(c.isprintable() for c in t)))  # fmt: skip
    elif kind == "contain" and depth < 6:
        picks = draw(st.lists(st.sampled_from(children), min_size=1, max_size=4))
        for child in picks:
            el.append(draw(_filter_node(child, depth + 1)))
    bend = draw(st.sampled_from(["none"] * 6 + ["namespace", "unknown", "attribute", "twice"]))
    local = etree.QName(el).localname
    if bend == "namespace":
        ns = draw(st.sampled_from(_OTHER_NAMESPACES))
        el.tag = f"{{{ns}}}{local}" if ns else local
    elif bend == "unknown":
        etree.SubElement(el, draw(st.sampled_from(["nope", f"{{urn:x-fuzz}}{local}", local])))
    elif bend == "attribute":
        key, value = draw(st.sampled_from(_ATTRIBUTES))
        el.set(key, value)
    elif bend == "twice" and len(el):
        el.append(copy.deepcopy(el[0]))
    return el


def test_any_subtree_filter_selects_part_of_the_data(tmp_path: Path, errors: ErrorLog) -> None:
    loop = asyncio.new_event_loop()
    schema = load_device_schema()
    stores = Datastores(schema, tmp_path)
    loop.run_until_complete(stores.commit(Datastore.RUNNING, CONFIG, session_id=0))
    server = build_netconf_server(stores)

    async def open_session() -> NetconfSession:
        return server.open_session(
            SessionInfo("fuzz", "memory", "local"), lambda _data: None, lambda: None
        )

    session = loop.run_until_complete(open_session())

    def call(body: str) -> etree._Element:
        rpc = f'<rpc xmlns="{NC}" message-id="1">{body}</rpc>'.encode()
        start = time.perf_counter()
        reply = loop.run_until_complete(session.handle_rpc(rpc))
        assert time.perf_counter() - start < TIME_BUDGET_S, body[:300]
        return check_reply(reply)

    operations = {
        "get": ("<get>", "</get>", Datastore.OPERATIONAL),
        "get-config": ("<get-config><source><running/></source>", "</get-config>",
                       Datastore.RUNNING),
    }  # fmt: skip
    unfiltered: dict[str, tuple[etree._Element, dict[str, Any]]] = {}
    for name, (head, tail, ds) in operations.items():
        data = call(head + tail).find(f"{{{NC}}}data")
        assert data is not None
        unfiltered[name] = (data, stores.view(ds))

    @st.composite
    def requests(draw: st.DrawFn) -> tuple[str, str]:
        op = draw(st.sampled_from(sorted(operations)))
        data = unfiltered[op][0]
        filt = etree.Element(f"{{{NC}}}filter", type="subtree")
        tops = [c for c in data if isinstance(c.tag, str)]
        for top in draw(st.lists(st.sampled_from(tops), max_size=3)):
            filt.append(draw(_filter_node(top, 0)))
        if draw(st.integers(0, 9)) == 0:  # nesting past what the parser takes (256)
            inner = filt
            for _ in range(draw(st.integers(100, 400))):
                inner = etree.SubElement(inner, "system")
        return op, etree.tostring(filt, encoding="unicode")

    @settings(deadline=None)
    @given(requests())
    def check(request: tuple[str, str]) -> None:
        op, filt = request
        head, tail, _ds = operations[op]
        reply = call(head + filt + tail)
        data = reply.find(f"{{{NC}}}data")
        if data is not None:
            whole = unfiltered[op][1]
            assert is_part_of(tree_from_xml(schema, data), whole), filt[:500]
        assert not errors.records, (filt[:500], [r.getMessage() for r in errors.records])

    try:
        check()
    finally:
        loop.run_until_complete(server.close())
        loop.close()
