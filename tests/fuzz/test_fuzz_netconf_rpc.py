"""Fuzzing NETCONF ``<rpc>`` documents (RFC 6241 §4.1, §7) against the server's operations.

Valid requests for every operation the server implements (the base operations, get-schema,
create-subscription and a plugin's YANG RPC) are mutated as XML trees (elements dropped,
repeated, renamed or moved to another namespace, texts and attributes replaced) and as bytes,
then handled by a real session over a real datastore. Every answer is an ``<rpc-reply>``
holding ``<ok/>``, ``<data>`` or ``<rpc-error>``s with an RFC 6241 Appendix A error-tag and a
message, within a time budget; nothing is logged at ERROR (the session's "internal error"
path logs the traceback there).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from zerotouch_plugin.config import NetconfLimits
from zerotouch_plugin.device.datastore import Datastores
from zerotouch_plugin.device.schema import load_device_schema
from zerotouch_plugin.errors import Conflict
from zerotouch_plugin.services.netconf import build_netconf_server
from zerotouch_plugin.services.netconf.protocol import NetconfServer, NetconfSession, SessionInfo

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
SYS = "urn:ietf:params:xml:ns:yang:ietf-system"
IF = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
MON = "urn:ietf:params:xml:ns:yang:ietf-netconf-monitoring"
NOTIF = "urn:ietf:params:xml:ns:netconf:notification:1.0"
BOOT = "urn:zerotouch:params:xml:ns:yang:zerotouch-bootstrap"
TIME_BUDGET_S = 5.0  # one request, on a shared machine; a hang is far beyond it

# RFC 6241 Appendix A.
ERROR_TAGS = frozenset(
    {
        "in-use", "invalid-value", "too-big", "missing-attribute", "bad-attribute",
        "unknown-attribute", "missing-element", "bad-element", "unknown-element",
        "unknown-namespace", "access-denied", "lock-denied", "resource-denied",
        "rollback-failed", "data-exists", "data-missing", "operation-not-supported",
        "operation-failed", "malformed-message",
    }
)  # fmt: skip

_IFACE = (
    '<interface><name>eth0</name><type xmlns:ianaift="urn:ietf:params:xml:ns:yang:iana-if-type">'
    "ianaift:ethernetCsmacd</type><description>uplink</description><enabled>true</enabled>"
    "</interface>"
)
_CONFIG = (
    f'<config><system xmlns="{SYS}"><hostname>dev-1</hostname><location>lab</location>'
    f'</system><interfaces xmlns="{IF}">{_IFACE}</interfaces></config>'
)
# One valid request per operation (the <rpc> wrapper is added around each).
TEMPLATES = [
    "<get/>",
    f'<get><filter type="subtree"><system xmlns="{SYS}"><hostname/></system></filter></get>',
    f'<get><filter type="xpath" xmlns:sys="{SYS}" select="/sys:system/sys:hostname"/></get>',
    "<get-config><source><running/></source></get-config>",
    f'<get-config><source><startup/></source><filter><interfaces xmlns="{IF}"><interface>'
    "<name>eth0</name></interface></interfaces></filter></get-config>",
    f"<edit-config><target><running/></target>{_CONFIG}</edit-config>",
    "<edit-config><target><running/></target><default-operation>replace</default-operation>"
    f"<test-option>test-only</test-option><error-option>rollback-on-error</error-option>"
    f"{_CONFIG}</edit-config>",
    f'<edit-config><target><running/></target><config><interfaces xmlns="{IF}">'
    f'<interface operation="delete"><name>eth0</name></interface></interfaces></config>'
    "</edit-config>",
    f'<edit-config><target><running/></target><config><system xmlns="{SYS}">'
    f'<location operation="remove"/><contact operation="create">noc</contact></system>'
    "</config></edit-config>",
    "<copy-config><target><startup/></target><source><running/></source></copy-config>",
    f"<copy-config><target><running/></target><source>{_CONFIG}</source></copy-config>",
    "<delete-config><target><startup/></target></delete-config>",
    "<lock><target><running/></target></lock>",
    "<unlock><target><running/></target></unlock>",
    "<validate><source><running/></source></validate>",
    f"<validate><source>{_CONFIG}</source></validate>",
    "<close-session/>",
    "<kill-session><session-id>2</session-id></kill-session>",
    f'<get-schema xmlns="{MON}"><identifier>ietf-system</identifier><format>yang</format>'
    "</get-schema>",
    f'<create-subscription xmlns="{NOTIF}"><stream>NETCONF</stream></create-subscription>',
    f'<restart-bootstrap xmlns="{BOOT}"><factory-reset>true</factory-reset></restart-bootstrap>',
]

_NAMES = [
    "running", "startup", "candidate", "config", "filter", "source", "target", "url",
    "interface", "name", "system", "hostname", "session-id", "default-operation", "rpc",
    "get", "data", "ok",
]  # fmt: skip
_NAMESPACES = [NC, SYS, IF, MON, NOTIF, BOOT, "", "urn:x-fuzz", "urn:ietf:params:xml:ns:yang:1"]
_WORDS = [
    "", "running", "none", "merge", "replace", "delete", "true", "0", "1", "-1", "2",
    "99999999999999999999999999", "1e400", "NaN", "sys:system", "ianaift:bogus", "x" * 300,
    " \t\n", "<&>",
]  # fmt: skip
_VALUES = [
    "merge", "replace", "create", "delete", "remove", "none", "bogus", "subtree", "xpath", "/",
    "//*", "/sys:system", "", "first",
]  # fmt: skip
_TEXTS = st.one_of(
    st.sampled_from(_WORDS),
    # What XML 1.0 can carry (§2.2: no controls but tab and newlines, no surrogates).
    st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]), max_size=20),
)
_ATTRIBUTES = st.tuples(
    st.sampled_from(
        ["operation", f"{{{NC}}}operation", "type", "select", "message-id", "xmlns-x", "insert"]
    ),
    st.sampled_from(_VALUES),
)


def _elements(root: etree._Element) -> list[etree._Element]:
    return [el for el in root.iter() if isinstance(el.tag, str)]


@st.composite
def _mutated_rpc(draw: st.DrawFn) -> bytes:
    """A template's ``<rpc>`` with a few random edits to its element tree."""
    body = draw(st.sampled_from(TEMPLATES))
    root = etree.fromstring(f'<rpc xmlns="{NC}" message-id="101">{body}</rpc>'.encode())
    for _ in range(draw(st.integers(0, 4))):
        elements = _elements(root)
        # The <rpc> itself rarely: a broken envelope never reaches the operations.
        inner = elements[1:] if draw(st.integers(0, 9)) else []
        target = draw(st.sampled_from(inner or elements))
        action = draw(
            st.sampled_from(["drop", "repeat", "rename", "text", "attribute", "child", "strip"])
        )
        parent = target.getparent()
        if action == "drop" and parent is not None:
            parent.remove(target)
        elif action == "repeat" and parent is not None and parent is not root:
            parent.append(copy.deepcopy(target))
        elif action == "rename":
            ns = draw(st.sampled_from(_NAMESPACES))
            local = draw(st.sampled_from(_NAMES))
            target.tag = f"{{{ns}}}{local}" if ns else local
        elif action == "text":
            target.text = draw(_TEXTS)
        elif action == "attribute":
            key, value = draw(_ATTRIBUTES)
            target.set(key, value)
        elif action == "strip":
            for name in list(target.attrib):
                del target.attrib[name]
        else:
            ns = draw(st.sampled_from(_NAMESPACES))
            child = etree.SubElement(target, f"{{{ns}}}{draw(st.sampled_from(_NAMES))}")
            child.text = draw(_TEXTS)
    data = etree.tostring(root)
    if draw(st.integers(0, 5)):  # most inputs stay well-formed, to reach the operations
        return data
    cut = draw(st.integers(0, len(data)))
    junk = draw(st.sampled_from([b"", b"<", b"&", b"]]>", b"<!DOCTYPE x>", b"\x00", b"\xff"]))
    return data[:cut] + junk + data[cut + draw(st.integers(0, 3)) :]


class ErrorLog(logging.Handler):
    """ERROR records of the project's loggers: the traces of an internal error."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @classmethod
    def attached(cls) -> Iterator[ErrorLog]:
        handler = cls()
        logger = logging.getLogger("zerotouch_plugin")
        logger.addHandler(handler)
        try:
            yield handler
        finally:
            logger.removeHandler(handler)


@pytest.fixture
def errors() -> Iterator[ErrorLog]:
    yield from ErrorLog.attached()


async def _restart_bootstrap(args: Mapping[str, Any]) -> dict[str, Any]:
    """Stands for the pledge agent's RPC (exercised in its own tests): it is the input
    decoding and the reply encoding of the plugin RPC path that are fuzzed here."""
    if args.get("factory-reset") is not True:
        raise Conflict("the device is enrolled")
    return {}


def check_reply(reply: bytes) -> etree._Element:
    """The checks every answer passes: one ``<rpc-reply>`` of ok, data or proper errors."""
    root = etree.fromstring(reply)
    assert root.tag == f"{{{NC}}}rpc-reply", reply
    kinds = [etree.QName(c).localname for c in root]
    assert kinds in (["ok"], ["data"]) or (kinds and set(kinds) == {"rpc-error"}), reply
    for err in root.iterfind(f"{{{NC}}}rpc-error"):
        tag = err.findtext(f"{{{NC}}}error-tag")
        message = err.findtext(f"{{{NC}}}error-message") or ""
        assert tag in ERROR_TAGS, reply
        assert message and not message.startswith("internal error"), reply
    return root


def test_mutated_rpcs_get_a_proper_reply(tmp_path: Path, errors: ErrorLog) -> None:
    loop = asyncio.new_event_loop()
    schema = load_device_schema()
    stores = Datastores(schema, tmp_path)
    stores.register_rpc("zerotouch-bootstrap:restart-bootstrap", _restart_bootstrap)
    server = build_netconf_server(stores, NetconfLimits(xpath_budget=1.0))

    async def open_session() -> NetconfSession:
        return server.open_session(
            SessionInfo("fuzz", "memory", "local"), lambda _data: None, lambda: None
        )

    session = loop.run_until_complete(open_session())
    loop.run_until_complete(open_session())  # kill-session's victim

    @settings(deadline=None)
    @given(_mutated_rpc())
    def check(rpc: bytes) -> None:
        start = time.perf_counter()
        reply = loop.run_until_complete(session.handle_rpc(rpc))
        assert time.perf_counter() - start < TIME_BUDGET_S, rpc
        check_reply(reply)
        assert not errors.records, (rpc, [r.getMessage() for r in errors.records])
        if not server.sessions.keys() - {session.session_id}:
            loop.run_until_complete(open_session())

    try:
        check()
        assert not session.closed
    finally:
        loop.run_until_complete(_close(server))
        loop.close()


async def _close(server: NetconfServer) -> None:
    await server.close()
