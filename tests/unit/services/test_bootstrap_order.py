"""``bootstrap_order``: the real SZTP agent and the real pledge agent (BRSKI) on the pledge
agent tests' in-memory host, tried in the configured order until one onboards the device."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.unit.services import test_pledge_agent as pledge_tests
from tests.unit.services.test_pledge_agent import (
    FakeClock,
    FakeHost,
    GatedClock,
    World,
    agent_config,
    agent_for,
    closed_port_url,
    unreachable_factory,
    until,
)
from zerotouch_plugin.config import AgentConfig
from zerotouch_plugin.device.datastore import Datastores
from zerotouch_plugin.device.schema import DeviceSchema, load_device_schema
from zerotouch_plugin.services.bootstrap_order import (
    BootstrapAgent,
    OrderedBootstrap,
    onboarded_by,
)
from zerotouch_plugin.services.sztp_agent import (
    COMPLETE_KEY,
    RESTART_RPC,
    DatastoreOnboarder,
    SztpAgent,
    SztpSettings,
)

pki = pledge_tests.pki  # the vendor and domain folders
world = pledge_tests.world  # their MASA and registrar, served in the test's loop


@pytest.fixture(scope="module")
def schema() -> DeviceSchema:
    return load_device_schema()


def _sztp(host: FakeHost, folder: Path, schema: DeviceSchema, clock: FakeClock) -> SztpAgent:
    """An SZTP agent whose only source, an empty media folder, fails its one round."""
    media = folder / "usb"
    media.mkdir(exist_ok=True)
    settings = SztpSettings(media=media, rounds=1)
    onboarder = DatastoreOnboarder(Datastores(schema, folder), folder)
    return SztpAgent(host, settings, onboarder, workdir=folder, now=clock.now, sleep=clock.sleep)


def _ordered(
    names: list[str],
    made: list[str],
    make: dict[str, BootstrapAgent],
    sleep: object,
    host: FakeHost | None = None,
) -> OrderedBootstrap:
    def factory(name: str) -> BootstrapAgent:
        made.append(name)
        return make[name]

    return OrderedBootstrap(
        [(n, lambda n=n: factory(n)) for n in names],  # type: ignore[misc]
        pause=7.0,
        sleep=sleep,  # type: ignore[arg-type]
        onboarded=(lambda: None) if host is None else (lambda: onboarded_by(host)),
    )


async def test_sztp_first_then_brski_enrolls_the_device(
    world: World, schema: DeviceSchema, tmp_path: Path
) -> None:
    host, clock = FakeHost(world.pledge()), FakeClock()
    made: list[str] = []
    brski = agent_for(host, agent_config(world.registrar_url, rounds=1), clock)
    agents: dict[str, BootstrapAgent] = {
        "sztp": _sztp(host, tmp_path, schema, clock),
        "brski": brski,
    }
    ordered = _ordered(["sztp", "brski"], made, agents, clock.sleep)
    await ordered.start()
    await ordered.wait()
    try:
        assert made == ["sztp", "brski"] and ordered.succeeded == "brski"
        assert host.bootstrap["phase"] == "enrolled" and host.installed is not None
        assert host.bootstrap["bootstrap-path"] == "brski"  # the protocol that succeeded
        history = host.history()
        assert "attempt-failed" in history  # the SZTP turn, before BRSKI enrolled
        assert history.index("attempt-failed") < history.index("enrolled")
    finally:
        await ordered.close()


async def test_a_restart_keeps_to_the_protocol_that_onboarded_the_device(
    world: World, schema: DeviceSchema, tmp_path: Path
) -> None:
    """Enrolled by BRSKI with SZTP configured first: the next start asks BRSKI only, which
    finds the identity; SZTP, whose sources might onboard the device again, is never made."""
    host, clock = FakeHost(world.pledge()), FakeClock()
    first: list[str] = []
    agents: dict[str, BootstrapAgent] = {
        "sztp": _sztp(host, tmp_path, schema, clock),
        "brski": agent_for(host, agent_config(world.registrar_url, rounds=1), clock),
    }
    ordered = _ordered(["sztp", "brski"], first, agents, clock.sleep, host)
    await ordered.start()
    await ordered.wait()
    await ordered.close()
    assert first == ["sztp", "brski"] and onboarded_by(host) == "brski"
    again: list[str] = []
    agents = {
        "sztp": _sztp(host, tmp_path, schema, clock),
        "brski": agent_for(host, agent_config(world.registrar_url, rounds=1), clock),
    }
    ordered = _ordered(["sztp", "brski"], again, agents, clock.sleep, host)
    await ordered.start()
    await ordered.wait()
    try:
        assert again == ["brski"] and ordered.succeeded == "brski"
        assert host.bootstrap["bootstrap-path"] == "brski"
        assert host.history()[-1] == "already-enrolled"
    finally:
        await ordered.close()


async def test_a_device_sztp_onboarded_is_not_enrolled_by_brski_after_a_restart(
    world: World, schema: DeviceSchema, tmp_path: Path
) -> None:
    host, clock = FakeHost(world.pledge()), FakeClock()
    host.agent_store().put(COMPLETE_KEY, b"https://sztp.example:8443")
    made: list[str] = []
    agents: dict[str, BootstrapAgent] = {
        "sztp": _sztp(host, tmp_path, schema, clock),
        "brski": agent_for(host, agent_config(world.registrar_url, rounds=1), clock),
    }
    ordered = _ordered(["brski", "sztp"], made, agents, clock.sleep, host)
    await ordered.start()
    await ordered.wait()
    try:
        assert made == ["sztp"] and ordered.succeeded == "sztp"
        assert host.installed is None  # no BRSKI enrollment
        assert host.bootstrap["bootstrap-path"] == "sztp"
        assert host.history()[-1] == "already-bootstrapped"
    finally:
        await ordered.close()


async def test_brski_first_and_every_protocol_failing_starts_a_new_cycle(
    world: World, schema: DeviceSchema, tmp_path: Path
) -> None:
    host, clock = FakeHost(world.pledge()), FakeClock()
    made: list[str] = []
    paused = asyncio.Event()
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        paused.set()
        await asyncio.Event().wait()  # the test ends the run here

    brski = agent_for(host, agent_config(closed_port_url(), rounds=1), clock)
    agents: dict[str, BootstrapAgent] = {
        "sztp": _sztp(host, tmp_path, schema, clock),
        "brski": brski,
    }
    ordered = _ordered(["brski", "sztp"], made, agents, sleep)
    await ordered.start()
    try:
        await asyncio.wait_for(paused.wait(), 60)
        assert made == ["brski", "sztp"] and pauses == [7.0]
        assert ordered.succeeded is None and host.installed is None
        assert host.bootstrap["phase"] == "failed"
        assert "bootstrap-path" not in host.bootstrap
    finally:
        await ordered.close()


@pytest.mark.parametrize(
    ("order", "message"),
    [
        (["sztp", "sztp"], "at most once"),
        (["brski", "netconf"], "at most once"),
        (["sztp"], "no SZTP source"),
    ],
)
def test_bootstrap_order_is_validated(order: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AgentConfig(bootstrap_order=tuple(order))


def test_bootstrap_order_default_is_empty_and_sztp_needs_a_source() -> None:
    assert AgentConfig().bootstrap_order == ()
    config = AgentConfig(bootstrap_order=("brski", "sztp"), bootstrap_dns_domain="Example.NET.")
    assert config.bootstrap_order == ("brski", "sztp")
    assert config.bootstrap_dns_domain == "example.net"


async def test_sztp_restart_bootstraps_asked_at_once_leave_one_run(
    schema: DeviceSchema, tmp_path: Path
) -> None:
    """Two sessions ask restart-bootstrap while the SZTP run waits between rounds: each stops
    the run it finds and starts one; the second must not start beside the first, where no
    later restart nor close() would stop it."""
    host, clock = FakeHost(unreachable_factory()), GatedClock()
    media = tmp_path / "usb"
    media.mkdir()
    agent = SztpAgent(
        host,
        SztpSettings(media=media),
        DatastoreOnboarder(Datastores(schema, tmp_path), tmp_path),
        workdir=tmp_path,
        now=clock.now,
        sleep=clock.sleep,
    )
    await agent.start()
    await until(lambda: clock.calls == 1)  # the run waits on the clock
    restart = host.rpcs[RESTART_RPC]
    await asyncio.gather(restart({}), restart({}))
    await until(lambda: clock.calls >= 2)
    assert len(sztp_runs()) == 1
    await agent.close()
    assert sztp_runs() == []


def sztp_runs() -> list[asyncio.Task[None]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "sztp-agent" and not t.done()]
