"""What an enrolled, idle ``zerotouch device run`` has not loaded (its idle memory,
benchmarks/device_rss_bench.py): asn1crypto, as the CMS and CSR code (``artifacts/_cms.py``)
is imported where a device signs or verifies; asyncssh, as the NETCONF/SSH port is bound at
start and its server loaded with the first client. The device is the real command, asked
for its loaded modules over stdin; real clients are served and refused as before, and a
server that cannot load with its first client ends the device with the cause."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncssh
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519

from tests.support.device_pki import DevicePki, make_device_pki
from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.config import hash_password
from zerotouch_plugin.device.domain_files import write_domain
from zerotouch_plugin.errors import ZerotouchError
from zerotouch_plugin.services import certfiles
from zerotouch_plugin.services.netconf.client import NetconfClient
from zerotouch_plugin.services.netconf.protocol import BASE_NS

REPO = Path(__file__).resolve().parents[3]

# ``zerotouch device run`` as the command starts it, plus a thread that answers each line
# of stdin with the top-level modules loaded at that moment ("imports": with the thread that
# first imported each of the servers' libraries).
_DEVICE = """
import json, runpy, sys, threading

importers = {}

class Watch:
    def find_spec(self, name, path=None, target=None):
        if name in ("asyncssh", "aiohttp"):
            importers.setdefault(name, threading.current_thread().name)
        return None

sys.meta_path.insert(0, Watch())

def report():
    for line in sys.stdin:
        if line.strip() == "imports":
            print("imports " + json.dumps(importers), flush=True)
            continue
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
    user = f'[[users]]\nname = "admin"\npassword = "{hash_password("secret", salt=b"s" * 16)}"\n'
    (folder / "device.toml").write_text(f'registrars = ["https://127.0.0.1:9"]\n{user}')


class _Device:
    def __init__(self, proc: subprocess.Popen[str], listeners: int, log: Path) -> None:
        self.proc = proc
        self.log = log  # its stderr
        listening = (self.line("listening ").split() for _ in range(listeners))
        self.ports = {name: int(address.rpartition(":")[2]) for name, address in listening}
        self.line("enrolled IDLE-0001")  # the agent has started and found its identity

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

    def importers(self) -> dict[str, str]:
        """Each server library loaded so far -> the name of the thread that imported it."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("imports\n")
        self.proc.stdin.flush()
        found: dict[str, str] = json.loads(self.line("imports "))
        return found


@pytest.fixture
def folder(tmp_path: Path, pki: DevicePki) -> Path:
    _enrolled(tmp_path / "device", pki)
    return tmp_path / "device"


TLS_ONLY = ("--netconf-tls",)
TLS_AND_SSH = ("--netconf-tls", "--netconf-ssh")


@pytest.fixture
def device(folder: Path, request: pytest.FixtureRequest) -> Iterator[_Device]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    command = [sys.executable, "-c", _DEVICE, "device", "run", "--dir", str(folder)]
    listeners = [arg for option in request.param for arg in (option, "127.0.0.1:0")]
    log = folder.parent / "device.log"
    with (
        log.open("w") as stderr,
        subprocess.Popen(
            [*command, *listeners],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=REPO,
            env=env,
        ) as proc,
    ):
        try:
            yield _Device(proc, len(request.param), log)
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


async def _ssh_hello(port: int, password: str) -> tuple[bytes, bytes]:
    """The device's NETCONF ``<hello>`` over SSH, and the host key it presented."""
    login = {"username": "admin", "password": password, "preferred_auth": "password"}
    async with asyncssh.connect(
        "127.0.0.1", port, known_hosts=None, client_keys=None, **login
    ) as conn:
        host_key = conn.get_server_host_key()
        assert host_key is not None
        writer, reader, _ = await conn.open_session(subsystem="netconf", encoding=None)
        hello = await reader.readuntil(b"]]>]]>")
        writer.close()
    return hello, host_key.public_data


@pytest.mark.parametrize("device", [TLS_ONLY, TLS_AND_SSH], indirect=True, ids=str)
def test_an_idle_device_has_loaded_neither_asn1crypto_nor_asyncssh(
    device: _Device, pki: DevicePki
) -> None:
    idle = device.modules()
    assert {"cryptography", "yangson", "lxml"} <= idle  # the device is the real one
    assert not {"asn1crypto", "asyncssh"} & idle

    tls = device.ports["netconf-tls"]
    assert asyncio.run(_get(tls, pki))  # an operator of the domain is served
    with pytest.raises((ZerotouchError, OSError)):  # client certificates are still checked
        asyncio.run(_get(tls, pki, pki.stranger))
    assert not {"asn1crypto", "asyncssh"} & device.modules()


@pytest.mark.parametrize("device", [TLS_AND_SSH], indirect=True, ids=str)
def test_netconf_ssh_loads_asyncssh_with_its_first_client(device: _Device, folder: Path) -> None:
    port = device.ports["netconf-ssh"]
    keys = {path.name for path in folder.glob("ssh_host_*_key")}
    assert keys == {"ssh_host_ed25519_key", "ssh_host_ecdsa_key"}  # made at start
    assert "asyncssh" not in device.modules()

    with pytest.raises(asyncssh.PermissionDenied):  # the first client, refused
        asyncio.run(_ssh_hello(port, "wrong"))
    hello, host_key = asyncio.run(_ssh_hello(port, "secret"))
    assert b"urn:ietf:params:netconf:base:1.1" in hello
    stored = asyncssh.read_private_key(folder / "ssh_host_ed25519_key")
    assert host_key == stored.public_data  # the key made at start is the one served
    assert "asyncssh" in device.modules()
    # Imported beside the event loop, which goes on serving the TLS sessions meanwhile.
    assert device.importers()["asyncssh"] != "MainThread"


@pytest.mark.parametrize("device", [TLS_AND_SSH], indirect=True, ids=str)
def test_an_ssh_server_that_cannot_load_with_its_first_client_ends_the_device(
    device: _Device, folder: Path
) -> None:
    """The host key checked at start is replaced by one asyncssh cannot serve before the
    first SSH client: the device does not stay up without its SSH listener, it ends as a
    failed start does (exit 1, the cause on stderr)."""
    unusable = x25519.X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (folder / "ssh_host_ed25519_key").write_bytes(unusable)
    with pytest.raises((asyncssh.Error, OSError)):
        asyncio.run(_ssh_hello(device.ports["netconf-ssh"], "secret"))
    assert device.proc.wait(30) == 1
    log = device.log.read_text()
    assert "NETCONF/SSH server failed to start: not listening" in log
    assert "ssh_host_ed25519_key: unusable SSH host key: a X25519PrivateKey key" in log
    assert "config-error:" in log.splitlines()[-1]
