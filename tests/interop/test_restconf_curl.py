"""RESTCONF driven by curl (a real, independent HTTPS client) with a client certificate."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree

from tests.support.device_pki import make_device_pki
from zerotouch_plugin.device.datastore import Datastore, Datastores
from zerotouch_plugin.device.schema import DeviceSchema, load_device_schema
from zerotouch_plugin.services.restconf import bound_port, restconf_app, start_restconf

CURL = shutil.which("curl")
pytestmark = pytest.mark.skipif(CURL is None, reason="curl missing: run scripts/setup-system.sh")

JSON = "application/yang-data+json"
XML = "application/yang-data+xml"
SYSTEM_NS = "urn:ietf:params:xml:ns:yang:ietf-system"


@dataclass
class Reply:
    code: int  # 0: no HTTP response at all
    body: bytes
    exit_status: int


@dataclass
class Server:
    base: str
    files: dict[str, Path]
    ds: Datastores

    async def curl(
        self,
        method: str,
        path: str,
        *,
        body: str | None = None,
        media: str = JSON,
        as_who: str = "client",
    ) -> Reply:
        args = [
            str(CURL),
            "-sS",
            "-X",
            method,
            "--max-time",
            "10",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
        ]
        args += ["--cacert", str(self.files["ca"])]
        if as_who == "client":
            args += ["--cert", str(self.files["cert"]), "--key", str(self.files["key"])]
        elif as_who == "stranger":
            args += ["--cert", str(self.files["stranger-cert"])]
            args += ["--key", str(self.files["stranger-key"])]
        args += ["-H", f"Accept: {media}"]
        if body is not None:
            args += ["-H", f"Content-Type: {media}", "--data-binary", body]
        proc = await asyncio.create_subprocess_exec(
            *args, self.base + path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate()
        payload, _, code = out.rpartition(b"\n")
        return Reply(int(code or b"0"), payload, proc.returncode or 0)


@pytest.fixture(scope="module")
def schema() -> DeviceSchema:
    return load_device_schema()


@pytest.fixture
async def server(schema: DeviceSchema, tmp_path: Path) -> AsyncIterator[Server]:
    pki = make_device_pki()
    files = pki.write(tmp_path / "pki")
    startup = {"ietf-system:system": {"hostname": "curl-dev"}}
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "startup.json").write_text(json.dumps(startup))
    ds = Datastores(schema, tmp_path / "dev")
    runner = await start_restconf(
        restconf_app(ds), host="127.0.0.1", port=0, ssl_context=pki.server_context()
    )
    yield Server(f"https://127.0.0.1:{bound_port(runner)}", files, ds)
    await runner.cleanup()


async def test_get_json_and_xml(server: Server) -> None:
    reply = await server.curl("GET", "/restconf/data/ietf-system:system")
    assert reply.code == 200
    assert json.loads(reply.body) == {"ietf-system:system": {"hostname": "curl-dev"}}
    reply = await server.curl("GET", "/restconf/data/ietf-system:system/hostname", media=XML)
    assert reply.code == 200
    leaf = etree.fromstring(reply.body)
    assert leaf.tag == f"{{{SYSTEM_NS}}}hostname"
    assert leaf.text == "curl-dev"


async def test_write_cycle(server: Server) -> None:
    put = json.dumps({"ietf-system:system": {"hostname": "r1", "location": "rack 4"}})
    assert (await server.curl("PUT", "/restconf/data/ietf-system:system", body=put)).code == 204
    patch = f'<system xmlns="{SYSTEM_NS}"><contact>noc</contact></system>'
    reply = await server.curl("PATCH", "/restconf/data/ietf-system:system", body=patch, media=XML)
    assert reply.code == 204
    entry = json.dumps(
        {"ietf-interfaces:interface": [{"name": "ge-0/0/1", "type": "iana-if-type:ethernetCsmacd"}]}
    )
    reply = await server.curl("POST", "/restconf/data", body=json.dumps(
        {"ietf-interfaces:interfaces": {}}
    ))  # fmt: skip
    assert reply.code == 201
    reply = await server.curl("POST", "/restconf/data/ietf-interfaces:interfaces", body=entry)
    assert reply.code == 201
    running = server.ds.get(Datastore.RUNNING)
    assert running["ietf-system:system"] == {
        "hostname": "r1",
        "location": "rack 4",
        "contact": "noc",
    }
    assert running["ietf-interfaces:interfaces"]["interface"][0]["name"] == "ge-0/0/1"
    reply = await server.curl(
        "DELETE", "/restconf/data/ietf-interfaces:interfaces/interface=ge-0%2F0%2F1"
    )
    assert reply.code == 204
    assert "ietf-interfaces:interfaces" not in server.ds.get(Datastore.RUNNING)


async def test_errors_are_restconf_documents(server: Server) -> None:
    bad = json.dumps({"ietf-system:system": {"hostname": "x" * 300}})  # hostname length 1..253
    reply = await server.curl("PUT", "/restconf/data/ietf-system:system", body=bad)
    assert reply.code == 400
    error = json.loads(reply.body)["ietf-restconf:errors"]["error"][0]
    assert error["error-tag"] == "invalid-value"
    assert error["error-type"] == "application"
    reply = await server.curl("GET", "/restconf/data/ietf-system:system/contact", media=XML)
    assert reply.code == 404
    root = etree.fromstring(reply.body)
    assert root.tag == "{urn:ietf:params:xml:ns:yang:ietf-restconf}errors"
    assert server.ds.get(Datastore.RUNNING) == {"ietf-system:system": {"hostname": "curl-dev"}}


@pytest.mark.parametrize("who", ["nobody", "stranger"])
async def test_tls_refuses_clients_without_domain_certificate(server: Server, who: str) -> None:
    reply = await server.curl("GET", "/restconf/data", as_who=who)
    assert reply.exit_status != 0  # handshake or first read fails: no HTTP exchange
    assert reply.code == 0
