"""The bootstrap server obtains ownership vouchers from a real MASA process (``zerotouch masa
serve``, claims policy) as the owner's registrar: nonceless with expires-on, stored and
reused; a device's nonce is tried first and, refused by a MASA that only vouches for pledges
it heard from, answered with the nonceless voucher."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from tests.support.processes import ServerProcess, free_port, run_cli, server
from zerotouch_plugin.artifacts import certs, sztp
from zerotouch_plugin.artifacts.voucher import parse_signed_voucher
from zerotouch_plugin.services._tls import client_context
from zerotouch_plugin.services.certfiles import load_identity, write_certs, write_key

GBD = "/restconf/operations/ietf-sztp-bootstrap-server:get-bootstrapping-data"


@dataclass
class World:
    root: Path
    vendor: Path
    folder: Path
    sztp: ServerProcess


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("sztp-masa")
    vendor, folder = root / "vendor", root / "server"
    port = free_port()
    run_cli("vendor", "init", "--dir", vendor, "--masa-url", f"https://127.0.0.1:{port}")
    (vendor / "masa.toml").write_text('policy = "claims"\nnonceless_allowed = true\n')
    for serial in ("SN-10", "SN-11"):
        run_cli("vendor", "idevid", "--dir", vendor, "--serial", serial, "--out", root / serial)
    run_cli("sztp", "init", "--dir", folder, "--manufacturer-ca", vendor / "ca.pem",
            "--masa-ca", vendor / "ca.pem")  # fmt: skip
    run_cli("sztp", "response", "set", "--dir", folder, "--redirect", "next.example:8443")
    run_cli("masa", "claim", "--dir", vendor, "--serial", "SN-10",
            "--domain-ca", folder / "owner-ca.pem")  # fmt: skip
    with (
        server("masa", "masa", "serve", "--dir", vendor, "--listen", f"127.0.0.1:{port}"),
        server("sztp", "sztp", "serve", "--dir", folder, "--listen", "127.0.0.1:0") as proc,
    ):
        yield World(root, vendor, folder, proc)


async def _post(world: World, serial: str, body: dict[str, object]) -> tuple[int, bytes]:
    status, answer, _ = await _post_full(world, serial, body)
    return status, answer


async def _post_full(
    world: World, serial: str, body: dict[str, object]
) -> tuple[int, bytes, dict[str, str]]:
    idevid = load_identity(world.root / serial / "idevid.pem", world.root / serial / "idevid.key")
    anchor = certs.load_certs((world.folder / "sztp-ca.pem").read_bytes())
    ctx = client_context(idevid, trust=anchor)
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session,
        session.post(
            world.sztp.url + GBD,
            data=json.dumps({"ietf-sztp-bootstrap-server:input": body}).encode(),
            headers={"Content-Type": "application/yang-data+json"},
        ) as resp,
    ):
        return resp.status, await resp.read(), dict(resp.headers)


def _voucher(world: World, answer: bytes) -> tuple[bytes, object]:
    output = sztp.GetBootstrappingDataOutput.parse(answer, sztp.Encoding.JSON)
    assert output.ownership_voucher is not None
    anchors = certs.load_certs((world.vendor / "ca.pem").read_bytes())
    voucher, _ = parse_signed_voucher(
        output.ownership_voucher, trust_anchors=anchors, now=datetime.now(UTC)
    )
    return output.ownership_voucher, voucher


async def test_nonceless_voucher_from_the_masa_is_stored_and_reused(world: World) -> None:
    status, answer = await _post(world, "SN-10", {"signed-data-preferred": [None]})
    assert status == 200, answer
    der, voucher = _voucher(world, answer)
    assert voucher.serial_number == "SN-10"  # type: ignore[attr-defined]
    assert voucher.nonce is None and voucher.expires_on is not None  # type: ignore[attr-defined]
    owner_ca = certs.load_certs((world.folder / "owner-ca.pem").read_bytes())[0]
    assert voucher.pinned_domain_certificate() == owner_ca  # type: ignore[attr-defined]
    # the second request gets the stored voucher, byte for byte
    status, again = await _post(world, "SN-10", {"signed-data-preferred": [None]})
    assert status == 200, again
    assert _voucher(world, again)[0] == der
    devices = json.loads(run_cli("sztp", "devices", "--dir", world.folder, "--json").stdout)
    assert [d["voucher"] for d in devices if d["serial"] == "SN-10"] == [True]


async def test_nonce_refused_by_the_masa_falls_back_to_nonceless(world: World) -> None:
    nonce = base64.b64encode(b"n" * 16).decode()
    status, answer = await _post(world, "SN-10", {"nonce": nonce})
    assert status == 200, answer
    _, voucher = _voucher(world, answer)
    assert voucher.nonce is None  # type: ignore[attr-defined]


async def test_device_not_claimed_for_the_owner_gets_no_data(world: World) -> None:
    status, answer = await _post(world, "SN-11", {"signed-data-preferred": [None]})
    assert status == 403, answer
    error = json.loads(answer)["ietf-restconf:errors"]["error"][0]
    assert error["error-tag"] == "access-denied"
    assert "claim" in error["error-message"]


def _device_of_an_unreachable_masa(world: World, serial: str) -> Path:
    """An IDevID naming a MASA URL where nothing listens; its folder."""
    ca = load_identity(world.vendor / "ca.pem", world.vendor / "ca.key")
    device = world.root / serial
    device.mkdir()
    idevid = certs.issue_idevid(
        ca, serial, masa_url=f"https://127.0.0.1:{free_port()}", now=datetime.now(UTC)
    )
    write_certs(device / "idevid.pem", [idevid.cert, ca.cert])
    write_key(device / "idevid.key", idevid.key)
    return device


async def test_unreachable_masa_is_a_503_with_retry_after(world: World) -> None:
    _device_of_an_unreachable_masa(world, "SN-12")
    status, answer, headers = await _post_full(world, "SN-12", {})
    assert status == 503, answer
    assert int(headers["Retry-After"]) > 0
    error = json.loads(answer)["ietf-restconf:errors"]["error"][0]
    assert "unreachable" in error["error-message"]


async def test_unreachable_masa_leaves_a_device_with_a_nonce_its_stored_voucher(
    world: World,
) -> None:
    """The server holds a valid voucher: a MASA that cannot bind one to the device's nonce,
    refusing or unreachable, does not keep the device from it (docs/sztp.md)."""
    device = _device_of_an_unreachable_masa(world, "SN-13")
    owner_ca = certs.load_certs((world.folder / "owner-ca.pem").read_bytes())[0]
    payload = {
        "ietf-voucher:voucher": {
            "created-on": "2026-01-01T00:00:00Z",
            "expires-on": "2099-01-01T00:00:00Z",
            "assertion": "verified",
            "serial-number": "SN-13",
            "pinned-domain-cert": base64.b64encode(certs.der(owner_ca)).decode(),
        }
    }
    (device / "v.json").write_text(json.dumps(payload))
    run_cli("voucher", "sign", "--payload", device / "v.json", "--cert",
            world.vendor / "masa-signer.pem", "--key", world.vendor / "masa-signer.key",
            "--out", device / "v.cms")  # fmt: skip
    run_cli(
        "sztp", "devices", "--dir", world.folder, "--set", "SN-13", "--voucher", device / "v.cms"
    )
    nonce = base64.b64encode(b"n" * 16).decode()
    status, answer = await _post(world, "SN-13", {"nonce": nonce})
    assert status == 200, answer
    der, voucher = _voucher(world, answer)
    assert der == (device / "v.cms").read_bytes()
    assert voucher.nonce is None  # type: ignore[attr-defined]
