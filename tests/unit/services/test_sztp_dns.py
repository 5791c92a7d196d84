"""Parsing of the SZTP DNS records (RFC 8572 §4.2): TXT key/value strings, SRV ordering,
names and bounds; no network."""

from __future__ import annotations

from base64 import b64encode
from pathlib import Path

import pytest

from zerotouch_plugin.config import AgentConfig
from zerotouch_plugin.errors import InvalidInput, NotFound, PayloadTooLarge
from zerotouch_plugin.roles.sztp_device import SourceKind
from zerotouch_plugin.services.sztp_agent import SztpSettings
from zerotouch_plugin.services.sztp_dns import (
    MAX_SERVERS,
    MAX_TXT_BYTES,
    SrvRecord,
    bootstrap_urls,
    parse_txt,
    srv_name,
    txt_location,
    txt_name,
)
from zerotouch_plugin.services.sztp_sources import lease_domain

DER = b"\x30\x82\x01\x00\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02" + bytes(range(256))


def test_names_follow_the_rfc() -> None:
    assert txt_name("SN-1", "example.net.") == "SN-1._sztp.example.net"
    assert srv_name("example.net") == "_sztp._tcp.example.net"
    assert txt_location("a.b", None) == "dns:a.b"
    assert txt_location("a.b", "127.0.0.1:5353") == "dns://127.0.0.1:5353/a.b"


@pytest.mark.parametrize("serial", ["", "a.b", "x" * 64])
def test_serial_that_is_no_dns_label_is_refused(serial: str) -> None:
    with pytest.raises(InvalidInput):
        txt_name(serial, "example.net")


@pytest.mark.parametrize(("encode", "label"), [(lambda b: b, "binary"), (b64encode, "base64")])
def test_values_split_over_strings_are_joined_per_key(encode: object, label: str) -> None:
    ci, oc, ov = DER + b"ci", DER + b"oc", DER + b"ov"
    strings: list[bytes] = []
    for key, value in ((b"ci", ci), (b"oc", oc), (b"ov", ov)):
        text = encode(value)  # type: ignore[operator]
        strings += [key + b"=" + text[i : i + 100] for i in range(0, len(text), 100)]
    strings.insert(1, b"txtvers=1")  # unknown keys are ignored (RFC 6763 §6.4)
    strings.insert(2, b"novalue")
    output = parse_txt(strings)
    assert (output.conveyed_information, output.owner_certificate, output.ownership_voucher) == (
        ci,
        oc,
        ov,
    ), label


def test_keys_are_case_insensitive_and_optional_artifacts_may_be_absent() -> None:
    output = parse_txt([b"CI=" + DER])
    assert output.conveyed_information == DER
    assert output.owner_certificate is None and output.ownership_voucher is None


@pytest.mark.parametrize("strings", [[], [b"ov=" + DER], [b"ci="], [b"ci" + DER]])
def test_no_conveyed_information_is_not_found(strings: list[bytes]) -> None:
    with pytest.raises(NotFound):
        parse_txt(strings)


def test_records_past_the_bound_are_refused() -> None:
    chunk = b"ci=" + b"A" * 252
    with pytest.raises(PayloadTooLarge):
        parse_txt([chunk] * (MAX_TXT_BYTES // len(chunk) + 1))


def test_srv_targets_in_priority_then_weight_order() -> None:
    records = [
        SrvRecord(20, 0, 443, "c.example.net."),
        SrvRecord(10, 5, 8443, "b.example.net"),
        SrvRecord(10, 50, 443, "a.example.net"),
        SrvRecord(0, 0, 443, "."),  # no service here
        SrvRecord(10, 50, 443, "a.example.net"),  # duplicate
    ]
    assert bootstrap_urls(records) == (
        "https://a.example.net:443",
        "https://b.example.net:8443",
        "https://c.example.net:443",
    )


def test_srv_targets_are_bounded() -> None:
    records = [SrvRecord(0, 0, 443, f"s{i}.example.net") for i in range(MAX_SERVERS + 5)]
    assert len(bootstrap_urls(records)) == MAX_SERVERS


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
        (SourceKind.DNS_TXT, "dns://127.0.0.1:5353/SN-1._sztp.sztp.example.net")
    ]
    configured = SztpSettings(dhcp_lease=path, dns_domain="mine.example")
    assert await configured.dns_domain_now() == "mine.example"


async def test_a_lease_domain_that_is_no_domain_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dhclient.leases"
    path.write_text('lease {\n  option domain-name "bad_name;x";\n}\n')
    with pytest.raises(InvalidInput):
        await SztpSettings(dhcp_lease=path).dns_domain_now()
