"""RESTCONF driven by curl (a real, independent HTTPS client) with a client certificate."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from tests.support.device_pki import make_device_pki
from zerotouch_plugin.artifacts.certs import (
    fingerprint,
    issue_client,
    issue_intermediate_ca,
    issue_tls_server,
    make_ca,
)
from zerotouch_plugin.config import CertToName
from zerotouch_plugin.device.datastore import Datastore, Datastores
from zerotouch_plugin.device.schema import DeviceSchema, load_device_schema
from zerotouch_plugin.services._tls import server_context
from zerotouch_plugin.services.certfiles import write_certs, write_key
from zerotouch_plugin.services.netconf.certmap import map_certificate
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
        include_headers: bool = False,
        accept: str | None = None,
        extra: tuple[str, ...] = (),
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
        if include_headers:
            args.append("-i")
        args += ["--cacert", str(self.files["ca"])]
        if as_who == "client":
            args += ["--cert", str(self.files["cert"]), "--key", str(self.files["key"])]
        elif as_who != "nobody":
            args += ["--cert", str(self.files[f"{as_who}-cert"])]
            args += ["--key", str(self.files[f"{as_who}-key"])]
        args += ["-H", f"Accept: {accept or media}"]
        if body is not None:
            args += ["-H", f"Content-Type: {media}", "--data-binary", body]
        args += extra
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


async def test_conditional_reads_and_writes_with_curls_own_etag_handling(
    server: Server, tmp_path: Path
) -> None:
    """RFC 8040 §3.4.1, RFC 9110 §13: curl keeps the entity-tag (--etag-save) and sends it
    back (--etag-compare, If-None-Match): 304 while the configuration is unchanged, 200
    after a change; -z (If-Modified-Since) likewise. A read with state is always whole (its
    state is not covered by the tag). If-None-Match: * on a write creates only."""
    etag = tmp_path / "etag"
    config = "/restconf/data/ietf-system:system?content=config"

    async def read(path: str, *extra: str) -> Reply:
        return await server.curl("GET", path, extra=extra)

    first = await read(config, "--etag-save", str(etag))
    assert (first.code, json.loads(first.body)["ietf-system:system"]["hostname"]) == (
        200,
        "curl-dev",
    )
    assert etag.read_text().strip().startswith('"')
    again = await read(config, "--etag-compare", str(etag))
    assert (again.code, again.body) == (304, b"")
    with_state = await read("/restconf/data/ietf-system:system", "--etag-compare", str(etag))
    assert with_state.code == 200
    put = json.dumps({"ietf-system:hostname": "r2"})
    hostname = "/restconf/data/ietf-system:system/hostname"
    assert (await server.curl("PUT", hostname, body=put)).code == 204
    changed = await read(config, "--etag-compare", str(etag))
    assert (changed.code, json.loads(changed.body)["ietf-system:system"]["hostname"]) == (200, "r2")
    headers = await server.curl("GET", config, include_headers=True)
    modified = next(
        line.split(b":", 1)[1].strip().decode()
        for line in headers.body.splitlines()
        if line.lower().startswith(b"last-modified:")
    )
    assert (await read(config, "-z", modified)).code == 304
    assert (await read(config, "-z", "Thu, 01 Jan 1970 00:00:00 GMT")).code == 200
    create_only = ("-H", "If-None-Match: *")
    refused = await server.curl("PUT", hostname, body=put, extra=create_only)
    assert refused.code == 412
    assert json.loads(refused.body)["ietf-restconf:errors"]["error"][0]["error-tag"] == (
        "operation-failed"
    )
    contact = json.dumps({"ietf-system:contact": "noc"})
    path = "/restconf/data/ietf-system:system/contact"
    assert (await server.curl("PUT", path, body=contact, extra=create_only)).code == 201
    assert server.ds.get(Datastore.RUNNING)["ietf-system:system"] == {
        "hostname": "r2",
        "contact": "noc",
    }


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


@pytest.mark.parametrize(
    "path",
    [
        "/restconf/data/ietf-system:system/%00%01%0A",  # control characters in a data path
        "/restconf/data/ietf-system:system%0A%0Dforged",  # a line break in a data path
        "/restconf/nowhere%00%0A",  # a path no route serves
        "/restconf/data/ietf-interfaces:interfaces/interface=%01%00",  # in a list key
    ],
)
async def test_errors_about_paths_with_control_characters_stay_well_formed(
    server: Server, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever a client puts in the path, the XML error document parses and the log line is
    one line: the path is shown as sent, percent-encoded."""
    reply = await server.curl("GET", path, media=XML)
    assert reply.code in (400, 404), reply
    root = etree.fromstring(reply.body)
    assert root.tag == "{urn:ietf:params:xml:ns:yang:ietf-restconf}errors"
    message = root.findtext(".//{urn:ietf:params:xml:ns:yang:ietf-restconf}error-message")
    assert message and "\n" not in message and "\x00" not in message, message
    reply = await server.curl("GET", path)
    error = json.loads(reply.body)["ietf-restconf:errors"]["error"][0]
    assert error["error-tag"] in ("invalid-value", "data-missing"), error
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refused and all("\n" not in line and "\r" not in line for line in refused), refused


async def test_an_error_path_naming_a_control_character_stays_well_formed_xml(
    server: Server,
) -> None:
    """A JSON member name with U+0001 ends up in error-path; XML 1.0 cannot carry it, so the
    XML error document shows U+FFFD there instead of becoming unparsable."""
    body = json.dumps({"ietf-system:system": {"host\u0001name": "x"}})
    reply = await server.curl("PUT", "/restconf/data/ietf-system:system", body=body, accept=XML)
    assert reply.code == 400, reply
    path = etree.fromstring(reply.body).findtext(
        ".//{urn:ietf:params:xml:ns:yang:ietf-restconf}error-path"
    )
    assert path == "/ietf-system:system/ietf-system:host\ufffdname", path  # XML: each name prefixed


@pytest.mark.parametrize("who", ["nobody", "stranger"])
async def test_tls_refuses_clients_without_domain_certificate(server: Server, who: str) -> None:
    reply = await server.curl("GET", "/restconf/data", as_who=who)
    assert reply.exit_status != 0  # handshake or first read fails: no HTTP exchange
    assert reply.code == 0


async def test_options_and_restconf_monitoring(server: Server) -> None:
    """Issue 9 item 15: Allow and Accept-Patch (RFC 8040 §4.1, §4.6.1), restconf-state
    (§9.1) with the capabilities the server has."""
    reply = await server.curl("OPTIONS", "/restconf/data/ietf-system:system", include_headers=True)
    assert reply.code == 200
    head = reply.body.decode()
    assert "Allow: GET, HEAD, PUT, PATCH, POST, DELETE, OPTIONS" in head
    assert "Accept-Patch: application/yang-data+json, application/yang-data+xml" in head
    reply = await server.curl("GET", "/restconf/data/ietf-restconf-monitoring:restconf-state")
    assert reply.code == 200
    caps = json.loads(reply.body)["ietf-restconf-monitoring:restconf-state"]["capabilities"]
    assert (
        "urn:ietf:params:restconf:capability:defaults:1.0?basic-mode=explicit" in caps["capability"]
    )
    reply = await server.curl("GET", "/restconf/data", as_who="nobody")
    assert reply.code == 0  # refused in the handshake (and logged: tests/unit/device)


@pytest.fixture(scope="module")
def chain_pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Path]]:
    """root -> intermediate -> client; the client's PEM holds its intermediate (curl sends
    it in the handshake) and the server trusts the root only."""
    now = datetime.now(UTC) - timedelta(minutes=5)
    root = make_ca("Curl Root", now=now)
    intermediate = issue_intermediate_ca(root, "Curl Intermediate", now=now)
    client = issue_client(intermediate, "dana", now=now)
    folder = tmp_path_factory.mktemp("chain")
    files = {
        "ca": folder / "ca.pem",
        "cert": folder / "c.pem",
        "key": folder / "c.key",
    }
    write_certs(files["ca"], [root.cert])
    write_certs(files["cert"], [client.cert, intermediate.cert])
    write_key(files["key"], client.key)
    ids = {
        "root": root,
        "intermediate": intermediate,
        "unrelated": make_ca("Curl Unrelated", now=now),
        "server": issue_tls_server(root, "device", hosts=["127.0.0.1"], now=now),
    }
    return ids, files


@pytest.mark.parametrize(
    ("named", "status"), [("intermediate", 200), ("root", 200), ("unrelated", 401)]
)
async def test_cert_to_name_rule_may_name_any_ca_of_the_chain(
    schema: DeviceSchema,
    tmp_path: Path,
    chain_pki: tuple[dict[str, Any], dict[str, Path]],
    named: str,
    status: int,
) -> None:
    """Issue 9 item 16 (RFC 7589 §7, RFC 7407): a rule naming the intermediate or the root of
    the chain curl presents maps the client; one naming an unrelated CA maps nothing."""
    ids, files = chain_pki
    rules = [CertToName(fingerprint(ids[named].cert), "specified", "nms")]
    ds = Datastores(schema, tmp_path)
    app = restconf_app(
        ds,
        client_name=lambda cert, chain: map_certificate(cert, rules, [ids["root"].cert], chain),
    )
    context = server_context(ids["server"], client_cas=[ids["root"].cert], require_client_cert=True)
    runner = await start_restconf(app, host="127.0.0.1", port=0, ssl_context=context)
    try:
        server = Server(f"https://127.0.0.1:{bound_port(runner)}", files, ds)
        reply = await server.curl("GET", "/restconf/data", include_headers=True)
        assert reply.code == status, reply.body
        if status == 401:
            assert b"WWW-Authenticate: TLS-Client-Certificate" in reply.body
    finally:
        await runner.cleanup()
