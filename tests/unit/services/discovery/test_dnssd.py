"""services/discovery/dnssd.py without the network: resolv.conf's local domain, RFC 2782's
SRV order, candidates from DNS addresses, and the PTR -> SRV -> AAAA/A walk over an in-memory
zone (a stand-in for dnspython's resolver): order, NXDOMAIN, malformed answers, a server that
never answers, floods. tests/e2e/test_mdns_dnssd_netns.py runs it against dnsmasq."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import pytest

from zerotouch_plugin.roles.discovery import Candidate, Method, Role
from zerotouch_plugin.services.discovery import Finder
from zerotouch_plugin.services.discovery.dnssd import (
    DnsSdFinder,
    ResolvConf,
    Srv,
    candidate,
    order_srv,
    parse_resolv_conf,
)


@pytest.mark.parametrize(
    ("text", "domain"),
    [
        ("nameserver 192.0.2.53\nsearch example.net corp.example\n", "example.net"),
        ("domain Example.NET.\n", "example.net"),
        ("domain example.org\nsearch example.net\n", "example.net"),  # the last one wins
        ("search example.net\ndomain example.org\n", "example.org"),
        ("# search example.com\n; domain example.org\nsearch   example.net  \n", "example.net"),
        ("search local\n", None),  # .local is mDNS's (RFC 6762 §3)
        ("search lab.local\n", None),
        ("search .\n", None),
        ("search " + "x" * 64 + ".example\n", None),  # a label over 63 octets
        ("nameserver 192.0.2.53\n", None),
        ("", None),
    ],
)
def test_local_domain_from_resolv_conf(text: str, domain: str | None) -> None:
    assert parse_resolv_conf(text).domain == domain


def test_nameservers_and_the_host_names_domain_as_a_fallback() -> None:
    text = "nameserver 192.0.2.53\nnameserver fd00::53\noptions timeout:1\n"
    assert parse_resolv_conf(text, "pledge.lab.example.net") == ResolvConf(
        ("192.0.2.53", "fd00::53"), "lab.example.net"
    )
    assert parse_resolv_conf(text, "pledge").domain is None
    assert parse_resolv_conf("search example.net\n", "pledge.lab.example").domain == "example.net"


def test_srv_order_priority_first_target_dot_dropped() -> None:
    records = [
        Srv(20, 0, 3, "c.example"),
        Srv(10, 0, 1, "a.example"),
        Srv(10, 5, 9, "."),  # "service decidedly not available at this domain"
        Srv(15, 0, 2, "b.example"),
    ]
    assert [r.port for r in order_srv(records, random.Random(1))] == [1, 2, 3]
    assert order_srv([], random.Random(1)) == []


def test_srv_order_within_a_priority_follows_the_weights() -> None:
    heavy, light, zero = Srv(0, 30, 1, "heavy"), Srv(0, 10, 2, "light"), Srv(0, 0, 3, "zero")
    rng = random.Random(8995)
    firsts: Counter[str] = Counter()
    for _ in range(4000):
        ordered = order_srv([light, zero, heavy], rng)
        assert sorted(r.port for r in ordered) == [1, 2, 3]  # each record exactly once
        firsts[ordered[0].target] += 1
    # RFC 2782: chosen with probability weight / (sum + 1); weight 0 only on a draw of 0
    assert 2800 < firsts["heavy"] < 3100
    assert 850 < firsts["light"] < 1100
    assert firsts["zero"] < 250
    all_zero = [Srv(0, 0, p, f"t{p}") for p in (1, 2, 3)]
    assert sorted(r.port for r in order_srv(all_zero, rng)) == [1, 2, 3]


def test_candidate_from_a_dns_address() -> None:
    srv = Srv(0, 0, 8443, "reg.example.net")
    assert candidate("_brski-registrar._tcp", "example.net", srv, "2001:db8::10") == Candidate(
        method=Method.DNS_SD,
        role=Role.REGISTRAR,
        host="2001:db8::10",
        port=8443,
        source="DNS-SD _brski-registrar._tcp.example.net -> reg.example.net:8443",
    )
    unusable = ("fe80::1", "::1", "127.0.0.1", "::", "ff02::1", "::ffff:127.0.0.1", "junk")
    for address in unusable:
        assert candidate("_brski-registrar._tcp", "example.net", srv, address) is None
    assert candidate("_x._tcp", "example.net", Srv(0, 0, 0, "r.example"), "192.0.2.1") is None


def test_finder_arguments() -> None:
    finder: Finder = DnsSdFinder()
    assert isinstance(finder, DnsSdFinder)
    assert finder.method is Method.DNS_SD
    assert DnsSdFinder("Example.NET.").domain == "example.net"
    for bad in ("local", "lab.local", "."):
        with pytest.raises(ValueError):
            DnsSdFinder(bad)


# --- the walk, over an in-memory zone -------------------------------------------------------

Zone = dict[tuple[str, str], Any]  # (name, type) -> [rdata text] | an exception | "silent"

ZONE: Zone = {
    ("_brski-registrar._tcp.example.net.", "PTR"): [
        "r1._brski-registrar._tcp.example.net.",
        "r2._brski-registrar._tcp.example.net.",
    ],
    ("r1._brski-registrar._tcp.example.net.", "SRV"): [
        "20 0 9443 backup.example.net.",
        "10 0 8443 reg.example.net.",
        "10 0 8443 .",
    ],
    ("r2._brski-registrar._tcp.example.net.", "SRV"): ["0 0 443 other.example.net."],
    ("reg.example.net.", "AAAA"): ["2001:db8::10", "fe80::10"],
    ("reg.example.net.", "A"): ["192.0.2.10"],
    ("backup.example.net.", "AAAA"): ["2001:db8::11"],
    ("other.example.net.", "A"): ["192.0.2.12"],
    ("_bootstrapks._tcp.example.net.", "PTR"): ["old._bootstrapks._tcp.example.net."],
    ("old._bootstrapks._tcp.example.net.", "SRV"): ["0 0 443 reg.example.net."],
}


class _Answer:
    def __init__(self, rrset: list[Any] | None) -> None:
        self.rrset = rrset


def fake_resolver(zone: Zone, queries: list[tuple[str, str]]) -> type:
    class Resolver:
        def __init__(self, configure: bool = True) -> None:
            self.cache: object = None

        def read_resolv_conf(self, f: Any) -> None:
            if "nameserver" not in f.read():
                raise dns.resolver.NoResolverConfiguration("no nameservers")

        async def resolve(self, name: str, rdtype: Any, **kw: Any) -> _Answer:
            key = (str(name), dns.rdatatype.to_text(rdtype))
            queries.append(key)
            assert kw["search"] is False and kw["lifetime"] > 0
            entry = zone.get(key)
            if entry == "silent":
                await asyncio.sleep(3600)
            if isinstance(entry, Exception):
                raise entry
            if entry is None:
                if not any(n == key[0] for n, _ in zone):
                    raise dns.resolver.NXDOMAIN()
                return _Answer(None)
            return _Answer([dns.rdata.from_text(dns.rdataclass.IN, rdtype, text) for text in entry])

    return Resolver


@pytest.fixture
def resolv_conf(tmp_path: Path) -> Path:
    path = tmp_path / "resolv.conf"
    path.write_text("nameserver 192.0.2.53\nsearch example.net\n")
    return path


def run_walk(
    monkeypatch: pytest.MonkeyPatch, resolv_conf: Path, zone: Zone, timeout: float = 2.0
) -> tuple[list[Candidate], list[tuple[str, str]]]:
    queries: list[tuple[str, str]] = []
    monkeypatch.setattr(dns.asyncresolver, "Resolver", fake_resolver(zone, queries))
    finder = DnsSdFinder(resolv_conf=resolv_conf, rng=random.Random(1))
    return asyncio.run(finder.find(timeout=timeout)), queries


def test_walk_order_and_sources(monkeypatch: pytest.MonkeyPatch, resolv_conf: Path) -> None:
    found, _ = run_walk(monkeypatch, resolv_conf, ZONE)
    reg = "DNS-SD _brski-registrar._tcp.example.net -> "
    assert [(c.host, c.port, c.source) for c in found] == [
        ("2001:db8::10", 8443, reg + "reg.example.net:8443"),  # priority 10 first
        ("192.0.2.10", 8443, reg + "reg.example.net:8443"),  # fe80::10 skipped
        ("2001:db8::11", 9443, reg + "backup.example.net:9443"),
        ("192.0.2.12", 443, reg + "other.example.net:443"),  # the second instance
        ("2001:db8::10", 443, "DNS-SD _bootstrapks._tcp.example.net -> reg.example.net:443"),
        ("192.0.2.10", 443, "DNS-SD _bootstrapks._tcp.example.net -> reg.example.net:443"),
    ]
    assert {(c.method, c.role, c.scope) for c in found} == {(Method.DNS_SD, Role.REGISTRAR, None)}


def test_nxdomain_and_no_answer_give_nothing(
    monkeypatch: pytest.MonkeyPatch, resolv_conf: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", "zerotouch_plugin.services.discovery.dnssd")
    assert run_walk(monkeypatch, resolv_conf, {})[0] == []
    assert "_brski-registrar._tcp.example.net. does not exist" in caplog.text
    zone = {("_brski-registrar._tcp.example.net.", "TXT"): ['"x"']}  # the name, no PTR
    assert run_walk(monkeypatch, resolv_conf, zone)[0] == []
    assert "has no PTR record" in caplog.text


def test_a_malformed_answer_is_skipped(monkeypatch: pytest.MonkeyPatch, resolv_conf: Path) -> None:
    zone = dict(ZONE)
    zone[("r1._brski-registrar._tcp.example.net.", "SRV")] = dns.exception.FormError("garbage")
    zone[("other.example.net.", "A")] = ValueError("odd")
    zone[("_bootstrapks._tcp.example.net.", "PTR")] = dns.resolver.NoNameservers()
    found, _ = run_walk(monkeypatch, resolv_conf, zone)
    assert found == []  # r1 unreadable, other.example.net unresolvable, _bootstrapks refused
    zone[("other.example.net.", "A")] = ["192.0.2.12"]
    assert [c.host for c in run_walk(monkeypatch, resolv_conf, zone)[0]] == ["192.0.2.12"]


def test_a_silent_server_gives_what_was_found_at_the_timeout(
    monkeypatch: pytest.MonkeyPatch, resolv_conf: Path
) -> None:
    zone = dict(ZONE)
    zone[("_brski-registrar._tcp.example.net.", "PTR")] = "silent"
    started = time.monotonic()
    found, _ = run_walk(monkeypatch, resolv_conf, zone, timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 1.0
    assert [c.source.split(" ")[1] for c in found] == ["_bootstrapks._tcp.example.net"] * 2


def test_a_flood_of_instances_is_capped(monkeypatch: pytest.MonkeyPatch, resolv_conf: Path) -> None:
    zone: Zone = {
        ("_brski-registrar._tcp.example.net.", "PTR"): [
            f"i{i}._brski-registrar._tcp.example.net." for i in range(200)
        ]
    }
    _, queries = run_walk(monkeypatch, resolv_conf, zone)
    assert sum(1 for _, rdtype in queries if rdtype == "SRV") == 16


def test_the_domain_argument_overrides_resolv_conf(
    monkeypatch: pytest.MonkeyPatch, resolv_conf: Path
) -> None:
    queries: list[tuple[str, str]] = []
    monkeypatch.setattr(dns.asyncresolver, "Resolver", fake_resolver({}, queries))
    finder = DnsSdFinder("corp.example", resolv_conf)
    assert asyncio.run(finder.find(timeout=1)) == []
    assert queries == [
        ("_brski-registrar._tcp.corp.example.", "PTR"),
        ("_bootstrapks._tcp.corp.example.", "PTR"),
    ]


def test_no_configuration_gives_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    queries: list[tuple[str, str]] = []
    monkeypatch.setattr(dns.asyncresolver, "Resolver", fake_resolver(ZONE, queries))
    assert asyncio.run(DnsSdFinder(resolv_conf=tmp_path / "missing").find(timeout=1)) == []
    assert "cannot read" in caplog.text
    no_server = tmp_path / "resolv.conf"
    no_server.write_text("search example.net\n")
    assert asyncio.run(DnsSdFinder(resolv_conf=no_server).find(timeout=1)) == []
    assert "no usable name server" in caplog.text
    assert queries == []
