"""An enrolled ``zerotouch device run`` serving NETCONF/TLS keeps asn1crypto unloaded: the
CMS and CSR code (``artifacts/_cms.py``) is imported where a device signs or verifies, not
at start (the idle memory of benchmarks/device_rss_bench.py). The device is the real
command, asked for its loaded modules over stdin, and a real client is served and a
stranger refused while the library stays out."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.device_pki import DevicePki, make_device_pki
from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.device.domain_files import write_domain
from zerotouch_plugin.errors import ZerotouchError
from zerotouch_plugin.services import certfiles
from zerotouch_plugin.services.netconf.client import NetconfClient
from zerotouch_plugin.services.netconf.protocol import BASE_NS

REPO = Path(__file__).resolve().parents[3]

# ``zerotouch device run`` as the command starts it, plus a thread that answers each line
# of stdin with the top-level modules loaded at that moment.
_DEVICE = """
import json, runpy, sys, threading

def report():
    for _ in sys.stdin:
        print("modules " + json.dumps(sorted({m.split(".")[0] for m in list(sys.modules)})),
              flush=True)

threading.Thread(target=report, daemon=True).start()
sys.argv = ["zerotouch", *sys.argv[1:]]
runpy.run_module("zerotouch_plugin", run_name="__main__")
"""


def _enrolled(folder: Path, pki: DevicePki) -> None:
    """A device folder after enrolment: factory IDevID (so the pledge agent runs and only
    waits for the LDevID's renewal) and the domain identity the TLS listener serves."""
    now = datetime.now(UTC)
    maker = certs.make_ca("idle test manufacturer", now=now)
    idevid = certs.issue_idevid(maker, "IDLE-0001", masa_url="https://127.0.0.1:9", now=now)
    folder.mkdir()
    certfiles.write_certs(folder / "idevid.pem", [idevid.cert, maker.cert])
    certfiles.write_key(folder / "idevid.key", idevid.key)
    certfiles.write_certs(folder / "masa-ca.pem", [maker.cert])
    write_domain(folder, key=pki.server.key, chain=[pki.server.cert], anchors=[pki.ca.cert])
    (folder / "device.toml").write_text('registrars = ["https://127.0.0.1:9"]\n')


class _Device:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc

    def line(self, prefix: str) -> str:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
        raise AssertionError(f"device exited {self.proc.wait()} before {prefix!r}")

    def modules(self) -> set[str]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return set(json.loads(self.line("modules ")))


@pytest.fixture
def device(tmp_path: Path, pki: DevicePki) -> Iterator[_Device]:
    folder = tmp_path / "device"
    _enrolled(folder, pki)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    command = [sys.executable, "-c", _DEVICE, "device", "run", "--dir", str(folder)]
    with subprocess.Popen(
        [*command, "--netconf-tls", "127.0.0.1:0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    ) as proc:
        try:
            yield _Device(proc)
        finally:
            proc.terminate()
            proc.wait(30)


@pytest.fixture
def pki() -> DevicePki:
    return make_device_pki()


async def _get(port: int, pki: DevicePki, identity: certs.Identity | None = None) -> bool:
    """Whether a NETCONF ``<get>`` over TLS as ``identity`` (the operator) answers data."""
    context = pki.client_context(identity)
    context.check_hostname = False
    client = await NetconfClient.connect("127.0.0.1", port, context=context)
    try:
        reply = await client.rpc("<get/>")
        return reply.find(f"{{{BASE_NS}}}data") is not None
    finally:
        await client.close()


def test_an_idle_device_serving_netconf_tls_has_not_loaded_asn1crypto(
    device: _Device, pki: DevicePki
) -> None:
    port = int(device.line("listening netconf-tls ").rpartition(":")[2])
    device.line("enrolled IDLE-0001")  # the agent has started and found its identity
    idle = device.modules()
    assert {"cryptography", "yangson", "lxml"} <= idle  # the device is the real one
    assert "asn1crypto" not in idle

    assert asyncio.run(_get(port, pki))  # an operator of the domain is served
    with pytest.raises((ZerotouchError, OSError)):  # client certificates are still checked
        asyncio.run(_get(port, pki, pki.stranger))
    assert "asn1crypto" not in device.modules()
