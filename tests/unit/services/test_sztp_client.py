"""The SZTP device's I/O: scripts run as real processes, images from a real HTTP server,
get-bootstrapping-data over real TLS to an aiohttp RESTCONF server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web

from zerotouch_plugin.artifacts import certs, sztp
from zerotouch_plugin.artifacts.certs import Identity
from zerotouch_plugin.artifacts.sztp import (
    BootImage,
    ConfigurationHandling,
    GetBootstrappingDataInput,
    GetBootstrappingDataOutput,
    OnboardingInformation,
    ProgressType,
    ReportProgressInput,
)
from zerotouch_plugin.config import AgentConfig
from zerotouch_plugin.errors import (
    CertificateError,
    ConfigError,
    NotFound,
    PolicyRefused,
    UntrustedSigner,
    UpstreamUnavailable,
)
from zerotouch_plugin.roles.sztp_device import (
    Done,
    Failed,
    Source,
    SourceKind,
    SztpDevice,
    SztpDeviceConfig,
)
from zerotouch_plugin.services._tls import server_context
from zerotouch_plugin.services.sztp_agent import SztpSettings, ssh_host_keys
from zerotouch_plugin.services.sztp_client import (
    MEDIA_FILES,
    ScriptPolicy,
    SztpClient,
    _restconf_error,
    download_image,
    drive,
    read_media,
    restconf_root,
    run_script,
)

NOW = datetime.now(UTC)
OPS = "/top/restconf/operations/ietf-sztp-bootstrap-server"
XRD = (
    b"<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'><Link rel='restconf' href='%s'/></XRD>"
)


# ---------------------------------------------------------------------------------------------
# scripts


async def test_script_exit_status_and_output(tmp_path: Path) -> None:
    script = b"#!/bin/sh\necho hello from $0\nexit 1\n"
    status, output = await run_script(script, policy=ScriptPolicy(), workdir=tmp_path)
    assert status == 1
    assert "hello from" in output
    assert list(tmp_path.iterdir()) == []  # the script file is gone


async def test_script_without_interpreter_line_needs_a_configured_interpreter(
    tmp_path: Path,
) -> None:
    script = b"echo no shebang\n"
    with pytest.raises(PolicyRefused, match="cannot run"):
        await run_script(script, policy=ScriptPolicy(), workdir=tmp_path)
    status, output = await run_script(
        script, policy=ScriptPolicy(interpreter="/bin/sh"), workdir=tmp_path
    )
    assert (status, output.strip()) == (0, "no shebang")


async def test_script_overrunning_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    marker = tmp_path / "child.pid"
    script = f"#!/bin/sh\nsleep 30 &\necho $! > {marker}\nwait\n".encode()
    started = time.monotonic()
    with pytest.raises(PolicyRefused, match=r"longer than 0\.5 s"):
        await run_script(script, policy=ScriptPolicy(timeout=0.5), workdir=tmp_path)
    assert time.monotonic() - started < 10
    child = int(marker.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child)


async def test_script_that_exits_is_judged_by_its_status_and_its_children_killed(
    tmp_path: Path,
) -> None:
    """RFC 8572 §5.6: a script that exits 0 succeeded, although a child it left running
    holds its output pipe open past the timeout."""
    marker = tmp_path / "child.pid"
    script = f"#!/bin/sh\necho configured\nsleep 30 &\necho $! > {marker}\nexit 0\n".encode()
    status, output = await run_script(script, policy=ScriptPolicy(timeout=3), workdir=tmp_path)
    assert (status, output) == (0, "configured\n")
    child = int(marker.read_text())
    for _ in range(100):
        if not _alive(child):
            break
        await asyncio.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def test_script_output_is_bounded(tmp_path: Path) -> None:
    script = b"#!/bin/sh\nhead -c 1000000 /dev/zero | tr '\\0' x\n"
    status, output = await run_script(
        script, policy=ScriptPolicy(max_output=1000), workdir=tmp_path
    )
    assert status == 0
    assert output == "x" * 1000


async def test_script_runs_with_a_minimal_environment(tmp_path: Path) -> None:
    os.environ["ZT_SECRET_FOR_TEST"] = "leak"
    try:
        status, output = await run_script(
            b"#!/bin/sh\nenv\n", policy=ScriptPolicy(), workdir=tmp_path
        )
    finally:
        del os.environ["ZT_SECRET_FOR_TEST"]
    assert status == 0
    assert "ZT_SECRET_FOR_TEST" not in output
    assert "PATH=" in output


# ---------------------------------------------------------------------------------------------
# host-meta and media


def test_restconf_root_of_host_meta() -> None:
    xrd = XRD % b"/a/b/"
    assert restconf_root(xrd) == "/a/b"
    assert restconf_root(b"<XRD/>") is None
    assert restconf_root(b"not xml") is None
    entity = b"<!DOCTYPE x [<!ENTITY e 'evil'>]><XRD><Link rel='restconf' href='&e;'/></XRD>"
    assert restconf_root(entity) in (None, "")


def test_media_folder_is_read_as_bootstrapping_data(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=r"conveyed-information\.cms"):
        read_media(tmp_path)
    info = OnboardingInformation(
        configuration_handling=ConfigurationHandling.REPLACE, configuration=b"{}"
    )
    (tmp_path / MEDIA_FILES["conveyed-information"]).write_bytes(
        sztp.encode_unsigned_conveyed_information(info)
    )
    output = read_media(tmp_path)
    assert output.ownership_voucher is None
    assert sztp.read_unsigned_conveyed_information(output.conveyed_information) == info


# ---------------------------------------------------------------------------------------------
# images


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _serve(routes: dict[str, Handler], ssl_context: object = None) -> AsyncIterator[str]:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_route("*", path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)  # type: ignore[arg-type]
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    scheme = "https" if ssl_context is not None else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


IMAGE = b"image bytes " * 1000


@pytest.fixture
async def image_server() -> AsyncIterator[str]:
    async def image(request: web.Request) -> web.Response:
        return web.Response(body=IMAGE)

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404)

    async for url in _serve({"/os.bin": image, "/missing.bin": missing}):
        yield url


async def test_image_download_hashes_and_stores(image_server: str, tmp_path: Path) -> None:
    image = BootImage(
        os_name="X", download_uris=(f"{image_server}/missing.bin", f"{image_server}/os.bin")
    )
    digest = await download_image(image, dest=tmp_path / "img", timeout=10)
    assert digest == hashlib.sha256(IMAGE).digest()
    assert (tmp_path / "img").read_bytes() == IMAGE


async def test_image_larger_than_the_bound_is_refused(image_server: str, tmp_path: Path) -> None:
    image = BootImage(os_name="X", download_uris=(f"{image_server}/os.bin",))
    with pytest.raises(UpstreamUnavailable, match="larger than 100 bytes"):
        await download_image(image, dest=tmp_path / "img", timeout=10, max_bytes=100)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


# ---------------------------------------------------------------------------------------------
# the RESTCONF client over real TLS


@dataclass
class Pki:
    vendor: Identity
    idevid: Identity
    server_ca: Identity
    server: Identity
    other_ca: Identity


@pytest.fixture(scope="module")
def pki() -> Pki:
    then = NOW - timedelta(days=1)
    vendor = certs.make_ca("vendor", now=then)
    server_ca = certs.make_ca("bootstrap CA", now=then)
    return Pki(
        vendor=vendor,
        idevid=certs.issue_idevid(vendor, "SN-7", masa_url=None, now=then),
        server_ca=server_ca,
        server=certs.issue_tls_server(server_ca, "bootstrap", hosts=["127.0.0.1"], now=then),
        other_ca=certs.make_ca("other CA", now=then),
    )


@dataclass
class Server:
    url: str
    seen: list[tuple[str, bytes, str | None]]  # path, body, client certificate subject
    headers: list[dict[str, str]]


LARGE = OnboardingInformation(
    configuration_handling=ConfigurationHandling.MERGE,
    configuration=json.dumps({"ietf-system:system": {"contact": "x" * 600_000}}).encode(),
)
UNSIGNED = OnboardingInformation(
    configuration_handling=ConfigurationHandling.MERGE,
    configuration=b'{"ietf-system:system": {}}',
)


async def _bootstrap_server(pki: Pki, *, client_auth: bool) -> AsyncIterator[Server]:
    seen: list[tuple[str, bytes, str | None]] = []
    headers: list[dict[str, str]] = []

    async def host_meta(request: web.Request) -> web.Response:
        return web.Response(body=XRD % b"/top/restconf", content_type="application/xrd+xml")

    async def rpc(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        subject = None if not peer else str(peer.get("subject"))
        seen.append((request.path, await request.read(), subject))
        headers.append(dict(request.headers))
        if request.path.endswith("report-progress"):
            return web.Response(status=204)
        if request.headers.get("X-Unknown") or "SN-404" in (subject or ""):
            body = {
                "ietf-restconf:errors": {
                    "error": [
                        {
                            "error-type": "application",
                            "error-tag": "data-missing",
                            "error-message": "no such device",
                        }
                    ]
                }
            }
            return web.json_response(body, status=404, content_type=sztp.MEDIA_TYPE_JSON)
        info = LARGE if "SN-LARGE" in (subject or "") else UNSIGNED
        output = GetBootstrappingDataOutput(
            conveyed_information=sztp.encode_unsigned_conveyed_information(info)
        )
        encoding = sztp.Encoding.of_media_type(request.headers["Content-Type"])
        return web.Response(body=output.encode(encoding), content_type=encoding.media_type)

    ctx = server_context(
        pki.server,
        client_cas=[pki.vendor.cert] if client_auth else None,
        require_client_cert=client_auth,
    )
    routes: dict[str, Handler] = {
        "/.well-known/host-meta": host_meta,
        f"{OPS}:get-bootstrapping-data": rpc,
        f"{OPS}:report-progress": rpc,
    }
    async for url in _serve(routes, ctx):
        yield Server(url, seen, headers)


@pytest.fixture
async def bootstrap_server(pki: Pki) -> AsyncIterator[Server]:
    async for server in _bootstrap_server(pki, client_auth=True):
        yield server


@pytest.fixture
async def open_server(pki: Pki) -> AsyncIterator[Server]:
    async for server in _bootstrap_server(pki, client_auth=False):
        yield server


async def test_trusted_server_is_verified_and_found_through_host_meta(
    pki: Pki, bootstrap_server: Server
) -> None:
    source = Source(SourceKind.CONFIGURED, bootstrap_server.url, (pki.server_ca.cert,))
    async with SztpClient(pki.idevid, timeout=10) as client:
        output, trusted = await client.get_bootstrapping_data(
            source, GetBootstrappingDataInput(os_name="VendorOS", nonce=b"n" * 16)
        )
        await client.report_progress(
            source, ReportProgressInput(progress_type=ProgressType.BOOTSTRAP_INITIATED)
        )
    assert trusted is True
    assert sztp.read_unsigned_conveyed_information(output.conveyed_information) == UNSIGNED
    path, body, subject = bootstrap_server.seen[0]
    assert path == f"{OPS}:get-bootstrapping-data"
    assert json.loads(body)["ietf-sztp-bootstrap-server:input"]["os-name"] == "VendorOS"
    assert subject is not None and "SN-7" in subject  # the IDevID authenticated the device
    assert bootstrap_server.seen[1][0] == f"{OPS}:report-progress"


async def test_xml_encoding_and_http_basic_beside_the_idevid(
    pki: Pki, bootstrap_server: Server
) -> None:
    source = Source(SourceKind.CONFIGURED, bootstrap_server.url, (pki.server_ca.cert,))
    async with SztpClient(
        pki.idevid, timeout=10, encoding=sztp.Encoding.XML, basic_auth=("dev", "s3cret")
    ) as client:
        output, _ = await client.get_bootstrapping_data(
            source, GetBootstrappingDataInput(os_name="VendorOS")
        )
    assert sztp.read_unsigned_conveyed_information(output.conveyed_information) == UNSIGNED
    _, body, subject = bootstrap_server.seen[0]
    assert body.startswith(b"<input") and b"<os-name>VendorOS</os-name>" in body
    sent = bootstrap_server.headers[0]
    assert sent["Content-Type"] == sztp.MEDIA_TYPE_XML
    assert sent["Authorization"] == "Basic " + base64.b64encode(b"dev:s3cret").decode()
    assert subject is not None and "SN-7" in subject


async def test_no_password_goes_to_a_server_the_device_cannot_verify(
    pki: Pki, bootstrap_server: Server
) -> None:
    untrusted = Source(SourceKind.CONFIGURED, bootstrap_server.url)
    async with SztpClient(pki.idevid, timeout=10, basic_auth=("dev", "s3cret")) as client:
        _, trusted = await client.get_bootstrapping_data(untrusted, GetBootstrappingDataInput())
    assert trusted is False
    assert all("Authorization" not in sent for sent in bootstrap_server.headers)


async def test_a_body_of_many_chunks_is_read_whole(pki: Pki, bootstrap_server: Server) -> None:
    source = Source(SourceKind.CONFIGURED, bootstrap_server.url, (pki.server_ca.cert,))
    then = NOW - timedelta(days=1)
    large = certs.issue_idevid(pki.vendor, "SN-LARGE", masa_url=None, now=then)  # gets LARGE
    async with SztpClient(large, timeout=10) as client:
        output, _ = await client.get_bootstrapping_data(source, GetBootstrappingDataInput())
    assert sztp.read_unsigned_conveyed_information(output.conveyed_information) == LARGE


async def test_server_failing_its_trust_anchor_is_a_certificate_error(
    pki: Pki, bootstrap_server: Server
) -> None:
    source = Source(SourceKind.CONFIGURED, bootstrap_server.url, (pki.other_ca.cert,))
    async with SztpClient(pki.idevid, timeout=10) as client:
        with pytest.raises(CertificateError, match="does not chain"):
            await client.get_bootstrapping_data(source, GetBootstrappingDataInput())
    assert bootstrap_server.seen == []


async def test_restconf_error_body_is_read(pki: Pki, bootstrap_server: Server) -> None:
    then = NOW - timedelta(days=1)
    unknown = certs.issue_idevid(pki.vendor, "SN-404", masa_url=None, now=then)
    source = Source(SourceKind.CONFIGURED, bootstrap_server.url)
    async with SztpClient(unknown, timeout=10) as client:
        with pytest.raises(NotFound, match=r"404 \(data-missing: no such device\)"):
            await client.get_bootstrapping_data(source, GetBootstrappingDataInput())


@pytest.mark.parametrize("depth", [65, 2_000])
def test_a_deep_error_document_is_shown_as_an_excerpt(depth: int) -> None:
    """A server's error body is read without trust: nesting that 3.11's parser stops with a
    RecursionError (2,000 levels) once escaped the client as one."""
    body = b'{"ietf-restconf:errors": ' + b"[" * depth + b"]" * depth + b"}"
    assert _restconf_error(body, "application/yang-data+json") == body[:200].decode()


async def test_unreachable_server_is_upstream_unavailable(pki: Pki) -> None:
    source = Source(SourceKind.CONFIGURED, "https://127.0.0.1:1")
    async with SztpClient(pki.idevid, timeout=5) as client:
        with pytest.raises(UpstreamUnavailable, match="unreachable"):
            await client.get_bootstrapping_data(source, GetBootstrappingDataInput())


class _Onboarder:
    def __init__(self) -> None:
        self.applied: list[bytes] = []

    async def apply_configuration(
        self, configuration: bytes, handling: ConfigurationHandling
    ) -> None:
        self.applied.append(configuration)

    async def install_image(self, path: Path, image: BootImage, sha256: bytes) -> None:
        raise AssertionError("no image in these tests")


def _machine(pki: Pki, *sources: Source) -> SztpDevice:
    config = SztpDeviceConfig(
        serial="SN-7", idevid=pki.idevid.cert, manufacturer_anchors=(pki.vendor.cert,)
    )
    return SztpDevice(config, sources, random_bytes=os.urandom(32))


async def test_server_without_client_authentication_gets_no_trust(
    pki: Pki, open_server: Server, tmp_path: Path
) -> None:
    """A bootstrap server that does not authenticate the device, reached without a trust
    anchor, sends unsigned data: the device applies nothing (RFC 8572 §5.3)."""
    onboarder = _Onboarder()
    machine = _machine(pki, Source(SourceKind.CONFIGURED, open_server.url))
    async with SztpClient(pki.idevid, timeout=10) as client:
        result = await drive(
            machine, client, onboarder, scripts=ScriptPolicy(), workdir=tmp_path, timeout=10
        )
    assert isinstance(result, Failed)
    assert isinstance(result.errors[0][1], UntrustedSigner)
    assert onboarder.applied == []
    assert [path for path, _, _ in open_server.seen] == [f"{OPS}:get-bootstrapping-data"]
    assert open_server.seen[0][2] is None  # the server never asked for the IDevID


async def test_drive_applies_trusted_unsigned_data_and_reports(
    pki: Pki, bootstrap_server: Server, tmp_path: Path
) -> None:
    onboarder = _Onboarder()
    source = Source(SourceKind.CONFIGURED, bootstrap_server.url, (pki.server_ca.cert,))
    seen: list[str] = []
    async with SztpClient(pki.idevid, timeout=10) as client:
        result = await drive(
            _machine(pki, source),
            client,
            onboarder,
            scripts=ScriptPolicy(),
            workdir=tmp_path,
            timeout=10,
            observe=lambda action: seen.append(type(action).__name__),
        )
    assert isinstance(result, Done)
    assert onboarder.applied == [b'{"ietf-system:system": {}}']
    reports = [
        json.loads(body)["ietf-sztp-bootstrap-server:input"]["progress-type"]
        for path, body, _ in bootstrap_server.seen
        if path.endswith("report-progress")
    ]
    # the server asked for no reporting-level: minimal (RFC 8572 §7.2)
    assert reports == ["bootstrap-initiated", "bootstrap-complete"]
    assert seen[-1] == "Done"


# ---------------------------------------------------------------------------------------------
# the agent's configuration


def test_sztp_keys_of_the_agent_configuration(pki: Pki, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_bytes(certs.certs_pem([pki.server_ca.cert]))
    config = AgentConfig(
        bootstrap_servers=("https://127.0.0.1:8443",),
        bootstrap_server_ca=(str(ca),),
        bootstrap_media=str(tmp_path),
        os_name="VendorOS",
    )
    assert config.sztp and not AgentConfig().sztp
    dhcp = SztpSettings.of(AgentConfig(bootstrap_dhcp="eth0", bootstrap_dhcp_lease="/l"))
    assert (dhcp.dhcp_interface, dhcp.dhcp_lease) == ("eth0", Path("/l"))
    assert dhcp.sources(("https://from-dhcp",))[0].kind is SourceKind.DHCP
    settings = SztpSettings.of(config)
    assert settings.server_anchors == (pki.server_ca.cert,)
    assert [s.kind for s in settings.sources()] == [SourceKind.CONFIGURED, SourceKind.MEDIA]
    with pytest.raises(ValueError, match="https"):
        AgentConfig(bootstrap_servers=("http://insecure",))
    with pytest.raises(TypeError, match="os_name"):
        AgentConfig(os_name="")  # type: ignore[arg-type]
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    creds = tmp_path / "creds"
    creds.write_text("dev:pass:word\n")
    auth = SztpSettings.of(
        AgentConfig(bootstrap_servers=("https://h",), bootstrap_credentials=str(creds))
    )
    assert auth.basic_auth == ("dev", "pass:word")
    creds.write_text("no colon\n")
    with pytest.raises(ConfigError, match="USER:PASSWORD"):
        SztpSettings.of(
            AgentConfig(bootstrap_servers=("https://h",), bootstrap_credentials=str(creds))
        )
    with pytest.raises(ValueError, match="json or xml"):
        AgentConfig(bootstrap_encoding="cbor")
    with pytest.raises(ConfigError, match=r"bootstrap_server_ca .*empty\.pem"):
        SztpSettings.of(
            AgentConfig(bootstrap_servers=("https://h",), bootstrap_server_ca=(str(empty),))
        )


def test_ssh_host_keys_as_report_progress_carries_them(tmp_path: Path) -> None:
    keys = ssh_host_keys(tmp_path)  # created as the NETCONF/SSH listener would
    assert keys and all(k.key_data.startswith(len(k.algorithm).to_bytes(4, "big")) for k in keys)
    report = ReportProgressInput(progress_type=ProgressType.BOOTSTRAP_COMPLETE, ssh_host_keys=keys)
    parsed = ReportProgressInput.parse(report.encode(), sztp.Encoding.JSON)
    assert parsed.ssh_host_keys == keys
