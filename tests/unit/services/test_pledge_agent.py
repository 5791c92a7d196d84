"""The pledge agent in this process, against a real MASA and registrar served over TLS on
127.0.0.1 in the same event loop. Only the host hardware (an in-memory PluginHost) and the
clock are fakes, so each run is seconds long and every wait can be checked exactly."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from zerotouch_plugin.artifacts import certs
from zerotouch_plugin.artifacts.certs.keys import PublicKey
from zerotouch_plugin.artifacts.signer import (
    SignatureAlgorithm,
    Signer,
    SigningIdentity,
    SoftwareSigner,
)
from zerotouch_plugin.cli import main as zerotouch
from zerotouch_plugin.config import AgentConfig, RegistrarConfig, load_config
from zerotouch_plugin.device.host import (
    REQUIRED_MODULES,
    InstalledIdentity,
    MemoryAgentStore,
    RpcFunction,
)
from zerotouch_plugin.errors import ConfigError, Conflict, StorageError
from zerotouch_plugin.roles.bootstrap import NOTIFICATION
from zerotouch_plugin.services import certfiles, masa_app
from zerotouch_plugin.services.pledge_agent import (
    PENDING_KEY,
    REGISTRAR_KEY,
    RESTART_RPC,
    STATE_KEY,
    VOUCHER_KEY,
    PledgeAgent,
)
from zerotouch_plugin.services.registrar import load_registrar, registrar_app, tls_context
from zerotouch_plugin.services.registrar_files import CONFIG_FILE

PORTS = {"netconf-tls-port": 6513, "restconf-port": 443}
SERIALS = itertools.count(1)  # one registrar database serves the whole module


# -- the fakes: host hardware and clock ----------------------------------------------------


class SealedSigner:
    """A key that signs and never hands itself out, as a TPM or secure element would: the
    private key lives in a closure, the object has only the Signer methods."""

    def __init__(self, key: ec.EllipticCurvePrivateKey | None = None) -> None:
        sealed = key or ec.generate_private_key(ec.SECP256R1())
        software = SoftwareSigner(sealed)
        self.signed = 0

        def sign(data: bytes, algorithm: SignatureAlgorithm) -> bytes:
            self.signed += 1
            return software.sign(data, algorithm)

        self._sign = sign
        self._public = sealed.public_key()

    def public_key(self) -> PublicKey:
        return self._public

    def sign(self, data: bytes, algorithm: SignatureAlgorithm) -> bytes:
        return self._sign(data, algorithm)


class Crash(BaseException):
    """The device lost power: nothing after this point runs."""


@dataclass
class Factory:
    """What a device holds from the factory: the IDevID chain, its key, the MASA anchor."""

    serial: str
    chain: tuple[x509.Certificate, ...]
    key: certs.PrivateKey
    masa_anchors: tuple[x509.Certificate, ...]


@dataclass
class FakeHost:
    """A PluginHost in memory. Its identity store takes an install whole or, with
    ``refuse_install``, not at all (like a full disk); ``crash_after_install`` loses power
    right after the identity is stored; ``refuse_forget`` cannot erase it."""

    factory: Factory
    store: MemoryAgentStore = field(default_factory=MemoryAgentStore)
    modules: Collection[str] = REQUIRED_MODULES
    idevid_sealed: bool = False
    installed: InstalledIdentity | None = None
    installed_key: Signer | None = None
    refuse_install: bool = False
    crash_after_install: bool = False
    refuse_forget: bool = False
    sealed_ldevid: bool = True  # LDevID keys only sign (no TLS with them: no renewal)
    installs: int = 0
    forgotten: int = 0
    keys_made: list[SealedSigner] = field(default_factory=list)
    rpcs: dict[str, RpcFunction] = field(default_factory=dict)
    state: Mapping[str, Any] = field(default_factory=dict)
    events: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)

    def idevid_chain(self) -> Sequence[x509.Certificate]:
        return self.factory.chain

    def idevid_signer(self) -> Signer:
        key = self.factory.key
        if self.idevid_sealed:
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            return SealedSigner(key)
        return SoftwareSigner(key)

    def manufacturer_anchors(self) -> Sequence[x509.Certificate]:
        return self.factory.masa_anchors

    def agent_store(self) -> MemoryAgentStore:
        return self.store

    def yang_modules(self) -> Collection[str]:
        return self.modules

    def generate_ldevid_key(self, kind: certs.KeyKind) -> Signer:
        assert kind == "p256"
        if not self.sealed_ldevid:
            return SoftwareSigner(certs.generate_key(kind))
        signer = SealedSigner()
        self.keys_made.append(signer)
        return signer

    async def install_identity(
        self, identity: SigningIdentity, anchors: Sequence[x509.Certificate]
    ) -> None:
        self.installs += 1
        if self.refuse_install:
            raise StorageError("the identity store is full")
        self.installed = InstalledIdentity(
            (identity.cert, *identity.chain), tuple(anchors), identity.signer
        )
        self.installed_key = identity.signer
        if self.crash_after_install:
            raise Crash

    def installed_identity(self) -> InstalledIdentity | None:
        return self.installed

    async def forget_identity(self) -> None:
        if self.refuse_forget:
            raise StorageError("the identity store cannot be erased")
        self.forgotten += 1
        self.installed = None
        self.installed_key = None

    def management_ports(self) -> Mapping[str, int]:
        return PORTS

    def register_rpc(self, name: str, function: RpcFunction) -> None:
        self.rpcs[name] = function

    def publish_state(self, tree: Mapping[str, Any]) -> None:
        self.state = tree

    def emit_event(self, name: str, data: Mapping[str, Any]) -> None:
        self.events.append((name, data))

    @property
    def bootstrap(self) -> Mapping[str, Any]:
        return self.state["zerotouch-bootstrap:bootstrap"]  # type: ignore[no-any-return]

    def phases(self) -> list[str]:
        return [data["phase"] for name, data in self.events if name == NOTIFICATION]

    def history(self) -> list[str]:
        return [e["event"] for e in self.bootstrap["event"]]


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


class GatedClock(FakeClock):
    """A FakeClock whose sleeps wait for ``allow``: a loop that sleeps forever (the
    renewal loop) advances exactly as far as the test lets it."""

    def __init__(self) -> None:
        super().__init__()
        self.permits = asyncio.Semaphore(0)
        self.calls = 0  # sleeps begun, waiting or done

    def allow(self, sleeps: int) -> None:
        for _ in range(sleeps):
            self.permits.release()

    async def sleep(self, seconds: float) -> None:
        self.calls += 1
        await self.permits.acquire()
        await super().sleep(seconds)


async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Real time, polled: for what runs in the agent's background tasks."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


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

    def pledge(self, *, allow: bool = True) -> Factory:
        """A device as the vendor's factory makes it, optionally allowed by the domain."""
        serial = f"ZT-AGENT-{next(SERIALS):03d}"
        vendor_ca = certfiles.load_identity(self.vendor / "ca.pem", self.vendor / "ca.key")
        idevid = certs.issue_idevid(
            vendor_ca, serial, masa_url=self.masa_url, now=datetime.now(UTC)
        )
        if allow:
            assert (
                zerotouch(["registrar", "allow", "--dir", str(self.domain), "--serial", serial])
                == 0
            )
        return Factory(serial, (idevid.cert, vendor_ca.cert), idevid.key, (vendor_ca.cert,))


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


def agent_config(*registrars: str, rounds: int = 0, renewal: bool = False) -> AgentConfig:
    return AgentConfig(
        registrars=registrars,
        bootstrap_retry_delay=4.0,
        bootstrap_max_delay=40.0,
        bootstrap_rounds=rounds,
        bootstrap_timeout=10.0,
        renewal=renewal,
        renew_fraction=0.75,
    )


def agent_for(
    host: FakeHost,
    config: AgentConfig,
    clock: FakeClock,
    *,
    random_bytes: Callable[[int], bytes] = no_jitter,
    **kw: Any,
) -> PledgeAgent:
    return PledgeAgent(
        host, config, now=clock.now, sleep=clock.sleep, random_bytes=random_bytes, **kw
    )


def closed_port_url() -> str:
    """An https URL on 127.0.0.1 where nothing listens (the port was bound, then freed)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"https://127.0.0.1:{port}"


def unreachable_factory() -> Factory:
    """A device whose vendor runs no MASA: only its own PKI, no registrar knows it."""
    vendor_ca = certs.make_ca("Vendor CA", now=datetime.now(UTC))
    idevid = certs.issue_idevid(vendor_ca, "ZT-NOWHERE", masa_url=None, now=datetime.now(UTC))
    return Factory("ZT-NOWHERE", (idevid.cert, vendor_ca.cert), idevid.key, (vendor_ca.cert,))


async def enrolled_host(world: World, clock: FakeClock, **kw: Any) -> FakeHost:
    host = FakeHost(world.pledge(), **kw)
    agent = agent_for(host, agent_config(world.registrar_url, rounds=1), clock)
    await agent.start()
    await agent.wait()
    await agent.close()
    assert host.bootstrap["phase"] == "enrolled"
    return host


# -- the tests ----------------------------------------------------------------------------


async def test_enrollment_installs_a_key_the_host_made_and_never_showed(
    world: World,
) -> None:
    """The LDevID key comes from the host and only signs (the CSR): the agent installs the
    Signer it was given, with the LDevID and the domain CA, in one call."""
    factory = world.pledge()
    host, clock = FakeHost(factory), FakeClock()
    enrolled: list[tuple[str, bool]] = []
    agent = agent_for(
        host,
        agent_config(world.registrar_url),
        clock,
        on_enrolled=lambda serial, already: enrolled.append((serial, already)),
    )
    await agent.start()
    await agent.wait()

    assert host.installs == 1
    assert host.installed is not None and len(host.keys_made) == 1
    assert host.installed_key is host.keys_made[0]
    assert host.keys_made[0].signed == 1  # the CSR
    ldevid = host.installed.ldevid
    serial = ldevid.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value
    assert serial == factory.serial
    assert ldevid.public_key() == host.keys_made[0].public_key()
    domain_ca = certs.load_certs((world.domain / "ca.pem").read_bytes())
    assert host.installed.anchors == tuple(domain_ca)
    assert ldevid.issuer == domain_ca[0].subject
    assert enrolled == [(factory.serial, False)]
    assert host.store.get(VOUCHER_KEY) is not None
    assert host.store.get(PENDING_KEY) is None  # enrollstatus went out
    assert RESTART_RPC in host.rpcs
    assert clock.slept == []


async def test_the_reported_state_follows_the_run(world: World) -> None:
    factory = world.pledge()
    host, clock = FakeHost(factory), FakeClock()
    agent = agent_for(host, agent_config(world.registrar_url), clock)
    await agent.start()
    await agent.wait()

    state = host.bootstrap
    assert state["phase"] == "enrolled"
    assert state["registrar"]["used"] == world.registrar_url
    assert state["ldevid"]["subject"] == host.installed.ldevid.subject.rfc4514_string()  # type: ignore[union-attr]
    assert len(state["trust-anchor"]) == 1
    assert state["voucher"]["serial-number"] == factory.serial
    assert host.phases()[0] == "discovering"
    assert host.phases()[-1] == "enrolled"
    assert {"requesting-voucher", "voucher-accepted", "enrolling"} <= set(host.phases())
    saved = json.loads(host.store.get(STATE_KEY) or b"{}")
    assert saved["phase"] == "enrolled"


async def test_a_refused_pledge_backs_off_and_leaves_the_host_unchanged(world: World) -> None:
    """A 403 is the registrar's answer, not a fault to retry at once: each round asks once,
    and between the two rounds the agent waits the first backoff, half of
    ``bootstrap_retry_delay`` 4 s (jitter 0)."""
    host, clock = FakeHost(world.pledge(allow=False)), FakeClock()
    agent = agent_for(host, agent_config(world.registrar_url, rounds=2), clock)
    await agent.start()
    await agent.wait()

    assert host.installs == 0 and host.installed is None
    assert host.store.get(VOUCHER_KEY) is None
    assert host.bootstrap["phase"] == "failed"
    assert "gave up after 2 round(s)" in str(host.bootstrap["last-error"])
    assert clock.slept == [2.0]


async def test_an_unreachable_registrar_is_retried_on_the_fake_clock() -> None:
    host, clock = FakeHost(unreachable_factory()), FakeClock()
    start = clock.now()
    agent = agent_for(host, agent_config(closed_port_url(), rounds=3), clock)
    await agent.start()
    await agent.wait()

    assert host.installs == 0 and host.installed is None
    assert host.bootstrap["phase"] == "failed"
    assert clock.now() - start == timedelta(seconds=sum(clock.slept))
    assert clock.slept == [2.0, 4.0, 2.0, 2.0, 4.0, 4.0, 2.0, 4.0]
    # two retries inside each of the three attempts; the cycles' waits are discovery's
    assert "waiting-retry" in host.phases() and host.history().count("retrying") == 6


async def test_a_failed_install_stops_and_changes_nothing(world: World) -> None:
    host, clock = FakeHost(world.pledge(), refuse_install=True), FakeClock()
    agent = agent_for(host, agent_config(world.registrar_url), clock)
    await agent.start()
    await agent.wait()

    assert host.installs == 1 and host.installed is None
    assert host.bootstrap["phase"] == "failed"
    assert "identity store is full" in str(host.bootstrap["last-error"])
    assert clock.slept == []  # a storage fault is not retried


async def test_an_enrolled_device_keeps_its_identity_at_start(world: World) -> None:
    clock = FakeClock()
    host = await enrolled_host(world, clock)
    installed = host.installed

    enrolled: list[tuple[str, bool]] = []
    again = agent_for(
        host,
        agent_config(closed_port_url()),
        clock,
        on_enrolled=lambda serial, already: enrolled.append((serial, already)),
    )
    await again.start()
    await again.wait()

    assert host.installs == 1 and host.installed is installed
    assert host.bootstrap["phase"] == "enrolled"
    assert host.bootstrap["voucher"]["serial-number"] == host.factory.serial
    assert enrolled == [(host.factory.serial, True)]
    assert "enroll-status-sent" not in host.history()  # nothing was owed


async def test_a_crash_between_install_and_enrollstatus_reports_after_restart(
    world: World,
) -> None:
    """Power lost right after the identity was stored: the restarted agent finds it, shows
    the device enrolled, and sends the enrollstatus it owed to the same registrar, which
    takes it (RFC 8995 §5.9.4)."""
    host, clock = FakeHost(world.pledge(), crash_after_install=True), FakeClock()
    agent = agent_for(host, agent_config(world.registrar_url), clock)
    await agent.start()
    with pytest.raises(Crash):
        await agent.wait()
    assert host.installed is not None
    assert json.loads(host.store.get(PENDING_KEY) or b"{}")["registrar"] == world.registrar_url
    installed = host.installed

    host.crash_after_install = False
    enrolled: list[tuple[str, bool]] = []
    again = agent_for(
        host,
        agent_config(world.registrar_url),
        clock,
        on_enrolled=lambda serial, already: enrolled.append((serial, already)),
    )
    await again.start()
    await again.wait()
    await again.close()

    assert host.installs == 1 and host.installed is installed
    assert host.bootstrap["phase"] == "enrolled"
    assert enrolled == [(host.factory.serial, True)]
    sent = [e for e in host.bootstrap["event"] if e["event"] == "enroll-status-sent"]
    assert len(sent) == 1 and "answered 200" in sent[0]["detail"]
    assert host.store.get(PENDING_KEY) is None


async def test_an_install_that_never_committed_owes_no_report(world: World) -> None:
    """A pending report without an installed identity (the crash came before the host's
    commit point) is dropped, and the device bootstraps again."""
    host, clock = FakeHost(world.pledge(), refuse_install=True), FakeClock()
    host.store.put(PENDING_KEY, json.dumps({"registrar": world.registrar_url}).encode())
    agent = agent_for(host, agent_config(world.registrar_url), clock)
    await agent.start()
    assert host.store.get(PENDING_KEY) is None
    await agent.wait()
    assert host.installs == 1


async def test_factory_reset_forgets_and_bootstraps_again(world: World) -> None:
    """Real randomness here: the second run needs a fresh nonce, a repeated one is refused as
    a replay (RFC 8995 §5.3)."""
    host, clock = FakeHost(world.pledge()), FakeClock()
    config = agent_config(world.registrar_url, rounds=1)
    agent = agent_for(host, config, clock, random_bytes=os.urandom)
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
    events = host.history()
    assert events.index("factory-reset") > events.index("restart-requested")
    assert "factory-default" in host.phases()
    await agent.wait()
    await agent.close()

    assert host.installs == 2
    assert host.installed is not None and host.installed is not first
    assert host.installed.ldevid.serial_number != first.ldevid.serial_number
    assert host.bootstrap["phase"] == "enrolled"


async def test_a_factory_reset_the_host_cannot_do_is_reported_not_claimed(
    world: World,
) -> None:
    """Forget fails closed: the RPC answers the host's error, the state says failed with
    it, no factory-reset event, no new run, and the identity and voucher are kept."""
    clock = FakeClock()
    host = await enrolled_host(world, clock, refuse_forget=True)
    agent = agent_for(host, agent_config(world.registrar_url), clock)
    await agent.start()
    installed = host.installed

    with pytest.raises(StorageError, match="cannot be erased"):
        await host.rpcs[RESTART_RPC]({"factory-reset": True})
    await agent.wait()
    await agent.close()

    assert host.installed is installed and host.installs == 1
    assert host.store.get(VOUCHER_KEY) is not None
    assert host.bootstrap["phase"] == "failed"
    assert "cannot be erased" in host.bootstrap["last-error"]["message"]
    assert "factory-reset" not in host.history()
    assert "factory-default" not in host.phases()
    assert host.history()[-1] == "failed"


async def test_restart_bootstrap_after_failed_runs_again(world: World) -> None:
    factory = world.pledge(allow=False)
    host, clock = FakeHost(factory), FakeClock()
    agent = agent_for(host, agent_config(world.registrar_url, rounds=1), clock)
    await agent.start()
    await agent.wait()
    assert host.bootstrap["phase"] == "failed"

    zerotouch(["registrar", "allow", "--dir", str(world.domain), "--serial", factory.serial])
    reply = await host.rpcs[RESTART_RPC]({})
    assert reply == {"phase": "discovering"}
    await agent.wait()
    await agent.close()
    assert host.bootstrap["phase"] == "enrolled" and host.installs == 1
    assert host.forgotten == 0


def runs() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "pledge-agent" and not t.done()]


async def test_restart_bootstraps_asked_at_once_leave_one_run() -> None:
    """Two sessions ask restart-bootstrap while a run waits to retry: each stops the run it
    finds and starts one; the second must not start beside the first, where no later restart
    nor close() would stop it (RFC 8995 §5.9.4: one run installs the identity)."""
    host, clock = FakeHost(unreachable_factory()), GatedClock()
    agent = agent_for(host, agent_config(closed_port_url()), clock)
    await agent.start()
    await until(lambda: clock.calls == 1)  # the run waits on the clock

    replies = await asyncio.gather(host.rpcs[RESTART_RPC]({}), host.rpcs[RESTART_RPC]({}))
    assert replies == [{"phase": "discovering"}] * 2
    await until(lambda: clock.calls >= 2)
    assert len(runs()) == 1
    await agent.close()
    assert runs() == []


async def test_the_voucher_request_is_signed_through_the_idevid_signer(world: World) -> None:
    """A sealed IDevID key signs the voucher-request, but TLS client authentication needs
    the key in OpenSSL: the agent stops in phase failed saying so, before any request."""
    host, clock = FakeHost(world.pledge(), idevid_sealed=True), FakeClock()
    agent = agent_for(host, agent_config(world.registrar_url), clock)
    await agent.start()
    await agent.wait()
    await agent.close()

    assert host.bootstrap["phase"] == "failed"
    assert host.bootstrap["last-error"]["reason"] == ConfigError.reason
    assert "OpenSSL provider" in host.bootstrap["last-error"]["message"]
    assert host.installs == 0 and clock.slept == []


def test_a_host_without_the_bootstrap_module_is_refused() -> None:
    host = FakeHost(unreachable_factory(), modules=("ietf-netconf",))
    with pytest.raises(ConfigError, match="zerotouch-bootstrap"):
        PledgeAgent(host, agent_config(closed_port_url()))


def test_a_signer_for_another_key_is_refused() -> None:
    factory = unreachable_factory()
    other = unreachable_factory()
    host = FakeHost(Factory(factory.serial, factory.chain, other.key, factory.masa_anchors))
    with pytest.raises(ConfigError, match="does not belong to the certificate"):
        PledgeAgent(host, agent_config(closed_port_url()))


def test_a_host_without_manufacturer_anchors_is_refused() -> None:
    factory = unreachable_factory()
    host = FakeHost(Factory(factory.serial, factory.chain, factory.key, ()))
    with pytest.raises(ConfigError, match="manufacturer trust anchors"):
        PledgeAgent(host, agent_config(closed_port_url()))


# -- renewal (RFC 7030 §4.2.2) --------------------------------------------------------------


async def test_the_ldevid_is_renewed_at_the_fraction_of_its_lifetime(world: World) -> None:
    """Due at 0.75 of the validity: the agent sleeps until then on the clock, renews at the
    registrar that enrolled it with a fresh key from the host, and installs the new LDevID
    under the same trust anchors; the state shows it."""
    host, clock = FakeHost(world.pledge(), sealed_ldevid=False), GatedClock()
    agent = agent_for(host, agent_config(world.registrar_url, renewal=True), clock)
    await agent.start()
    await agent.wait()
    first = host.installed
    assert first is not None and host.installs == 1
    start = clock.now()

    clock.allow(1)
    await until(lambda: host.installs == 2)
    await until(lambda: clock.calls == 2)  # waiting for the next renewal
    await agent.close()

    lifetime = first.ldevid.not_valid_after_utc - first.ldevid.not_valid_before_utc
    due = first.ldevid.not_valid_before_utc + lifetime * 0.75
    assert clock.slept == [(due - start).total_seconds()]
    renewed = host.installed
    assert renewed is not None and renewed.ldevid != first.ldevid
    assert renewed.ldevid.subject == first.ldevid.subject
    assert renewed.ldevid.public_key() != first.ldevid.public_key()  # a fresh key
    assert renewed.signer is not None
    assert renewed.signer.public_key() == renewed.ldevid.public_key()
    assert renewed.anchors == first.anchors
    assert host.bootstrap["phase"] == "enrolled"
    assert host.bootstrap["ldevid"]["serial"] == format(renewed.ldevid.serial_number, "x")
    renewed_events = [e for e in host.bootstrap["event"] if e["event"] == "ldevid-renewed"]
    assert [e["detail"] for e in renewed_events] == [format(renewed.ldevid.serial_number, "x")]


async def test_the_first_renewal_is_spread_by_jitter(world: World) -> None:
    """Devices enrolled in one wave hold LDevIDs of the same validity: with the largest jitter
    the first renewal comes a twentieth of the lifetime after the fraction (not all at the
    same second at the registrar), still well before expiry."""
    host, clock = FakeHost(world.pledge(), sealed_ldevid=False), GatedClock()
    config = agent_config(world.registrar_url, renewal=True)
    agent = agent_for(host, config, clock, random_bytes=lambda size: b"\xff" * size)
    await agent.start()
    await agent.wait()
    first = host.installed
    assert first is not None
    start = clock.now()

    clock.allow(1)
    await until(lambda: host.installs == 2)
    await agent.close()

    lifetime = first.ldevid.not_valid_after_utc - first.ldevid.not_valid_before_utc
    due = first.ldevid.not_valid_before_utc + lifetime * 0.75
    renewed_at = start + timedelta(seconds=clock.slept[0])
    assert due + lifetime * 0.049 < renewed_at <= due + lifetime * 0.05


async def test_a_failed_renewal_is_retried_on_the_backoff(world: World) -> None:
    host, clock = FakeHost(world.pledge(), sealed_ldevid=False), GatedClock()
    agent = agent_for(host, agent_config(world.registrar_url, renewal=True), clock)
    await agent.start()
    await agent.wait()
    host.store.put(REGISTRAR_KEY, closed_port_url().encode())  # the registrar is gone

    clock.allow(3)
    await until(lambda: host.history().count("renewal-failed") == 3)
    await until(lambda: clock.calls == 4)
    await agent.close()

    assert host.installs == 1 and host.bootstrap["phase"] == "enrolled"
    # jitter 0: 5 s, then 10 s, each less the fifth the jitter may take (roles/backoff.py)
    assert clock.slept[1:] == [4.0, 8.0]
    failure = next(e for e in host.bootstrap["event"] if e["event"] == "renewal-failed")
    assert "upstream-unavailable" in failure["detail"]


async def test_a_renewal_the_host_cannot_install_is_retried_not_the_end(world: World) -> None:
    """A vendor host's install_identity raising OSError (no ZerotouchError) ended the renewal
    task for good, with nothing recorded: the LDevID then expired unrenewed."""
    host, clock = FakeHost(world.pledge(), sealed_ldevid=False), GatedClock()
    agent = agent_for(host, agent_config(world.registrar_url, renewal=True), clock)
    await agent.start()
    await agent.wait()

    async def worn_out(identity: SigningIdentity, anchors: Sequence[x509.Certificate]) -> None:
        raise OSError("flash worn out")

    host.install_identity = worn_out  # type: ignore[method-assign]
    clock.allow(2)
    await until(lambda: host.history().count("renewal-failed") == 2)
    await until(lambda: clock.calls == 3)  # and the loop waits for the next attempt
    await agent.close()
    failure = next(e for e in host.bootstrap["event"] if e["event"] == "renewal-failed")
    assert "internal error" in failure["detail"] and "flash worn out" in failure["detail"]


async def test_a_renewal_answered_503_waits_the_registrars_retry_after(world: World) -> None:
    """A registrar that cannot renew now says when to come back (Retry-After, RFC 7030
    §4.2.3): the agent waits that long, not the 5 s of its own backoff."""
    host, clock = FakeHost(world.pledge(), sealed_ldevid=False), GatedClock()
    agent = agent_for(host, agent_config(world.registrar_url, renewal=True), clock)
    await agent.start()
    await agent.wait()

    async def busy(_request: web.Request) -> web.Response:
        return web.Response(status=503, text="busy", headers={"Retry-After": "600"})

    app = web.Application()
    app.router.add_post("/.well-known/est/simplereenroll", busy)
    registrar = load_registrar(
        world.domain, load_config(RegistrarConfig, world.domain / CONFIG_FILE, {})
    )
    served, port = await _serve(app, tls_context(registrar))
    host.store.put(REGISTRAR_KEY, f"https://127.0.0.1:{port}".encode())
    try:
        clock.allow(1)
        await until(lambda: host.history().count("renewal-failed") == 1)
        await until(lambda: clock.calls == 2)
        clock.allow(1)
        await until(lambda: len(clock.slept) == 2)
    finally:
        await agent.close()
        await served.cleanup()
    assert clock.slept[1] == 600.0


async def test_an_ldevid_found_expired_is_reported_not_renewed(world: World) -> None:
    clock = FakeClock()
    host = await enrolled_host(world, clock, sealed_ldevid=False)
    assert host.installed is not None
    clock.moment = host.installed.ldevid.not_valid_after_utc + timedelta(days=1)
    agent = agent_for(host, agent_config(world.registrar_url, renewal=True), clock)
    await agent.start()
    await agent.wait_renewal()
    await agent.close()

    assert host.installs == 1 and clock.slept == []
    assert host.history()[-1] == "ldevid-expired"


async def test_a_host_that_keeps_no_ldevid_signer_cannot_renew(world: World) -> None:
    host, clock = FakeHost(world.pledge()), GatedClock()  # sealed keys: no TLS with them
    agent = agent_for(host, agent_config(world.registrar_url, renewal=True), clock)
    await agent.start()
    await agent.wait()
    clock.allow(1)
    await until(lambda: "renewal-failed" in host.history())
    await agent.close()

    failure = next(e for e in host.bootstrap["event"] if e["event"] == "renewal-failed")
    assert "OpenSSL provider" in failure["detail"]
    assert host.installs == 1


async def test_renewals_that_come_back_due_at_once_back_off(world: World) -> None:
    """A device clock far ahead of the registrar's makes every renewed LDevID due at once:
    the agent backs off (4 s, then 8 s, jitter 0) instead of renewing in a tight loop."""
    host = await enrolled_host(world, FakeClock(), sealed_ldevid=False)
    assert host.installed is not None
    clock = GatedClock()
    clock.moment = host.installed.ldevid.not_valid_after_utc - timedelta(hours=1)
    agent = agent_for(host, agent_config(world.registrar_url, renewal=True), clock)
    await agent.start()
    clock.allow(1)
    await until(lambda: host.installs == 3 and clock.calls == 2)
    await agent.close()

    assert clock.slept == [4.0]
    assert host.history().count("ldevid-renewed") == 2
    assert "renewal-failed" not in host.history()


async def test_an_owed_report_without_its_voucher_is_dropped(world: World) -> None:
    """The pin for the report's TLS comes from the stored voucher: without it nothing is
    sent to an unchecked server, and the record does not linger."""
    clock = FakeClock()
    host = await enrolled_host(world, clock)
    host.store.delete(VOUCHER_KEY)
    host.store.put(PENDING_KEY, json.dumps({"registrar": world.registrar_url}).encode())
    agent = agent_for(host, agent_config(world.registrar_url), clock)
    await agent.start()
    await agent.wait()
    await agent.close()

    assert host.store.get(PENDING_KEY) is None
    assert not {"enroll-status-sent", "enroll-status-failed"} & set(host.history())
    assert host.bootstrap["phase"] == "enrolled"


def test_a_host_without_an_idevid_is_refused() -> None:
    factory = unreachable_factory()
    host = FakeHost(Factory(factory.serial, (), factory.key, factory.masa_anchors))
    with pytest.raises(ConfigError, match="no IDevID"):
        PledgeAgent(host, agent_config(closed_port_url()))
