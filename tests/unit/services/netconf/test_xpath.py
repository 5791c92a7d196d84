"""XPath filtering (RFC 6241 §8.9): selected nodes with ancestors and list keys."""

from __future__ import annotations

import asyncio
import copy
import signal
import time
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
from zerotouch_plugin.services.netconf.xpath import (
    XPathFailed,
    XPathTooCostly,
    apply_xpath_filter,
)
from zerotouch_plugin.services.netconf.xpath_worker import XPathWorker
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


# -- wildcards, defaults and engine failures ---------------------------------------------------


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
    stay shallow (nested descendant searches: the budget tests below)."""
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
        loop.run_until_complete(server.close())
        loop.close()


NESTED_FILTER = "//*[//*[//*[1]]]"  # nested descendant searches: once hung the device for good


@pytest.mark.parametrize(
    "select", [NESTED_FILTER, "(//*)[//*[//*]]", "//*[count(//*[//*]) > 1]", "/*[/*[/*]]"]
)
def test_nested_tree_wide_paths_are_refused_up_front(
    schema: DeviceSchema, tmp_path: Path, select: str
) -> None:
    """Each level of ``//`` (or an absolute path) in a predicate multiplies the cost by the
    tree's size: three are refused with resource-denied before any evaluation."""
    _, tree = _device(schema, tmp_path)
    started = time.perf_counter()
    with pytest.raises(XPathTooCostly, match="nests 3 tree-wide paths") as err:
        apply_xpath_filter(schema, tree, select, NS)
    assert time.perf_counter() - started < 0.5
    assert err.value.netconf_tag == "resource-denied"


@pytest.mark.parametrize(
    "select",
    [
        "//if:interface[if:enabled = 'false']",
        "/if:interfaces/if:interface[if:name = /sys:system/sys:hostname]",
        "//*[*[*[*]]]",  # nested, but each level looks below its node only
        "/if:interfaces/if:interface[../if:interface[if:name='eth0']]",
    ],
)
def test_two_levels_and_local_nesting_are_evaluated(
    schema: DeviceSchema, tmp_path: Path, select: str
) -> None:
    _, tree = _device(schema, tmp_path)
    assert isinstance(apply_xpath_filter(schema, tree, select, NS), dict)


class _Ticker:
    """The longest time the event loop went without running this task."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            self.worst = max(self.worst, now - last - 0.01)
            last = now

    def stop(self) -> float:
        self._task.cancel()
        return self.worst


async def test_worker_stops_a_filter_at_its_budget(schema: DeviceSchema, tmp_path: Path) -> None:
    """A filter that passes the static check but runs long (``//*[//*]``, about 2 s here) is
    stopped in the worker at its budget: resource-denied naming the budget, the event loop
    free all along, and the same worker answers the next filter."""
    _, tree = _device(schema, tmp_path)
    worker = XPathWorker(schema, budget=0.3)
    try:
        assert await worker.apply(tree, "/sys:system", NS) == {
            "ietf-system:system": DATA["ietf-system:system"]
        }
        pid = worker._proc.pid if worker._proc else None
        ticker = _Ticker()
        started = time.perf_counter()
        with pytest.raises(XPathTooCostly, match=r"budget of 0\.3 s") as err:
            await worker.apply(tree, "//*[//*]", NS)
        took = time.perf_counter() - started
        assert ticker.stop() < 0.2
        assert 0.3 <= took < 1.3
        assert err.value.netconf_tag == "resource-denied"
        assert "if:name" not in str(await worker.apply(tree, "//if:name", NS))  # data, not text
        assert worker._proc is not None and worker._proc.pid == pid
    finally:
        worker.close()
        await worker.wait_closed()


async def test_a_worker_past_its_deadline_is_killed(schema: DeviceSchema, tmp_path: Path) -> None:
    """Should the worker not stop itself (stuck in C code), it is killed at the budget plus
    the grace period and a new one serves the next filter."""
    _, tree = _device(schema, tmp_path)
    worker = XPathWorker(schema, budget=0.3)
    worker._spec["budget"] = 60  # the child's own timer would fire too late
    try:
        await worker.apply(tree, "/sys:system", NS)
        assert worker._proc is not None
        first = worker._proc
        started = time.perf_counter()
        with pytest.raises(XPathTooCostly, match="budget"):
            await worker.apply(tree, "//*[//*]", NS)
        assert time.perf_counter() - started < 0.3 + worker.grace + 0.5
        assert await asyncio.wait_for(first.wait(), 5) == -signal.SIGKILL
        assert await worker.apply(tree, "/sys:system/sys:hostname", NS)
        assert worker._proc is not None and worker._proc is not first
    finally:
        worker.close()
        await worker.wait_closed()


async def test_closing_stops_the_worker_for_good(schema: DeviceSchema, tmp_path: Path) -> None:
    _, tree = _device(schema, tmp_path)
    worker = XPathWorker(schema, budget=2.0)
    await worker.apply(tree, "/sys:system", NS)
    assert worker._proc is not None
    child = worker._proc
    slow = asyncio.create_task(worker.apply(tree, "//*[//*]", NS))
    await asyncio.sleep(0.2)
    worker.close()
    with pytest.raises(XPathFailed):
        await slow
    assert await asyncio.wait_for(child.wait(), 5) != 0
    with pytest.raises(XPathFailed, match="closing"):
        await worker.apply(tree, "/sys:system", NS)
    await worker.wait_closed()


async def test_the_issue_filter_over_a_session_is_resource_denied(
    schema: DeviceSchema, tmp_path: Path
) -> None:
    server, _ = _device(schema, tmp_path)
    session = NetconfSession(
        server, 1, SessionInfo("t", "memory", "local"), lambda _: None, lambda: None
    )
    rpc = (
        f'<rpc xmlns="{NC}" message-id="7"><get><filter type="xpath" '
        f"select={quoteattr(NESTED_FILTER)}/></get></rpc>"
    )
    try:
        reply = etree.fromstring(await session.handle_rpc(rpc.encode()))
    finally:
        await server.close()
    error = reply.find(f"{{{NC}}}rpc-error")
    assert error is not None
    assert error.findtext(f"{{{NC}}}error-tag") == "resource-denied"
    assert error.findtext(f"{{{NC}}}error-type") == "application"
    assert "nests 3" in (error.findtext(f"{{{NC}}}error-message") or "")
