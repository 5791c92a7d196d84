"""XPath filtering (RFC 6241 §8.9): selected nodes with ancestors and list keys."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from zerotouch_plugin.device.datastore import Datastore, Datastores
from zerotouch_plugin.device.schema import DeviceSchema
from zerotouch_plugin.errors import PolicyRefused, SchemaError, UpstreamUnavailable
from zerotouch_plugin.roles.bootstrap import BootstrapState
from zerotouch_plugin.services.netconf import build_netconf_server
from zerotouch_plugin.services.netconf.protocol import NetconfServer, NetconfSession, SessionInfo
from zerotouch_plugin.services.netconf.xpath import XPathFailed, apply_xpath_filter
from zerotouch_plugin.services.restconf import restconf_app

NS = {
    "if": "urn:ietf:params:xml:ns:yang:ietf-interfaces",
    "sys": "urn:ietf:params:xml:ns:yang:ietf-system",
}
ETH = "iana-if-type:ethernetCsmacd"
NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
DATA: dict[str, Any] = {
    "ietf-system:system": {"hostname": "dev1", "contact": "noc"},
    "ietf-interfaces:interfaces": {
        "interface": [
            {"name": "eth0", "type": ETH, "description": "uplink", "enabled": True},
            {"name": "eth1", "type": ETH, "enabled": False},
        ]
    },
}


def test_leaf_with_ancestors_and_keys(schema: DeviceSchema) -> None:
    got = apply_xpath_filter(
        schema, DATA, "/if:interfaces/if:interface[if:name='eth0']/if:description", NS
    )
    assert got == {
        "ietf-interfaces:interfaces": {"interface": [{"name": "eth0", "description": "uplink"}]}
    }


def test_predicate_and_union(schema: DeviceSchema) -> None:
    select = "/if:interfaces/if:interface[if:enabled='false'] | /sys:system/sys:hostname"
    got = apply_xpath_filter(schema, DATA, select, NS)
    assert got == {
        "ietf-interfaces:interfaces": {
            "interface": [DATA["ietf-interfaces:interfaces"]["interface"][1]]
        },
        "ietf-system:system": {"hostname": "dev1"},
    }


def test_several_leaves_of_one_entry_merge(schema: DeviceSchema) -> None:
    got = apply_xpath_filter(schema, DATA, "/if:interfaces/if:interface/if:type", NS)
    assert got["ietf-interfaces:interfaces"]["interface"] == [
        {"name": "eth0", "type": ETH},
        {"name": "eth1", "type": ETH},
    ]


def test_root_and_empty_selection(schema: DeviceSchema) -> None:
    assert apply_xpath_filter(schema, DATA, "/", NS) == DATA
    assert apply_xpath_filter(schema, DATA, "/sys:system/sys:location", NS) == {}


def test_source_tree_is_never_modified(schema: DeviceSchema) -> None:
    before = copy.deepcopy(DATA)
    select = "/sys:system | /sys:system/sys:hostname | /if:interfaces/if:interface[if:name='eth0']"
    got = apply_xpath_filter(schema, DATA, select, NS)
    got["ietf-system:system"]["hostname"] = "changed"
    assert before == DATA


@pytest.mark.parametrize("select", ["/nope:system", "/sys:system[", "count(/sys:system)"])
def test_bad_expressions(schema: DeviceSchema, select: str) -> None:
    with pytest.raises(SchemaError):
        apply_xpath_filter(schema, DATA, select, NS)


# -- wildcards, defaults and engine failures (issue 9 item 11) -------------------------------


@pytest.mark.parametrize("select", ["/*", "//*", "/*/*", "/child::*", "//node()", "/*/*/*"])
def test_wildcards_give_the_held_data_only(schema: DeviceSchema, select: str) -> None:
    """yangson's XPath sees defaults and empty non-presence containers (RFC 7950 §6.4.1):
    they were a KeyError; the reply now holds what the datastore holds, nothing invented."""
    got = apply_xpath_filter(schema, DATA, select, NS)
    if select == "/*/*/*":  # the third level: interface entries (system leaves are level 2)
        assert got == {"ietf-interfaces:interfaces": DATA["ietf-interfaces:interfaces"]}
    else:
        assert got == DATA


def test_defaults_count_in_predicates_but_are_not_reported(schema: DeviceSchema) -> None:
    data = {"ietf-interfaces:interfaces": {"interface": [{"name": "e2", "type": ETH}]}}
    # enabled defaults to true: the entry matches, the default leaf is not in the reply
    got = apply_xpath_filter(schema, data, "//if:interface[if:enabled='true']", NS)
    assert got == data
    assert apply_xpath_filter(schema, data, "//if:interface/if:enabled", NS) == {}
    assert apply_xpath_filter(schema, data, "/sys:system/sys:clock", NS) == {}


def test_positions_keep_document_order(schema: DeviceSchema) -> None:
    got = apply_xpath_filter(schema, DATA, "/if:interfaces/if:interface[2] | /*[1]", NS)
    assert list(got) == ["ietf-system:system", "ietf-interfaces:interfaces"]
    assert got["ietf-interfaces:interfaces"]["interface"] == [
        DATA["ietf-interfaces:interfaces"]["interface"][1]
    ]


@pytest.mark.parametrize(
    ("select", "error"),
    [
        ("/sys:system | 1", SchemaError),  # XPath 1.0 §3.3: | joins node-sets only
        ("//*[floor(/sys:system)]", SchemaError),
        ("(" * 5000 + "1" + ")" * 5000, SchemaError),  # nests too deeply
        ("/sys:system = 'x'", SchemaError),  # a boolean
        ("//*[1 div 0]", XPathFailed),  # yangson: OverflowError
        ("deref(//if:name)", XPathFailed),  # yangson: AttributeError
    ],
)
def test_every_failure_is_a_zerotouch_error(
    schema: DeviceSchema, select: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as raised:
        apply_xpath_filter(schema, DATA, select, NS)
    assert raised.value.message and raised.value.path == "/filter"


# -- Hypothesis: any expression over the device's real data ---------------------------------

_AXES = [
    "", "", "", "child::", "descendant::", "descendant-or-self::", "self::", "parent::",
    "ancestor::", "ancestor-or-self::", "following-sibling::", "preceding-sibling::",
    "following::", "attribute::", "namespace::",
]  # fmt: skip
_NOISE = "/*[]()|.:'\"=<>!@$, -+0123456789abcdefgijklmnoprstuvwxyz"


def _bootstrap_state() -> dict[str, Any]:
    """The pledge agent's state after a failed round (zerotouch-bootstrap)."""
    start = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    state = BootstrapState()
    state.run_started(now=start)
    for i, uri in enumerate(["https://registrar.example:8443", "https://[2001:db8::1]:8443"]):
        state.attempt(uri, now=start + timedelta(seconds=i))
        state.attempt_failed(uri, UpstreamUnavailable("down"), now=start + timedelta(seconds=i))
    state.failed(PolicyRefused("not on the allow list"), now=start + timedelta(seconds=9))
    return state.to_yang()


def _device(schema: DeviceSchema, folder: Path) -> tuple[NetconfServer, dict[str, Any]]:
    """The reference device's NETCONF server and operational tree: YANG library, NETCONF and
    RESTCONF monitoring, some configuration, the pledge agent's state."""
    ds = Datastores(schema, folder)
    server = build_netconf_server(ds)
    restconf_app(ds)
    ds.publish_state("plugin", _bootstrap_state())
    ds.publish_state("config", DATA)
    return server, ds.view(Datastore.OPERATIONAL)


def _names(schema: DeviceSchema, tree: Any, module: str = "") -> set[str]:
    """Every member name of ``tree`` as a prefixed XPath name test."""
    found: set[str] = set()
    items = tree if isinstance(tree, list) else [tree]
    for item in items:
        if not isinstance(item, dict):
            continue
        for member, value in item.items():
            mod, _, local = member.rpartition(":")
            mod = mod or module
            found.add(f"{schema.by_name[mod].prefix}:{local}")
            found |= _names(schema, value, mod)
    return found


def _leaves(tree: Any) -> set[str]:
    if isinstance(tree, dict):
        return set().union(*(_leaves(v) for v in tree.values())) if tree else set()
    if isinstance(tree, list):
        return set().union(*(_leaves(v) for v in tree)) if tree else set()
    return {str(tree).replace("'", "")[:30]}


def _expressions(names: list[str], values: list[str]) -> st.SearchStrategy[str]:
    """XPath from a small grammar: steps with axes, wildcards and predicates, unions,
    functions, non-node-set results, and plain noise. ``//`` and paths inside predicates
    stay shallow (no nested descendant searches: pathological CPU is a later issue)."""
    name = st.sampled_from(names) | st.sampled_from(["*", "node()", ".", ".."])
    literal = st.sampled_from(values).map(lambda v: f"'{v}'")
    number = st.sampled_from(["0", "1", "2", "3", "-1", "1.5", "last()", "1 div 0"])
    relative = st.lists(name, min_size=1, max_size=2).map("/".join)
    predicate = st.one_of(
        number,
        relative,
        st.tuples(relative, st.sampled_from(["=", "!=", "<", ">="]), literal | number).map(
            " ".join
        ),
        st.tuples(st.sampled_from(["not", "count", "string", "boolean", "name"]), relative).map(
            lambda t: f"{t[0]}({t[1]})"
        ),
        st.sampled_from(["position() < 3", "true()", "local-name() = 'name'"]),
    ).map(lambda p: f"[{p}]")
    step = st.tuples(st.sampled_from(_AXES), name, st.lists(predicate, max_size=2)).map(
        lambda t: t[0] + t[1] + "".join(t[2])
    )
    path = st.tuples(st.sampled_from(["/", "//", ""]), st.lists(step, min_size=1, max_size=4)).map(
        lambda t: t[0] + "/".join(t[1])
    )
    return st.one_of(
        path,
        st.lists(path, min_size=2, max_size=3).map(" | ".join),
        st.tuples(path, predicate).map(lambda t: f"({t[0]}){t[1]}"),
        st.tuples(path, number | literal).map(lambda t: f"{t[0]} | {t[1]}"),
        st.tuples(st.sampled_from(["count", "sum", "string", "not", "deref"]), path).map(
            lambda t: f"{t[0]}({t[1]})"
        ),
        st.sampled_from(["/", ".", "..", "/..", "current()", "1", "'x'", "true()"]),
        st.text(alphabet=_NOISE, max_size=25),
    )


def _is_part_of(part: Any, whole: Any) -> bool:
    """Every object member and list entry of ``part`` is found in ``whole``."""
    if isinstance(part, dict):
        if not isinstance(whole, dict):
            return False
        return all(k in whole and _is_part_of(v, whole[k]) for k, v in part.items())
    if isinstance(part, list):
        return isinstance(whole, list) and all(any(_is_part_of(p, w) for w in whole) for p in part)
    return bool(part == whole)


def test_any_xpath_gives_data_or_a_proper_rpc_error(schema: DeviceSchema, tmp_path: Path) -> None:
    """Data (a part of the datastore, as XML) or an ``<rpc-error>`` invalid-value /
    operation-failed with a message: never the session's internal error."""
    server, tree = _device(schema, tmp_path)
    prefixes = {m.prefix: m.namespace for m in schema.modules}
    names = sorted(_names(schema, tree))
    session = NetconfSession(
        server, 1, SessionInfo("t", "memory", "local"), lambda _: None, lambda: None
    )
    loop = asyncio.new_event_loop()
    xmlns = "".join(f' xmlns:{p}="{ns}"' for p, ns in prefixes.items())

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_expressions(names, sorted(_leaves(tree))))
    def check(select: str) -> None:
        try:
            got = apply_xpath_filter(schema, tree, select, prefixes)
        except (SchemaError, XPathFailed) as exc:
            assert exc.message
        else:
            assert _is_part_of(got, tree), select
        rpc = (
            f'<rpc xmlns="{NC}" message-id="1"><get><filter type="xpath"{xmlns} '
            f"select={quoteattr(select)}/></get></rpc>"
        )
        reply = etree.fromstring(loop.run_until_complete(session.handle_rpc(rpc.encode())))
        if reply.find(f"{{{NC}}}data") is not None:
            return
        tag = reply.findtext(f"{{{NC}}}rpc-error/{{{NC}}}error-tag")
        message = reply.findtext(f"{{{NC}}}rpc-error/{{{NC}}}error-message") or ""
        expected = ("missing-attribute",) if not select else ("invalid-value", "operation-failed")
        assert tag in expected, (select, tag)
        assert message and not message.startswith("internal error"), (select, message)

    try:
        check()
    finally:
        loop.close()
