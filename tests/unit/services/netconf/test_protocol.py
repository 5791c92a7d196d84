"""NETCONF sessions in memory (services/netconf/protocol.py + operations.py): hello and
framing negotiation, rpc-reply attributes, the rpc-error mapping, locks across sessions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from zerotouch_plugin.config import NetconfLimits
from zerotouch_plugin.device.datastore import Datastore, Datastores
from zerotouch_plugin.device.schema import DeviceSchema
from zerotouch_plugin.services.netconf import build_netconf_server, operations
from zerotouch_plugin.services.netconf.framing import Framer, encode_chunked, encode_eom
from zerotouch_plugin.services.netconf.protocol import NetconfServer, NetconfSession, SessionInfo

NC = "urn:ietf:params:xml:ns:netconf:base:1.0"
SYS = "urn:ietf:params:xml:ns:yang:ietf-system"


def _hello(*caps: str, session_id: int | None = None) -> bytes:
    items = "".join(f"<capability>{c}</capability>" for c in caps)
    sid = f"<session-id>{session_id}</session-id>" if session_id is not None else ""
    return f'<hello xmlns="{NC}"><capabilities>{items}</capabilities>{sid}</hello>'.encode()


def _rpc(body: str, mid: str = "1", extra: str = "") -> bytes:
    return f'<rpc xmlns="{NC}" message-id="{mid}"{extra}>{body}</rpc>'.encode()


class Client:
    """The far end of one in-memory session."""

    def __init__(self, server: NetconfServer) -> None:
        self.framer = Framer()
        self.closed = False
        self.session: NetconfSession = server.open_session(
            SessionInfo("tester", "memory", "local"), self.framer.feed, self._close
        )

    def _close(self) -> None:
        self.closed = True

    async def message(self, timeout: float = 10.0) -> etree._Element:
        """The next message; generous wait, since an XPath filter first starts its worker
        process (about a second on a loaded machine)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            msg = self.framer.next_message()
            if msg is not None:
                return etree.fromstring(msg)
            await asyncio.sleep(0.005)
        raise AssertionError(f"no message from the server within {timeout} s")

    async def wait_closed(self) -> None:
        for _ in range(200):
            if self.closed:
                return
            await asyncio.sleep(0.005)
        raise AssertionError("session not closed")

    def send(self, data: bytes) -> None:
        self.session.data_received(data)

    async def start(self, chunked: bool = True) -> etree._Element:
        hello = await self.message()
        caps = ["urn:ietf:params:netconf:base:1.0"]
        if chunked:
            caps.append("urn:ietf:params:netconf:base:1.1")
        self.send(encode_eom(_hello(*caps)))
        if chunked:
            self.framer.use_chunked()
        return hello

    async def call(self, body: str, mid: str = "1", extra: str = "") -> etree._Element:
        frame = encode_chunked if self.framer.chunked else encode_eom
        self.send(frame(_rpc(body, mid, extra)))
        return await self.message()


@pytest.fixture
async def server(schema: DeviceSchema, tmp_path: Path) -> AsyncIterator[NetconfServer]:
    server = build_netconf_server(Datastores(schema, tmp_path))
    yield server
    await server.close()  # the XPath worker, if a test started it


def _error(reply: etree._Element) -> dict[str, str]:
    err = reply.find(f"{{{NC}}}rpc-error")
    assert err is not None, etree.tostring(reply)
    return {etree.QName(c).localname: (c.text or "") for c in err}


def _info(reply: etree._Element) -> dict[str, str]:
    info = reply.find(f"{{{NC}}}rpc-error/{{{NC}}}error-info")
    assert info is not None, etree.tostring(reply)
    return {etree.QName(c).localname: (c.text or "") for c in info}


IF_NS = "urn:ietf:params:xml:ns:yang:ietf-interfaces"


def _interfaces(entry: str) -> str:
    return f'<interfaces xmlns="{IF_NS}"><interface>{entry}</interface></interfaces>'


async def test_errors_name_the_element_and_attribute_in_error_info(
    server: NetconfServer,
) -> None:
    """RFC 6241 Appendix A: missing-attribute, missing-element, unknown-element carry
    bad-attribute / bad-element in error-info (§4.1's own example: a message-id missing from
    rpc); a list entry without its key is missing-element (RFC 7950 §8.3.1)."""
    client = Client(server)
    await client.start()
    client.send(encode_chunked(f'<rpc xmlns="{NC}"><get/></rpc>'.encode()))
    reply = await client.message()
    assert _info(reply) == {"bad-attribute": "message-id", "bad-element": "rpc"}
    reply = await client.call("<edit-config><config/></edit-config>")
    assert (_error(reply)["error-tag"], _info(reply)) == (
        "missing-element",
        {"bad-element": "target"},
    )
    unknown = _interfaces("<name>e</name><mtu>1</mtu>")
    reply = await client.call(
        f"<edit-config><target><running/></target><config>{unknown}</config></edit-config>"
    )
    assert (_error(reply)["error-tag"], _info(reply)) == ("unknown-element", {"bad-element": "mtu"})
    keyless = _interfaces("<description>d</description>")
    reply = await client.call(
        f"<edit-config><target><running/></target><config>{keyless}</config></edit-config>"
    )
    assert (_error(reply)["error-tag"], _info(reply)) == (
        "missing-element",
        {"bad-element": "name"},
    )


async def test_hello_then_chunked_get_config(server: NetconfServer) -> None:
    client = Client(server)
    hello = await client.start()
    assert hello.findtext(f"{{{NC}}}session-id") == str(client.session.session_id)
    caps = [c.text for c in hello.iter(f"{{{NC}}}capability")]
    assert "urn:ietf:params:netconf:capability:startup:1.0" in caps
    reply = await client.call("<get-config><source><running/></source></get-config>", mid="7")
    assert reply.get("message-id") == "7"
    assert reply.find(f"{{{NC}}}data") is not None


async def test_base_10_peer_keeps_end_of_message_framing(server: NetconfServer) -> None:
    client = Client(server)
    await client.start(chunked=False)
    reply = await client.call("<get-config><source><startup/></source></get-config>")
    assert reply.find(f"{{{NC}}}data") is not None


async def test_reply_echoes_all_rpc_attributes(server: NetconfServer) -> None:
    client = Client(server)
    await client.start()
    reply = await client.call(
        "<get-config><source><running/></source></get-config>",
        extra=' xmlns:ex="urn:example" ex:user-id="fred"',
    )
    assert reply.get("{urn:example}user-id") == "fred"


@pytest.mark.parametrize(
    "hello",
    [
        _hello("urn:ietf:params:netconf:base:1.1", session_id=4),  # §8.1: client sends none
        _hello("urn:example:no-base"),
        b"<not-a-hello/>",
        b"<hello",
    ],
)
async def test_bad_client_hello_closes_the_session(server: NetconfServer, hello: bytes) -> None:
    client = Client(server)
    await client.message()
    client.send(encode_eom(hello))
    await client.wait_closed()
    assert client.session.session_id not in server.sessions


async def test_rpc_errors(server: NetconfServer) -> None:
    client = Client(server)
    await client.start()
    client.send(encode_chunked(b"<rpc xmlns='urn:ietf:params:xml:ns:netconf:base:1.0'"))
    assert _error(await client.message())["error-tag"] == "malformed-message"
    client.send(encode_chunked(f'<rpc xmlns="{NC}"><get/></rpc>'.encode()))
    err = _error(await client.message())
    assert (err["error-tag"], err["error-type"]) == ("missing-attribute", "rpc")
    err = _error(await client.call("<frobnicate/>"))
    assert (err["error-tag"], err["error-type"]) == ("operation-not-supported", "protocol")
    err = _error(await client.call("<get-config><source><candidate/></source></get-config>"))
    assert err["error-tag"] == "operation-not-supported"
    err = _error(await client.call("<edit-config><target><running/></target></edit-config>"))
    assert err["error-tag"] == "missing-element"
    bomb = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa">]><rpc/>'
    client.send(encode_chunked(bomb))
    assert _error(await client.message())["error-tag"] == "malformed-message"
    assert not client.closed  # errors never end the session


async def test_invalid_edit_error_path_uses_prefixes(server: NetconfServer) -> None:
    client = Client(server)
    await client.start()
    edit = (
        "<edit-config><target><running/></target><config>"
        f'<system xmlns="{SYS}"><hostname>bad..name</hostname></system></config></edit-config>'
    )
    reply = await client.call(edit)
    err = _error(reply)
    assert err["error-tag"] == "invalid-value"
    assert err["error-type"] == "application"
    path = reply.find(f".//{{{NC}}}error-path")
    assert path is not None and path.text == "/sys:system/sys:hostname"
    assert path.nsmap["sys"] == SYS
    assert "pattern" in err["error-message"]


async def test_lock_denied_names_the_holder_and_close_releases(server: NetconfServer) -> None:
    a, b = Client(server), Client(server)
    await a.start()
    await b.start()
    assert (await a.call("<lock><target><running/></target></lock>")).find(
        f"{{{NC}}}ok"
    ) is not None
    reply = await b.call("<lock><target><running/></target></lock>")
    assert _error(reply)["error-tag"] == "lock-denied"
    assert reply.findtext(f".//{{{NC}}}session-id") == str(a.session.session_id)
    assert (await a.call("<close-session/>")).find(f"{{{NC}}}ok") is not None
    await a.wait_closed()
    assert (await b.call("<lock><target><running/></target></lock>")).find(
        f"{{{NC}}}ok"
    ) is not None


async def test_framing_error_closes_the_session(server: NetconfServer) -> None:
    client = Client(server)
    await client.start()
    client.send(b"\n#0\n")
    await client.wait_closed()


async def test_copy_inline_config_and_validate(server: NetconfServer) -> None:
    client = Client(server)
    await client.start()
    config = f'<config><system xmlns="{SYS}"><hostname>inline</hostname></system></config>'
    ok = await client.call(
        f"<copy-config><target><startup/></target><source>{config}</source></copy-config>"
    )
    assert ok.find(f"{{{NC}}}ok") is not None
    reply = await client.call("<get-config><source><startup/></source></get-config>")
    assert reply.findtext(f".//{{{SYS}}}hostname") == "inline"
    bad = f'<config><system xmlns="{SYS}"><hostname>a..b</hostname></system></config>'
    assert (
        _error(await client.call(f"<validate><source>{bad}</source></validate>"))["error-tag"]
        == "invalid-value"
    )
    same = "<copy-config><target><running/></target><source><running/></source></copy-config>"
    assert _error(await client.call(same))["error-tag"] == "invalid-value"


async def test_silent_peer_is_dropped_after_the_hello_timeout(server: NetconfServer) -> None:
    server.limits = NetconfLimits(hello_timeout=0.05)
    client = Client(server)
    await client.message()  # our hello; the peer never answers
    await client.wait_closed()


# -- base operations without a namespace, as some clients send them ---------------------------


def _nc_rpc(body: str, mid: str = "1") -> bytes:
    """An ``<nc:rpc>`` as ncclient wraps what ``dispatch`` is given: the operation keeps the
    namespace it was built with, here none."""
    return f'<nc:rpc xmlns:nc="{NC}" message-id="{mid}">{body}</nc:rpc>'.encode()


@pytest.mark.parametrize(
    "body",
    [
        "<get/>",
        f'<get xmlns=""><filter type="subtree"><system xmlns="{SYS}"/></filter></get>',
        '<get><filter type="xpath" select="/*"/></get>',
        "<get-config><source><running/></source></get-config>",
        f'<get-config xmlns="{NC}"><source><running/></source></get-config>',  # base namespace
    ],
)
async def test_base_operations_without_namespace_are_accepted(
    server: NetconfServer, body: str
) -> None:
    client = Client(server)
    await client.start()
    frame = encode_chunked(_nc_rpc(body))
    client.send(frame)
    reply = await client.message()
    assert reply.find(f"{{{NC}}}data") is not None, etree.tostring(reply)


async def test_writes_and_locks_without_namespace(server: NetconfServer) -> None:
    client = Client(server)
    await client.start()
    config = f'<config><system xmlns="{SYS}"><hostname>bare</hostname></system></config>'
    for i, body in enumerate(
        [
            "<lock><target><running/></target></lock>",
            f"<edit-config><target><running/></target>{config}</edit-config>",
            "<copy-config><target><startup/></target><source><running/></source></copy-config>",
            "<validate><source><running/></source></validate>",
            "<unlock><target><running/></target></unlock>",
            "<delete-config><target><startup/></target></delete-config>",
        ]
    ):
        client.send(encode_chunked(_nc_rpc(body, str(i))))
        reply = await client.message()
        assert reply.find(f"{{{NC}}}ok") is not None, (body, etree.tostring(reply))
    client.send(encode_chunked(_nc_rpc("<get-config><source><running/></source></get-config>")))
    assert (await client.message()).findtext(f".//{{{SYS}}}hostname") == "bare"
    client.send(encode_chunked(_nc_rpc("<close-session/>", "9")))
    assert (await client.message()).find(f"{{{NC}}}ok") is not None
    await client.wait_closed()


@pytest.mark.parametrize(
    "op",
    [
        "<frobnicate/>",
        "<get-schema><identifier>x</identifier></get-schema>",
        "<create-subscription/>",
    ],
)
async def test_only_base_operations_go_without_namespace(server: NetconfServer, op: str) -> None:
    """get-schema (RFC 6022) and create-subscription (RFC 5277) live in their own
    namespaces: without it they are unknown operations, not guessed."""
    client = Client(server)
    await client.start()
    client.send(encode_chunked(_nc_rpc(op)))
    assert _error(await client.message())["error-tag"] == "operation-not-supported"


async def test_a_refused_subtree_filter_is_not_evaluated_again_until_the_data_changes(
    server: NetconfServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filter over its budget of steps (2,000 entries times 600 containment nodes) is
    refused with resource-denied; sent again, the refusal comes from the memo, without
    spending the budget on the event loop once more. After a change it is evaluated anew."""
    entries = [{"name": f"e{i}", "type": "iana-if-type:ethernetCsmacd"} for i in range(2000)]
    stores = server.datastores
    await stores.commit(
        Datastore.RUNNING, {"ietf-interfaces:interfaces": {"interface": entries}}, session_id=1
    )
    evaluated = [0]
    apply = operations.apply_subtree_filter

    def counted(*args: Any, **kwargs: Any) -> Any:
        evaluated[0] += 1
        return apply(*args, **kwargs)

    monkeypatch.setattr(operations, "apply_subtree_filter", counted)
    body = "<interface><type/></interface>" * 600
    get = f'<get-config><source><running/></source><filter><interfaces xmlns="{IF_NS}">{body}'
    get += "</interfaces></filter></get-config>"
    client = Client(server)
    await client.start()
    for mid in ("1", "2"):
        reply = await client.call(get, mid)
        assert _error(reply)["error-tag"] == "resource-denied"
    assert evaluated == [1]
    del entries[-1]
    await stores.commit(
        Datastore.RUNNING, {"ietf-interfaces:interfaces": {"interface": entries}}, session_id=1
    )
    assert _error(await client.call(get, "3"))["error-tag"] == "resource-denied"
    assert evaluated == [2]


@pytest.mark.parametrize("session_id", ["\u00b2", "\u0663", "-1", "9" * 5000])
async def test_kill_session_of_an_id_that_is_no_ascii_number_is_invalid_value(
    server: NetconfServer, session_id: str
) -> None:
    """RFC 6241 §7.9: session-id is a uint32; '²' is a digit to ``str.isdigit`` but not to
    ``int``, and was answered as an internal error."""
    client = Client(server)
    await client.start()
    reply = await client.call(f"<kill-session><session-id>{session_id}</session-id></kill-session>")
    error = _error(reply)
    assert error["error-tag"] == "invalid-value", error
    assert "cannot kill session" in error["error-message"]
