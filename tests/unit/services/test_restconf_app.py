"""RESTCONF (RFC 8040) over real mutual TLS on 127.0.0.1, on real datastores."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from tests.support.device_pki import DevicePki, make_device_pki
from zerotouch_plugin.artifacts.certs import (
    Identity,
    generate_key,
    issue_from_csr,
    make_csr,
)
from zerotouch_plugin.device.datastore import Datastore, Datastores
from zerotouch_plugin.device.schema import DeviceSchema
from zerotouch_plugin.roles.registrar import ldevid_subject
from zerotouch_plugin.services.restconf import (
    MEDIA_JSON,
    MEDIA_XML,
    WWW_AUTHENTICATE,
    bound_port,
    restconf_app,
    start_restconf,
)
from zerotouch_plugin.services.restconf import app as restconf_app_module

JSON_HEADERS = {"Content-Type": MEDIA_JSON, "Accept": MEDIA_JSON}
XML_HEADERS = {"Content-Type": MEDIA_XML, "Accept": MEDIA_XML}
RESTCONF_NS = "urn:ietf:params:xml:ns:yang:ietf-restconf"
SYSTEM_NS = "urn:ietf:params:xml:ns:yang:ietf-system"
IF_NS = "urn:ietf:params:xml:ns:yang:ietf-interfaces"
ETHERNET = "iana-if-type:ethernetCsmacd"

STARTUP = {
    "ietf-system:system": {"hostname": "device-1", "location": "lab"},
    "ietf-interfaces:interfaces": {
        "interface": [
            {"name": "eth0", "type": "iana-if-type:ethernetCsmacd", "description": "uplink"}
        ]
    },
}


@pytest.fixture(scope="module")
def pki() -> DevicePki:
    return make_device_pki()


class Device:
    """A RESTCONF server and an HTTPS client that presents the operator certificate."""

    def __init__(self, ds: Datastores, base: str, session: aiohttp.ClientSession) -> None:
        self.ds = ds
        self.base = base
        self.http = session
        self.calls: list[dict[str, Any]] = []

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, aiohttp.typedefs.LooseHeaders, bytes]:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        async with self.http.request(
            method, self.base + path, data=data, headers=dict(headers or JSON_HEADERS)
        ) as resp:
            return resp.status, resp.headers, await resp.read()

    async def get_json(self, path: str) -> Any:
        status, _, body = await self.request("GET", path)
        assert status == 200, body
        return json.loads(body)


@pytest.fixture
async def device(schema: DeviceSchema, pki: DevicePki, tmp_path: Path) -> AsyncIterator[Device]:
    (tmp_path / "startup.json").write_text(json.dumps(STARTUP))
    ds = Datastores(schema, tmp_path)
    app = restconf_app(ds, schema)
    runner = await start_restconf(app, host="127.0.0.1", port=0, ssl_context=pki.server_context())
    conn = aiohttp.TCPConnector(ssl=pki.client_context())
    async with aiohttp.ClientSession(connector=conn) as session:
        dev = Device(ds, f"https://127.0.0.1:{bound_port(runner)}", session)

        async def restart(args: dict[str, Any]) -> Mapping[str, Any]:
            dev.calls.append(args)
            return {"phase": "discovering"}

        ds.register_rpc("zerotouch-bootstrap:restart-bootstrap", restart)
        yield dev
    await runner.cleanup()


def _error(body: bytes) -> dict[str, Any]:
    errors = json.loads(body)["ietf-restconf:errors"]["error"]
    assert len(errors) == 1
    return dict(errors[0])


# -- discovery and top-level resources ------------------------------------------------------


async def test_host_meta_points_to_restconf_root(device: Device) -> None:
    status, headers, body = await device.request("GET", "/.well-known/host-meta")
    assert status == 200
    assert headers["Content-Type"].startswith("application/xrd+xml")
    link = etree.fromstring(body).find("{http://docs.oasis-open.org/ns/xri/xrd-1.0}Link")
    assert link is not None
    assert link.get("rel") == "restconf"
    assert link.get("href") == "/restconf"


async def test_root_and_yang_library_version(device: Device) -> None:
    root = await device.get_json("/restconf")
    assert set(root["ietf-restconf:restconf"]) == {"data", "operations", "yang-library-version"}
    version = await device.get_json("/restconf/yang-library-version")
    assert version == {"ietf-restconf:yang-library-version": "2019-01-04"}
    library = await device.get_json("/restconf/data/ietf-yang-library:yang-library")
    names = {
        m["name"] for m in library["ietf-yang-library:yang-library"]["module-set"][0]["module"]
    }
    assert {"ietf-system", "ietf-interfaces", "zerotouch-bootstrap"} <= names


# -- GET -----------------------------------------------------------------------------------


async def test_get_leaf_container_and_list_entry_json(device: Device) -> None:
    assert await device.get_json("/restconf/data/ietf-system:system/hostname") == {
        "ietf-system:hostname": "device-1"
    }
    system = await device.get_json("/restconf/data/ietf-system:system")
    assert system == {"ietf-system:system": STARTUP["ietf-system:system"]}
    entry = await device.get_json("/restconf/data/ietf-interfaces:interfaces/interface=eth0")
    assert entry["ietf-interfaces:interface"][0]["description"] == "uplink"


async def test_get_xml(device: Device) -> None:
    status, headers, body = await device.request(
        "GET", "/restconf/data/ietf-system:system", headers={"Accept": MEDIA_XML}
    )
    assert status == 200
    assert headers["Content-Type"].startswith(MEDIA_XML)
    root = etree.fromstring(body)
    assert root.tag == f"{{{SYSTEM_NS}}}system"
    assert root.findtext(f"{{{SYSTEM_NS}}}hostname") == "device-1"
    status, _, body = await device.request(
        "GET", "/restconf/data/ietf-interfaces:interfaces/interface=eth0", headers=XML_HEADERS
    )
    entry = etree.fromstring(body)
    assert entry.tag == f"{{{IF_NS}}}interface"
    assert entry.findtext(f"{{{IF_NS}}}name") == "eth0"
    # identityref values carry a prefix bound to the module's namespace (RFC 7950 §9.10.3)
    prefix, _, local = (entry.findtext(f"{{{IF_NS}}}type") or "").partition(":")
    assert local == "ethernetCsmacd"
    assert entry.find(f"{{{IF_NS}}}type").nsmap[prefix] == (  # type: ignore[union-attr]
        "urn:ietf:params:xml:ns:yang:iana-if-type"
    )
    status, _, body = await device.request("GET", "/restconf/data", headers=XML_HEADERS)
    data = etree.fromstring(body)
    assert data.tag == f"{{{RESTCONF_NS}}}data"
    assert data.find(f"{{{SYSTEM_NS}}}system") is not None


async def test_get_missing_resource_is_404(device: Device) -> None:
    status, _, body = await device.request("GET", "/restconf/data/ietf-system:system/contact")
    assert status == 404
    err = _error(body)
    assert err["error-tag"] == "invalid-value"
    assert err["error-path"] == "/ietf-system:system/contact"


async def test_get_unknown_node_is_400(device: Device) -> None:
    for path in ("ietf-system:sistem", "ietf-system:system/hostname/below-a-leaf"):
        status, _, body = await device.request("GET", f"/restconf/data/{path}")
        assert status == 400, body
        assert _error(body)["error-tag"] == "invalid-value"


async def test_content_parameter(device: Device) -> None:
    device.ds.publish_state(
        "bootstrap", {"zerotouch-bootstrap:bootstrap": {"phase": "enrolled", "attempts": 1}}
    )
    everything = (await device.get_json("/restconf/data"))["ietf-restconf:data"]
    assert everything["zerotouch-bootstrap:bootstrap"]["phase"] == "enrolled"
    assert everything["ietf-system:system"]["hostname"] == "device-1"
    config = (await device.get_json("/restconf/data?content=config"))["ietf-restconf:data"]
    assert "zerotouch-bootstrap:bootstrap" not in config
    assert "ietf-yang-library:yang-library" not in config
    assert config["ietf-system:system"]["hostname"] == "device-1"
    state = (await device.get_json("/restconf/data?content=nonconfig"))["ietf-restconf:data"]
    assert state["zerotouch-bootstrap:bootstrap"] == {"phase": "enrolled", "attempts": 1}
    assert "ietf-system:system" not in state
    status, _, _ = await device.request(
        "GET", "/restconf/data/ietf-system:system/hostname?content=nonconfig"
    )
    assert status == 404


async def test_depth_parameter(device: Device) -> None:
    top = await device.get_json("/restconf/data/ietf-interfaces:interfaces?depth=1")
    assert top == {"ietf-interfaces:interfaces": {}}
    two = await device.get_json("/restconf/data/ietf-interfaces:interfaces?depth=2")
    assert two == {"ietf-interfaces:interfaces": {"interface": [{"name": "eth0"}]}}
    full = await device.get_json("/restconf/data/ietf-interfaces:interfaces?depth=unbounded")
    assert full["ietf-interfaces:interfaces"] == STARTUP["ietf-interfaces:interfaces"]
    for bad in ("0", "x", "70000"):
        status, _, body = await device.request("GET", f"/restconf/data?depth={bad}")
        assert status == 400
        assert _error(body)["error-tag"] == "invalid-value"


async def test_with_defaults_report_all(device: Device) -> None:
    path = "/restconf/data/ietf-interfaces:interfaces/interface=eth0"
    explicit = (await device.get_json(path))["ietf-interfaces:interface"][0]
    assert "enabled" not in explicit
    report_all = (await device.get_json(path + "?with-defaults=report-all"))[
        "ietf-interfaces:interface"
    ][0]
    assert report_all["enabled"] is True  # ietf-interfaces: default true
    status, _, _ = await device.request("GET", path + "?with-defaults=trim")
    assert status == 400


async def test_report_all_is_worked_out_off_the_event_loop_once_per_version(
    device: Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """report-all adds every default of the datastore (seconds at 30,000 interfaces): on the
    event loop it stalled every other request of the device meanwhile. Another request is
    answered while it is worked out; the next report-all of the same version reuses it."""
    entered, release = threading.Event(), threading.Event()
    order: list[str] = []
    runs = 0

    def held(*args: Any) -> Any:
        nonlocal runs
        if args[3] != "report-all":
            return real(*args)
        runs += 1
        entered.set()
        release.wait(timeout=20)  # only a fail-safe: the test releases it
        order.append("report-all")
        return real(*args)

    real = restconf_app_module.with_defaults
    monkeypatch.setattr(restconf_app_module, "with_defaults", held)
    path = "/restconf/data/ietf-interfaces:interfaces/interface=eth0?with-defaults=report-all"
    first = asyncio.create_task(device.get_json(path))
    while not entered.is_set():
        await asyncio.sleep(0.01)
    assert (await device.get_json("/restconf/data/ietf-system:system/hostname")) == {
        "ietf-system:hostname": "device-1"
    }
    order.append("other request")
    release.set()
    assert (await first)["ietf-interfaces:interface"][0]["enabled"] is True
    assert order == ["other request", "report-all"]
    await device.get_json(path)
    assert runs == 1
    status, _, _ = await device.request(
        "PATCH", "/restconf/data/ietf-system:system", {"ietf-system:system": {"location": "x"}}
    )
    assert status == 204
    await device.get_json(path)
    assert runs == 2


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("depth=1&depth=unbounded", "depth"),
        ("content=config&content=nonconfig", "content"),
        ("with-defaults=explicit&with-defaults=report-all", "with-defaults"),
        ("depth=2&depth=2", "depth"),
    ],
)
async def test_a_repeated_query_parameter_is_refused(device: Device, query: str, name: str) -> None:
    """RFC 8040 §4.8: each parameter appears at most once; the last one used to win."""
    status, _, body = await device.request("GET", f"/restconf/data/ietf-system:system?{query}")
    assert status == 400, body
    err = _error(body)
    assert err["error-tag"] == "invalid-value"
    assert err["error-message"] == f"query parameter {name!r} is given more than once"


async def test_head_and_options(device: Device) -> None:
    status, headers, body = await device.request("HEAD", "/restconf/data/ietf-system:system")
    assert status == 200
    assert body == b""
    assert headers["ETag"]
    assert headers["Last-Modified"]
    status, headers, _ = await device.request("OPTIONS", "/restconf/data/ietf-system:system")
    assert status == 200
    assert {"GET", "PUT", "PATCH", "POST", "DELETE"} <= set(headers["Allow"].split(", "))
    # RFC 8040 §4.6.1: the plain-patch media types, and no YANG Patch (not implemented)
    assert headers["Accept-Patch"] == "application/yang-data+json, application/yang-data+xml"
    status, headers, _ = await device.request("OPTIONS", "/restconf/data")
    assert "DELETE" not in headers["Allow"] and "PATCH" in headers["Allow"]
    assert "yang-data+json" in headers["Accept-Patch"]


async def test_restconf_monitoring_state(device: Device) -> None:
    """RFC 8040 §9.1: the capability URIs of what the server implements, and only those."""
    state = await device.get_json("/restconf/data/ietf-restconf-monitoring:restconf-state")
    caps = state["ietf-restconf-monitoring:restconf-state"]["capabilities"]["capability"]
    assert caps == [
        "urn:ietf:params:restconf:capability:defaults:1.0?basic-mode=explicit",
        "urn:ietf:params:restconf:capability:depth:1.0",
        "urn:ietf:params:restconf:capability:with-defaults:1.0",
    ]
    assert "streams" not in state["ietf-restconf-monitoring:restconf-state"]  # none served
    # the claims hold: explicit by default, depth and with-defaults answered
    explicit = await device.get_json("/restconf/data/ietf-interfaces:interfaces")
    assert "enabled" not in explicit["ietf-interfaces:interfaces"]["interface"][0]
    for query in ("depth=1", "with-defaults=report-all"):
        assert (await device.request("GET", f"/restconf/data?{query}"))[0] == 200
    for query in ("fields=x", "filter=x"):  # not claimed, not served
        assert (await device.request("GET", f"/restconf/data?{query}"))[0] == 400
    library = await device.get_json("/restconf/data/ietf-yang-library:yang-library")
    modules = library["ietf-yang-library:yang-library"]["module-set"][0]["module"]
    entry = next(m for m in modules if m["name"] == "ietf-restconf-monitoring")
    assert entry["revision"] == "2017-01-26"


# -- writes ----------------------------------------------------------------------------------


async def test_put_replaces_and_creates(device: Device) -> None:
    body = {"ietf-system:system": {"hostname": "core-7"}}
    status, _, _ = await device.request("PUT", "/restconf/data/ietf-system:system", body)
    assert status == 204  # replaced
    assert await device.get_json("/restconf/data/ietf-system:system") == body
    entry = {"ietf-interfaces:interface": [{"name": "eth1", "type": "iana-if-type:ieee8023adLag"}]}
    status, _, _ = await device.request(
        "PUT", "/restconf/data/ietf-interfaces:interfaces/interface=eth1", entry
    )
    assert status == 201  # created
    running = device.ds.get(Datastore.RUNNING)
    names = [i["name"] for i in running["ietf-interfaces:interfaces"]["interface"]]
    assert names == ["eth0", "eth1"]


async def test_put_key_mismatch_refused(device: Device) -> None:
    entry = {"ietf-interfaces:interface": [{"name": "eth9", "type": "iana-if-type:other"}]}
    status, _, body = await device.request(
        "PUT", "/restconf/data/ietf-interfaces:interfaces/interface=eth1", entry
    )
    assert status == 400
    assert _error(body)["error-tag"] == "invalid-value"


async def test_put_xml_body(device: Device) -> None:
    xml = (
        f'<system xmlns="{SYSTEM_NS}"><hostname>from-xml</hostname><contact>noc</contact></system>'
    )
    status, _, _ = await device.request(
        "PUT", "/restconf/data/ietf-system:system", xml.encode(), XML_HEADERS
    )
    assert status == 204
    assert device.ds.get(Datastore.RUNNING)["ietf-system:system"] == {
        "hostname": "from-xml",
        "contact": "noc",
    }


async def test_put_datastore_root(device: Device) -> None:
    new = {"ietf-restconf:data": {"ietf-system:system": {"hostname": "only"}}}
    status, _, _ = await device.request("PUT", "/restconf/data", new)
    assert status == 204
    assert device.ds.get(Datastore.RUNNING) == {"ietf-system:system": {"hostname": "only"}}


async def test_patch_merges_and_startup_follows(device: Device) -> None:
    patch = {"ietf-system:system": {"contact": "noc@example.com"}}
    status, _, _ = await device.request("PATCH", "/restconf/data/ietf-system:system", patch)
    assert status == 204
    system = device.ds.get(Datastore.RUNNING)["ietf-system:system"]
    assert system == {"hostname": "device-1", "location": "lab", "contact": "noc@example.com"}
    # RFC 8040 §1.4: with :startup, RESTCONF edits reach the startup datastore too.
    on_disk = json.loads((device.ds.folder / "startup.json").read_text())
    assert on_disk["ietf-system:system"]["contact"] == "noc@example.com"


async def test_patch_missing_target_is_404(device: Device) -> None:
    body = {"ietf-interfaces:interface": [{"name": "eth5", "description": "x"}]}
    status, _, body_out = await device.request(
        "PATCH", "/restconf/data/ietf-interfaces:interfaces/interface=eth5", body
    )
    assert status == 404
    assert "eth5" not in json.dumps(device.ds.get(Datastore.RUNNING))
    assert _error(body_out)["error-tag"] == "invalid-value"


async def test_post_creates_then_conflicts(device: Device) -> None:
    entry = {
        "ietf-interfaces:interface": [{"name": "lo 0/1", "type": "iana-if-type:softwareLoopback"}]
    }
    status, headers, _ = await device.request(
        "POST", "/restconf/data/ietf-interfaces:interfaces", entry
    )
    assert status == 201
    assert headers["Location"].endswith(
        "/restconf/data/ietf-interfaces:interfaces/ietf-interfaces:interface=lo%200%2F1"
    )
    location = headers["Location"].split("/restconf/data", 1)[1]
    got = await device.get_json("/restconf/data" + location)
    assert got["ietf-interfaces:interface"][0]["name"] == "lo 0/1"
    status, _, body = await device.request(
        "POST", "/restconf/data/ietf-interfaces:interfaces", entry
    )
    assert status == 409
    assert _error(body)["error-tag"] == "resource-denied"  # RFC 8040 §4.4.1


async def test_post_top_level_container(device: Device) -> None:
    await device.request("DELETE", "/restconf/data/ietf-system:system")
    status, headers, _ = await device.request(
        "POST", "/restconf/data", {"ietf-system:system": {"hostname": "posted"}}
    )
    assert status == 201
    assert headers["Location"].endswith("/restconf/data/ietf-system:system")
    assert device.ds.get(Datastore.RUNNING)["ietf-system:system"] == {"hostname": "posted"}


async def test_delete(device: Device) -> None:
    path = "/restconf/data/ietf-interfaces:interfaces/interface=eth0"
    status, _, _ = await device.request("DELETE", path)
    assert status == 204
    assert "ietf-interfaces:interfaces" not in device.ds.get(Datastore.RUNNING)
    status, _, body = await device.request("DELETE", path)
    assert status == 404
    status, headers, body = await device.request("DELETE", "/restconf/data")
    assert status == 405
    assert "DELETE" not in headers["Allow"]
    assert _error(body)["error-tag"] == "operation-not-supported"


async def test_invalid_edit_leaves_datastores_byte_identical(device: Device) -> None:
    startup = device.ds.folder / "startup.json"
    before_file = startup.read_bytes()
    before = device.ds.get(Datastore.RUNNING)
    bad_edits = [
        ("PATCH", "/restconf/data/ietf-system:system", {"ietf-system:system": {"hostname": 7}}),
        (
            "PATCH",
            "/restconf/data/ietf-interfaces:interfaces/interface=eth0",
            {"ietf-interfaces:interface": [{"name": "eth0", "enabled": "maybe"}]},
        ),
        ("PUT", "/restconf/data/ietf-system:system", {"ietf-system:system": {"colour": "red"}}),
        (
            "POST",
            "/restconf/data/ietf-interfaces:interfaces",
            {"ietf-interfaces:interface": [{"name": "eth2"}]},  # type is mandatory
        ),
        # A value of the wrong JSON shape (RFC 7951 §5) was once read as empty: a PUT
        # deleted the container, or every interface.
        ("PUT", "/restconf/data/ietf-system:system", {"ietf-system:system": []}),
        ("PUT", "/restconf/data/ietf-system:system", {"ietf-system:system": "core-7"}),
        (
            "PUT",
            "/restconf/data/ietf-interfaces:interfaces/interface",
            {"ietf-interfaces:interface": {"name": "eth0", "type": "iana-if-type:other"}},
        ),
        (
            "PUT",
            "/restconf/data/ietf-interfaces:interfaces/interface",
            {"ietf-interfaces:interface": ["eth0"]},
        ),
        (
            "PUT",
            "/restconf/data/ietf-interfaces:interfaces/interface=eth0",
            {"ietf-interfaces:interface": "eth0"},
        ),
        (
            "PUT",
            "/restconf/data/ietf-system:system/dns-resolver/search",
            {"ietf-system:search": "a.example"},
        ),
        ("PATCH", "/restconf/data/ietf-system:system", {"ietf-system:system": 7}),
        ("POST", "/restconf/data/ietf-system:system", {"ietf-system:dns-resolver": []}),
    ]
    for method, path, body in bad_edits:
        status, _, out = await device.request(method, path, body)
        assert status == 400, (method, path, out)
        err = _error(out)
        assert err["error-type"] == "application"
        assert err["error-tag"] == "invalid-value"
        assert err["error-message"]
    assert device.ds.get(Datastore.RUNNING) == before
    assert startup.read_bytes() == before_file


async def test_a_whole_list_or_leaf_list_is_not_replaced_or_deleted(device: Device) -> None:
    """RFC 8040 §3.5: list and leaf-list entries are data resources, a whole list is not. A PUT
    of a whole leaf-list once merged its entries, a DELETE answered 204 and deleted nothing."""
    resolver = "/restconf/data/ietf-system:system/dns-resolver"
    body = {"ietf-system:dns-resolver": {"search": ["a.example", "b.example"]}}
    status, _, _ = await device.request("PUT", resolver, body)
    assert status == 201
    startup = device.ds.folder / "startup.json"
    before_file = startup.read_bytes()
    before = device.ds.get(Datastore.RUNNING)
    interfaces = "/restconf/data/ietf-interfaces:interfaces/interface"
    refused = [
        ("PUT", f"{resolver}/search", {"ietf-system:search": ["c.example"]}),
        ("DELETE", f"{resolver}/search", None),
        ("PUT", interfaces, {"ietf-interfaces:interface": [{"name": "e9", "type": ETHERNET}]}),
        ("DELETE", interfaces, None),
    ]
    for method, path, edit in refused:
        status, _, out = await device.request(method, path, edit)
        assert status == 400, (method, path, out)
        err = _error(out)
        assert err["error-tag"] == "invalid-value"
        assert "not a data resource" in err["error-message"]
        assert err["error-path"] == path.removeprefix("/restconf/data")
    assert device.ds.get(Datastore.RUNNING) == before
    assert startup.read_bytes() == before_file
    status, _, _ = await device.request(
        "PATCH", f"{resolver}/search", {"ietf-system:search": ["c.example"]}
    )
    assert status == 204  # a merge means the same on the list as on its entries
    assert await device.get_json(f"{resolver}/search") == {
        "ietf-system:search": ["a.example", "b.example", "c.example"]
    }


async def test_an_entry_with_an_empty_key(device: Device) -> None:
    """RFC 8040 §3.5.3: a key may be the empty string, ``interface=``; such an entry was made
    only by PATCH, and could then be neither read nor deleted."""
    entry = {"name": "", "type": ETHERNET}
    status, headers, body = await device.request(
        "POST", "/restconf/data/ietf-interfaces:interfaces", {"ietf-interfaces:interface": [entry]}
    )
    assert status == 201, body
    path = "/restconf/data/ietf-interfaces:interfaces/interface="
    assert headers["Location"].endswith("/ietf-interfaces:interface=")
    assert await device.get_json(path) == {"ietf-interfaces:interface": [entry]}
    status, _, body = await device.request(
        "PUT", f"{path}/description", {"ietf-interfaces:description": "no name"}
    )
    assert status == 201, body
    status, _, _ = await device.request("DELETE", path)
    assert status == 204
    status, _, _ = await device.request("GET", path)
    assert status == 404
    assert [
        e["name"]
        for e in device.ds.get(Datastore.RUNNING)["ietf-interfaces:interfaces"]["interface"]
    ] == ["eth0"]


_DELETE = {"ietf-netconf:operation": "delete"}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        # RFC 8040 §4.6.1: a plain patch merges; an annotation once made it delete.
        ("PATCH", "/restconf/data/ietf-system:system", {"ietf-system:system": {"@": _DELETE}}),
        (
            "PATCH",
            "/restconf/data/ietf-system:system",
            {"ietf-system:system": {"location": "x", "@location": _DELETE}},
        ),
        (
            "PATCH",
            "/restconf/data/ietf-interfaces:interfaces",
            {"ietf-interfaces:interfaces": {"interface": [{"name": "eth0", "@": _DELETE}]}},
        ),
        (
            "PATCH",
            "/restconf/data/ietf-system:system",
            {"ietf-system:system": {"@": [1], "@contact": 5, "@no": {"x:y": 1}, "contact": "c"}},
        ),
        (
            "PUT",
            "/restconf/data",
            {"ietf-restconf:data": {"ietf-system:system": {"hostname": "h", "@": _DELETE}}},
        ),
        (
            "POST",
            "/restconf/data/ietf-system:system",
            {"ietf-system:contact": "c", "@ietf-system:contact": {"x:y": 1}},
        ),
        (
            "POST",
            "/restconf/operations/zerotouch-bootstrap:restart-bootstrap",
            {"zerotouch-bootstrap:input": {"@": {"x:y": 1}}},
        ),
    ],
)
async def test_metadata_annotations_refused_and_change_nothing(
    device: Device, method: str, path: str, body: dict[str, Any]
) -> None:
    """RFC 7952 §5: "@" members are annotations, and no module defines one a RESTCONF
    client may send; they were read as NETCONF edit operations or skipped unchecked."""
    startup = device.ds.folder / "startup.json"
    before_file = startup.read_bytes()
    before = device.ds.get(Datastore.RUNNING)
    status, _, out = await device.request(method, path, body)
    assert status == 400, out
    err = _error(out)
    assert err["error-tag"] == "invalid-value"
    assert "metadata member '@" in err["error-message"]
    assert device.ds.get(Datastore.RUNNING) == before
    assert startup.read_bytes() == before_file
    assert device.calls == []


@pytest.mark.parametrize(
    "inner",
    [
        '<clock nc:operation="delete"/>',
        '<contact nc:operation="remove">c</contact>',
        '<dns-resolver><search nc:operation="delete">a.example</search></dns-resolver>',
    ],
)
async def test_an_nc_operation_in_an_xml_body_is_refused(device: Device, inner: str) -> None:
    """RESTCONF ignored the attribute: a client meaning a delete got a merge (204). It is
    refused, as its JSON form is, and nothing changes."""
    nc = "urn:ietf:params:xml:ns:netconf:base:1.0"
    xml = f'<system xmlns="{SYSTEM_NS}" xmlns:nc="{nc}">{inner}</system>'
    before = device.ds.get(Datastore.RUNNING)
    status, _, body = await device.request(
        "PATCH", "/restconf/data/ietf-system:system", xml.encode(), XML_HEADERS
    )
    assert status == 400, body
    assert "nc:operation" in (
        etree.fromstring(body).findtext(f".//{{{RESTCONF_NS}}}error-message") or ""
    )
    assert device.ds.get(Datastore.RUNNING) == before


async def test_error_path_in_xml(device: Device) -> None:
    xml = f'<system xmlns="{SYSTEM_NS}"><hostname>ok</hostname><colour>red</colour></system>'
    status, _, body = await device.request(
        "PUT", "/restconf/data/ietf-system:system", xml.encode(), XML_HEADERS
    )
    assert status == 400
    root = etree.fromstring(body)
    assert root.tag == f"{{{RESTCONF_NS}}}errors"
    assert root.findtext(f".//{{{RESTCONF_NS}}}error-tag") == "unknown-element"  # RFC 6241 App. A
    assert root.findtext(f".//{{{RESTCONF_NS}}}error-type") == "application"


@pytest.mark.parametrize(
    ("accept", "answer"),
    [
        (f"{MEDIA_JSON};q=0.1, {MEDIA_XML}", MEDIA_XML),  # the first listed type once won
        (f"*/*;q=0.5, {MEDIA_XML};q=0.4", MEDIA_JSON),
        (f"{MEDIA_XML};q=0.5, */*;q=0.5", MEDIA_XML),  # exact before a wildcard
        (f"{MEDIA_JSON};q=0.5, {MEDIA_XML};q=0.5", MEDIA_JSON),  # then the header's order
        (f"{MEDIA_XML};q=2, {MEDIA_JSON};q=0.3", MEDIA_JSON),  # no quality: excluded
        (f"{MEDIA_XML};q=0, */*", MEDIA_JSON),
        (f"{MEDIA_JSON};q=abc", None),
        (f"{MEDIA_JSON};q=0, {MEDIA_XML};q=0.000", None),
    ],
)
async def test_accept_is_read_by_quality(device: Device, accept: str, answer: str | None) -> None:
    """RFC 8040 §5.2 with RFC 9110 §12.5.1: the supported type of the highest quality."""
    status, headers, _ = await device.request(
        "GET", "/restconf/data/ietf-system:system/hostname", headers={"Accept": accept}
    )
    if answer is None:
        assert status == 406
    else:
        assert (status, headers["Content-Type"].split(";")[0]) == (200, answer)


async def test_error_path_is_an_instance_identifier(device: Device) -> None:
    """RFC 8040 §7.1: error-path is an instance-identifier (RFC 7951 §6.11 in JSON; every name
    prefixed in XML, RFC 7950 §9.13.2). It was the request URI (percent-encoded, "=key"), or
    a bare key name."""
    interfaces = "/restconf/data/ietf-interfaces:interfaces"
    entry = {"ietf-interfaces:interface": [{"name": "a b", "type": ETHERNET}]}
    assert (await device.request("POST", interfaces, entry))[0] == 201
    status, _, body = await device.request("POST", interfaces, entry)
    assert status == 409
    assert _error(body)["error-path"] == "/ietf-interfaces:interfaces/interface[name='a b']"
    status, _, body = await device.request("GET", f"{interfaces}/interface=it's")
    assert status == 404
    assert _error(body)["error-path"] == '/ietf-interfaces:interfaces/interface[name="it\'s"]'
    status, _, body = await device.request(
        "GET", f"{interfaces}/interface=nope/description", headers=XML_HEADERS
    )
    assert status == 404
    path = etree.fromstring(body).find(f".//{{{RESTCONF_NS}}}error-path")
    assert path is not None
    assert path.text == (
        "/ietf-interfaces:interfaces/ietf-interfaces:interface[ietf-interfaces:name='nope']"
        "/ietf-interfaces:description"
    )
    assert path.nsmap["ietf-interfaces"] == IF_NS
    other = {"ietf-interfaces:interface": [{"name": "x3", "type": ETHERNET}]}
    status, _, body = await device.request("PUT", f"{interfaces}/interface=x2", other)
    assert status == 400
    assert _error(body)["error-path"] == "/ietf-interfaces:interfaces/interface[name='x2']/name"


# -- shared datastores and locks -----------------------------------------------------------


async def test_changes_visible_across_protocols(device: Device) -> None:
    """An edit committed by another session (as NETCONF does) is what RESTCONF reads."""
    tree = device.ds.get(Datastore.RUNNING)
    tree["ietf-system:system"]["hostname"] = "set-by-netconf"
    await device.ds.commit(Datastore.RUNNING, tree, session_id=3)
    got = await device.get_json("/restconf/data/ietf-system:system/hostname")
    assert got == {"ietf-system:hostname": "set-by-netconf"}


async def test_netconf_lock_blocks_restconf_writes(device: Device) -> None:
    device.ds.lock(Datastore.RUNNING, 5)
    patch = {"ietf-system:system": {"contact": "x"}}
    status, _, body = await device.request("PATCH", "/restconf/data/ietf-system:system", patch)
    assert status == 409
    assert _error(body)["error-tag"] == "in-use"
    assert "contact" not in device.ds.get(Datastore.RUNNING)["ietf-system:system"]
    # reads are not blocked
    assert (await device.get_json("/restconf/data/ietf-system:system/hostname")) == {
        "ietf-system:hostname": "device-1"
    }
    device.ds.release_session(5)
    status, _, _ = await device.request("PATCH", "/restconf/data/ietf-system:system", patch)
    assert status == 204


async def test_startup_lock_blocks_restconf_writes(device: Device) -> None:
    device.ds.lock(Datastore.STARTUP, 6)
    status, _, _ = await device.request(
        "PATCH", "/restconf/data/ietf-system:system", {"ietf-system:system": {"contact": "x"}}
    )
    assert status == 409
    assert "contact" not in device.ds.get(Datastore.RUNNING)["ietf-system:system"]


async def test_a_startup_lock_taken_mid_write_refuses_it_whole(
    device: Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A NETCONF session locked startup while a PATCH was validated: the PATCH answered 409
    but had changed running, and startup no longer followed it (RFC 8040 §1.4)."""
    startup = device.ds.folder / "startup.json"
    before_file = startup.read_bytes()
    before = device.ds.get(Datastore.RUNNING)
    validate = device.ds.schema.validate

    def validate_then_lock(*args: Any, **kwargs: Any) -> None:
        device.ds.lock(Datastore.STARTUP, 6)  # the loop waits for this thread: no race
        validate(*args, **kwargs)

    monkeypatch.setattr(device.ds.schema, "validate", validate_then_lock)
    patch = {"ietf-system:system": {"contact": "x"}}
    status, _, body = await device.request("PATCH", "/restconf/data/ietf-system:system", patch)
    assert status == 409
    assert _error(body)["error-message"] == "startup is locked by session 6"
    assert device.ds.get(Datastore.RUNNING) == before
    assert startup.read_bytes() == before_file


async def test_a_lock_taken_as_running_changes_finds_startup_following(device: Device) -> None:
    """The first moment another session can act after running changes (a change listener)
    used to fall between running's commit and startup's copy: 409, startup left behind."""

    def lock_startup(ds: Datastore, _tree: Mapping[str, Any]) -> None:
        if ds is Datastore.RUNNING:
            device.ds.lock(Datastore.STARTUP, 6)

    device.ds.subscribe(lock_startup)
    patch = {"ietf-system:system": {"contact": "x"}}
    status, _, body = await device.request("PATCH", "/restconf/data/ietf-system:system", patch)
    assert status == 204, body
    on_disk = json.loads((device.ds.folder / "startup.json").read_text())
    assert on_disk == device.ds.get(Datastore.RUNNING)
    assert on_disk["ietf-system:system"]["contact"] == "x"


async def test_etags_differ_per_encoding(device: Device) -> None:
    """RFC 9110 §8.8.3: a strong entity-tag is per representation; JSON and XML shared one."""
    _, as_json, _ = await device.request("GET", "/restconf/data/ietf-system:system")
    _, as_xml, _ = await device.request(
        "GET", "/restconf/data/ietf-system:system", None, XML_HEADERS
    )
    assert as_json["ETag"].startswith('"')
    assert as_xml["ETag"].startswith('"')
    assert as_json["ETag"] != as_xml["ETag"]


async def test_a_false_precondition_refuses_the_write(device: Device) -> None:
    """RFC 8040 §3.4.1, RFC 9110 §13.1.1/§13.1.4: If-Match and If-Unmodified-Since were
    ignored, so a stale client overwrote a newer change."""
    startup = device.ds.folder / "startup.json"
    before_file = startup.read_bytes()
    before = device.ds.get(Datastore.RUNNING)
    _, headers, _ = await device.request("GET", "/restconf/data/ietf-system:system")
    etag = headers["ETag"]
    host = "/restconf/data/ietf-system:system/hostname"
    refused: list[tuple[str, str, dict[str, str], dict[str, str] | None]] = [
        ("PUT", host, {"If-Match": '"stale-etag"'}, {"ietf-system:hostname": "x"}),
        ("PUT", host, {"If-Match": f"W/{etag}"}, {"ietf-system:hostname": "x"}),  # weak: never
        (
            "PUT",
            host,
            {"If-Unmodified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"},
            {"ietf-system:hostname": "x"},
        ),
        ("DELETE", host, {"If-Match": '"stale-etag"'}, None),
        (  # "*" needs the resource to exist: there is no contact
            "PUT",
            "/restconf/data/ietf-system:system/contact",
            {"If-Match": "*"},
            {"ietf-system:contact": "x"},
        ),
    ]
    for method, path, extra, body in refused:
        status, _, out = await device.request(method, path, body, {**JSON_HEADERS, **extra})
        assert status == 412, (method, extra, out)
        err = _error(out)
        assert err["error-tag"] == "operation-failed"
        assert err["error-type"] == "protocol"
        assert "read it again" in err["error-message"]
    assert device.ds.get(Datastore.RUNNING) == before
    assert startup.read_bytes() == before_file


async def test_a_true_precondition_lets_the_write_through(device: Device) -> None:
    path = "/restconf/data/ietf-system:system/hostname"

    async def put(hostname: str, extra: dict[str, str]) -> int:
        body = {"ietf-system:hostname": hostname}
        status, _, _ = await device.request("PUT", path, body, {**JSON_HEADERS, **extra})
        return status

    assert await put("a", {"If-Match": "*"}) == 204
    assert await put("b", {"If-Unmodified-Since": "not a date"}) == 204  # ignored (§13.1.4)
    _, headers, _ = await device.request("GET", path, None, XML_HEADERS)
    xml_etag = headers["ETag"]
    assert await put("c", {"If-Match": f'"other", {xml_etag}'}) == 204  # either encoding's tag
    assert await put("d", {"If-Match": xml_etag}) == 412  # the write made it stale
    _, headers, _ = await device.request("GET", path)
    assert await put("e", {"If-Unmodified-Since": headers["Last-Modified"]}) == 204
    assert await device.get_json(path) == {"ietf-system:hostname": "e"}


async def test_conditional_reads_follow_rfc_9110_order(device: Device) -> None:
    """RFC 9110 §13.2.2 on GET and HEAD: If-Match false is 412; If-None-Match compares weakly
    and, when present, If-Modified-Since is ignored (§13.1.3); a 304 carries the validators
    a 200 would (§15.4.5). An edit with If-None-Match naming the current tag is 412."""
    config = "/restconf/data/ietf-system:system?content=config"
    _, headers, _ = await device.request("GET", config)
    etag, modified = headers["ETag"], headers["Last-Modified"]
    old = "Thu, 01 Jan 1970 00:00:00 GMT"
    cases: list[tuple[str, dict[str, str], int]] = [
        ("GET", {"If-Match": '"stale"'}, 412),
        ("GET", {"If-Match": etag, "If-None-Match": etag}, 304),
        ("HEAD", {"If-None-Match": f'"other", W/{etag}'}, 304),
        ("GET", {"If-None-Match": '"other"', "If-Modified-Since": modified}, 200),
        ("GET", {"If-Modified-Since": modified}, 304),
        ("GET", {"If-Modified-Since": old}, 200),
        ("GET", {"If-Modified-Since": "not a date"}, 200),
    ]
    for method, extra, expected in cases:
        status, got, body = await device.request(method, config, None, {**JSON_HEADERS, **extra})
        assert status == expected, (method, extra, body)
        if status == 304:
            assert (got["ETag"], got["Last-Modified"], body) == (etag, modified, b"")
    missing = "/restconf/data/ietf-system:system/contact"  # 404 comes before any condition
    status, _, _ = await device.request(
        "GET", missing, None, {**JSON_HEADERS, "If-None-Match": "*"}
    )
    assert status == 404
    host = "/restconf/data/ietf-system:system/hostname"
    body = {"ietf-system:hostname": "x"}
    status, _, out = await device.request(
        "PUT", host, body, {**JSON_HEADERS, "If-None-Match": etag}
    )
    assert (status, _error(out)["error-tag"]) == (412, "operation-failed")
    status, _, _ = await device.request("PUT", host, body, {**JSON_HEADERS, "If-None-Match": '"o"'})
    assert status == 204
    status, _, _ = await device.request(
        "GET", config, None, {**JSON_HEADERS, "If-None-Match": etag}
    )
    assert status == 200  # the write changed the tag


# -- operations ------------------------------------------------------------------------------


async def test_operations_listing_and_rpc(device: Device) -> None:
    ops = await device.get_json("/restconf/operations")
    assert ops == {"ietf-restconf:operations": {"zerotouch-bootstrap:restart-bootstrap": [None]}}
    status, _, body = await device.request(
        "POST",
        "/restconf/operations/zerotouch-bootstrap:restart-bootstrap",
        {"zerotouch-bootstrap:input": {"factory-reset": True}},
    )
    assert status == 200
    assert json.loads(body) == {"zerotouch-bootstrap:output": {"phase": "discovering"}}
    status, _, _ = await device.request(
        "POST", "/restconf/operations/zerotouch-bootstrap:restart-bootstrap", None, {}
    )
    assert status == 200
    assert device.calls == [{"factory-reset": True}, {"factory-reset": False}]


async def test_rpc_xml(device: Device) -> None:
    ns = "urn:zerotouch:params:xml:ns:yang:zerotouch-bootstrap"
    body = f'<input xmlns="{ns}"><factory-reset>true</factory-reset></input>'
    status, _, out = await device.request(
        "POST",
        "/restconf/operations/zerotouch-bootstrap:restart-bootstrap",
        body.encode(),
        XML_HEADERS,
    )
    assert status == 200
    root = etree.fromstring(out)
    assert root.tag == f"{{{ns}}}output"
    assert root.findtext(f"{{{ns}}}phase") == "discovering"
    assert device.calls == [{"factory-reset": True}]


async def test_rpc_errors(device: Device) -> None:
    path = "/restconf/operations/zerotouch-bootstrap:restart-bootstrap"
    status, _, body = await device.request(
        "POST", path, {"zerotouch-bootstrap:input": {"factory-reset": "perhaps"}}
    )
    assert status == 400
    status, _, body = await device.request(
        "POST", path, {"zerotouch-bootstrap:input": {"reboot": True}}
    )
    assert status == 400
    status, _, body = await device.request(
        "POST", "/restconf/operations/ietf-system:system-restart"
    )
    assert status == 501
    assert _error(body)["error-tag"] == "operation-not-supported"
    status, _, _ = await device.request("POST", "/restconf/operations/nope:nothing")
    assert status == 404
    assert device.calls == []


# -- protocol errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status", "tag"),
    [
        ("PUT", "/restconf/data/ietf-system:system", {"Content-Type": "text/plain"}, b"x", 415,
         "invalid-value"),
        ("GET", "/restconf/data", {"Accept": "text/html"}, None, 406, "invalid-value"),
        ("GET", "/restconf/data?fields=x", JSON_HEADERS, None, 400, "invalid-value"),
        ("GET", "/restconf/data?content=some", JSON_HEADERS, None, 400, "invalid-value"),
        ("PATCH", "/restconf/data/ietf-system:system", JSON_HEADERS, b"{not json", 400,
         "malformed-message"),
        ("PATCH", "/restconf/data/ietf-system:system", JSON_HEADERS, b'{"system": {}}', 400,
         "malformed-message"),
        ("PUT", "/restconf/operations", JSON_HEADERS, b"{}", 405, "operation-not-supported"),
        ("GET", "/restconf/nowhere", JSON_HEADERS, None, 404, "invalid-value"),
    ],
)  # fmt: skip
async def test_protocol_errors(
    device: Device,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None,
    status: int,
    tag: str,
) -> None:
    got, _, out = await device.request(method, path, body, headers)
    assert got == status, out
    err = _error(out)
    assert err["error-tag"] == tag
    assert err["error-type"] == "protocol"


async def test_plain_http_client_refused(pki: DevicePki, device: Device) -> None:
    """A client without certificate on a CERT_OPTIONAL listener is refused by the app."""
    app = restconf_app(device.ds)
    optional = pki.server_context()
    optional.verify_mode = ssl.CERT_OPTIONAL
    runner = await start_restconf(app, host="127.0.0.1", port=0, ssl_context=optional)
    try:
        no_cert = ssl.create_default_context(cadata=pki.ca.cert.public_bytes(Encoding.PEM).decode())
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=no_cert)) as s:
            url = f"https://127.0.0.1:{bound_port(runner)}/restconf/data"
            async with s.get(url) as resp:
                assert resp.status == 401
                assert resp.headers["WWW-Authenticate"] == WWW_AUTHENTICATE  # RFC 7235 §3.1
                assert _error(await resp.read())["error-tag"] == "access-denied"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("who", "reason"),
    [("none", "PEER_DID_NOT_RETURN_A_CERTIFICATE"), ("stranger", "CERTIFICATE_VERIFY_FAILED")],
)
async def test_tls_refuses_clients_without_a_domain_certificate(
    pki: DevicePki, device: Device, who: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Refused, and logged with the peer and the reason as NETCONF/TLS logs it."""
    ctx = ssl.create_default_context(cadata=pki.ca.cert.public_bytes(Encoding.PEM).decode())
    if who == "stranger":
        ctx = pki.client_context(pki.stranger)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        with pytest.raises(aiohttp.ClientError):
            async with s.get(device.base + "/restconf/data") as resp:
                await resp.read()
    for _ in range(100):
        if reason in caplog.text:
            break
        await asyncio.sleep(0.02)
    refused = [r.getMessage() for r in caplog.records if "restconf: refused" in r.getMessage()]
    assert any(m.startswith("restconf: refused 127.0.0.1:") and reason in m for m in refused)


async def test_handshakes_in_progress_end_with_the_server(
    pki: DevicePki, schema: DeviceSchema, tmp_path: Path
) -> None:
    """A client that connects and never says ClientHello does not keep the server up."""
    runner = await start_restconf(
        restconf_app(Datastores(schema, tmp_path)), host="127.0.0.1", port=0,
        ssl_context=pki.server_context(),
    )  # fmt: skip
    reader, writer = await asyncio.open_connection("127.0.0.1", bound_port(runner))
    await asyncio.sleep(0.05)
    await asyncio.wait_for(runner.cleanup(), 5)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_default_mapping_refuses_another_devices_identity(
    pki: DevicePki, device: Device
) -> None:
    """Without an explicit cert-to-name function the app still maps (fail closed): an LDevID
    of the same domain (subject serialNumber, RFC 8995 §2.3.1) is no management client."""
    key = generate_key("p256")
    now = pki.ca.cert.not_valid_before_utc
    ldevid = issue_from_csr(
        pki.ca, make_csr(key, common_name="SN-PEER"), subject=ldevid_subject("SN-PEER"),
        san=[], now=now, days=30,
    )  # fmt: skip
    ctx = pki.client_context(Identity(ldevid, key, ()))
    url = device.base + "/restconf/data/ietf-system:system"
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s,
        s.get(url) as resp,
    ):
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == 'TLS-Client-Certificate realm="restconf"'
        error = _error(await resp.read())
    assert error["error-tag"] == "access-denied"
    assert "SN-PEER" in error["error-message"]
    assert await device.get_json("/restconf/data/ietf-system:system")  # the operator maps


async def test_leaf_list_entries(device: Device) -> None:
    path = "/restconf/data/ietf-system:system/dns-resolver/search=example.com"
    status, _, body = await device.request("PUT", path, {"ietf-system:search": ["example.com"]})
    assert status == 201, body
    assert await device.get_json(path) == {"ietf-system:search": ["example.com"]}
    status, _, _ = await device.request("PUT", path, {"ietf-system:search": ["example.org"]})
    assert status == 400  # the body names another entry than the path
    status, _, body = await device.request("GET", path, headers={"Accept": MEDIA_XML})
    assert etree.fromstring(body).text == "example.com"
    status, _, _ = await device.request("DELETE", path)
    assert status == 204
    assert "dns-resolver" not in device.ds.get(Datastore.RUNNING)["ietf-system:system"]
