"""The pledge agent in this process, against a real MASA and registrar served over TLS on
127.0.0.1 in the same event loop. Only the host hardware (an in-memory PluginHost) and the
clock are fakes, so each run is seconds long and every wait can be checked exactly."""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.cli import main as zerotouch
from zerotouch_plugin.config import DeviceConfig, RegistrarConfig, load_config
from zerotouch_plugin.device.domain_files import VOUCHER_FILE
from zerotouch_plugin.device.host import DeviceIdentity, InstalledIdentity, RpcFunction
from zerotouch_plugin.errors import Conflict, StorageError
from zerotouch_plugin.roles.bootstrap import NOTIFICATION
from zerotouch_plugin.services import certfiles, masa_app
from zerotouch_plugin.services.pledge_agent import RESTART_RPC, STATE_FILE, PledgeAgent
from zerotouch_plugin.services.registrar import load_registrar, registrar_app, tls_context
from zerotouch_plugin.services.registrar_files import CONFIG_FILE

PORTS = {"netconf-tls-port": 6513, "restconf-port": 443}
SERIALS = itertools.count(1)  # one registrar database serves the whole module


# -- the fakes: host hardware and clock ----------------------------------------------------


@dataclass
class FakeHost:
    """A PluginHost whose identity store is memory: an install either lands whole or, with
    ``refuse_install``, not at all (like a full disk on a real device)."""

    identity: DeviceIdentity
    installed: InstalledIdentity | None = None
    installed_key: PrivateKeyTypes | None = None
    refuse_install: bool = False
    installs: int = 0
    forgotten: int = 0
    rpcs: dict[str, RpcFunction] = field(default_factory=dict)
    state: Mapping[str, Any] = field(default_factory=dict)
    events: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)

    def read_identity(self) -> DeviceIdentity:
        return self.identity

    async def install_identity(
        self,
        ldevid_cert: x509.Certificate,
        key: PrivateKeyTypes,
        chain: Sequence[x509.Certificate],
        domain_ca: Sequence[x509.Certificate],
    ) -> None:
        self.installs += 1
        if self.refuse_install:
            raise StorageError("the identity store is full")
        self.installed = InstalledIdentity((ldevid_cert, *chain), tuple(domain_ca))
        self.installed_key = key

    def installed_identity(self) -> InstalledIdentity | None:
        return self.installed

    async def forget_identity(self) -> None:
        self.forgotten += 1
        self.installed = None
        self.installed_key = None

    def management_ports(self) -> Mapping[str, int]:
        return PORTS

    def register_rpc(self, name: str, function: RpcFunction) -> None:
        self.rpcs[name] = function

    async def apply_configuration(self, tree: Mapping[str, Any]) -> None:
        raise AssertionError("the agent configures nothing itself")

    def publish_state(self, tree: Mapping[str, Any]) -> None:
        self.state = tree

    def emit_event(self, name: str, data: Mapping[str, Any]) -> None:
        self.events.append((name, data))

    @property
    def bootstrap(self) -> Mapping[str, Any]:
        return self.state["zerotouch-bootstrap:bootstrap"]  # type: ignore[no-any-return]

    def phases(self) -> list[str]:
        return [data["phase"] for name, data in self.events if name == NOTIFICATION]


class FakeClock:
    """Wall time that moves only when the agent sleeps; each sleep is recorded."""

    def __init__(self) -> None:
        self.moment = datetime.now(UTC)
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self.moment

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.moment += timedelta(seconds=seconds)


def no_jitter(size: int) -> bytes:
    """Random bytes that make every jitter fraction 0: waits are the backoff's lower bound."""
    return bytes(size)


# -- a vendor (MASA) and a domain (registrar), served in this loop ---------------------------


@dataclass
class World:
    root: Path
    masa_url: str = ""
    registrar_url: str = ""

    @property
    def vendor(self) -> Path:
        return self.root / "V"

    @property
    def domain(self) -> Path:
        return self.root / "R"

    def pledge(self, folder: Path, *, allow: bool = True) -> DeviceIdentity:
        """A pledge folder as ``zerotouch vendor idevid`` writes it, optionally allowed."""
        serial = f"ZT-AGENT-{next(SERIALS):03d}"
        vendor_ca = certfiles.load_identity(self.vendor / "ca.pem", self.vendor / "ca.key")
        idevid = certs.issue_idevid(
            vendor_ca, serial, masa_url=self.masa_url, now=datetime.now(UTC)
        )
        folder.mkdir(parents=True)
        certfiles.write_certs(folder / "idevid.pem", [idevid.cert, vendor_ca.cert])
        certfiles.write_key(folder / "idevid.key", idevid.key)
        certfiles.write_certs(folder / "masa-ca.pem", [vendor_ca.cert])
        if allow:
            assert (
                zerotouch(["registrar", "allow", "--dir", str(self.domain), "--serial", serial])
                == 0
            )
        return DeviceIdentity(folder / "idevid.pem", folder / "idevid.key", serial)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Vendor and domain folders made by the CLI (its commands, run in this process)."""
    root = tmp_path_factory.mktemp("agent")
    vendor, domain = root / "V", root / "R"
    assert (
        zerotouch(["vendor", "init", "--dir", str(vendor), "--masa-url", "https://127.0.0.1:1"])
        == 0
    )
    ca = str(vendor / "ca.pem")
    assert (
        zerotouch(
            ["registrar", "init", "--dir", str(domain), "--manufacturer-ca", ca, "--masa-trust", ca]
        )
        == 0
    )
    return root


async def _serve(app: web.Application, context: Any) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    return runner, int(runner.addresses[0][1])


@pytest.fixture
async def world(pki: Path) -> AsyncIterator[World]:
    world = World(pki)
    masa_config = masa_app.load_config_for(world.vendor)
    masa, masa_port = await masa_app.start_masa(
        masa_app.load_context(world.vendor, masa_config), "127.0.0.1", 0
    )
    registrar_config = load_config(RegistrarConfig, world.domain / CONFIG_FILE, {})
    registrar = load_registrar(world.domain, registrar_config)
    served, port = await _serve(registrar_app(registrar), tls_context(registrar))
    world.masa_url = f"https://127.0.0.1:{masa_port}"
    world.registrar_url = f"https://127.0.0.1:{port}"
    try:
        yield world
    finally:
        await served.cleanup()
        await masa.cleanup()


def device_config(*registrars: str, rounds: int = 0) -> DeviceConfig:
    return DeviceConfig(
        registrars=registrars,
        bootstrap_retry_delay=4.0,
        bootstrap_max_delay=40.0,
        bootstrap_rounds=rounds,
        bootstrap_timeout=10.0,
    )


def agent_for(
    host: FakeHost,
    folder: Path,
    config: DeviceConfig,
    clock: FakeClock,
    *,
    random_bytes: Callable[[int], bytes] = no_jitter,
    **kw: Any,
) -> PledgeAgent:
    return PledgeAgent(
        host, folder, config, now=clock.now, sleep=clock.sleep, random_bytes=random_bytes, **kw
    )


def closed_port_url() -> str:
    """An https URL on 127.0.0.1 where nothing listens (the port was bound, then freed)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"https://127.0.0.1:{port}"


# -- the tests ----------------------------------------------------------------------------


async def test_enrollment_installs_ldevid_and_anchors_in_one_step(
    world: World, tmp_path: Path
) -> None:
    identity = world.pledge(tmp_path / "P")
    host, clock = FakeHost(identity), FakeClock()
    enrolled: list[tuple[str, bool]] = []
    agent = agent_for(
        host,
        tmp_path / "P",
        device_config(world.registrar_url),
        clock,
        on_enrolled=lambda serial, already: enrolled.append((serial, already)),
    )
    await agent.start()
    await agent.wait()

    assert host.installs == 1
    assert host.installed is not None and host.installed_key is not None
    ldevid = host.installed.ldevid
    serial = ldevid.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value
    assert serial == identity.serial_number
    assert ldevid.public_key() == host.installed_key.public_key()
    domain_ca = certs.load_certs((world.domain / "ca.pem").read_bytes())
    assert host.installed.anchors == tuple(domain_ca)
    assert ldevid.issuer == domain_ca[0].subject
    assert enrolled == [(identity.serial_number, False)]
    assert (tmp_path / "P" / VOUCHER_FILE).is_file()
    assert RESTART_RPC in host.rpcs
    assert clock.slept == []


async def test_the_reported_state_follows_the_run(world: World, tmp_path: Path) -> None:
    identity = world.pledge(tmp_path / "P")
    host, clock = FakeHost(identity), FakeClock()
    agent = agent_for(host, tmp_path / "P", device_config(world.registrar_url), clock)
    await agent.start()
    await agent.wait()

    state = host.bootstrap
    assert state["phase"] == "enrolled"
    assert state["registrar"]["used"] == world.registrar_url
    assert state["ldevid"]["subject"] == host.installed.ldevid.subject.rfc4514_string()  # type: ignore[union-attr]
    assert len(state["trust-anchor"]) == 1
    assert state["voucher"]["serial-number"] == identity.serial_number
    assert host.phases()[0] == "discovering"
    assert host.phases()[-1] == "enrolled"
    assert {"requesting-voucher", "voucher-accepted", "enrolling"} <= set(host.phases())
    saved = (tmp_path / "P" / STATE_FILE).read_text()
    assert "enrolled" in saved


async def test_a_refused_pledge_backs_off_and_leaves_the_host_unchanged(
    world: World, tmp_path: Path
) -> None:
    """A 403 is the registrar's answer, not a fault to retry at once: each round asks once,
    and between the two rounds the agent waits the first backoff, half of
    ``bootstrap_retry_delay`` 4 s (jitter 0)."""
    identity = world.pledge(tmp_path / "P", allow=False)
    host, clock = FakeHost(identity), FakeClock()
    agent = agent_for(host, tmp_path / "P", device_config(world.registrar_url, rounds=2), clock)
    await agent.start()
    await agent.wait()

    assert host.installs == 0 and host.installed is None
    assert not (tmp_path / "P" / VOUCHER_FILE).exists()
    assert host.bootstrap["phase"] == "failed"
    assert "gave up after 2 round(s)" in str(host.bootstrap["last-error"])
    assert clock.slept == [2.0]


async def test_an_unreachable_registrar_is_retried_on_the_fake_clock(tmp_path: Path) -> None:
    pki_root = tmp_path
    folder = pki_root / "P"
    folder.mkdir()
    identity = DeviceIdentity(folder / "idevid.pem", folder / "idevid.key", "ZT-NOWHERE")
    vendor_ca = certs.make_ca("Vendor CA", now=datetime.now(UTC))
    idevid = certs.issue_idevid(
        vendor_ca, identity.serial_number, masa_url=None, now=datetime.now(UTC)
    )
    certfiles.write_certs(identity.idevid_cert, [idevid.cert, vendor_ca.cert])
    certfiles.write_key(identity.idevid_key, idevid.key)
    certfiles.write_certs(folder / "masa-ca.pem", [vendor_ca.cert])
    host, clock = FakeHost(identity), FakeClock()
    start = clock.now()
    agent = agent_for(host, folder, device_config(closed_port_url(), rounds=3), clock)
    await agent.start()
    await agent.wait()

    assert host.installs == 0 and host.installed is None
    assert host.bootstrap["phase"] == "failed"
    assert clock.now() - start == timedelta(seconds=sum(clock.slept))
    assert clock.slept == [2.0, 4.0, 2.0, 2.0, 4.0, 4.0, 2.0, 4.0]


async def test_a_failed_install_stops_and_changes_nothing(world: World, tmp_path: Path) -> None:
    identity = world.pledge(tmp_path / "P")
    host, clock = FakeHost(identity, refuse_install=True), FakeClock()
    agent = agent_for(host, tmp_path / "P", device_config(world.registrar_url), clock)
    await agent.start()
    await agent.wait()

    assert host.installs == 1 and host.installed is None
    assert host.bootstrap["phase"] == "failed"
    assert "identity store is full" in str(host.bootstrap["last-error"])
    assert clock.slept == []  # a storage fault is not retried


async def test_an_enrolled_device_keeps_its_identity_at_start(world: World, tmp_path: Path) -> None:
    identity = world.pledge(tmp_path / "P")
    host, clock = FakeHost(identity), FakeClock()
    first = agent_for(host, tmp_path / "P", device_config(world.registrar_url), clock)
    await first.start()
    await first.wait()
    await first.close()
    installed = host.installed

    enrolled: list[tuple[str, bool]] = []
    again = agent_for(
        host,
        tmp_path / "P",
        device_config(closed_port_url()),
        clock,
        on_enrolled=lambda serial, already: enrolled.append((serial, already)),
    )
    await again.start()
    await again.wait()

    assert host.installs == 1 and host.installed is installed
    assert host.bootstrap["phase"] == "enrolled"
    assert host.bootstrap["voucher"]["serial-number"] == identity.serial_number
    assert enrolled == [(identity.serial_number, True)]


async def test_factory_reset_forgets_and_bootstraps_again(world: World, tmp_path: Path) -> None:
    """Real randomness here: the second run needs a fresh nonce, a repeated one is refused as
    a replay (RFC 8995 §5.3)."""
    identity = world.pledge(tmp_path / "P")
    host, clock = FakeHost(identity), FakeClock()
    config = device_config(world.registrar_url, rounds=1)
    agent = agent_for(host, tmp_path / "P", config, clock, random_bytes=os.urandom)
    await agent.start()
    await agent.wait()
    first = host.installed
    assert first is not None

    with pytest.raises(Conflict, match="factory-reset"):
        await host.rpcs[RESTART_RPC]({})
    assert host.installed is first and host.forgotten == 0

    reply = await host.rpcs[RESTART_RPC]({"factory-reset": True})
    assert reply == {"phase": "discovering"}
    assert host.forgotten == 1
    events = [e["event"] for e in host.bootstrap["event"]]
    assert events.index("factory-reset") > events.index("restart-requested")
    assert "factory-default" in host.phases()
    await agent.wait()
    await agent.close()

    assert host.installs == 2
    assert host.installed is not None and host.installed is not first
    assert host.installed.ldevid.serial_number != first.ldevid.serial_number
    assert host.bootstrap["phase"] == "enrolled"
