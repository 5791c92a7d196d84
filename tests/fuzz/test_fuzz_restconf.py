"""Fuzzing RESTCONF (RFC 8040) over HTTP on 127.0.0.1: paths, query parameters and bodies.

The real application (``restconf_app``) on real datastores, served by aiohttp on the loopback
(client certificates are the TLS listener's business and tested with it; here the request
handling after authentication is fuzzed). Requests come from grammars: data resource paths
(§3.5.3: module prefixes, list keys with ``=`` and ``,``, percent-encoding, unknown names,
very long paths), query parameters (§4.8: depth, fields, content, with-defaults, insert,
point, unknown and repeated ones) and bodies (RFC 7951 JSON of any shape, duplicate members,
huge numbers; XML with other namespaces, DOCTYPEs; random bytes) with any media type.

Every answer comes within a time budget with a 2xx status or an RFC 8040 §7 error status
other than 500, and an error carries an ``ietf-restconf:errors`` document in the media type
the response names.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp.test_utils import TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from yarl import URL

from tests.fuzz.test_fuzz_netconf_rpc import ERROR_TAGS
from zerotouch_plugin.device.datastore import Datastore, Datastores
from zerotouch_plugin.device.schema import load_device_schema
from zerotouch_plugin.services.restconf import MEDIA_JSON, MEDIA_XML, restconf_app

RESTCONF_NS = "urn:ietf:params:xml:ns:yang:ietf-restconf"
SYS = "urn:ietf:params:xml:ns:yang:ietf-system"
IF = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
TIME_BUDGET_S = 5.0  # one request on a shared machine; a hang is far beyond it
# RFC 8040 §7: the statuses errors are reported with (500 means the server failed).
ERROR_STATUSES = frozenset({400, 403, 404, 405, 406, 409, 412, 413, 415, 501, 503})

SEED = {
    "ietf-system:system": {"hostname": "device-1", "location": "lab"},
    "ietf-interfaces:interfaces": {
        "interface": [
            {"name": "eth0", "type": "iana-if-type:ethernetCsmacd", "description": "uplink"},
            {"name": "a,b=c/d", "type": "iana-if-type:softwareLoopback", "enabled": False},
        ]
    },
}

_MODULE_NODES = [
    "ietf-system:system", "ietf-interfaces:interfaces", "ietf-system:system-state",
    "ietf-yang-library:yang-library", "ietf-restconf-monitoring:restconf-state",
    "ietf-netconf-monitoring:netconf-state", "zerotouch-bootstrap:bootstrap", "nope:system",
    "ietf-system:nope", "system", "ietf-interfaces:interface",
]  # fmt: skip
_CHILDREN = [
    "hostname", "location", "contact", "clock", "timezone-name", "interface", "name",
    "description", "enabled", "type", "ietf-ip:ipv4", "ietf-ip:address", "ip", "ntp", "server",
    "module-set", "capabilities", "capability", "ietf-interfaces:interfaces", "x",
]  # fmt: skip
_KEYS = [
    "eth0", "a,b=c/d", "", "eth1", "eth0,eth1", "=", ",", "%", "%2", "%zz", "%00", "é", "..",
    "x" * 300, "eth0%2Ceth1", "a%2Cb%3Dc%2Fd",
]  # fmt: skip
_SAFE = "-._~!$&'()*+;:@"  # RFC 3986 pchar without '=' and ',' (encoded or left, drawn)


def _sendable(text: str) -> bool:
    """What an HTTP client puts into a request line unencoded (RFC 9112 §3.2)."""
    return text.isascii() and text.isprintable() and " " not in text


@st.composite
def _segment(draw: st.DrawFn, names: list[str]) -> str:
    name = draw(st.sampled_from(names))
    if not draw(st.integers(0, 2)):
        return name
    keys = draw(
        st.lists(
            st.sampled_from(_KEYS) | st.text(max_size=8).filter(lambda t: "\x00" not in t),
            min_size=1,
            max_size=3,
        )
    )
    # §3.5.3: a key value is percent-encoded when it holds a reserved character; the
    # fuzzer sometimes leaves '%', ',' or '=' as they are, or sends an encoding as is.
    raw = draw(st.booleans())
    parts = [k if raw and _sendable(k) else quote(k, safe=_SAFE) for k in keys]
    return f"{name}={','.join(parts)}"


@st.composite
def _path(draw: st.DrawFn) -> str:
    segments = [draw(_segment(_MODULE_NODES))]
    segments += draw(st.lists(_segment(_CHILDREN), max_size=4))
    path = "/".join(segments)
    shape = draw(st.sampled_from(["plain", "plain", "plain", "slash", "long", "empty", "noise"]))
    if shape == "slash":
        path += "/" * draw(st.integers(1, 3))
    elif shape == "long":
        # Up to what aiohttp reads as a request line (8190 bytes): the longest paths the
        # application itself ever sees.
        path = "/".join([path] * 400)[: draw(st.integers(1000, 8000))]
    elif shape == "empty":
        path = ""
    elif shape == "noise":
        noise = draw(st.text(max_size=30))
        path = quote(noise, safe=_SAFE + "/=,%")
    return "/restconf/data" + ("/" + path if path else draw(st.sampled_from(["", "/"])))


_QUERY_VALUES = {
    "depth": ["1", "2", "0", "-1", "65535", "65536", "unbounded", "99999999999999999999", "x", ""],
    "content": ["config", "nonconfig", "all", "bogus", ""],
    "with-defaults": ["report-all", "trim", "explicit", "report-all-tagged", "bogus"],
    "fields": ["hostname", "interface(name;type)", "(", "a;b/c", ""],
    "insert": ["first", "last", "before", "after", "bogus"],
    "point": ["/ietf-interfaces:interfaces/interface=eth0", "interface=eth0", "", "/x:y"],
    "filter": ["/ietf-system:system"],
    "start-time": ["2026-01-01T00:00:00Z"],
    "odd": ["1"],
}
_query = st.lists(
    st.sampled_from(sorted(_QUERY_VALUES)).flatmap(
        lambda name: st.sampled_from(_QUERY_VALUES[name]).map(lambda value: (name, value))
    ),
    max_size=3,
)

_json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(["eth0", "iana-if-type:ethernetCsmacd", "2026-12-04T20:00:00Z", "[null]"]),
)
_MEMBERS = _MODULE_NODES + _CHILDREN
_json = st.recursive(
    _json_scalar,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(_MEMBERS), inner, max_size=3)
    ),
    max_leaves=12,
)


@st.composite
def _json_body(draw: st.DrawFn) -> bytes:
    """A document shaped like the target (one module-qualified member), or anything."""
    if draw(st.booleans()):
        doc: Any = {draw(st.sampled_from(_MODULE_NODES)): draw(_json)}
    else:
        doc = draw(_json)
    text = json.dumps(doc)
    tweak = draw(st.sampled_from(["none", "none", "duplicate", "huge", "truncate", "nesting"]))
    if tweak == "duplicate" and text.startswith("{") and len(text) > 2:
        inner = text[1:-1]
        text = "{" + inner + "," + inner + "}"  # RFC 7951 §4 forbids duplicate members
    elif tweak == "huge":
        text = text.replace("0", "1" + "0" * 400, 1) if "0" in text else "1e99999"
    elif tweak == "truncate":
        text = text[: draw(st.integers(0, len(text)))]
    elif tweak == "nesting":
        depth = draw(st.integers(100, 5000))
        text = '{"ietf-system:system":' + "[" * depth + "]" * depth + "}"
    return text.encode()


@st.composite
def _xml_body(draw: st.DrawFn) -> bytes:
    ns = draw(st.sampled_from([SYS, IF, RESTCONF_NS, "", "urn:x-fuzz"]))
    root = draw(st.sampled_from(["system", "interfaces", "interface", "hostname", "data"]))
    child = draw(st.sampled_from(_CHILDREN)).rpartition(":")[2]
    text = draw(st.sampled_from(["eth0", "", "dev-2", "x" * 100, "<&amp;>", "&bogus;", "\u00e9"]))
    xmlns = f' xmlns="{ns}"' if ns else ""
    doc = f"<{root}{xmlns}><{child}>{text}</{child}></{root}>"
    prefix = draw(
        st.sampled_from(
            [
                "",
                "",
                '<?xml version="1.0"?>',
                '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>',
                '<!DOCTYPE x SYSTEM "file:///etc/passwd">',
            ]
        )
    )
    return (prefix + doc).encode()


# Resources with a body the server accepts, so that the fuzzer reaches the writes too.
_RESOURCES = [
    ("ietf-system:system", {"ietf-system:system": {"hostname": "dev-2", "contact": "noc"}}),
    ("ietf-system:system/hostname", {"ietf-system:hostname": "dev-3"}),
    ("ietf-system:system/location", {"ietf-system:location": "rack 4"}),
    (
        "ietf-interfaces:interfaces",
        {"ietf-interfaces:interfaces": SEED["ietf-interfaces:interfaces"]},
    ),
    (
        "ietf-interfaces:interfaces/interface=eth0",
        {"ietf-interfaces:interface": [{"name": "eth0", "type": "iana-if-type:ethernetCsmacd"}]},
    ),
    ("ietf-interfaces:interfaces/interface=eth0/description", {"ietf-interfaces:description": "d"}),
    (
        "ietf-interfaces:interfaces/interface=a%2Cb%3Dc%2Fd/enabled",
        {"ietf-interfaces:enabled": True},
    ),
    (
        "ietf-interfaces:interfaces",
        {"ietf-interfaces:interface": [{"name": "eth9", "type": "iana-if-type:other"}]},
    ),
    ("ietf-yang-library:yang-library", None),
    ("ietf-restconf-monitoring:restconf-state/capabilities", None),
]


@st.composite
def _known(draw: st.DrawFn) -> tuple[str, bytes | None, str | None]:
    """A resource and a body for it: valid, or with its strings replaced by any text."""
    path, doc = draw(st.sampled_from(_RESOURCES))
    if doc is None:
        return f"/restconf/data/{path}", None, None
    if draw(st.booleans()):
        doc = _restring(doc, draw(st.text(max_size=6)))
    return f"/restconf/data/{path}", json.dumps(doc).encode(), MEDIA_JSON


def _restring(doc: Any, text: str) -> Any:
    """``doc`` with every string but list keys ("name") and identities (with ':') as ``text``."""
    if isinstance(doc, dict):
        return {k: v if k == "name" else _restring(v, text) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_restring(v, text) for v in doc]
    return text if isinstance(doc, str) and ":" not in doc else doc


_bodies = st.one_of(st.none(), _json_body(), _xml_body(), st.binary(max_size=40), st.just(b"  \n"))
_media = st.sampled_from(
    [MEDIA_JSON, MEDIA_XML, MEDIA_JSON, MEDIA_XML, "application/json", "text/plain", "", None]
)
_accept = st.sampled_from(
    [MEDIA_JSON, MEDIA_XML, None, "*/*", "text/html", f"{MEDIA_XML};q=0.5, {MEDIA_JSON}", "x/y"]
)
_methods = st.sampled_from(["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS"])


def _check_errors(status: int, content_type: str, body: bytes, what: str) -> None:
    """An ``ietf-restconf:errors`` document (RFC 8040 §7.1) in the announced media type."""
    if content_type == MEDIA_XML:
        root = etree.fromstring(body)
        assert root.tag == f"{{{RESTCONF_NS}}}errors", what
        errors = [
            {etree.QName(c).localname: c.text or "" for c in err}
            for err in root.iterfind(f"{{{RESTCONF_NS}}}error")
        ]
    else:
        assert content_type == MEDIA_JSON, (content_type, what)
        errors = json.loads(body)["ietf-restconf:errors"]["error"]
    assert errors, what
    for err in errors:
        assert err["error-tag"] in ERROR_TAGS, (err, what)  # RFC 8040 §7: RFC 6241's tags
        assert err["error-type"] in ("transport", "rpc", "protocol", "application"), what
        assert err.get("error-message"), (err, what)


def test_any_request_gets_a_restconf_answer(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    stores = Datastores(load_device_schema(), tmp_path)
    app = restconf_app(stores, require_client_cert=False)
    server = TestServer(app, host="127.0.0.1")

    async def start() -> aiohttp.ClientSession:
        await server.start_server()
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3 * TIME_BUDGET_S))

    async def send(
        method: str,
        path: str,
        query: list[tuple[str, str]],
        body: bytes | None,
        headers: dict[str, str],
        *,
        reset: bool = True,
    ) -> tuple[int, str, bytes]:
        if reset and stores.view(Datastore.RUNNING) != SEED:
            await stores.commit(Datastore.RUNNING, SEED, session_id=0)
        url = URL(f"http://127.0.0.1:{server.port}{path}", encoded=True)
        if query:
            url = url.with_query(query)
        async with http.request(method, url, data=body, headers=headers) as resp:
            return resp.status, resp.content_type, await resp.read()

    http = loop.run_until_complete(start())

    @settings(deadline=None)
    @given(st.data(), _methods, _query, _accept)
    def check(
        data: st.DataObject, method: str, query: list[tuple[str, str]], accept: str | None
    ) -> None:
        if data.draw(st.booleans()):
            path, body, media = data.draw(_known())
            query = query if data.draw(st.integers(0, 3)) == 0 else []
        else:
            path, body, media = data.draw(_path()), data.draw(_bodies), data.draw(_media)
        headers = {"Content-Type": media} if media is not None else {}
        if accept is not None:
            headers["Accept"] = accept
        what = f"{method} {path[:200]} {query} {body[:200] if body else body!r} {headers}"
        start = time.perf_counter()
        status, content_type, answer = loop.run_until_complete(
            send(method, path, query, body, headers)
        )
        assert time.perf_counter() - start < TIME_BUDGET_S, what
        assert status != 500, (answer, what)
        if status < 300:
            if method in ("PUT", "PATCH", "POST", "DELETE"):
                # What was written can still be read as XML (NETCONF reads the same store).
                status, _, everything = loop.run_until_complete(
                    send("GET", "/restconf/data", [], None, {"Accept": MEDIA_XML}, reset=False)
                )
                assert status == 200, (everything, what)
                etree.fromstring(everything)
            return
        assert status in ERROR_STATUSES, (status, answer, what)
        if method != "HEAD":
            _check_errors(status, content_type, answer, what)

    try:
        check()
    finally:
        loop.run_until_complete(http.close())
        loop.run_until_complete(server.close())
        loop.close()
