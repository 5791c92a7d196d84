"""services/discovery/mdns.py without the network: service types and roles, host labels,
candidates from what zeroconf resolved (scopes, odd and hostile addresses), the announcer's
and finder's argument checks. tests/e2e/test_mdns_dnssd_netns.py runs them across links."""

from __future__ import annotations

import asyncio

import pytest
from zeroconf import ServiceStateChange

from zerotouch_plugin.roles.discovery import Candidate, Method, Role
from zerotouch_plugin.services.discovery import Announcer, Finder, mdns
from zerotouch_plugin.services.discovery.mdns import (
    BOOTSTRAPKS,
    BRSKI_PROXY,
    BRSKI_REGISTRAR,
    SERVICE_TYPES,
    MdnsAnnouncer,
    MdnsFinder,
    candidates_from_addresses,
    host_label,
    role_of,
)

LL = "fe80::1c2:3ff:fe44:5566"


def test_service_names_are_rfc_8995s_and_the_drafts() -> None:
    assert SERVICE_TYPES == (
        "_brski-proxy._tcp.local.",
        "_brski-registrar._tcp.local.",
        "_bootstrapks._tcp.local.",
    )
    assert role_of(BRSKI_PROXY) is Role.PROXY
    assert role_of("_BRSKI-Proxy._tcp.local.") is Role.PROXY  # DNS names ignore case
    assert role_of(BRSKI_REGISTRAR) is Role.REGISTRAR
    assert role_of(BOOTSTRAPKS) is Role.REGISTRAR


@pytest.mark.parametrize(
    ("instance", "label"),
    [
        ("reg1", "reg1"),
        ("Registrar r1 (lab)", "registrar-r1-lab"),
        ("Régistrar", "r-gistrar"),
        ("---", "zerotouch"),
        ("x" * 80, "x" * 63),
        ("a" * 62 + " b", "a" * 62),  # no trailing hyphen after the cut
    ],
)
def test_host_label(instance: str, label: str) -> None:
    assert host_label(instance) == label


def find(addresses: list[tuple[str, str | None]], **kw: object) -> list[Candidate]:
    args: dict[str, object] = {
        "service_type": BRSKI_REGISTRAR,
        "name": "reg1._brski-registrar._tcp.local.",
        "port": 8443,
        "interface": "eth0",
        "index": 2,
    }
    args.update(kw)
    return candidates_from_addresses(addresses=addresses, **args)  # type: ignore[arg-type]


def test_a_link_local_address_is_scoped_to_the_finders_interface() -> None:
    (candidate,) = find([(LL, "2")])
    assert candidate == Candidate(
        method=Method.MDNS,
        role=Role.REGISTRAR,
        host=LL,
        port=8443,
        scope="eth0",
        source="mDNS reg1._brski-registrar._tcp.local.",
    )
    assert candidate.url == f"https://[{LL}%25eth0]:8443"
    assert find([(LL, None)])[0].scope == "eth0"  # heard on an IPv4 socket: no scope known


def test_an_address_heard_on_another_interface_is_skipped() -> None:
    assert find([(LL, "3")]) == []


def test_proxy_role_global_and_ipv4_addresses_ipv6_first() -> None:
    found = find(
        [("192.0.2.7", None), ("2001:db8::7", "2"), (LL, "2")],
        service_type=BRSKI_PROXY,
        name="p._brski-proxy._tcp.local.",
    )
    assert [(c.role, c.host, c.scope) for c in found] == [
        (Role.PROXY, "2001:db8::7", None),
        (Role.PROXY, LL, "eth0"),
        (Role.PROXY, "192.0.2.7", None),
    ]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "::1",
        "0.0.0.0",
        "::",
        "ff02::fb",
        "224.0.0.251",
        "::ffff:127.0.0.1",
        "::ffff:0.0.0.0",
        "nonsense",
        "",
    ],
)
def test_unusable_addresses_are_skipped(address: str) -> None:
    assert find([(address, None)]) == []


@pytest.mark.parametrize("port", [None, 0, 65536, -1, True, "8443"])
def test_an_instance_without_a_usable_port_gives_nothing(port: object) -> None:
    assert find([(LL, "2")], port=port) == []


def test_duplicates_are_dropped_and_addresses_capped() -> None:
    assert len(find([(LL, "2"), (LL, None)])) == 1
    many = [(f"2001:db8::{i:x}", None) for i in range(1, 100)]
    assert len(find(many)) == 16


def test_a_hostile_instance_name_is_shown_escaped() -> None:
    (candidate,) = find(
        [(LL, "2")], name="evil\x1b[2J\n" + "x" * 300 + "._brski-registrar._tcp.local."
    )
    assert "\x1b" not in candidate.source and "\n" not in candidate.source
    assert candidate.source.startswith("mDNS evil\\x1b[2J\\x0a")
    assert len(candidate.source) < 220


def test_announcer_checks_its_arguments() -> None:
    announcer: Announcer = MdnsAnnouncer(BRSKI_REGISTRAR, "reg1", 8443, "eth0")
    assert isinstance(announcer, MdnsAnnouncer)
    assert announcer.name == "reg1._brski-registrar._tcp.local."
    assert MdnsAnnouncer("_BRSKI-PROXY._tcp.local.", "p", 1, "eth0", ["fe80::1"]).service_type == (
        BRSKI_PROXY
    )
    with pytest.raises(ValueError, match="service type"):
        MdnsAnnouncer("_http._tcp.local.", "reg1", 8443, "eth0")
    for instance in ("", "a.b", "x" * 64):
        with pytest.raises(ValueError, match="instance"):
            MdnsAnnouncer(BRSKI_REGISTRAR, instance, 8443, "eth0")
    with pytest.raises(TypeError):
        MdnsAnnouncer(BRSKI_REGISTRAR, "reg1", True, "eth0")
    with pytest.raises(ValueError, match="port"):
        MdnsAnnouncer(BRSKI_REGISTRAR, "reg1", 0, "eth0")
    with pytest.raises(ValueError, match="interface"):
        MdnsAnnouncer(BRSKI_REGISTRAR, "reg1", 8443, "")
    with pytest.raises(ValueError):
        MdnsAnnouncer(BRSKI_REGISTRAR, "reg1", 8443, "eth0", ["fe80::1%eth0"])


def test_finder_checks_its_arguments() -> None:
    finder: Finder = MdnsFinder("eth0")
    assert isinstance(finder, MdnsFinder)
    assert finder.method is Method.MDNS
    assert finder.service_types == SERVICE_TYPES
    with pytest.raises(ValueError):
        MdnsFinder("")
    with pytest.raises(ValueError):
        MdnsFinder("eth0", ["_brski-proxy._tcp.example.com."])
    with pytest.raises(ValueError):
        MdnsFinder("eth0", [])
    with pytest.raises(ValueError):
        MdnsFinder("eth0", linger=-1)


async def test_a_missing_interface_gives_no_candidates(caplog: pytest.LogCaptureFixture) -> None:
    assert await MdnsFinder("zt-no-such-if0").find(timeout=1) == []
    assert "no network interface 'zt-no-such-if0'" in caplog.text


async def test_announcing_on_a_missing_interface_is_a_config_error() -> None:
    from zerotouch_plugin.errors import ConfigError

    with pytest.raises(ConfigError, match="zt-no-such-if0"):
        await MdnsAnnouncer(BRSKI_PROXY, "p", 7443, "zt-no-such-if0").start()


async def test_a_flood_of_updates_resolves_each_instance_once_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # zeroconf reports Updated for every packet that brings a new record (a TXT whose
    # content changes each time): a neighbour must not make one resolution per packet.
    started: list[str] = []
    release = asyncio.Event()

    async def resolve(self: mdns._Search, service_type: str, name: str) -> None:
        started.append(name)
        await release.wait()

    monkeypatch.setattr(mdns._Search, "resolve", resolve)
    search = mdns._Search(None, None, 0.0)  # type: ignore[arg-type]
    name = "reg1._brski-registrar._tcp.local."
    search.on_change(None, BRSKI_REGISTRAR, name, ServiceStateChange.Added)  # type: ignore[arg-type]
    for _ in range(1000):
        search.on_change(None, BRSKI_REGISTRAR, name, ServiceStateChange.Updated)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert started == [name] and len(search.tasks) == 1
    release.set()
    await asyncio.sleep(0.01)
    search.on_change(None, BRSKI_REGISTRAR, name, ServiceStateChange.Updated)  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert started == [name, name]  # an update after it resolved is looked at again
    await search.cancel()
