"""The SZTP DNS records (RFC 8572 §4.2): one TXT record per artifact (``ci=``, ``oc=``,
``ov=`` and the binary artifact, the record's strings concatenated), SRV records as unsigned
redirect information in RFC 2782 order, the query order (mDNS, then unicast; TXT, then SRV),
multicast DNS answers read, names and bounds; no network."""

from __future__ import annotations

import random
from base64 import b64encode
from collections.abc import Sequence
from pathlib import Path

import dns.flags
import dns.message
import dns.rrset
import pytest

from zerotouch_plugin.artifacts import sztp
from zerotouch_plugin.artifacts.sztp import RedirectInformation
from zerotouch_plugin.config import AgentConfig
from zerotouch_plugin.errors import (
    ConfigError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    ZerotouchError,
)
from zerotouch_plugin.roles.sztp_device import SourceKind
from zerotouch_plugin.services.discovery.dnssd import Srv
from zerotouch_plugin.services.sztp_agent import SztpSettings
from zerotouch_plugin.services.sztp_dns import (
    MAX_MDNS_BYTES,
    MAX_SERVERS,
    MAX_TXT_BYTES,
    _Gathered,
    _read_mdns,
    dns_locations,
    fetch,
    parse_txt,
    srv_name,
    srv_output,
    txt_name,
    txt_strings,
)
from zerotouch_plugin.services.sztp_sources import lease_domain

# the first octets of a SignedData ContentInfo, then every octet value
DER = b"\x30\x82\x01\x00\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02" + bytes(range(256))
CI, OC, OV = DER + b"ci" * 700, DER + b"oc" * 300, DER + b"ov" * 900


def test_names_follow_the_rfc() -> None:
    assert txt_name("SN-1", "example.net.") == "SN-1._sztp.example.net"
    assert srv_name("example.net") == "_sztp._tcp.example.net"


@pytest.mark.parametrize("serial", ["", "a.b", "x" * 64])
def test_serial_that_is_no_dns_label_is_refused(serial: str) -> None:
    with pytest.raises(InvalidInput):
        txt_name(serial, "example.net")


def test_queries_go_device_specific_then_independent_each_mdns_then_unicast() -> None:
    txt, srv = dns_locations("SN-1", "example.net", server="127.0.0.1:5353", mdns_interface="eth0")
    assert txt == (
        "mdns://eth0/SN-1._sztp.local?type=TXT",
        "dns://127.0.0.1:5353/SN-1._sztp.example.net?type=TXT",
    )
    assert srv == (
        "mdns://eth0/_sztp._tcp.local?type=SRV",
        "dns://127.0.0.1:5353/_sztp._tcp.example.net?type=SRV",
    )
    assert dns_locations("SN-1", None, server=None, mdns_interface="eth0") == (
        (txt[0],),
        (srv[0],),
    )
    assert dns_locations("SN-1", "example.net", server=None, mdns_interface=None) == (
        ("dns:SN-1._sztp.example.net?type=TXT",),
        ("dns:_sztp._tcp.example.net?type=SRV",),
    )
    # a serial that cannot be a label has no device-specific records, the SRV ones remain
    assert dns_locations("SN.1", "example.net", server=None, mdns_interface="eth0") == (
        (),
        ("mdns://eth0/_sztp._tcp.local?type=SRV", "dns:_sztp._tcp.example.net?type=SRV"),
    )
    assert dns_locations("SN-1", None, server=None, mdns_interface=None) == ((), ())


def test_settings_order_the_dns_sources_after_dhcp_and_before_media(tmp_path: Path) -> None:
    settings = SztpSettings(
        dns_domain="example.net", mdns_interface="eth0", media=tmp_path, dhcp_lease=tmp_path
    )
    sources = settings.sources(("https://from-dhcp",), "SN-1")
    assert [(s.kind, s.location.split("?")[0]) for s in sources] == [
        (SourceKind.DHCP, "https://from-dhcp"),
        (SourceKind.DNS_TXT, "mdns://eth0/SN-1._sztp.local"),
        (SourceKind.DNS_TXT, "dns:SN-1._sztp.example.net"),
        (SourceKind.DNS_SRV, "mdns://eth0/_sztp._tcp.local"),
        (SourceKind.DNS_SRV, "dns:_sztp._tcp.example.net"),
        (SourceKind.MEDIA, str(tmp_path)),
    ]
    assert all(s.trust_anchors == () for s in sources if s.kind is not SourceKind.DHCP)


def _records(*pairs: tuple[bytes, bytes]) -> list[tuple[bytes, ...]]:
    """One TXT record per pair, its ``key=value`` cut into 255-octet strings."""
    return [txt_strings(key.decode(), value) for key, value in pairs]


# records -> the artifacts read (ci, oc, ov), or the error refusing them
Expected = tuple[bytes | None, ...] | type[ZerotouchError]
TXT_CASES: list[tuple[str, Sequence[Sequence[bytes]], Expected]] = [
    (
        "signed: one record per artifact, each many strings",
        _records((b"ci", CI), (b"oc", OC), (b"ov", OV)),
        (CI, OC, OV),
    ),
    ("unsigned: ci alone", _records((b"ci", CI)), (CI, None, None)),
    ("keys in any case", _records((b"CI", CI), (b"Oc", OC), (b"oV", OV)), (CI, OC, OV)),
    (
        "unknown keys, a key without value and an empty record are ignored",
        [(b"txtvers=1",), (b"novalue",), (b"",), *_records((b"ci", CI), (b"xx", OV))],
        (CI, None, None),
    ),
    ("cut anywhere, even in the key", [(b"c", b"i=", CI[:10], CI[10:])], (CI, None, None)),
    ("no ci", _records((b"oc", OC), (b"ov", OV)), NotFound),
    ("ci empty", [(b"ci=",)], NotFound),
    ("ci without =", [(b"ci" + CI[:200],)], NotFound),
    ("no record", [], NotFound),
    ("oc without ov", _records((b"ci", CI), (b"oc", OC)), InvalidInput),
    ("ov without oc", _records((b"ci", CI), (b"ov", OV)), InvalidInput),
    ("ci twice", _records((b"ci", CI), (b"ci", CI + b"x")), InvalidInput),
    ("base64 instead of binary", _records((b"ci", b64encode(CI))), InvalidInput),
    (
        "one artifact per string (the strings of one record are not separate values)",
        [(b"ci=" + CI[:200], b"ci=" + CI[200:400])],
        (CI[:200] + b"ci=" + CI[200:400], None, None),
    ),
    (
        "past 65535 octets in all",
        _records((b"ci", CI * 10), (b"oc", OC * 30), (b"ov", OV * 20)),
        PayloadTooLarge,
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("records", "expected"), [c[1:] for c in TXT_CASES], ids=[c[0] for c in TXT_CASES]
)
def test_txt_records_table(
    records: Sequence[Sequence[bytes]], expected: tuple[bytes | None, ...] | type[ZerotouchError]
) -> None:
    if isinstance(expected, tuple):
        output = parse_txt(records)
        assert (
            output.conveyed_information,
            output.owner_certificate,
            output.ownership_voucher,
        ) == expected
    else:
        with pytest.raises(expected):
            parse_txt(records)


def test_an_artifact_is_written_as_one_record_of_255_octet_strings() -> None:
    strings = txt_strings("oc", OC)
    assert all(len(part) <= 255 for part in strings) and len(strings) == -(-(len(OC) + 3) // 255)
    assert b"".join(strings) == b"oc=" + OC
    assert parse_txt([txt_strings("ci", CI)]).conveyed_information == CI
    # RDLENGTH counts a length octet per string: 65279 octets of data are 256 strings, 65535
    largest = txt_strings("ci", bytes(65279 - 3))
    assert sum(len(part) + 1 for part in largest) == MAX_TXT_BYTES
    with pytest.raises(PayloadTooLarge):
        txt_strings("ci", bytes(65280 - 3))


class Draws(random.Random):
    """RFC 2782's draws given in advance: ``randint(0, n)`` returns the next, checked."""

    def __init__(self, *numbers: int) -> None:
        super().__init__(0)
        self.left = list(numbers)

    def randint(self, a: int, b: int) -> int:
        drawn = self.left.pop(0)
        assert a == 0 and 0 <= drawn <= b
        return drawn


def _servers(output: sztp.GetBootstrappingDataOutput) -> list[tuple[str, int]]:
    info = sztp.read_unsigned_conveyed_information(output.conveyed_information)
    assert isinstance(info, RedirectInformation)
    assert output.owner_certificate is None and output.ownership_voucher is None
    return [(s.address, s.port) for s in info.bootstrap_servers]


def test_srv_order_is_by_priority_then_rfc_2782_weighted_draws() -> None:
    records = [
        Srv(1, 30, 443, "b.example.net"),
        Srv(1, 10, 443, "a.example.net"),
        Srv(1, 0, 443, "z.example.net"),
        Srv(2, 5, 443, "."),
        Srv(0, 0, 443, "first.example.net"),
    ]
    # priority 1 as RFC 2782 lays it out: zero weight first (z, b, a), running sums 0, 30,
    # 40; draw 25 -> b; then z, a with sums 0, 10: draw 0 -> z; then a (sum 10, draw 10)
    assert [host for host, _ in _servers(srv_output(records, rng=Draws(0, 25, 0, 10)))] == [
        "first.example.net",
        "b.example.net",
        "z.example.net",
        "a.example.net",
    ]
    # draw 35 -> a; then z, b with sums 0, 30: draw 10 -> b; then z
    assert [host for host, _ in _servers(srv_output(records, rng=Draws(0, 35, 10, 0)))] == [
        "first.example.net",
        "a.example.net",
        "b.example.net",
        "z.example.net",
    ]


def test_srv_answer_is_unsigned_redirect_information() -> None:
    records = [
        Srv(2, 0, 8443, "sztp3.example.net."),
        Srv(0, 0, 443, "sztp1.example.net."),
        Srv(1, 0, 443, "box.local"),
        Srv(0, 0, 8443, "sztp1.example.net"),  # the same host again
        Srv(0, 0, 0, "port0.example.net"),
        Srv(0, 0, 443, "not a host"),
    ]
    assert _servers(srv_output(records, {"box.local": ("192.0.2.7",)}, Draws(0, 0, 0, 0))) == [
        ("sztp1.example.net", 443),
        ("192.0.2.7", 443),
        ("sztp3.example.net", 8443),
    ]
    with pytest.raises(NotFound):
        srv_output([Srv(0, 0, 443, ".")])


def test_srv_servers_are_bounded() -> None:
    records = [Srv(0, 1, 443, f"s{i}.example.net") for i in range(MAX_SERVERS + 5)]
    assert len(_servers(srv_output(records))) == MAX_SERVERS


def _reply(query: dns.message.Message, *rrsets: dns.rrset.RRset, **change: int) -> bytes:
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    for rrset in rrsets:
        (response.additional if rrset.rdtype in (1, 28) else response.answer).append(rrset)
    for name, value in change.items():
        setattr(response, name, value)
    return response.to_wire()


def test_mdns_answers_are_read_and_strangers_ignored() -> None:
    query = dns.message.make_query("SN-1._sztp.local", "TXT")
    txt = dns.rrset.from_text_list("SN-1._sztp.local.", 120, "IN", "TXT", ['"ci=x"', '"oc=y"'])
    other = dns.rrset.from_text("other.local.", 120, "IN", "TXT", '"ci=z"')
    found = _read_mdns(_reply(query, txt, other), query)
    assert found is not None
    assert sorted(r.strings for r in found[0]) == [(b"ci=x",), (b"oc=y",)]  # type: ignore[attr-defined]
    assert _read_mdns(_reply(query, txt, id=0), query) is not None  # a multicast reply
    assert _read_mdns(_reply(query, txt, id=(query.id + 1) % 65536), query) is None
    assert _read_mdns(query.to_wire(), query) is None  # a query, not a response
    assert _read_mdns(b"\x00" * 5, query) is None
    assert _read_mdns(_reply(query, txt), query, 53) is None  # not from port 5353 (§11)
    texts = [f'"{i:03d}' + "a" * 240 + '"' for i in range(40)]
    big = dns.rrset.from_text_list("SN-1._sztp.local.", 120, "IN", "TXT", texts)
    assert len(_reply(query, big)) > MAX_MDNS_BYTES
    assert _read_mdns(_reply(query, big), query) is None


def test_mdns_srv_answers_bring_routable_addresses_only() -> None:
    query = dns.message.make_query("_sztp._tcp.local", "SRV")
    srv = dns.rrset.from_text("_sztp._tcp.local.", 120, "IN", "SRV", "0 0 443 box.local.")
    aaaa = dns.rrset.from_text_list("box.local.", 120, "IN", "AAAA", ["fe80::1", "fd00::7"])
    a = dns.rrset.from_text("Box.local.", 120, "IN", "A", "192.0.2.7")
    found = _read_mdns(_reply(query, srv, aaaa, a), query)
    assert found is not None
    assert found[1] == {"box.local": ["fd00::7", "192.0.2.7"]}


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "::ffff:127.0.0.1", "::1", "0.0.0.0", "224.0.0.251", "fe81::1", "febf::1"],
)
def test_mdns_addresses_of_the_host_itself_or_link_local_are_dropped(address: str) -> None:
    """Any host on the link answers mDNS: an address record naming this host (loopback,
    unspecified, IPv4-mapped loopback), multicast, or any IPv6 link-local (fe80::/10) is not
    taken; the target is then given by name."""
    query = dns.message.make_query("_sztp._tcp.local", "SRV")
    srv = dns.rrset.from_text("_sztp._tcp.local.", 120, "IN", "SRV", "0 0 443 box.local.")
    kind = "AAAA" if ":" in address else "A"
    record = dns.rrset.from_text_list("box.local.", 120, "IN", kind, [address])
    found = _read_mdns(_reply(query, srv, record), query)
    assert found is not None
    assert found[1] == {}
    assert _servers(srv_output([Srv(0, 0, 443, "box.local")], found[1])) == [("box.local", 443)]


@pytest.mark.parametrize("target", ["localhost.", "LOCALHOST.", "127.0.0.1.", "0x7f000001."])
def test_mdns_srv_target_naming_the_host_itself_is_dropped(target: str) -> None:
    query = dns.message.make_query("_sztp._tcp.local", "SRV")
    bad = dns.rrset.from_text("_sztp._tcp.local.", 120, "IN", "SRV", f"0 0 443 {target}")
    found = _read_mdns(_reply(query, bad), query)
    assert found == ([], {})


def test_mdns_answers_gathered_are_bounded() -> None:
    """A TXT answer ends the query; SRV answers are gathered until 64 records, at most 64
    hosts with 4 addresses each, whatever a flood of responses sends."""
    txt = _Gathered("TXT")
    assert not txt.add(([], {}))
    assert txt.add(([object()], {}))
    srv = _Gathered("SRV")
    many = {f"h{i}.local": [f"fd00::{i}:{j}" for j in range(10)] for i in range(100)}
    done = [srv.add(([object()] * 10, many)) for _ in range(8)]
    assert done == [False] * 6 + [True, True]
    assert len(srv.records) == 64
    assert len(srv.addresses) == 64 and all(len(a) == 4 for a in srv.addresses.values())
    with pytest.raises(NotFound):
        _Gathered("SRV").answer("SRV _sztp._tcp.local on eth0")


@pytest.mark.parametrize(
    "location",
    ["https://sztp.example/", "dns:SN-1._sztp.example.net?type=A", "mdns://eth0/x?type=CNAME"],
)
async def test_a_location_that_is_no_sztp_dns_uri_is_refused(location: str) -> None:
    with pytest.raises(InvalidInput):
        await fetch(location, timeout=1)


async def test_mdns_on_an_interface_that_does_not_exist_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="no-such-if0"):
        await fetch("mdns://no-such-if0/SN-1._sztp.local?type=TXT", timeout=1, mdns_wait=0.1)


@pytest.mark.parametrize("server", ["127.0.0.1", "127.0.0.1:5353", "[::1]:53", "::1"])
def test_dns_server_by_address_is_accepted(server: str) -> None:
    assert AgentConfig(bootstrap_dns_server=server).bootstrap_dns_server == server


@pytest.mark.parametrize("server", ["ns.example.net", "127.0.0.1:99999", "127.0.0.1:x", "", "[::1"])
def test_dns_server_that_is_no_address_is_refused(server: str) -> None:
    with pytest.raises((ValueError, TypeError)):
        AgentConfig(bootstrap_dns_server=server)


@pytest.mark.parametrize("domain", ["-bad.example", "a..b", "x" * 200 + ".net"])
def test_dns_domain_that_is_no_domain_is_refused(domain: str) -> None:
    with pytest.raises(ValueError, match="bootstrap_dns_domain"):
        AgentConfig(bootstrap_dns_domain=domain)


LEASE = """lease {
  interface "eth0";
  option domain-name "old.example";
}
lease {
  interface "eth0";
  option domain-name "Sztp.Example.NET";
}
"""


def test_the_domain_of_the_last_lease_counts(tmp_path: Path) -> None:
    path = tmp_path / "dhclient.leases"
    path.write_text(LEASE)
    assert lease_domain(path) == "sztp.example.net"
    path.write_text('lease6 {\n  option dhcp6.domain-search "a.example.", "b.example.";\n}\n')
    assert lease_domain(path) == "a.example"
    path.write_text("lease {\n  option routers 192.0.2.1;\n}\n")
    assert lease_domain(path) is None


async def test_a_lease_domain_adds_the_dns_txt_source(tmp_path: Path) -> None:
    path = tmp_path / "dhclient.leases"
    path.write_text(LEASE)
    settings = SztpSettings(dhcp_lease=path, dns_server="127.0.0.1:5353")
    domain = await settings.dns_domain_now()
    sources = settings.sources(serial="SN-1", domain=domain)
    assert [(s.kind, s.location) for s in sources] == [
        (SourceKind.DNS_TXT, "dns://127.0.0.1:5353/SN-1._sztp.sztp.example.net?type=TXT"),
        (SourceKind.DNS_SRV, "dns://127.0.0.1:5353/_sztp._tcp.sztp.example.net?type=SRV"),
    ]
    configured = SztpSettings(dhcp_lease=path, dns_domain="mine.example")
    assert await configured.dns_domain_now() == "mine.example"


async def test_a_lease_domain_that_is_no_domain_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dhclient.leases"
    path.write_text('lease {\n  option domain-name "bad_name;x";\n}\n')
    with pytest.raises(InvalidInput):
        await SztpSettings(dhcp_lease=path).dns_domain_now()
