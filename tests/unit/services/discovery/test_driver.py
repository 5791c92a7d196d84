"""The discovery driver over the real machine and the real URL finders (configured and
vendor methods, no network): candidates tried in method order, a failed one set aside and
the next tried, the cycle's wait slept, giving up with the last error; and the pledge
client's resolver for zoned IPv6 link-local targets."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import pytest

from zerotouch_plugin.config import DeviceConfig
from zerotouch_plugin.errors import PolicyRefused, UpstreamUnavailable, ZerotouchError
from zerotouch_plugin.roles.discovery import Candidate, Discovery, Method, Search, Wait
from zerotouch_plugin.services.discovery.driver import discovery_machine, run_discovery
from zerotouch_plugin.services.pledge_client import _target

OWNER = "https://registrar.owner.example:8443"
VENDOR = "https://registrar.vendor.example"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)


class Seen:
    """What an observer is told."""

    def __init__(self) -> None:
        self.searches: list[Method] = []
        self.found: list[str] = []
        self.waits: list[float] = []
        self.last: Discovery | None = None

    def changed(self, machine: Discovery) -> None:
        self.last = machine

    def search_started(self, action: Search) -> None:
        self.searches.append(action.method)

    def candidate_found(self, candidate: Candidate) -> None:
        self.found.append(candidate.url)

    def no_local_address(self, where: str) -> None:
        raise AssertionError("configured and vendor need no link")

    def waiting(self, action: Wait) -> None:
        self.waits.append(action.seconds)


def config(**settings: object) -> DeviceConfig:
    base: dict[str, object] = {
        "registrars": (OWNER,),
        "vendor_registrar": VENDOR,
        "discovery": ("configured", "vendor"),
        "bootstrap_retry_delay": 1.0,
        "bootstrap_max_delay": 4.0,
    }
    return DeviceConfig(**{**base, **settings})  # type: ignore[arg-type]


def zero(n: int) -> bytes:
    return bytes(n)


async def test_the_owner_fails_the_vendor_is_tried_then_the_owner_again() -> None:
    clock, seen = Clock(), Seen()
    outcomes: list[ZerotouchError | None] = [
        UpstreamUnavailable("owner down"),
        PolicyRefused("vendor refuses"),
        None,
    ]
    tried: list[str] = []

    async def attempt(candidate: Candidate) -> ZerotouchError | None:
        tried.append(candidate.url)
        return outcomes.pop(0)

    cfg = config()
    machine = discovery_machine(cfg, random_bytes=zero)
    gave_up = await run_discovery(
        machine, cfg, attempt=attempt, observer=seen, sleep=clock.sleep, now=clock
    )
    assert gave_up is None
    assert tried == [OWNER, f"{VENDOR}:443", OWNER]
    assert seen.searches == ["configured", "vendor", "configured"]
    assert seen.found == [OWNER, f"{VENDOR}:443"]  # each announced once
    # the cycle waits until the owner's registrar is ready again: 1 s after its failure
    # (jitter: half of it random, drawn as zero here)
    assert seen.waits == [0.5]
    assert machine.enrolled_by is not None and machine.enrolled_by.url == OWNER
    assert seen.last is machine


async def test_gives_up_after_the_rounds_with_the_last_error() -> None:
    clock, seen = Clock(), Seen()

    async def attempt(candidate: Candidate) -> ZerotouchError | None:
        return PolicyRefused(f"{candidate.host} refuses")

    cfg = config(bootstrap_rounds=2)
    machine = discovery_machine(cfg, random_bytes=zero)
    gave_up = await run_discovery(
        machine, cfg, attempt=attempt, observer=seen, sleep=clock.sleep, now=clock
    )
    assert gave_up is not None
    assert (
        gave_up.reason
        == "gave up after 2 round(s) through configured, vendor (2 candidate(s) found)"
    )
    assert isinstance(gave_up.error, PolicyRefused)
    assert "registrar.vendor.example refuses" in gave_up.error.message
    assert len(seen.waits) == 1


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://[fe80::1%25lo]:8443", "fe80::1%lo"),
        ("https://[2001:db8::1]:8443", "2001:db8::1"),
        ("https://registrar.example", "registrar.example"),
    ],
)
def test_targets_carry_the_zone_as_getaddrinfo_takes_it(url: str, host: str) -> None:
    assert _target(url).host == host


def test_a_zoned_target_is_connected_with_its_zone_and_named_without_it() -> None:
    zoned = _target("https://[fe80::1%25lo]:8443")
    # the kernel takes the zone: getaddrinfo gives the scope id of lo
    info = socket.getaddrinfo(zoned.host, zoned.port, socket.AF_INET6, socket.SOCK_STREAM)
    assert info[0][4][3] == socket.if_nametoindex("lo")
    assert zoned.literal  # an address: no SNI
    assert zoned.host_header == "[fe80::1]:8443"  # the zone means nothing to the server
    named = _target("https://registrar.example")
    assert (named.literal, named.host_header) == (False, "registrar.example")
